"""Helpers for the feature tests: items frames and small images (imported by the tests)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image


def make_items(asins: list[str], **columns) -> pd.DataFrame:
    """An items.parquet frame: empty metadata unless given."""
    n = len(asins)
    frame = pd.DataFrame({
        "item_id": np.arange(n, dtype=np.int64),
        "asin": asins,
        "title": [""] * n,
        "brand": [""] * n,
        "categories": [[] for _ in range(n)],
        "description": [""] * n,
        "image_url": [""] * n,
    })
    for name, values in columns.items():
        frame[name] = values
    return frame


def solid_image(path: Path, colour: tuple[int, int, int], size: int = 40,
                fmt: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (size, size), colour).save(path, format=fmt)
    return path


def png_bytes(colour: tuple[int, int, int], size: int = 24) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), colour).save(buffer, format="PNG")
    return buffer.getvalue()
