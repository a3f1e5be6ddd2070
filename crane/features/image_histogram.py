"""A weight-free image descriptor: colour histograms (the offline demo's image features).

Each image is resized to `resize` x `resize` pixels and quantised to `bins` levels per RGB
channel. The descriptor is the joint RGB histogram of the whole image (bins^3 values) followed
by a coarse layout: per-channel histograms of each cell of a `grid` x `grid` partition
(grid^2 * 3 * bins values). Every block sums to 1 and the blocks are averaged, so the whole
vector is L1-normalised. bins 8, grid 2: 512 + 96 = 608 dimensions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from crane.features.encoded import EncodedItems, cfg_int
from crane.data.raw_images import images_dir
from crane.features.image_files import DEFAULT_LOAD_WORKERS, encode_image_files

DEFAULT_BINS = 8
DEFAULT_GRID = 2
DEFAULT_RESIZE = 64
DEFAULT_BATCH_SIZE = 256


def histogram_dim(bins: int, grid: int) -> int:
    return bins ** 3 + grid * grid * 3 * bins


def colour_histogram(pixels: np.ndarray, bins: int = DEFAULT_BINS,
                     grid: int = DEFAULT_GRID) -> np.ndarray:
    """Descriptor of one uint8 (H, W, 3) image; H and W must be divisible by `grid`."""
    if pixels.ndim != 3 or pixels.shape[2] != 3 or pixels.dtype != np.uint8:
        raise ValueError(f"expected uint8 (H, W, 3) pixels, got {pixels.dtype} {pixels.shape}")
    height, width, _ = pixels.shape
    if grid > 0 and (height % grid or width % grid):
        raise ValueError(f"image of {height}x{width} pixels does not split into a {grid}x{grid}"
                         " grid")
    levels = (pixels.astype(np.uint16) * bins) >> 8  # 0..bins-1 per channel
    joint = (levels[..., 0] * bins + levels[..., 1]) * bins + levels[..., 2]
    blocks = [np.bincount(joint.ravel(), minlength=bins ** 3) / joint.size]
    if grid > 0:
        # cells as (grid, cell_h, grid, cell_w, 3) -> one row of pixels per cell
        cells = levels.reshape(grid, height // grid, grid, width // grid, 3)
        cells = cells.transpose(0, 2, 1, 3, 4).reshape(grid * grid, -1, 3)
        offsets = np.arange(3) * bins  # channel c uses bins [c*bins, (c+1)*bins)
        per_cell = (cells + offsets).reshape(grid * grid, -1)
        cell_ids = np.arange(grid * grid)[:, None] * (3 * bins)
        counts = np.bincount((per_cell + cell_ids).ravel(), minlength=grid * grid * 3 * bins)
        blocks.append(counts / per_cell.shape[1])
    vector = np.concatenate(blocks).astype(np.float32)
    return vector / np.float32(1 + grid * grid)


def load_resized(path: Path, size: int) -> np.ndarray:
    """uint8 (size, size, 3) pixels; JPEGs decode at reduced scale (much faster)."""
    with Image.open(path) as image:
        image.draft("RGB", (2 * size, 2 * size))
        rgb = image.convert("RGB")  # decodes: a truncated file raises here
    return np.asarray(rgb.resize((size, size), Image.Resampling.BILINEAR), dtype=np.uint8)


def encode_item_images_histogram(items: pd.DataFrame, raw_dir: Path, cfg: dict[str, Any],
                                 device: str, modality: str) -> EncodedItems:
    """The `color_histogram` encoder type over the raw image cache."""
    bins = cfg_int(cfg, "bins", DEFAULT_BINS, 2, "color_histogram")
    grid = cfg_int(cfg, "grid", DEFAULT_GRID, 0, "color_histogram")
    size = cfg_int(cfg, "resize", DEFAULT_RESIZE, 8, "color_histogram")
    if bins > 64:
        raise ValueError(f"color_histogram: `bins` must be <= 64 (bins^3 values), got {bins}")
    if grid and size % grid:
        raise ValueError(f"color_histogram: `grid` {grid} must divide `resize` {size}")
    encoding = encode_image_files(
        items["asin"].astype(str).tolist(), images_dir(raw_dir),
        prepare=lambda path: colour_histogram(load_resized(path, size), bins, grid),
        encode_batch=np.stack,
        batch_size=cfg_int(cfg, "batch_size", DEFAULT_BATCH_SIZE, 1, "color_histogram"),
        workers=cfg_int(cfg, "workers", DEFAULT_LOAD_WORKERS, 1, "color_histogram"),
        desc="colour histograms")
    info = {
        "weights_hash": None,
        "weights_source": "none (weight-free descriptor)",
        "preprocessing": (f"RGB, resized to {size}x{size} (bilinear), {bins} levels per "
                          f"channel; joint RGB histogram ({bins ** 3}) + per-channel histograms"
                          f" of a {grid}x{grid} grid ({grid * grid * 3 * bins}); each block "
                          "sums to 1, blocks averaged (L1 = 1)"),
    }
    return EncodedItems(encoding.features, encoding.present, encoding.problems, info)
