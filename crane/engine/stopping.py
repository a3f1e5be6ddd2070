"""MMRec's early-stopping rule (utils.early_stopping) on a bigger-is-better metric."""

from __future__ import annotations

import math
from typing import Any

import numpy as np


class EarlyStopping:
    """Tracks the best validation value and the evaluations since it.

    Two details of MMRec are kept because they decide the best epoch and when training ends:
    - the metric is compared after rounding to `decimals` places (MMRec's evaluator rounds
      every metric to 4 before early stopping sees it), and only a strictly bigger rounded
      value is an improvement: a tie, or a gain lost in rounding, counts as a bad evaluation;
    - training stops once the bad evaluations in a row EXCEED `patience` (MMRec's
      `stopping_step`): with patience 20 the 21st evaluation without improvement stops it.
    Tested in tests/engine/test_engine_train.py.
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
