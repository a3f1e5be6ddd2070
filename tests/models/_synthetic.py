"""A structured synthetic dataset for model tests: content matters, and so does the graph.

`structured_dataset` plants two hidden factors:

- styles: every item has one style, visible (with noise) in its image and text features;
  every user prefers one style. A model that reads features can learn it.
- groups: every item and every user also belong to one collaborative group that no feature
  shows; users favour items of their group. Only the interaction graph reveals it.

A share of the items is "cold": at most one training interaction each (so it still has a
graph node), but as likely as any other item in validation and test. ID-only models cannot
rank cold items; content models can, and lose that when the feature rows are shuffled.

Everything is drawn with one seeded numpy Generator, vectorised (Gumbel top-k per user).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from crane.configs import MODELS_DIR
from crane.data.processed import TEST, TRAIN, VALID, Interactions
from crane.models.base import TrainData
from crane.tuning import load_model_config

FEATURE_SIZES = {"image": 32, "text": 16}
MODEL_CONFIG_DIR = MODELS_DIR


@dataclass(frozen=True)
class Synthetic:
    data: TrainData  # training split + features: what a model sees
    interactions: Interactions  # every split: what the evaluator sees
    item_style: np.ndarray
    item_group: np.ndarray
    user_style: np.ndarray
    user_group: np.ndarray
    cold: np.ndarray  # bool per item


def structured_dataset(n_users: int = 400, n_items: int = 300, n_styles: int = 6,
                       n_groups: int = 4, n_train: int = 10, n_valid: int = 1, n_test: int = 3,
                       cold_share: float = 0.3, style_strength: float = 3.0,
                       group_strength: float = 1.5, noise: float = 0.6, seed: int = 0,
                       modalities: tuple[str, ...] = ("image", "text"),
                       unit_norm: bool = True) -> Synthetic:
    """Users x items with planted styles (in features) and groups (in the graph only).

    Feature rows are L2-normalised by default, like sentence-embedding text features.
    """
    if n_train + n_valid + n_test > n_items:
        raise ValueError("more interactions per user than items")
    rng = np.random.default_rng(seed)
    item_style = rng.permutation(np.arange(n_items) % n_styles)
    item_group = rng.integers(n_groups, size=n_items)
    user_style = rng.integers(n_styles, size=n_users)
    user_group = rng.integers(n_groups, size=n_users)
    cold = rng.random(n_items) < cold_share
    popularity = rng.normal(0.0, 0.5, size=n_items)
    affinity = (style_strength * (user_style[:, None] == item_style[None, :])
                + group_strength * (user_group[:, None] == item_group[None, :])
                + popularity[None, :])

    # Held-out items first, from every item; then training items, from warm items only.
    held = _gumbel_top_k(affinity, n_valid + n_test, rng)
    blocked = np.zeros_like(affinity, dtype=bool)
    np.put_along_axis(blocked, held, True, axis=1)
    train = _gumbel_top_k(np.where(blocked | cold[None, :], -np.inf, affinity), n_train, rng)
    # One training interaction per cold item, by a user drawn by the same affinities.
    cold_items = np.flatnonzero(cold)
    cold_keys = np.where(blocked[:, cold_items], -np.inf, affinity[:, cold_items])
    cold_users = np.argmax(cold_keys + rng.gumbel(size=cold_keys.shape), axis=0)

    user = np.concatenate([np.repeat(np.arange(n_users), n_train), cold_users,
                           np.repeat(np.arange(n_users), n_valid + n_test)])
    item = np.concatenate([train.ravel(), cold_items, held.ravel()])
    split = np.concatenate([np.full(train.size + len(cold_items), TRAIN),
                            np.tile([VALID] * n_valid + [TEST] * n_test, n_users)])
    interactions = Interactions(n_users, n_items, user.astype(np.int64), item.astype(np.int64),
                                split.astype(np.int8))

    features = {}
    for modality in modalities:
        centres = rng.normal(size=(n_styles, FEATURE_SIZES[modality]))
        rows = centres[item_style] + noise * rng.normal(size=(n_items, FEATURE_SIZES[modality]))
        if unit_norm:
            rows /= np.linalg.norm(rows, axis=1, keepdims=True)
        features[modality] = rows.astype(np.float32)
    train_user, train_item = interactions.part(TRAIN)
    data = TrainData(n_users, n_items, train_user, train_item, features)
    return Synthetic(data, interactions, item_style, item_group, user_style, user_group, cold)


def _gumbel_top_k(keys: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k distinct columns per row, drawn without replacement with probability ~ exp(keys)."""
    perturbed = keys + rng.gumbel(size=keys.shape)
    return np.argsort(-perturbed, axis=1, kind="stable")[:, :k]


def with_shuffled_features(data: TrainData, seed: int = 1) -> TrainData:
    """The same data with the item rows of every feature matrix permuted (content destroyed,
    feature statistics kept)."""
    order = np.random.default_rng(seed).permutation(data.n_items)
    return replace(data, features={m: f[order] for m, f in data.features.items()},
                   feature_hashes={})


def model_defaults(model: str) -> dict[str, Any]:
    """The `defaults` block of config/models/<model>.yaml."""
    return load_model_config(model, MODEL_CONFIG_DIR)["defaults"]
