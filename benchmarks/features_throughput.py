"""Feature extraction throughput (items per second) on this machine, and the kNN build time.

Runs the real encoders through the same code paths as `crane features` on synthetic inputs:
- text: the bundled all-MiniLM-L6-v2 over Amazon-like item texts (title, brand, category
  path, a description of ~`--words` words; MiniLM truncates at 256 tokens);
- image: `--clip-arch` (default ViT-B-32, the config's arch) with *random* weights, loaded
  from a checkpoint file like real weights would be (the speed does not depend on the
  values), and the colour histogram; both decode `--image-size`-pixel JPEGs from a cache;
- knn: `top_k_cosine_neighbours` over random `--knn-items` x `--knn-dim` features.

    python benchmarks/features_throughput.py [--texts 2000] [--images 256] [--knn-items 7050]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from crane.features.image_files import encode_image_files  # noqa: E402
from crane.features.image_histogram import colour_histogram, load_resized  # noqa: E402

WORDS = ("soft cotton baby blanket stroller car seat bottle warmer organic cloth diaper bib "
         "toddler crib mattress waterproof portable lightweight adjustable safety travel "
         "gift set bath toy teether pacifier monitor wireless night light swaddle wrap "
         "carrier ergonomic bpa free silicone easy clean machine washable durable").split()


def fake_texts(n: int, words: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join([*rng.choices(WORDS, k=10), "Acme", "Baby", "Nursery", "Bedding",
                      *rng.choices(WORDS, k=words)]) for _ in range(n)]


def fake_images(folder: Path, n: int, size: int, seed: int = 0) -> list[str]:
    """Smooth random colour fields saved as JPEG (decode cost like product photos)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    asins = []
    for i in range(n):
        small = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        image = Image.fromarray(small).resize((size, size), Image.Resampling.BICUBIC)
        asin = f"B{i:09d}"
        image.save(folder / f"{asin}.jpg", quality=90)
        asins.append(asin)
    return asins


CPU_SECONDS: list[float] = []  # process CPU time of each timed call, same order as the rows


def timed(fn) -> tuple[float, object]:
    """Wall seconds of `fn()`; its process CPU seconds go to CPU_SECONDS (on a shared machine
    CPU seconds / threads estimates the wall time the machine alone would give)."""
    start, cpu_start = time.perf_counter(), time.process_time()
    result = fn()
    CPU_SECONDS.append(time.process_time() - cpu_start)
    return time.perf_counter() - start, result


def bench_text(n: int, words: int, batch_size: int) -> dict:
    from crane.features.text import SentenceEncoder

    load_s, encoder = timed(lambda: SentenceEncoder("all-MiniLM-L6-v2", "cpu", batch_size))
    texts = fake_texts(n, words)
    tokens = np.mean([len(encoder.model.tokenizer(t)["input_ids"]) for t in texts[:200]])
    encoder.encode(texts[:batch_size], progress=False)  # warm-up
    seconds, _ = timed(lambda: encoder.encode(texts, progress=False))
    return {"encoder": f"text MiniLM-L6 (~{tokens:.0f} tokens, batch {batch_size})",
            "items": n, "seconds": seconds, "cpu_seconds": CPU_SECONDS[-1],
            "load_seconds": load_s}


def bench_clip(image_dir: Path, asins: list[str], arch: str, batch_size: int,
               workers: int) -> dict:
    import open_clip

    from crane.features.image_clip import OpenClipImageEncoder

    with tempfile.TemporaryDirectory() as tmp:
        weights = Path(tmp) / "random.pt"
        torch.save(open_clip.create_model(arch, pretrained=None).state_dict(), weights)
        load_s, encoder = timed(lambda: OpenClipImageEncoder(arch, weights=str(weights),
                                                             batch_size=batch_size))
    encode_image_files(asins[:batch_size], image_dir, encoder.prepare, encoder.encode_batch,
                       batch_size, workers)  # warm-up
    seconds, _ = timed(lambda: encode_image_files(asins, image_dir, encoder.prepare,
                                                  encoder.encode_batch, batch_size, workers))
    return {"encoder": f"open_clip {arch}, random weights (batch {batch_size})",
            "items": len(asins), "seconds": seconds, "cpu_seconds": CPU_SECONDS[-1],
            "load_seconds": load_s}


def bench_histogram(image_dir: Path, asins: list[str], workers: int) -> dict:
    seconds, _ = timed(lambda: encode_image_files(
        asins, image_dir, lambda p: colour_histogram(load_resized(p, 64), 8, 2), np.stack, 256,
        workers))
    return {"encoder": "colour histogram (bins 8, grid 2)", "items": len(asins),
            "seconds": seconds, "cpu_seconds": CPU_SECONDS[-1], "load_seconds": 0.0}


def bench_knn(n: int, dim: int, k: int) -> dict:
    from crane.graphs.item_knn import top_k_cosine_neighbours

    features = np.random.default_rng(0).standard_normal((n, dim)).astype(np.float32)
    seconds, _ = timed(lambda: top_k_cosine_neighbours(features, k))
    return {"encoder": f"knn top-{k} build, {n} x {dim}", "items": n, "seconds": seconds,
            "cpu_seconds": CPU_SECONDS[-1], "load_seconds": 0.0}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=2000)
    parser.add_argument("--words", type=int, default=80, help="description words per item")
    parser.add_argument("--text-batch", type=int, default=128)
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--image-size", type=int, default=500)
    parser.add_argument("--clip-arch", default="ViT-B-32")
    parser.add_argument("--clip-batch", type=int, default=64)
    parser.add_argument("--workers", type=int, default=4, help="image loading threads")
    parser.add_argument("--knn-items", type=int, default=7050, help="0 skips the kNN build")
    parser.add_argument("--knn-dim", type=int, default=4096)
    parser.add_argument("--skip", nargs="*", default=[], choices=["text", "clip", "hist"])
    parser.add_argument("--json", type=Path, help="also write the rows as JSON")
    args = parser.parse_args(argv)

    load_before = f"{os.getloadavg()[0]:.1f}"
    rows = []
    if "text" not in args.skip:
        rows.append(bench_text(args.texts, args.words, args.text_batch))
    if args.images and {"clip", "hist"} - set(args.skip):
        with tempfile.TemporaryDirectory() as tmp:
            image_dir = Path(tmp) / "images"
            asins = fake_images(image_dir, args.images, args.image_size)
            if "hist" not in args.skip:
                rows.append(bench_histogram(image_dir, asins, args.workers))
            if "clip" not in args.skip:
                rows.append(bench_clip(image_dir, asins, args.clip_arch, args.clip_batch,
                                       args.workers))
    if args.knn_items:
        rows.append(bench_knn(args.knn_items, args.knn_dim, 10))

    print(f"\ntorch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{os.cpu_count()} CPUs, device cpu")
    print(f"load average before/after: {load_before} / {os.getloadavg()[0]:.1f}")
    print(f"| {'what':<52} | {'items':>6} | {'wall s':>7} | {'items/s':>8} | {'CPU s':>7} "
          f"| {'items/CPU-s':>11} | {'load s':>6} |")
    print(f"|{'-' * 54}|{'-' * 8}|{'-' * 9}|{'-' * 10}|{'-' * 9}|{'-' * 13}|{'-' * 8}|")
    for row in rows:
        row["items_per_second"] = row["items"] / row["seconds"]
        row["items_per_cpu_second"] = row["items"] / max(row["cpu_seconds"], 1e-9)
        print(f"| {row['encoder']:<52} | {row['items']:>6} | {row['seconds']:>7.2f} | "
              f"{row['items_per_second']:>8.1f} | {row['cpu_seconds']:>7.1f} | "
              f"{row['items_per_cpu_second']:>11.2f} | {row['load_seconds']:>6.1f} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
