"""The trainer: Adam on a model's loss, validation-based early stopping, one test pass.

The trainer knows nothing model-specific (crane/models/base.py is the whole contract):

- trainable models: epochs of shuffled (user, positive, negative) batches, validation every
  `eval_every` epochs, early stopping on the validation `valid_metric` once more than
  `patience` evaluations in a row bring no improvement (MMRec's rule, see EarlyStopping);
  the test split is evaluated ONCE, on the best state.
- non-trainable models (MostPop, ItemKNN-CBF): `fit()` once, then validation and test once.

With a run folder the trainer also writes it (crane/runs.py) and resumes a killed run from
`last.pt`, reproducing the uninterrupted run exactly (all RNG states are restored).
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import logging
import math
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import pandas as pd
import torch

from crane import files, models
from crane.data.processed import TEST, TRAIN, VALID, Interactions, load_interactions
from crane.device import describe, resolve_device
from crane.evaluate import FullRankingEvaluator
from crane.metrics import metric_columns
from crane.models.base import Recommender, TrainData
from crane.ops.adam import make_adam
from crane.ops.threads import training_step_threads
from crane.runs import RunFolder, git_commit, package_versions, peak_memory_mb, topk_frame
from crane.sampling import NegativeSampler
from crane.tuning import hp_hash

logger = logging.getLogger(__name__)

# Hyper-parameters that belong to the trainer even when they come from a model's grid
# (LATTICE searches the learning rate); everything else goes to the model's constructor.
TRAINER_HPARAMS = ("learning_rate", "lr_scheduler", "batch_size", "weight_decay")


@dataclass
class TrainingConfig:
    epochs: int = 1000
    patience: int = 20
    batch_size: int = 2048
    learning_rate: float = 1e-3
    eval_every: int = 1
    valid_metric: str = "recall@20"
    eval_batch_size: int = 4096
    mask_valid_in_test: bool = False
    # MMRec's learning_rate_scheduler [gamma, step]: lr * gamma ** (epoch / step)
    lr_scheduler: tuple[float, float] | None = None
    weight_decay: float = 0.0
    topk_export: int = 0
    # How often the resume state (last.pt) is written; 0 = after every epoch.
    checkpoint_every_s: float = 60.0

    def __post_init__(self) -> None:
        if self.lr_scheduler is not None:
            if len(self.lr_scheduler) != 2:
                raise ValueError(f"training.lr_scheduler must be [gamma, step], "
                                 f"got {self.lr_scheduler!r}")
            self.lr_scheduler = (float(self.lr_scheduler[0]), float(self.lr_scheduler[1]))
        for name in ("epochs", "patience", "batch_size", "eval_every", "eval_batch_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"training.{name} must be >= 1, got {getattr(self, name)!r}")
            setattr(self, name, int(getattr(self, name)))
        self.learning_rate = float(self.learning_rate)
        self.weight_decay = float(self.weight_decay)
        self.topk_export = int(self.topk_export)
        self.checkpoint_every_s = float(self.checkpoint_every_s)
        self.mask_valid_in_test = bool(self.mask_valid_in_test)
        if self.valid_metric not in metric_columns():
            raise ValueError(f"training.valid_metric {self.valid_metric!r}: expected one of "
                             f"{', '.join(metric_columns())}")

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> "TrainingConfig":
        d = dict(d or {})
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown training key(s) {unknown}; known: {sorted(known)}")
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["lr_scheduler"] = list(self.lr_scheduler) if self.lr_scheduler else None
        return out

    def with_overrides(self, hparams: dict[str, Any]) -> "TrainingConfig":
        """This config with the trainer hyper-parameters found in `hparams` applied."""
        overrides = {k: hparams[k] for k in TRAINER_HPARAMS if k in hparams}
        return dataclasses.replace(self, **overrides) if overrides else self


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


class EarlyStopping:
    """MMRec's early stopping (utils.early_stopping) on a bigger-is-better metric.

    Two details of MMRec are kept because they decide the best epoch and when training ends:
    - the metric is compared after rounding to `decimals` places (MMRec's evaluator rounds
      every metric to 4 before early stopping sees it), and only a strictly bigger rounded
      value is an improvement: a tie, or a gain lost in rounding, counts as a bad evaluation;
    - training stops once the bad evaluations in a row EXCEED `patience` (MMRec's
      `stopping_step`): with patience 20 the 21st evaluation without improvement stops it.
    """

    def __init__(self, patience: int, decimals: int | None = 4):
        self.patience = patience
        self.decimals = decimals
        self.best = -math.inf
        self.best_epoch = 0
        self.bad_evaluations = 0

    def update(self, value: float, epoch: int) -> bool:
        """Record one evaluation; True when it is a new best."""
        if self.decimals is not None:
            value = float(np.round(value, self.decimals))
        if value > self.best:
            self.best, self.best_epoch, self.bad_evaluations = value, epoch, 0
            return True
        self.bad_evaluations += 1
        return False

    @property
    def should_stop(self) -> bool:
        return self.bad_evaluations > self.patience

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "best_epoch": self.best_epoch,
                "bad_evaluations": self.bad_evaluations}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best = float(state["best"])
        self.best_epoch = int(state["best_epoch"])
        self.bad_evaluations = int(state["bad_evaluations"])


# -- data ---------------------------------------------------------------------------------

def load_train_data(data_dir: str | Path, feature_dirs: dict[str, str | Path] | None,
                    device: torch.device | str, cache_dir: str | Path | None
                    ) -> tuple[TrainData, Interactions]:
    """The model's view (training split + item features) and the full split (for evaluation)."""
    data_dir = Path(data_dir)
    interactions = load_interactions(data_dir)
    train_user, train_item = interactions.part(TRAIN)
    features, hashes = {}, {}
    for modality, feature_dir in (feature_dirs or {}).items():
        features[modality], hashes[modality] = read_features(Path(feature_dir),
                                                             interactions.n_items)
    data = TrainData(
        n_users=interactions.n_users, n_items=interactions.n_items,
        train_user=train_user.astype(np.int64), train_item=train_item.astype(np.int64),
        features=features, feature_hashes=hashes,
        cache_dir=Path(cache_dir) if cache_dir is not None else None,
        device=resolve_device(device))
    return data, interactions


def read_features(feature_dir: Path, n_items: int) -> tuple[np.ndarray, str]:
    """`features.npy` (n_items, D) float32 and its content hash (manifest, else computed)."""
    path = feature_dir / "features.npy"
    if not path.exists():
        raise FileNotFoundError(f"{path}: feature file not found")
    matrix = np.load(path)
    if matrix.ndim != 2 or matrix.shape[0] != n_items:
        raise ValueError(f"{path}: expected shape ({n_items}, D) (one row per item), "
                         f"got {matrix.shape}")
    if not np.issubdtype(matrix.dtype, np.floating):
        raise ValueError(f"{path}: expected floating point features, got {matrix.dtype}")
    matrix = matrix.astype(np.float32, copy=False)
    manifest_path = feature_dir / "manifest.json"
    content_hash = None
    if manifest_path.exists():
        content_hash = files.read_json(manifest_path).get("content_hash")
    return matrix, content_hash or files.sha256_array(matrix)


def split_hparams(hparams: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(model hyper-parameters, trainer hyper-parameters) of one grid point."""
    model_hp = {k: v for k, v in hparams.items() if k not in TRAINER_HPARAMS}
    trainer_hp = {k: v for k, v in hparams.items() if k in TRAINER_HPARAMS}
    return model_hp, trainer_hp


def build_model(model_name: str, data: TrainData, hparams: dict[str, Any]) -> Recommender:
    """Instantiate a registered model on `data` (checking the modalities it needs)."""
    model_cls = models.get(model_name)
    missing = [m for m in model_cls.required_modalities if m not in data.features]
    if missing:
        raise ValueError(f"model {model_name!r} needs feature modality(ies) {missing}; "
                         f"given: {sorted(data.features) or 'none'}")
    if model_cls.uses_content and not data.features:
        raise ValueError(f"model {model_name!r} needs at least one feature modality")
    model_hp, _ = split_hparams(hparams)
    return model_cls(data, model_hp).to(data.device)


# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
HEAP_BLOCK_BYTES = 32 << 20  # glibc's largest allowed M_MMAP_THRESHOLD on 64-bit


def keep_freed_memory_for_reuse() -> bool:
    """glibc: serve blocks under 32 MiB from the heap and keep freed heap memory mapped.

    Every batch allocates and frees the same dense gradient tables (zero-filled, then
    scattered into by the embedding backward). By default glibc may return such blocks to
    the kernel and page-fault them in again on the next batch, depending on the heap's
    layout (up to ~800 faults a BPR batch at Baby, ~3,000 a LightGCN batch: its epoch took
    1.75-1.93 instead of 1.40 CPU s). Values are unaffected. False where the C library has
    no mallopt (not glibc).
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    return bool(mallopt(_M_MMAP_THRESHOLD, HEAP_BLOCK_BYTES)
                and mallopt(_M_TRIM_THRESHOLD, 4 * HEAP_BLOCK_BYTES))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@contextlib.contextmanager
def deterministic_cpu_ops(device: torch.device) -> Iterator[None]:
    """On CPU, torch's deterministic algorithms inside the block (restored after).

    Why: on two or more threads the backward of `table[index]` with repeated indices adds
    the rows in whatever order the threads reach them, so FREEDOM's or CRANE's gradients
    differed in the last bits from run to run and a seed did not fix a run's metrics. In
    deterministic mode torch adds them in index order (the same values as on one thread, and
    no slower for training steps). The trainer applies it to training epochs only: the
    evaluator's masking (`index_put_`) takes a slower sorted path in this mode (Baby, one
    pass: 0.24 -> 0.28 s) and its results do not depend on the mode. Not on GPUs: their
    deterministic kernels cost time and cuBLAS needs settings of its own, and the project
    promises reproducible runs on CPU.
    """
    if device.type != "cpu":
        yield
        return
    enabled = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(enabled, warn_only=warn_only)


# -- training -------------------------------------------------------------------------------

def fit_and_evaluate(data: TrainData, interactions: Interactions, model_name: str,
                     hparams: dict[str, Any], seed: int, training: TrainingConfig,
                     run_dir: str | Path | None = None, log: Callable[[str], None] = print,
                     dataset: str | None = None,
                     on_epoch_end: Callable[[int], None] | None = None) -> RunResult:
    """Train (or fit) `model_name` on `data`, select its best validation state, test it once.

    With `run_dir` the run folder is written (metrics.json last) and a previous `last.pt`
    of the same configuration is resumed. `on_epoch_end(epoch)` runs after each epoch's
    bookkeeping (the resume state is on disk by then).
    """
    training = training.with_overrides(hparams)
    _check_same_sizes(data, interactions)
    seed_everything(seed)
    model = build_model(model_name, data, hparams)
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
    loop = _TrainingLoop(model, data, evaluators[VALID], training, seed, folder, log,
                         on_epoch_end, resume_key=_resume_key(model_name, hparams, seed,
                                                              training, data))
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
        topk=topk, stop_reason=loop.stop_reason)
    log(f"{model_name} seed {seed}: best epoch {result.best_epoch}, "
        f"valid {training.valid_metric} {result.valid.get(training.valid_metric, math.nan):.4f}, "
        f"test recall@20 {result.test['recall@20']:.4f} ndcg@20 {result.test['ndcg@20']:.4f}")
    if folder is not None:
        _write_run_folder(folder, result, model_name, hparams, seed, dataset, device)
    return result


class _TrainingLoop:
    """Epochs, validation, early stopping and the resume state of one run."""

    def __init__(self, model: Recommender, data: TrainData, evaluator: FullRankingEvaluator,
                 training: TrainingConfig, seed: int, folder: RunFolder | None,
                 log: Callable[[str], None], on_epoch_end: Callable[[int], None] | None,
                 resume_key: str):
        self.model, self.data, self.evaluator = model, data, evaluator
        self.training, self.folder, self.log = training, folder, log
        self.on_epoch_end = on_epoch_end
        self.resume_key = resume_key
        self.stopper = EarlyStopping(training.patience)
        self.history: list[dict[str, Any]] = []
        self.best_valid: dict[str, float] = {}
        self.best_state: dict[str, torch.Tensor] | None = None
        self.train_seconds = 0.0
        self.eval_seconds = 0.0
        self.epochs_run = 0
        self.stop_reason = "fit_once" if not model.trainable else "max_epochs"
        self.generator = torch.Generator().manual_seed(seed)

    def seconds_per_epoch(self) -> float:
        return self.train_seconds / self.epochs_run if self.epochs_run else 0.0

    def run(self) -> None:
        if not self.model.trainable:
            start = time.perf_counter()
            self.model.fit()
            self.train_seconds = time.perf_counter() - start
            self._validate(epoch=0, row={"epoch": 0, "seconds": self.train_seconds})
            return
        keep_freed_memory_for_reuse()
        params = [p for p in self.model.parameters() if p.requires_grad]
        if not params:
            raise ValueError(f"model {self.model.name!r} is trainable but has no parameters")
        self.optimizer = make_adam(params, self.training.learning_rate,
                                   self.training.weight_decay)
        self.scheduler = None
        if self.training.lr_scheduler is not None:
            gamma, step = self.training.lr_scheduler
            self.scheduler = torch.optim.lr_scheduler.LambdaLR(
                self.optimizer, lambda epoch: gamma ** (epoch / step))
        sampler = NegativeSampler(self.data.train_user, self.data.train_item, self.data.n_items,
                                  self.training.batch_size, self.generator,
                                  use_negatives=self.model.uses_negatives,
                                  device=self.data.device)
        first_epoch = self._resume() + 1
        last_save = time.monotonic()
        self.stop_reason = "max_epochs"
        for epoch in range(first_epoch, self.training.epochs + 1):
            if self.stopper.should_stop:
                self.stop_reason = "early_stopping"
                break
            row = self._train_epoch(epoch, sampler)
            if not math.isfinite(row["loss"]):
                # As MMRec: stop and keep the best validated state (there must be one).
                self.log(f"epoch {epoch}: training loss is {row['loss']}; stopping")
                self.history.append(row)
                if self.best_state is None:
                    raise FloatingPointError(f"epoch {epoch}: training loss is {row['loss']} "
                                             "before any validated state")
                self.stop_reason = "non_finite_loss"
                break
            last_epoch = epoch == self.training.epochs
            if epoch % self.training.eval_every == 0 or last_epoch:
                self._validate(epoch, row)
            else:
                self.history.append(row)
            if self.folder is not None and (
                    time.monotonic() - last_save >= self.training.checkpoint_every_s):
                self._save_resume(epoch)
                last_save = time.monotonic()
            if self.on_epoch_end is not None:
                self.on_epoch_end(epoch)
        else:
            if self.stopper.should_stop:
                self.stop_reason = "early_stopping"
        if self.best_state is not None:
            self.model.load_state_dict(self.best_state)

    def _train_epoch(self, epoch: int, sampler: NegativeSampler) -> dict[str, Any]:
        self.model.train()
        start = time.perf_counter()
        sums: dict[str, torch.Tensor] = {}
        # deterministic mode for training only: it slows the evaluator's masking by ~15 %
        with deterministic_cpu_ops(self.data.device):
            self.model.start_epoch(epoch, self.generator)
            with training_step_threads(self.model.name, self.data.device):
                n_batches = self._train_batches(sampler, sums)
        lr = self.optimizer.param_groups[0]["lr"]
        if self.scheduler is not None:
            self.scheduler.step()
        # float() waits for the device's queued work: on a GPU the clock stops after it
        means = {name: float(value) / n_batches for name, value in sums.items()}
        seconds = time.perf_counter() - start
        self.train_seconds += seconds
        self.epochs_run += 1
        loss = sum(means.values())
        return {"epoch": epoch, "seconds": seconds, "lr": lr, "loss": loss,
                **{f"loss_{name}": value for name, value in means.items()}}

    def _train_batches(self, sampler: NegativeSampler, sums: dict[str, torch.Tensor]) -> int:
        """One pass over the epoch's batches; adds each loss term into `sums`."""
        n_batches = 0
        for batch in sampler.epoch():
            self.optimizer.zero_grad(set_to_none=True)
            terms = self.model.loss(batch.users, batch.pos_items, batch.neg_items)
            total = sum(terms.values())
            total.backward()
            self.optimizer.step()
            for name, value in terms.items():
                value = value.detach()
                sums[name] = sums[name] + value if name in sums else value
            n_batches += 1
        return n_batches

    def _validate(self, epoch: int, row: dict[str, Any]) -> None:
        start = time.perf_counter()
        metrics = self.evaluator.evaluate(self.model).metrics
        seconds = time.perf_counter() - start
        self.eval_seconds += seconds
        value = metrics[self.training.valid_metric]
        improved = self.stopper.update(value, epoch)
        if improved:
            self.best_valid = metrics
            if self.model.trainable:
                self.best_state = {k: v.detach().clone()
                                   for k, v in self.model.state_dict().items()}
        self.history.append({**row, "eval_seconds": seconds,
                             **{f"valid_{k}": v for k, v in metrics.items()}})
        loss = f" loss {row['loss']:.4f}" if "loss" in row else ""
        self.log(f"epoch {epoch}:{loss} valid {self.training.valid_metric} {value:.4f}"
                 f"{' *' if improved else ''} ({row['seconds']:.2f}s + eval {seconds:.2f}s)")

    # -- resume -------------------------------------------------------------------------
    def _save_resume(self, epoch: int) -> None:
        np_state = np.random.get_state()
        state = {
            "key": self.resume_key, "epoch": epoch,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler else None,
            "best_state": self.best_state, "best_valid": self.best_valid,
            "stopper": self.stopper.state_dict(), "history": self.history,
            "train_seconds": self.train_seconds, "eval_seconds": self.eval_seconds,
            "epochs_run": self.epochs_run,
            "rng": {
                "generator": self.generator.get_state(),
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
                "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)),
                          int(np_state[2]), int(np_state[3]), float(np_state[4])],
                "python": random.getstate(),
            },
        }
        self.folder.save_resume(state)

    def _resume(self) -> int:
        """Restore a matching `last.pt`; returns the last finished epoch (0 = fresh start)."""
        if self.folder is None:
            return 0
        state = self.folder.load_resume()
        if state is None:
            return 0
        if state.get("key") != self.resume_key:
            self.log(f"{self.folder.file('last.pt')}: from another configuration, starting afresh")
            return 0
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state["scheduler"] is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        device = self.data.device
        self.best_state = ({k: v.to(device) for k, v in state["best_state"].items()}
                           if state["best_state"] is not None else None)
        self.best_valid = dict(state["best_valid"])
        self.stopper.load_state_dict(state["stopper"])
        self.history = list(state["history"])
        self.train_seconds = float(state["train_seconds"])
        self.eval_seconds = float(state["eval_seconds"])
        self.epochs_run = int(state["epochs_run"])
        rng = state["rng"]
        self.generator.set_state(rng["generator"])
        torch.set_rng_state(rng["torch"])
        if rng["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
        name, keys, pos, has_gauss, cached = rng["numpy"]
        np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
        random.setstate(_as_tuples(rng["python"]))
        self.log(f"resumed from {self.folder.file('last.pt')} after epoch {state['epoch']}")
        return int(state["epoch"])


def _as_tuples(value: Any) -> Any:
    """random.setstate wants the exact nested tuples that getstate returned."""
    if isinstance(value, (list, tuple)):
        return tuple(_as_tuples(v) for v in value)
    return value


def _resume_key(model_name: str, hparams: dict[str, Any], seed: int,
                training: TrainingConfig, data: TrainData) -> str:
    """What must match for a `last.pt` to belong to this run."""
    config = training.to_dict()
    config.pop("checkpoint_every_s")
    return files.sha256_json({
        "model": model_name, "hparams": hparams, "seed": seed, "training": config,
        "n_users": data.n_users, "n_items": data.n_items,
        "train": files.sha256_array(np.stack([data.train_user, data.train_item])),
        "features": data.feature_hashes,
    })


def _check_same_sizes(data: TrainData, interactions: Interactions) -> None:
    if (data.n_users, data.n_items) != (interactions.n_users, interactions.n_items):
        raise ValueError(f"TrainData is {data.n_users} x {data.n_items} but the interactions "
                         f"are {interactions.n_users} x {interactions.n_items}")


def _write_run_folder(folder: RunFolder, result: RunResult, model_name: str,
                      hparams: dict[str, Any], seed: int, dataset: str | None,
                      device: torch.device) -> None:
    model_hp, _ = split_hparams(hparams)
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
    """The content of metrics.json."""
    return {
        "dataset": dataset, "model": model_name, "seed": seed,
        "hp_hash": hp_hash(hparams), "hparams": hparams,
        "best_epoch": result.best_epoch, "epochs_run": result.epochs_run,
        "stop_reason": result.stop_reason, "valid": result.valid, "test": result.test,
        "seconds_per_epoch": result.seconds_per_epoch,
        "train_seconds": result.train_seconds, "eval_seconds": result.eval_seconds,
        "peak_memory_mb": peak_memory_mb(device),
    }


# -- the CLI's entry points -----------------------------------------------------------------

def train_run(*, data_dir: str | Path, feature_dirs: dict[str, str | Path] | None, model: str,
              hparams: dict[str, Any], seed: int, out_dir: str | Path,
              training: TrainingConfig | dict[str, Any] | None, device: str = "auto",
              cache_dir: str | Path | None = None, dataset: str | None = None,
              log: Callable[[str], None] = logger.info) -> dict[str, Any]:
    """Train one (model, grid point, seed) into `out_dir`; returns metrics.json's content."""
    if not isinstance(training, TrainingConfig):
        training = TrainingConfig.from_dict(training)
    torch_device = resolve_device(device)
    feature_dirs = {m: Path(p) for m, p in (feature_dirs or {}).items()}
    data, interactions = load_train_data(data_dir, feature_dirs, torch_device, cache_dir)
    folder = RunFolder(out_dir)
    folder.write_manifest({
        "config": {
            "dataset": dataset, "model": model, "hparams": hparams, "seed": seed,
            "training": training.with_overrides(hparams).to_dict(),
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
                     log=log, dataset=dataset)
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
