"""The training loop of one run: epochs, validation, early stopping, best state, resume state.

- trainable models: epochs of shuffled (user, positive, negative) batches, Adam on the sum of
  the model's loss terms, validation every `eval_every` epochs and after the last one, early
  stopping on the validation `valid_metric` (crane.engine.stopping); a non-finite loss stops
  the run on the best validated state, as in MMRec;
- models with nothing to train (MostPop, ItemKNN-CBF): `fit()` once, then one validation.

After `run()` the model holds its best validated state. With a run folder the loop writes
the resume state (`last.pt`) every `checkpoint_every_s` seconds and resumes from a matching
one. The test split never reaches the loop. Callbacks: crane.engine.hooks. Tested in
tests/engine/test_engine_train.py and tests/engine/test_engine_hooks.py.
"""

from __future__ import annotations

import contextlib
import math
import time
from typing import Any, Callable

import torch
from torch.utils.flop_counter import FlopCounterMode

from crane.engine.evaluate import FullRankingEvaluator
from crane.engine.hooks import Hooks
from crane.engine.resume import restore_rng_states, rng_states
from crane.engine.run_folder import RunFolder
from crane.engine.runtime import deterministic_cpu_ops, keep_freed_memory_for_reuse
from crane.engine.sampling import NegativeSampler
from crane.engine.settings import TrainingConfig
from crane.engine.stopping import EarlyStopping
from crane.models.base import Recommender, TrainData
from crane.ops.adam import make_adam
from crane.ops.threads import training_step_threads


class TrainingLoop:
    """Trains `model` on `data`, validating with `evaluator` (the validation split)."""

    def __init__(self, model: Recommender, data: TrainData, evaluator: FullRankingEvaluator,
                 training: TrainingConfig, seed: int, folder: RunFolder | None = None,
                 log: Callable[[str], None] = print, hooks: Hooks | None = None,
                 resume_key: str = ""):
        self.model, self.data, self.evaluator = model, data, evaluator
        self.training, self.folder, self.log = training, folder, log
        self.hooks = hooks or Hooks()
        self.resume_key = resume_key
        self.stopper = EarlyStopping(training.patience)
        self.history: list[dict[str, Any]] = []
        self.best_valid: dict[str, float] = {}
        self.best_state: dict[str, torch.Tensor] | None = None
        self.train_seconds = 0.0
        self.eval_seconds = 0.0
        self.epochs_run = 0
        self.flops_per_step: int | None = None  # dense FLOPs of one step (forward + backward)
        self.stop_reason = "fit_once" if not model.trainable else "max_epochs"
        self.generator = torch.Generator().manual_seed(seed)

    def seconds_per_epoch(self) -> float:
        return self.train_seconds / self.epochs_run if self.epochs_run else 0.0

    def run(self) -> None:
        self.hooks.on_train_start(self.model)
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
            self.hooks.on_epoch_end(epoch, self.history[-1])
        else:
            if self.stopper.should_stop:
                self.stop_reason = "early_stopping"
        if self.best_state is not None:
            self.model.load_state_dict(self.best_state)

    def _train_epoch(self, epoch: int, sampler: NegativeSampler) -> dict[str, Any]:
        self.hooks.on_epoch_start(epoch)
        self.model.train()
        start = time.perf_counter()
        sums: dict[str, torch.Tensor] = {}
        # deterministic mode for training only: the evaluator's masking is slower in it
        with deterministic_cpu_ops(self.data.device):
            self.model.start_epoch(epoch, self.generator)
            with training_step_threads(self.model.name, self.data.device):
                n_batches = self._train_batches(epoch, sampler, sums)
        lr = self.optimizer.param_groups[0]["lr"]
        if self.scheduler is not None:
            self.scheduler.step()
        # float() waits for the device's queued work: on a GPU the clock stops after it
        means = {name: float(value) / n_batches for name, value in sums.items()}
        seconds = time.perf_counter() - start
        self.train_seconds += seconds
        self.epochs_run += 1
        loss = sum(means.values())
        row = {"epoch": epoch, "seconds": seconds, "lr": lr, "loss": loss,
               **{f"loss_{name}": value for name, value in means.items()}}
        self.hooks.on_epoch_trained(epoch, row)
        return row

    def _train_batches(self, epoch: int, sampler: NegativeSampler,
                       sums: dict[str, torch.Tensor]) -> int:
        """One pass over the epoch's batches; adds each loss term into `sums`."""
        n_batches = 0
        mirror = self.training.mirror_gradient
        for batch in self.hooks.train_batches(epoch, sampler.epoch()):
            self.optimizer.zero_grad(set_to_none=True)
            # The run's first step is counted: an observer, the step computes the same bits.
            with self._flop_counter() as counter:
                with self._precision():
                    terms = self.model.loss(batch.users, batch.pos_items, batch.neg_items)
                    total = sum(terms.values())
                if mirror and n_batches % self.training.mirror_beta == 0:
                    self._mirror_step(batch, total)
                else:
                    total.backward()
            if counter is not None:
                self.flops_per_step = counter.get_total_flops()
            self.optimizer.step()
            for name, value in terms.items():
                value = value.detach()
                sums[name] = sums[name] + value if name in sums else value
            n_batches += 1
        return n_batches

    def _flop_counter(self) -> contextlib.AbstractContextManager:
        """torch's FLOP counter around the run's first step (forward and backward), nothing
        around the others. It counts dense products only: sparse graph products, scipy's
        and elementwise work are not in it."""
        if self.flops_per_step is not None:
            return contextlib.nullcontext()
        return FlopCounterMode(display=False)

    def _precision(self) -> torch.autocast:
        """The forward pass of a training step: bf16 autocast, or nothing changed."""
        return torch.autocast(self.data.device.type, dtype=torch.bfloat16,
                              enabled=self.training.precision == "bf16")

    def _mirror_step(self, batch, total: torch.Tensor) -> None:
        """Mirror Gradient as MMRec's trainer does it: a step along alpha1 * loss, then the
        loss of the same batch at the new parameters, with its gradient times -alpha2 left
        for the caller's step. The epoch's reported loss is the first one."""
        (self.training.mirror_alpha1 * total).backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        with self._precision():
            second = sum(self.model.loss(batch.users, batch.pos_items, batch.neg_items).values())
        (-self.training.mirror_alpha2 * second).backward()

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
        self.folder.save_resume({
            "key": self.resume_key, "epoch": epoch,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler else None,
            "best_state": self.best_state, "best_valid": self.best_valid,
            "stopper": self.stopper.state_dict(), "history": self.history,
            "train_seconds": self.train_seconds, "eval_seconds": self.eval_seconds,
            "epochs_run": self.epochs_run,
            "rng": rng_states(self.generator),
        })

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
        restore_rng_states(self.generator, state["rng"])
        self.log(f"resumed from {self.folder.file('last.pt')} after epoch {state['epoch']}")
        return int(state["epoch"])
