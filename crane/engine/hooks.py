"""Callbacks of the training loop: how benchmarks and tests observe a run from outside.

The loop (crane.engine.loop.TrainingLoop) calls, in this order:

    on_train_start(model)                   once, before the first epoch (or `fit()`)
    for each epoch that runs:
        on_epoch_start(epoch)
        train_batches(epoch, batches)       wraps the epoch's batch stream; returns batches
        on_epoch_trained(epoch, row)        the training pass is done: row has epoch,
                                            seconds, lr, loss and one loss_<term> per term
        on_epoch_end(epoch, row)            after validation and the resume state: row is
                                            the epoch's history row (with valid_* metrics
                                            when it was validated)

A model with nothing to train (`fit()` once) gets `on_train_start` only. Epochs restored
from a resume state are not replayed. Every default does nothing. A hook may read the model
and the rows, and may stop a run by raising; `train_batches` may drop batches (a benchmark
timing a part of an epoch), but a hook that yields every batch unchanged and touches no
random state leaves the run bit for bit as without hooks (tests/engine/test_engine_hooks.py).
"""

from __future__ import annotations

from typing import Any, Iterable, Iterator

from crane.engine.sampling import Batch
from crane.models.base import Recommender


class Hooks:
    """Subclass and override the callbacks you need."""

    def on_train_start(self, model: Recommender) -> None:
        pass

    def on_epoch_start(self, epoch: int) -> None:
        pass

    def train_batches(self, epoch: int, batches: Iterator[Batch]) -> Iterable[Batch]:
        return batches

    def on_epoch_trained(self, epoch: int, row: dict[str, Any]) -> None:
        pass

    def on_epoch_end(self, epoch: int, row: dict[str, Any]) -> None:
        pass
