"""One run end to end: build the model, train it, select its best validation state, test once.

- `fit_and_evaluate`: in memory, on data already loaded (tests, benchmarks);
- `train_run`: from a processed dataset and feature folders into a run folder (the
  `crane train` command): manifest first, metrics.json last, a killed run resumes;
- `evaluate_run`: re-score a finished run's checkpoint (the `crane evaluate` command).

The test split is evaluated once, on the best validated state. The engine knows nothing
model-specific: crane/models/base.py is the whole contract. Tested in
tests/engine/test_engine_train.py and tests/engine/test_engine_cli.py.
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import pandas as pd
import torch

from crane import files, models
from crane.data.processed import TEST, VALID, Interactions
from crane.device import describe, resolve_device
from crane.engine.evaluate import FullRankingEvaluator
from crane.engine.hooks import Hooks
from crane.engine.inputs import build_model, load_train_data
from crane.engine.loop import TrainingLoop
from crane.engine.provenance import git_commit, package_versions, peak_memory_mb
from crane.engine.resume import resume_key
from crane.engine.run_folder import RunFolder, topk_frame
from crane.engine.runtime import seed_everything
from crane.engine.settings import TrainingConfig, split_point
from crane.models.base import Recommender, TrainData
from crane.tuning import declared_training_keys, hp_hash

logger = logging.getLogger(__name__)


@dataclass
class RunResult:
    best_epoch: int
    valid: dict[str, float]
    test: dict[str, float]
    history: list[dict]
    user_metrics: pd.DataFrame
    seconds_per_epoch: float
    model: Recommender
    epochs_run: int = 0
    train_seconds: float = 0.0
    eval_seconds: float = 0.0
    topk: pd.DataFrame | None = None
    stop_reason: str = ""   # early_stopping | max_epochs | non_finite_loss | fit_once
    flops_per_step: int | None = None  # dense FLOPs of one training step (torch's counter)


def resolve_training(model_name: str, hparams: dict[str, Any], training: TrainingConfig,
                     training_keys: Iterable[str] | None = None
                     ) -> tuple[dict[str, Any], TrainingConfig, dict[str, Any]]:
    """(model hyper-parameters, the run's trainer settings, the settings its point set).

    `training_keys` are the trainer keys the model file declares (default: the packaged
    file's); their values in the point `hparams` replace those of `training`.
    """
    declared = declared_training_keys(model_name) if training_keys is None else training_keys
    model_hp, from_point = split_point(model_name, hparams, declared)
    return model_hp, training.updated(from_point), from_point


def fit_and_evaluate(data: TrainData, interactions: Interactions, model_name: str,
                     hparams: dict[str, Any], seed: int, training: TrainingConfig,
                     run_dir: str | Path | None = None, log: Callable[[str], None] = print,
                     dataset: str | None = None, hooks: Hooks | None = None,
                     training_keys: Iterable[str] | None = None) -> RunResult:
    """Train (or fit) `model_name` at the point `hparams`, select its best validation state,
    test it once.

    With `run_dir` the run folder is written (metrics.json last) and a previous `last.pt`
    of the same configuration is resumed.
    """
    model_hp, training, _ = resolve_training(model_name, hparams, training, training_keys)
    _check_same_sizes(data, interactions)
    seed_everything(seed)
    model = build_model(model_name, data, model_hp)
    device = data.device
    evaluators = {
        which: FullRankingEvaluator.for_split(
            interactions, which, mask_valid_in_test=training.mask_valid_in_test,
            batch_size=training.eval_batch_size, device=device)
        for which in (VALID, TEST)
    }
    if len(evaluators[VALID].users) == 0:
        raise ValueError("the validation split has no users: early stopping needs one")
    folder = RunFolder(run_dir) if run_dir is not None else None
    loop = TrainingLoop(model, data, evaluators[VALID], training, seed, folder, log, hooks,
                        resume_key=resume_key(model_name, hparams, seed, training, data))
    loop.run()

    start = time.perf_counter()
    test = evaluators[TEST].evaluate(model, topk=training.topk_export)
    test_seconds = time.perf_counter() - start
    topk = topk_frame(test.users, test.topk) if test.topk is not None else None
    result = RunResult(
        best_epoch=loop.stopper.best_epoch, valid=loop.best_valid, test=test.metrics,
        history=loop.history, user_metrics=test.user_metrics,
        seconds_per_epoch=loop.seconds_per_epoch(), model=model, epochs_run=loop.epochs_run,
        train_seconds=loop.train_seconds, eval_seconds=loop.eval_seconds + test_seconds,
        topk=topk, stop_reason=loop.stop_reason, flops_per_step=loop.flops_per_step)
    log(f"{model_name} seed {seed}: best epoch {result.best_epoch}, "
        f"valid {training.valid_metric} {result.valid.get(training.valid_metric, math.nan):.4f}, "
        f"test recall@20 {result.test['recall@20']:.4f} ndcg@20 {result.test['ndcg@20']:.4f}")
    if folder is not None:
        _write_run_folder(folder, result, model_name, hparams, model_hp, seed, dataset, device)
    return result


def _check_same_sizes(data: TrainData, interactions: Interactions) -> None:
    if (data.n_users, data.n_items) != (interactions.n_users, interactions.n_items):
        raise ValueError(f"TrainData is {data.n_users} x {data.n_items} but the interactions "
                         f"are {interactions.n_users} x {interactions.n_items}")


def _write_run_folder(folder: RunFolder, result: RunResult, model_name: str,
                      hparams: dict[str, Any], model_hp: dict[str, Any], seed: int,
                      dataset: str | None, device: torch.device) -> None:
    folder.write_checkpoint({
        "model": model_name, "hparams": model_hp, "best_epoch": result.best_epoch,
        "n_users": result.model.n_users, "n_items": result.model.n_items,
        "state_dict": {k: v.detach().cpu() for k, v in result.model.state_dict().items()},
    })
    folder.write_history(result.history)
    folder.write_user_metrics(result.user_metrics)
    if result.topk is not None:
        folder.write_topk(result.topk)
    folder.write_metrics(metrics_record(result, model_name, hparams, seed, dataset, device))
    folder.drop_resume()


def metrics_record(result: RunResult, model_name: str, hparams: dict[str, Any], seed: int,
                   dataset: str | None, device: torch.device) -> dict[str, Any]:
    """The content of metrics.json; `hparams` is the run's whole point (named by hp_hash)."""
    info = result.model.run_info()
    return {
        "dataset": dataset, "model": model_name, "seed": seed,
        "hp_hash": hp_hash(hparams), "hparams": hparams,
        "best_epoch": result.best_epoch, "epochs_run": result.epochs_run,
        "stop_reason": result.stop_reason, "valid": result.valid, "test": result.test,
        "seconds_per_epoch": result.seconds_per_epoch,
        "train_seconds": result.train_seconds, "eval_seconds": result.eval_seconds,
        "peak_memory_mb": peak_memory_mb(device),
        **({"flops_per_step": result.flops_per_step}
           if result.flops_per_step is not None else {}),
        **({"model_info": info} if info else {}),
    }


def train_run(*, data_dir: str | Path, feature_dirs: dict[str, str | Path] | None, model: str,
              hparams: dict[str, Any], seed: int, out_dir: str | Path,
              training: TrainingConfig | dict[str, Any] | None, device: str = "auto",
              cache_dir: str | Path | None = None, dataset: str | None = None,
              training_keys: Iterable[str] | None = None,
              log: Callable[[str], None] = logger.info) -> dict[str, Any]:
    """Train one (model, point, seed) into `out_dir`; returns metrics.json's content.

    The manifest records the run's resolved trainer settings and which of them its point set
    (`training_from_model`).
    """
    if not isinstance(training, TrainingConfig):
        training = TrainingConfig.from_dict(training)
    model_hp, resolved, from_point = resolve_training(model, hparams, training, training_keys)
    config_class = models.get(model).config_class
    if config_class is not None:
        # A wrong point fails here, before the run folder is touched or any data is loaded.
        config_class.from_hparams(model, model_hp)
    for key, value in from_point.items():
        if value != getattr(training, key):
            log(f"{model}: training.{key} = {value!r} from the model's point "
                f"(the config's training.{key} is {getattr(training, key)!r})")
    torch_device = resolve_device(device)
    feature_dirs = {m: Path(p) for m, p in (feature_dirs or {}).items()}
    data, interactions = load_train_data(data_dir, feature_dirs, torch_device, cache_dir)
    folder = RunFolder(out_dir)
    folder.write_manifest({
        "config": {
            "dataset": dataset, "model": model, "hparams": hparams, "seed": seed,
            "training": resolved.to_dict(), "training_from_model": sorted(from_point),
            "data_dir": str(data_dir), "cache_dir": str(cache_dir) if cache_dir else None,
            "feature_dirs": {m: str(p) for m, p in feature_dirs.items()},
            "device": device,
        },
        "seed": seed,
        "code_version": git_commit(Path(__file__).resolve().parent),
        "inputs": {
            "interactions.parquet": files.sha256_file(Path(data_dir) / "interactions.parquet"),
            "features": data.feature_hashes,
        },
        "packages": package_versions(),
        "device": describe(torch_device),
        "slurm_job_id": os.environ.get("SLURM_JOB_ID"),  # which cluster job made this run
    })
    fit_and_evaluate(data, interactions, model, hparams, seed, training, run_dir=out_dir,
                     log=log, dataset=dataset, training_keys=training_keys)
    return folder.read_metrics()


def evaluate_run(run_dir: str | Path, data_dir: str | Path | None = None,
                 device: str = "auto", topk: int = 0, topk_path: str | Path | None = None,
                 mask_valid_in_test: bool | None = None) -> dict[str, Any]:
    """Re-score a finished run's checkpoint on its data; optionally export test top-K lists."""
    folder = RunFolder(run_dir)
    config = folder.read_manifest()["config"]
    torch_device = resolve_device(device)
    data, interactions = load_train_data(data_dir or config["data_dir"],
                                         config.get("feature_dirs") or {}, torch_device,
                                         config.get("cache_dir"))
    checkpoint = folder.load_checkpoint(torch_device)
    model = build_model(checkpoint["model"], data, checkpoint["hparams"])
    model.load_state_dict(checkpoint["state_dict"])
    training = TrainingConfig.from_dict(config.get("training"))
    if mask_valid_in_test is None:
        mask_valid_in_test = training.mask_valid_in_test
    out: dict[str, Any] = {"run": str(run_dir), "model": checkpoint["model"],
                           "best_epoch": checkpoint["best_epoch"]}
    for which, name in ((VALID, "valid"), (TEST, "test")):
        evaluator = FullRankingEvaluator.for_split(
            interactions, which, mask_valid_in_test=mask_valid_in_test,
            batch_size=training.eval_batch_size, device=torch_device)
        result = evaluator.evaluate(model, topk=topk if which == TEST else 0)
        out[name] = result.metrics
        if which == TEST and result.topk is not None:
            path = folder.write_topk(topk_frame(result.users, result.topk),
                                     Path(topk_path) if topk_path else None)
            out["topk_path"] = str(path)
    return out
