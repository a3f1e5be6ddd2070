"""The raw folder's image cache: where sources put item images (the demo's generated ones, a
table source's local files, fetched URLs) and where the image encoders read them."""

from __future__ import annotations

import os
from pathlib import Path

IMAGES_SUBDIR = "images"


def images_dir(raw_dir: str | os.PathLike) -> Path:
    return Path(raw_dir) / IMAGES_SUBDIR
