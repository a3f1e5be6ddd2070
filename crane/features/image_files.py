"""Reading the raw image cache (`raw/images/<asin>.<ext>`, crane/data/raw_images.py) and the
loop every image encoder shares.

An image encoder is two functions: `prepare(path)` turns one file into an array or tensor
(decoding, resizing; run in a thread pool because PIL releases the GIL while decoding), and
`encode_batch(list of prepared)` turns a batch into rows. Missing or unreadable images leave
their row absent with the reason, for mean imputation and the manifest.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from PIL import Image
from tqdm import tqdm

DEFAULT_LOAD_WORKERS = 4


def find_cached_images(image_dir: str | os.PathLike) -> dict[str, Path]:
    """asin -> cached file; partial files of interrupted downloads (`.x.tmp`, `x.part`) skipped."""
    image_dir = Path(image_dir)
    if not image_dir.is_dir():
        return {}
    found: dict[str, Path] = {}
    for entry in sorted(os.scandir(image_dir), key=lambda e: e.name):  # deterministic
        if entry.name.startswith(".") or entry.name.endswith(".part") or not entry.is_file():
            continue
        stem, _, _ = entry.name.rpartition(".")
        found[stem or entry.name] = Path(entry.path)
    return found


def open_rgb(path: str | os.PathLike) -> Image.Image:
    """Fully decoded RGB image (a truncated file raises here, not later)."""
    with Image.open(path) as image:
        image.load()
        return image.convert("RGB")


@dataclass
class ImageEncoding:
    features: np.ndarray  # float32 (n, dim), zero rows where absent
    present: np.ndarray  # bool (n,)
    problems: dict[int, str]  # row -> reason


def encode_image_files(asins: Sequence[str], image_dir: str | os.PathLike,
                       prepare: Callable[[Path], Any],
                       encode_batch: Callable[[list[Any]], np.ndarray],
                       batch_size: int, workers: int = DEFAULT_LOAD_WORKERS,
                       desc: str = "images") -> ImageEncoding:
    """Run `prepare` + `encode_batch` over every item's cached image, in batches."""
    if batch_size < 1:
        raise ValueError(f"image encoder: batch_size must be >= 1, got {batch_size}")
    cached = find_cached_images(image_dir)
    n = len(asins)
    problems: dict[int, str] = {}
    rows: list[int] = []
    paths: list[Path] = []
    for row, asin in enumerate(asins):
        path = cached.get(str(asin))
        if path is None:
            problems[row] = "missing: no cached image"
        else:
            rows.append(row)
            paths.append(path)

    features: np.ndarray | None = None
    present = np.zeros(n, dtype=bool)

    def safe_prepare(path: Path) -> tuple[Any, str | None]:
        try:
            return prepare(path), None
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
            # PIL reports broken files as OSError/SyntaxError/ValueError
            return None, f"unreadable: {type(error).__name__}: {error}"

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool, \
            tqdm(total=len(paths), desc=desc, unit="img", mininterval=2.0) as progress:
        for start in range(0, len(paths), batch_size):
            batch_rows = rows[start:start + batch_size]
            prepared = list(pool.map(safe_prepare, paths[start:start + batch_size]))
            good_rows = [r for r, (_, err) in zip(batch_rows, prepared) if err is None]
            for r, (_, err) in zip(batch_rows, prepared):
                if err is not None:
                    problems[r] = err
            if good_rows:
                vectors = np.asarray(encode_batch([p for p, err in prepared if err is None]),
                                     dtype=np.float32)
                if features is None:
                    features = np.zeros((n, vectors.shape[1]), dtype=np.float32)
                features[good_rows] = vectors
                present[good_rows] = True
            progress.update(len(batch_rows))
    if features is None:
        raise ValueError(f"{image_dir}: none of the {n} items has a readable cached image "
                         "(fetch the images first: crane fetch-images)")
    return ImageEncoding(features, present, problems)
