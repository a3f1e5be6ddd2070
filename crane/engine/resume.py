"""The resume state's random generators, and the key that says whose resume state it is.

A killed run resumes from its run folder's `last.pt` (written by the loop) and reproduces the
uninterrupted run exactly: every generator a run draws from is saved and restored. Tested in
tests/engine/test_engine_train.py (a run killed after epoch 4 resumes to the same result).
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch

from crane import files
from crane.engine.settings import TrainingConfig
from crane.models.base import TrainData


def rng_states(generator: torch.Generator) -> dict[str, Any]:
    """The loop's sampling generator and the global torch, CUDA, numpy and Python states,
    as tensors and plain values (what `torch.load(weights_only=True)` reads back)."""
    np_state = np.random.get_state()
    return {
        "generator": generator.get_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)),
                  int(np_state[2]), int(np_state[3]), float(np_state[4])],
        "python": random.getstate(),
    }


def restore_rng_states(generator: torch.Generator, rng: dict[str, Any]) -> None:
    """Undo `rng_states`: every generator continues where the saved run stopped."""
    generator.set_state(rng["generator"])
    torch.set_rng_state(rng["torch"])
    if rng["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
    name, keys, pos, has_gauss, cached = rng["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    random.setstate(_as_tuples(rng["python"]))


def _as_tuples(value: Any) -> Any:
    """random.setstate wants the exact nested tuples that getstate returned."""
    if isinstance(value, (list, tuple)):
        return tuple(_as_tuples(v) for v in value)
    return value


def resume_key(model_name: str, hparams: dict[str, Any], seed: int,
               training: TrainingConfig, data: TrainData) -> str:
    """What must match for a `last.pt` to belong to this run: model, point, seed, trainer
    settings (except how often they are saved), data sizes, training pairs and features."""
    config = training.to_dict()
    config.pop("checkpoint_every_s")
    return files.sha256_json({
        "model": model_name, "hparams": hparams, "seed": seed, "training": config,
        "n_users": data.n_users, "n_items": data.n_items,
        "train": files.sha256_array(np.stack([data.train_user, data.train_item])),
        "features": data.feature_hashes,
    })
