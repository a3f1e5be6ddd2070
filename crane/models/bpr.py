"""BPR-MF as in MMRec: user and item embeddings, dot-product score, BPR + reg * EmbLoss."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from crane.models import register
from crane.models.base import Recommender, TrainData, dot_bpr_loss, emb_loss
from crane.models.layers import dot_scores, gather_rows


@register("bpr")
class BPR(Recommender):
    hparam_names = ("embedding_size", "reg_weight")
    single_threaded_steps = True  # batch-sized torch work (crane.parallel)
    def __init__(self, data: TrainData, hparams: dict[str, Any]):
        super().__init__(data, hparams)
        size = int(hparams["embedding_size"])
        self.reg_weight = float(hparams["reg_weight"])
        self.user_embedding = nn.Embedding(self.n_users, size)
        self.item_embedding = nn.Embedding(self.n_items, size)
        nn.init.xavier_normal_(self.user_embedding.weight)
        nn.init.xavier_normal_(self.item_embedding.weight)

    def loss(self, users: torch.Tensor, pos_items: torch.Tensor,
             neg_items: torch.Tensor | None) -> dict[str, torch.Tensor]:
        user_e = gather_rows(self.user_embedding.weight, users)
        # one lookup for positives and negatives: one dense gradient table instead of two
        pos_e, neg_e = gather_rows(self.item_embedding.weight,
                                   torch.cat([pos_items, neg_items])).split(len(users))
        return {"bpr": dot_bpr_loss(user_e, pos_e, neg_e),
                "reg": self.reg_weight * emb_loss(user_e, pos_e, neg_e)}

    def score(self, users: torch.Tensor) -> torch.Tensor:
        return dot_scores(self.user_embedding(users), self.item_embedding.weight)
