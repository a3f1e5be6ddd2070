"""Small processed folders and image caches, made by the tests themselves (no network)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import pandas as pd
import pytest

# sentence-transformers / open-clip must never reach the network in tests
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture
def processed_dir(tmp_path: Path) -> Callable[[pd.DataFrame], Path]:
    """Write a frame as `<tmp>/data/items.parquet`; return the data folder."""

    def write(items: pd.DataFrame) -> Path:
        data_dir = tmp_path / "data"
        data_dir.mkdir(exist_ok=True)
        items.to_parquet(data_dir / "items.parquet", index=False)
        return data_dir

    return write
