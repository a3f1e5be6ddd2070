"""Small synthetic datasets with structure, made by the tests themselves."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from crane import files
from crane.data.processed import Interactions, save_interactions
from crane.models.base import TrainData


def clustered_interactions(n_users: int = 240, n_items: int = 120, n_clusters: int = 4,
                           per_user: int = 12, seed: int = 0) -> Interactions:
    """Users of cluster c interact only with items of cluster c; split 8 / 2 / 2 per user.

    A model that learns the clusters finds held-out items far better than popularity.
    """
    rng = np.random.default_rng(seed)
    user_cluster = rng.integers(n_clusters, size=n_users)
    item_cluster = np.arange(n_items) % n_clusters
    users, items = [], []
    for cluster in range(n_clusters):
        members = np.flatnonzero(user_cluster == cluster)
        pool = np.flatnonzero(item_cluster == cluster)
        # argsort of random keys: each member draws `per_user` distinct items of its cluster
        picks = np.argsort(rng.random((len(members), len(pool))), axis=1)[:, :per_user]
        users.append(np.repeat(members, per_user))
        items.append(pool[picks].reshape(-1))
    user = np.concatenate(users)
    item = np.concatenate(items)
    order = np.lexsort((np.arange(len(user)), user))
    user, item = user[order], item[order]
    pattern = np.r_[np.zeros(per_user - 4), np.ones(2), np.full(2, 2)].astype(np.int8)
    split = np.tile(pattern, n_users)
    return Interactions(n_users, n_items, user.astype(np.int64), item.astype(np.int64), split)


def train_data(interactions: Interactions) -> TrainData:
    user, item = interactions.part(0)
    return TrainData(interactions.n_users, interactions.n_items, user, item)


def write_processed(folder: Path, interactions: Interactions) -> Path:
    """A processed dataset folder as crane/data/processed.py lays it out."""
    save_interactions(folder, interactions)
    counts = np.bincount(interactions.split, minlength=3)
    files.write_json(folder / "stats.json", {
        "users": interactions.n_users, "items": interactions.n_items,
        "interactions": len(interactions.user),
        "split": {"train": int(counts[0]), "valid": int(counts[1]), "test": int(counts[2])},
    })
    return folder


@pytest.fixture(scope="session")
def clustered() -> Interactions:
    return clustered_interactions()


@pytest.fixture()
def processed_dir(tmp_path: Path, clustered: Interactions) -> Path:
    return write_processed(tmp_path / "data", clustered)


@pytest.fixture(scope="session")
def make_clustered():
    return clustered_interactions


@pytest.fixture(scope="session")
def train_data_of():
    return train_data


@pytest.fixture(scope="session")
def make_processed():
    return write_processed


@pytest.fixture(autouse=True)
def single_torch_thread():
    """Tiny tensors: one thread is faster, and immune to OpenMP spinning on shared cores."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
