"""LightGCN as in MMRec: propagate ID embeddings over the normalised user-item graph.

Final embeddings are the mean of layers 0..L, where layer l+1 = A_hat @ layer l and A_hat is
the symmetric D^-1/2 A D^-1/2 bipartite adjacency of the training interactions. The loss is
BPR on the final embeddings of the batch plus reg_weight * EmbLoss of the layer-0 (ego)
embeddings of the batch's users and items. A batch propagates the whole graph (as MMRec
does) except for the last layer, computed at the batch's rows only, the only ones the loss
reads: the same values (tests/models/test_lightgcn.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from crane.graphs.user_item import symmetric_bipartite_adjacency
from crane.models import register
from crane.models.base import Recommender, TrainData
from crane.models.hyperparameters import HyperParameters, hparam
from crane.ops.gather import gather_rows
from crane.ops.losses import dot_bpr_loss, emb_loss
from crane.ops.propagation import (BipartitePropagation, lightgcn_layer_mean,
                                   lightgcn_layer_sum_at)
from crane.ops.scores import dot_scores


@dataclass(frozen=True)
class LightGCNConfig(HyperParameters):
    embedding_size: int = hparam(at_least=1)
    n_layers: int = hparam(at_least=0)
    reg_weight: float = hparam(at_least=0)


@register("lightgcn")
class LightGCN(Recommender):
    config_class = LightGCNConfig

    def __init__(self, data: TrainData, hparams: dict[str, Any]):
        super().__init__(data, hparams)
        size = self.config.embedding_size
        self.user_embedding = nn.Embedding(self.n_users, size)
        self.item_embedding = nn.Embedding(self.n_items, size)
        # MMRec's LightGCN draws its tables with xavier_uniform_ (its BPR uses xavier_normal_)
        nn.init.xavier_uniform_(self.user_embedding.weight)
        nn.init.xavier_uniform_(self.item_embedding.weight)
        self.propagation = BipartitePropagation(
            symmetric_bipartite_adjacency(data.train_matrix()), self.n_users, data.device)

    def ego_embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.user_embedding.weight, self.item_embedding.weight

    def loss(self, users: torch.Tensor, pos_items: torch.Tensor,
             neg_items: torch.Tensor | None) -> dict[str, torch.Tensor]:
        items = torch.cat([pos_items, neg_items])
        user_rows, user_at = torch.unique(users, return_inverse=True)
        item_rows, item_at = torch.unique(items, return_inverse=True)
        user_sum, item_sum = lightgcn_layer_sum_at(
            self.propagation, self.ego_embeddings(), self.config.n_layers,
            (user_rows, item_rows), fused_backward=True)
        # the mean over layers, taken on the batch's rows only (same values, less work)
        layers = self.config.n_layers + 1
        user_e = user_sum[user_at] / layers
        pos_e, neg_e = (item_sum[item_at] / layers).split(len(users))
        pos_ego, neg_ego = gather_rows(self.item_embedding.weight, items).split(len(users))
        reg = emb_loss(gather_rows(self.user_embedding.weight, users), pos_ego, neg_ego)
        return {"bpr": dot_bpr_loss(user_e, pos_e, neg_e), "reg": self.config.reg_weight * reg}

    def scoring_tables(self) -> tuple[torch.Tensor, torch.Tensor]:
        return lightgcn_layer_mean(self.propagation, self.ego_embeddings(), self.config.n_layers)

    def score(self, users: torch.Tensor) -> torch.Tensor:
        user_all, item_all = self.scoring_state()
        return dot_scores(user_all[users], item_all)
