"""A run's inputs: the training data a model sees, its item features, and the model itself.

Item features are read with crane.features.store.load_features, which re-hashes every matrix
against its manifest's `content_hash`: that hash keys the kNN caches a model reads, so a
feature file edited behind its manifest is an error, never a stale cache. Tested in
tests/engine/test_engine_inputs.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from crane import models
from crane.data.processed import TRAIN, Interactions, load_interactions
from crane.device import resolve_device
from crane.engine.settings import split_point
from crane.features.store import FEATURES_FILE, load_features
from crane.models.base import Recommender, TrainData
from crane.tuning import declared_training_keys


def load_train_data(data_dir: str | Path, feature_dirs: dict[str, str | Path] | None,
                    device: torch.device | str, cache_dir: str | Path | None
                    ) -> tuple[TrainData, Interactions]:
    """The model's view (training split + item features) and the full split (for evaluation)."""
    data_dir = Path(data_dir)
    interactions = load_interactions(data_dir)
    train_user, train_item = interactions.part(TRAIN)
    features, hashes = {}, {}
    for modality, feature_dir in (feature_dirs or {}).items():
        features[modality], hashes[modality] = read_item_features(Path(feature_dir),
                                                                  interactions.n_items)
    data = TrainData(
        n_users=interactions.n_users, n_items=interactions.n_items,
        train_user=train_user.astype(np.int64), train_item=train_item.astype(np.int64),
        features=features, feature_hashes=hashes,
        cache_dir=Path(cache_dir) if cache_dir is not None else None,
        device=resolve_device(device))
    return data, interactions


def read_item_features(feature_dir: Path, n_items: int) -> tuple[np.ndarray, str]:
    """The verified (n_items, D) float32 matrix of a feature folder and its content hash."""
    feature_set = load_features(feature_dir)
    matrix = feature_set.features
    if matrix.shape[0] != n_items:
        raise ValueError(f"{feature_dir / FEATURES_FILE}: expected shape ({n_items}, D) (one "
                         f"row per item), got {matrix.shape}")
    return matrix, feature_set.content_hash


def build_model(model_name: str, data: TrainData, hparams: dict[str, Any]) -> Recommender:
    """Instantiate a registered model on `data` (a content model checks its modalities itself:
    `Recommender.feature_modalities`).

    `hparams` may be a whole point: the trainer settings its model file declares are left
    out (crane.engine.settings.split_point).
    """
    model_cls = models.get(model_name)
    model_hp, _ = split_point(model_name, hparams, declared_training_keys(model_name))
    return model_cls(data, model_hp).to(data.device)
