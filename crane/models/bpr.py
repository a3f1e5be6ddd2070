"""BPR-MF as in MMRec: user and item embeddings, dot-product score, BPR + reg * EmbLoss."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from crane.models import register
from crane.models.base import Recommender, TrainData
from crane.models.hyperparameters import HyperParameters, hparam
from crane.ops.losses import bpr_mf_loss
from crane.ops.scores import dot_scores


@dataclass(frozen=True)
class BPRConfig(HyperParameters):
    embedding_size: int = hparam(at_least=1)
    reg_weight: float = hparam(at_least=0)


@register("bpr")
class BPR(Recommender):
    config_class = BPRConfig

    def __init__(self, data: TrainData, hparams: dict[str, Any]):
        super().__init__(data, hparams)
        size = self.config.embedding_size
        self.user_embedding = nn.Embedding(self.n_users, size)
        self.item_embedding = nn.Embedding(self.n_items, size)
        nn.init.xavier_normal_(self.user_embedding.weight)
        nn.init.xavier_normal_(self.item_embedding.weight)

    def loss(self, users: torch.Tensor, pos_items: torch.Tensor,
             neg_items: torch.Tensor | None) -> dict[str, torch.Tensor]:
        # one lookup for positives and negatives: one dense gradient table instead of two
        bpr, reg = bpr_mf_loss(self.user_embedding.weight, self.item_embedding.weight,
                               users, torch.cat([pos_items, neg_items]), self.config.reg_weight)
        return {"bpr": bpr, "reg": reg}

    def score(self, users: torch.Tensor) -> torch.Tensor:
        return dot_scores(self.user_embedding(users), self.item_embedding.weight)
