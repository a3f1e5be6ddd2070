"""XSimGCL (Yu et al., IEEE TKDE 2023, "XSimGCL: Towards Extremely Simple Graph Contrastive
Learning for Recommendation"), as in the authors' SELFRec (Coder-Yu/SELFRec,
model/graph/XSimGCL.py, with util/loss_torch.py and data/graph.py; defaults from
conf/XSimGCL.yaml). Not in MMRec.

ID embeddings propagated over the normalised user-item graph D^-1/2 A D^-1/2. In training,
every hop's output is perturbed by uniform noise of norm eps along the embedding's signs,
h <- h + eps * sign(h) * normalize(U[0, 1)^d), and the perturbed layer feeds the next hop.
The final embedding is the mean of layers 1..L (layer 0 is *not* in the mean). One forward
pass gives both contrastive views: the final embedding and the perturbed layer `cl_layer`
(l* in the paper). Loss per batch (user, positive, negative):
- `bpr`: -mean log(1e-5 + sigmoid(s_pos - s_neg)) on the perturbed final embeddings
- `reg`: reg_weight * (||users|| / B + ||positives|| / B), the L2 norms of the batch's
  *final* (perturbed) user and positive-item embeddings, as SELFRec's l2_reg_loss is called
- `cl`: cl_weight * (InfoNCE over the batch's distinct users + over its distinct positive
  items), each one-way (final view -> layer-l* view), cosine / temperature
Scores: the unperturbed final embeddings' dot products.

The noise comes from torch's global generator on the model's device, as in SELFRec
(`torch.rand_like`), so the run's seed fixes it. Deliberate differences from SELFRec:
- A batch propagates every hop over the whole graph except the last, computed at the batch's
  rows only (the noise of the whole layer is still drawn, so the draws are the same), the
  only rows the loss reads: the same values (tests/models/test_xsimgcl.py).
- SELFRec drops users and items without training interactions from its ids; here they keep a
  zero row in the graph (their propagated embeddings are zero).
Memory scales as O((U + N) d + nnz): the tables, the L layers and their noise.
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
from crane.models.hyperparameters import HyperParameters, hparam, reject
from crane.ops.contrastive import one_way_info_nce
from crane.ops.losses import emb_loss
from crane.ops.propagation import BipartitePropagation
from crane.ops.scores import dot_scores

Pair = tuple[torch.Tensor, torch.Tensor]


@dataclass(frozen=True)
class XSimGCLConfig(HyperParameters):
    embedding_size: int = hparam(at_least=1)
    n_layers: int = hparam(at_least=1)
    cl_layer: int = hparam(at_least=1)
    cl_weight: float = hparam(at_least=0)
    eps: float = hparam(at_least=0)
    temperature: float = hparam(above=0)
    reg_weight: float = hparam(at_least=0)

    def check(self, model: str) -> None:
        if self.cl_layer > self.n_layers:
            reject(model, "cl_layer", self.cl_layer,
                   f"at most n_layers ({self.n_layers}): the contrastive view is a layer")


@register("xsimgcl")
class XSimGCL(Recommender):
    config_class = XSimGCLConfig

    def __init__(self, data: TrainData, hparams: dict[str, Any]):
        super().__init__(data, hparams)
        size = self.config.embedding_size
        self.user_embedding = nn.Parameter(
            nn.init.xavier_uniform_(torch.empty(self.n_users, size, device=data.device)))
        self.item_embedding = nn.Parameter(
            nn.init.xavier_uniform_(torch.empty(self.n_items, size, device=data.device)))
        self.propagation = BipartitePropagation(
            symmetric_bipartite_adjacency(data.train_matrix()), self.n_users, data.device)

    def ego_embeddings(self) -> Pair:
        return self.user_embedding, self.item_embedding

    def perturbed(self, layer: Pair, rows: Pair | None = None) -> Pair:
        """`layer` + eps * sign(layer) * normalize(uniform noise); the noise is drawn for the
        whole (U+N) x d layer in one piece, and read at `rows` when the layer holds only
        those rows."""
        noise = torch.rand(self.n_users + self.n_items, self.config.embedding_size,
                           device=self.device)
        noise = F.normalize(noise, dim=-1) * self.config.eps
        noise = (noise[:self.n_users], noise[self.n_users:])
        if rows is not None:
            noise = tuple(n[r] for n, r in zip(noise, rows))
        return tuple(x + torch.sign(x) * n for x, n in zip(layer, noise))

    def forward(self, perturbed: bool = False) -> tuple[Pair, Pair]:
        """(final (users, items), layer-l* (users, items)) over the whole graph."""
        layer, layers = self.ego_embeddings(), []
        for _ in range(self.config.n_layers):
            layer = self.propagation(layer)
            if perturbed:
                layer = self.perturbed(layer)
            layers.append(layer)
        return self.layer_mean(layers), layers[self.config.cl_layer - 1]

    def forward_at(self, rows: Pair) -> tuple[Pair, Pair]:
        """`forward(perturbed=True)` at distinct (user_rows, item_rows), the last hop at those
        rows only (each row the same product and the same noise)."""
        layer, layers = self.ego_embeddings(), []
        for _ in range(self.config.n_layers - 1):
            layer = self.perturbed(self.propagation(layer))
            layers.append(tuple(x[r] for x, r in zip(layer, rows)))
        layers.append(self.perturbed(self.propagation.rows_step(layer, rows), rows))
        return self.layer_mean(layers), layers[self.config.cl_layer - 1]

    @staticmethod
    def layer_mean(layers: list[Pair]) -> Pair:
        return tuple(torch.stack(side, dim=1).mean(dim=1) for side in zip(*layers))

    def loss(self, users: torch.Tensor, pos_items: torch.Tensor,
             neg_items: torch.Tensor | None) -> dict[str, torch.Tensor]:
        cfg = self.config
        user_rows, user_at = torch.unique(users, return_inverse=True)
        item_rows, item_at = torch.unique(torch.cat([pos_items, neg_items]), return_inverse=True)
        (user_final, item_final), (user_cl, item_cl) = self.forward_at((user_rows, item_rows))
        user_e = user_final[user_at]
        pos_e, neg_e = item_final[item_at].split(len(users))
        pos_scores = (user_e * pos_e).sum(dim=1)
        neg_scores = (user_e * neg_e).sum(dim=1)
        bpr = torch.mean(-torch.log(10e-6 + torch.sigmoid(pos_scores - neg_scores)))
        # the batch's distinct positive items, as rows of the unique item table
        pos_rows = torch.unique(item_at[:len(users)])
        cl = (one_way_info_nce(user_final, user_cl, cfg.temperature)
              + one_way_info_nce(item_final[pos_rows], item_cl[pos_rows], cfg.temperature))
        return {"bpr": bpr, "reg": cfg.reg_weight * (emb_loss(user_e) + emb_loss(pos_e)),
                "cl": cfg.cl_weight * cl}

    def scoring_tables(self) -> Pair:
        return self.forward(perturbed=False)[0]

    def score(self, users: torch.Tensor) -> torch.Tensor:
        user_all, item_all = self.scoring_state()
        return dot_scores(user_all[users], item_all)
