"""One training run's folder (docs/layout.md): what it holds and how it is written.

Every file is written atomically (crane.files), so a killed run leaves complete files only.
`metrics.json` is written last: its presence means the run finished. `last.pt` holds what a
killed run needs to resume (model, optimiser, RNG states, early-stopping state, history) and
is removed once the run finishes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from crane import files

METRICS = "metrics.json"
MANIFEST = "manifest.json"
HISTORY = "history.csv"
USER_METRICS = "user_metrics.parquet"
CHECKPOINT = "checkpoint.pt"
RESUME = "last.pt"
TOPK = "topk.parquet"


class RunFolder:
    """Reads and writes the files of one run folder."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def file(self, name: str) -> Path:
        return self.path / name

    # -- resume state -------------------------------------------------------------------
    def save_resume(self, state: dict[str, Any]) -> None:
        _torch_save(state, self.file(RESUME))

    def load_resume(self) -> dict[str, Any] | None:
        path = self.file(RESUME)
        if not path.exists():
            return None
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # a corrupt resume file only costs a fresh start
            raise ValueError(f"{path}: unreadable resume state ({error}); delete it to "
                             "start the run afresh") from None

    def drop_resume(self) -> None:
        self.file(RESUME).unlink(missing_ok=True)

    # -- results ------------------------------------------------------------------------
    def write_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        _torch_save(checkpoint, self.file(CHECKPOINT))

    def load_checkpoint(self, map_location: str | torch.device = "cpu") -> dict[str, Any]:
        path = self.file(CHECKPOINT)
        if not path.exists():
            raise FileNotFoundError(f"{path}: run has no checkpoint")
        return torch.load(path, map_location=map_location, weights_only=True)

    def write_history(self, history: list[dict[str, Any]]) -> None:
        with files.atomic_path(self.file(HISTORY)) as tmp:
            pd.DataFrame(history).to_csv(tmp, index=False)

    def write_user_metrics(self, frame: pd.DataFrame) -> None:
        with files.atomic_path(self.file(USER_METRICS)) as tmp:
            frame.to_parquet(tmp, index=False)

    def write_topk(self, frame: pd.DataFrame, path: Path | None = None) -> Path:
        """Write a `topk_frame` (to `topk.parquet` unless `path` is given)."""
        target = path or self.file(TOPK)
        with files.atomic_path(target) as tmp:
            frame.to_parquet(tmp, index=False)
        return target

    def write_metrics(self, metrics: dict[str, Any]) -> None:
        files.write_json(self.file(METRICS), metrics)

    def read_metrics(self) -> dict[str, Any]:
        return files.read_json(self.file(METRICS))

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        files.write_json(self.file(MANIFEST), manifest)

    def read_manifest(self) -> dict[str, Any]:
        path = self.file(MANIFEST)
        if not path.exists():
            raise FileNotFoundError(f"{path}: run has no manifest")
        return files.read_json(path)


def topk_frame(users: np.ndarray, topk: np.ndarray) -> pd.DataFrame:
    """`user_id`, `rank` (1 = best), `item_id` of each user's top-K list."""
    n_users, k = topk.shape
    return pd.DataFrame({
        "user_id": np.repeat(np.asarray(users, np.int64), k),
        "rank": np.tile(np.arange(1, k + 1, dtype=np.int64), n_users),
        "item_id": topk.reshape(-1).astype(np.int64),
    })


def _torch_save(obj: Any, path: Path) -> None:
    with files.atomic_path(path) as tmp:
        torch.save(obj, tmp)
