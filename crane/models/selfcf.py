"""SelfCF_ed (Zhou et al., ACM TORS 2023, "SelfCF: A Simple Framework for Self-supervised
Collaborative Filtering"), the embedding-dropout variant with a LightGCN encoder, as in MMRec
(enoche/MMRec, src/models/selfcfed_lgn.py and its encoder src/common/encoders.py,
LightGCN_Encoder).

No negatives. The online encoder is LightGCN over the normalised user-item graph (the mean of
layers 0..L, stacked as MMRec does) on a graph whose stored entries are dropped independently
at every batch, with a rate drawn uniformly in [0, 1) (`crane.ops.sparse_dropout`). For a
batch of (user, item) pairs, the targets are the encoder outputs at the batch's rows under
dropout, without gradient; a shared linear predictor maps the online outputs:
- `cos`: -cos(pred(u), target(i)) / 2 - cos(pred(i), target(u)) / 2 (each a batch mean)
- `reg`: reg_weight * L2Loss of the online outputs at the batch's rows (half the sum of
  squares, not divided by the batch size)
Scores (full graph, no dropout): pred(u) . i + u . pred(i).

Deliberate differences from MMRec:
- MMRec draws the edge dropout rate from numpy's global generator; here it comes from torch's,
  so that the run's seed alone fixes every draw.
- A dropped entry is stored as an explicit zero rather than removed: the same products.
- MMRec's degree epsilon (1e-7) in the adjacency normalisation is below float32 resolution for
  any node with an edge; `symmetric_bipartite_adjacency` omits it.
Every batch propagates the whole (dropped) graph, as MMRec does. Memory scales as
O((U + N) d + nnz): the embedding tables, the layers and one dropped copy of the graph.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from crane.graphs.user_item import symmetric_bipartite_adjacency
from crane.models import register
from crane.models.base import Recommender, TrainData
from crane.models.hyperparameters import HyperParameters, hparam
from crane.ops.propagation import SquareGraph, lightgcn_layer_mean
from crane.ops.scores import dot_scores
from crane.ops.sparse_dropout import DroppableGraph, random_sparse_dropout


@dataclass(frozen=True)
class SelfCFConfig(HyperParameters):
    embedding_size: int = hparam(at_least=1)
    n_layers: int = hparam(at_least=0)
    dropout: float = hparam(at_least=0, below=1)
    reg_weight: float = hparam(at_least=0)


@register("selfcf")
class SelfCF(Recommender):
    config_class = SelfCFConfig
    uses_negatives = False

    def __init__(self, data: TrainData, hparams: dict[str, Any]):
        super().__init__(data, hparams)
        size = self.config.embedding_size
        # MMRec's encoder draws both tables with xavier_uniform_; the predictor keeps
        # nn.Linear's own initialisation (MMRec applies none)
        self.user_embedding = nn.Parameter(
            nn.init.xavier_uniform_(torch.empty(self.n_users, size, device=data.device)))
        self.item_embedding = nn.Parameter(
            nn.init.xavier_uniform_(torch.empty(self.n_items, size, device=data.device)))
        self.predictor = nn.Linear(size, size, device=data.device)
        self.graph = DroppableGraph(symmetric_bipartite_adjacency(data.train_matrix()),
                                    data.device)

    def encode(self, graph: SquareGraph) -> tuple[torch.Tensor, torch.Tensor]:
        """The LightGCN encoder's (users, items) tables over `graph`."""
        ego = torch.cat([self.user_embedding, self.item_embedding])
        mean = lightgcn_layer_mean(graph, ego, self.config.n_layers, stacked_mean=True)
        return mean[:self.n_users], mean[self.n_users:]

    def loss(self, users: torch.Tensor, pos_items: torch.Tensor,
             neg_items: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        cfg = self.config
        user_all, item_all = self.encode(random_sparse_dropout(self.graph))
        user_online, item_online = user_all[users], item_all[pos_items]
        with torch.no_grad():
            user_target = F.dropout(user_online.detach(), cfg.dropout)
            item_target = F.dropout(item_online.detach(), cfg.dropout)
        reg = 0.5 * user_online.pow(2).sum() + 0.5 * item_online.pow(2).sum()
        user_pred, item_pred = self.predictor(user_online), self.predictor(item_online)
        cos = (-F.cosine_similarity(user_pred, item_target, dim=-1).mean() / 2
               - F.cosine_similarity(item_pred, user_target, dim=-1).mean() / 2)
        return {"cos": cos, "reg": cfg.reg_weight * reg}

    def scoring_tables(self) -> tuple[torch.Tensor, ...]:
        users, items = self.encode(self.graph.full())
        return self.predictor(users), users, self.predictor(items), items

    def score(self, users: torch.Tensor) -> torch.Tensor:
        user_pred, user_all, item_pred, item_all = self.scoring_state()
        return dot_scores(user_pred[users], item_all) + dot_scores(user_all[users], item_pred)
