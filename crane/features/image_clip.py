"""Image features from an open-clip model's image tower.

Weights come from `weights` (a local checkpoint file: works offline) or `pretrained` (an
open-clip tag, downloaded once into open-clip's cache). Images go through the model's own
evaluation transform; the embeddings are `encode_image` outputs, not normalised (cosine kNN
and the models normalise where they need to).
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch

from crane import files
from crane.data.raw_images import images_dir
from crane.features.encoded import EncodedItems, cfg_int
from crane.features.image_files import DEFAULT_LOAD_WORKERS, encode_image_files, open_rgb
from crane.features.weights import state_dict_sha256

DEFAULT_BATCH_SIZE = 64


class OpenClipImageEncoder:
    """open-clip image tower with its evaluation transform, on one device."""

    def __init__(self, arch: str, pretrained: str | None = None, weights: str | None = None,
                 device: str = "cpu", batch_size: int = DEFAULT_BATCH_SIZE):
        import open_clip  # slow import; only this encoder needs it

        if arch not in open_clip.list_models():
            raise ValueError(f"open_clip: unknown arch {arch!r} (open_clip.list_models() has "
                             f"e.g. ViT-B-32, ViT-B-16, RN50)")
        if weights is not None and not Path(weights).is_file():
            raise FileNotFoundError(f"open_clip weights file {weights}: not found")
        self.arch = arch
        self.source = str(weights) if weights is not None else pretrained
        self.device = device
        self.batch_size = batch_size
        try:
            model, _, preprocess = open_clip.create_model_and_transforms(
                arch, pretrained=self.source, device=device)
        except RuntimeError as error:  # download failed offline, or weights not of this arch
            raise ValueError(
                f"open_clip: could not load {arch} weights {self.source!r} ({error}); offline,"
                " set `weights:` to a local checkpoint file") from error
        self.model = model.eval()
        self.preprocess = preprocess
        self.dim = int(model.visual.output_dim)
        if weights is not None:
            self.weights_hash = files.sha256_file(weights)
        else:  # a tag (or random init): hash what was loaded
            self.weights_hash = state_dict_sha256(self.model.visual)

    def prepare(self, path: Path) -> torch.Tensor:
        return self.preprocess(open_rgb(path))

    @torch.no_grad()
    def encode_batch(self, prepared: Sequence[torch.Tensor]) -> np.ndarray:
        batch = torch.stack(list(prepared)).to(self.device)
        return self.model.encode_image(batch).float().cpu().numpy()

    def describe(self) -> dict[str, Any]:
        return {
            "arch": self.arch,
            "weights_source": self.source,
            "weights_hash": self.weights_hash,
            "open_clip_version": importlib.metadata.version("open_clip_torch"),
            "preprocessing": "RGB, open_clip eval transform ("
                             + " ".join(str(self.preprocess).split())
                             + "); encode_image output, not normalised",
        }


def encode_item_images_clip(items: pd.DataFrame, raw_dir: Path, cfg: dict[str, Any],
                            device: str, modality: str) -> EncodedItems:
    """The `open_clip` encoder type over the raw image cache."""
    arch = cfg.get("arch")
    if not arch:
        raise ValueError("open_clip: `arch` is required (e.g. ViT-B-32)")
    if cfg.get("weights") is None and cfg.get("pretrained") is None:
        raise ValueError("open_clip: set `weights` (a local checkpoint) or `pretrained` (a tag);"
                         " without either the model would be random")
    encoder = OpenClipImageEncoder(
        arch, pretrained=cfg.get("pretrained"), weights=cfg.get("weights"), device=device,
        batch_size=cfg_int(cfg, "batch_size", DEFAULT_BATCH_SIZE, 1, "open_clip"))
    encoding = encode_image_files(
        items["asin"].astype(str).tolist(), images_dir(raw_dir), prepare=encoder.prepare,
        encode_batch=encoder.encode_batch, batch_size=encoder.batch_size,
        workers=cfg_int(cfg, "workers", DEFAULT_LOAD_WORKERS, 1, "open_clip"),
        desc=f"open_clip {arch}")
    return EncodedItems(encoding.features, encoding.present, encoding.problems,
                        encoder.describe())
