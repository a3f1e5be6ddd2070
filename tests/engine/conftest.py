"""Small clustered datasets (crane.synthetic) for the engine tests, in memory and as a
processed dataset folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from crane import files
from crane.data.processed import Interactions, save_interactions
from crane.synthetic import clustered_interactions, train_data


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
def train_data_of():
    return train_data


@pytest.fixture(autouse=True)
def single_torch_thread():
    """Tiny tensors: one thread is faster, and immune to OpenMP spinning on shared cores."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
