"""Hand-made run folders in the layout of docs/layout.md, written by the tests themselves."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

METRICS = ("recall@10", "recall@20", "ndcg@10", "ndcg@20")
N_USERS = 60


def write_run(run_dir: Path, *, dataset: str, model: str, seed: int, test: dict[str, float],
              users: pd.DataFrame | None = None, history: pd.DataFrame | None = None,
              **fields) -> Path:
    """A run folder: metrics.json (+ user_metrics.parquet and history.csv when given)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    metrics = {"dataset": dataset, "model": model, "seed": seed, "hp_hash": "abc123def456",
               "hparams": {"reg_weight": 1e-4}, "best_epoch": 10, "epochs_run": 30,
               "valid": {k: v * 0.9 for k, v in test.items()}, "test": test,
               "seconds_per_epoch": 1.5, "train_seconds": 45.0, "eval_seconds": 3.0,
               "peak_memory_mb": 512.0, **fields}
    (run_dir / "metrics.json").write_text(json.dumps(metrics))
    if users is not None:
        users.to_parquet(run_dir / "user_metrics.parquet", index=False)
    if history is not None:
        history.to_csv(run_dir / "history.csv", index=False)
    return run_dir


def user_frame(base: np.ndarray, scale: float, n_train: np.ndarray) -> pd.DataFrame:
    """Per-user metrics: every metric = scale * the user's base difficulty."""
    frame = pd.DataFrame({"user_id": np.arange(len(base), dtype=np.int64),
                          "n_train": n_train.astype(np.int64),
                          "n_test": np.full(len(base), 2, dtype=np.int64)})
    for i, metric in enumerate(METRICS):
        frame[metric] = scale * base * (1.0 + 0.1 * i)
    return frame


def make_study(results: Path, quality: dict[str, float], datasets=("baby",), seeds=(1, 2, 3),
               skip: set[tuple[str, str, int]] = frozenset()) -> None:
    """Final runs whose per-user metrics are quality[model] * (user base) * (seed jitter).

    A model with higher quality is better on *every* user, and metrics.json holds the exact
    means of the per-user metrics, as the trainer writes them.
    """
    rng = np.random.default_rng(0)
    base = rng.uniform(0.05, 0.15, N_USERS)
    n_train = np.concatenate([np.full(20, 3), np.full(20, 7), np.full(10, 12), np.full(10, 25)])
    for dataset in datasets:
        for model, q in quality.items():
            for seed in seeds:
                if (dataset, model, seed) in skip:
                    continue
                users = user_frame(base, q * (1.0 + 0.01 * seed), n_train)
                history = pd.DataFrame({"epoch": np.arange(1, 6), "seconds": 1.0,
                                        "loss": np.linspace(1, 0.5, 5),
                                        "valid_recall@20": q * np.linspace(0.2, 1.0, 5)})
                write_run(results / dataset / "runs" / "final" / model / f"seed{seed}", dataset=dataset,
                          model=model, seed=seed,
                          test={m: float(users[m].mean()) for m in METRICS},
                          users=users, history=history)
