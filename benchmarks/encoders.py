"""Text encoders side by side on a prepared dataset's real item texts: items per second.

Each measurement is a fresh process that loads one encoder and encodes every item text of
`items.parquet` (the fields as `crane features` joins them); the encoders alternate, and each
one's median and spread over `--repeats` processes are reported with the ratio of medians.

    python benchmarks/encoders.py --items results/scientific/scientific/data/items.parquet \
        [--fields text] [--encoders all-MiniLM-L6-v2 all-mpnet-base-v2] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BATCH_SIZES = {"all-MiniLM-L6-v2": 128, "all-mpnet-base-v2": 64}  # the configs' values


def measure_once(items: Path, fields: list[str], model: str, batch_size: int) -> dict:
    """Load `model`, encode every non-empty item text; seconds of each step (this process)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.path.insert(0, str(REPO))
    from crane.features.extract import read_items
    from crane.features.text import SentenceEncoder, item_texts

    texts = [t for t in item_texts(read_items(items.parent), fields) if t]
    start = time.perf_counter()
    encoder = SentenceEncoder(model, device="cpu", batch_size=batch_size)
    loaded = time.perf_counter()
    encoder.encode(texts, progress=False)
    done = time.perf_counter()
    return {"model": model, "items": len(texts), "dim": encoder.dim,
            "load_s": loaded - start, "encode_s": done - loaded}


def run_fresh(items: Path, fields: list[str], model: str) -> dict:
    command = [sys.executable, __file__, "--items", str(items), "--fields", *fields,
               "--once", model]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def summary(rows: list[dict]) -> dict:
    rates = [row["items"] / row["encode_s"] for row in rows]
    return {"model": rows[0]["model"], "dim": rows[0]["dim"], "items": rows[0]["items"],
            "items_per_s": statistics.median(rates), "min": min(rates), "max": max(rates),
            "load_s": statistics.median(row["load_s"] for row in rows), "runs": len(rows)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=Path, required=True, help="a dataset's items.parquet")
    parser.add_argument("--fields", nargs="+", default=["text"])
    parser.add_argument("--encoders", nargs="+", default=list(BATCH_SIZES))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--once", help=argparse.SUPPRESS)  # the child process's encoder
    parser.add_argument("--json", type=Path, help="also write the summary rows as JSON")
    args = parser.parse_args(argv)
    if args.once:
        print(json.dumps(measure_once(args.items, args.fields, args.once,
                                      BATCH_SIZES.get(args.once, 64))))
        return 0
    runs: dict[str, list[dict]] = {model: [] for model in args.encoders}
    for _ in range(args.repeats):
        for model in args.encoders:  # alternating: drift hits every encoder alike
            runs[model].append(run_fresh(args.items, args.fields, model))
    rows = [summary(rows) for rows in runs.values()]
    base = rows[0]["items_per_s"]
    print(f"{os.cpu_count()} CPUs, torch threads default; {args.repeats} fresh processes each, "
          f"alternating; items: {args.items}")
    print("| encoder | dim | items | items/s (median) | min-max | load s | vs first |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['model']} | {row['dim']} | {row['items']} | {row['items_per_s']:.1f} | "
              f"{row['min']:.1f}-{row['max']:.1f} | {row['load_s']:.1f} | "
              f"{row['items_per_s'] / base:.2f}x |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
