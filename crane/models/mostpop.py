"""MostPop: every user gets the items ranked by their number of training interactions."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from crane.models import register
from crane.models.base import Recommender, TrainData
from crane.models.hyperparameters import HyperParameters


@dataclass(frozen=True)
class MostPopConfig(HyperParameters):
    """Nothing to tune: any key is a mistake."""


@register("mostpop")
class MostPop(Recommender):
    config_class = MostPopConfig
    trainable = False

    def __init__(self, data: TrainData, hparams: dict[str, Any]):
        super().__init__(data, hparams)
        self._train_item = data.train_item
        # A buffer, so that the fitted counts travel in checkpoints.
        self.register_buffer("popularity", torch.zeros(data.n_items, device=data.device))

    def fit(self) -> None:
        counts = np.bincount(self._train_item, minlength=self.n_items).astype(np.float32)
        self.popularity.copy_(torch.from_numpy(counts))

    def score(self, users: torch.Tensor) -> torch.Tensor:
        return self.popularity.expand(len(users), -1)
