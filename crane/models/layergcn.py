"""LayerGCN (Zhou et al., ICDE 2023, "Layer-refined Graph Convolutional Networks for
Recommendation"), as in MMRec (enoche/MMRec, src/models/layergcn.py).

ID embeddings propagated over the normalised user-item graph; after every hop each node's
embedding is scaled by its cosine similarity with the node's layer-0 (ego) embedding (the
layer refinement), and the final embedding is the sum of the refined layers 1..L (layer 0 is
not in the sum). Training uses a pruned graph resampled every epoch with `dropout` of the
edges removed: on even epochs by degree-sensitive sampling (probability proportional to
1/sqrt(deg u deg i), FREEDOM's, `crane.ops.dropout.degree_sensitive_edge_dropout`), on odd
epochs uniformly at random, the kept edges renormalised; evaluation uses the full graph.
Loss per batch: the *sum* over the batch of -logsigmoid(s_pos - s_neg) plus reg_weight *
L2Loss (half the sum of squares) of the batch's ego embeddings.

Deliberate differences from MMRec:
- MMRec flips between the two prunings with a flag on the model at every epoch start; here
  the epoch number's parity decides (the same sequence from epoch 0, and a resumed run
  continues it).
- MMRec draws the uniform pruning with Python's `random.sample` and the degree-sensitive one
  with torch's global generator; both come from the engine's generator here (the same
  distributions), through `torch.multinomial` without replacement (uniform weights for the
  random pruning). The edges are listed in CSR order, MMRec's in its dataset's order, so a
  given seed keeps other edges.
- MMRec's degree epsilon (1e-7) in the full graph's normalisation is below float32
  resolution for any node with an edge; `symmetric_bipartite_adjacency` omits it.
- A batch propagates the whole graph except the last hop, computed at the batch's rows only,
  the only ones the loss reads: the same values (tests/models/test_layergcn.py).
Memory scales as O((U + N) d + nnz): the tables, L refined layers and the pruned graph.
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
from crane.ops.dropout import BipartiteEdges, degree_sensitive_edge_dropout
from crane.ops.propagation import BipartitePropagation
from crane.ops.scores import dot_scores

Pair = tuple[torch.Tensor, torch.Tensor]


@dataclass(frozen=True)
class LayerGCNConfig(HyperParameters):
    embedding_size: int = hparam(at_least=1)
    n_layers: int = hparam(at_least=1)
    reg_weight: float = hparam(at_least=0)
    dropout: float = hparam(at_least=0, below=1)


@register("layergcn")
class LayerGCN(Recommender):
    config_class = LayerGCNConfig

    def __init__(self, data: TrainData, hparams: dict[str, Any]):
        super().__init__(data, hparams)
        size = self.config.embedding_size
        self.user_embeddings = nn.Parameter(
            nn.init.xavier_uniform_(torch.empty(self.n_users, size, device=data.device)))
        self.item_embeddings = nn.Parameter(
            nn.init.xavier_uniform_(torch.empty(self.n_items, size, device=data.device)))
        train = data.train_matrix()
        self.full_graph = BipartitePropagation(symmetric_bipartite_adjacency(train),
                                               self.n_users, data.device)
        # sampled on the engine's CPU generator: degree-sensitive weights, and uniform ones
        self.degree_edges = BipartiteEdges.from_matrix(train)
        self.uniform_edges = BipartiteEdges(
            self.degree_edges.user, self.degree_edges.item,
            torch.ones_like(self.degree_edges.weight), self.n_users, self.n_items)
        self.train_graph: BipartitePropagation | None = None

    def start_epoch(self, epoch: int, generator: torch.Generator) -> None:
        """This epoch's pruned graph: degree-sensitive on even epochs, uniform on odd ones."""
        if self.config.dropout <= 0.0:
            self.train_graph = self.full_graph
            return
        edges = self.degree_edges if epoch % 2 == 0 else self.uniform_edges
        pruned = degree_sensitive_edge_dropout(edges, self.config.dropout, generator)
        self.train_graph = BipartitePropagation(pruned, self.n_users, self.device)

    def ego_embeddings(self) -> Pair:
        return self.user_embeddings, self.item_embeddings

    @staticmethod
    def refined(layer: Pair, ego: Pair) -> Pair:
        """Each row scaled by its cosine similarity with the node's ego embedding."""
        return tuple(F.cosine_similarity(x, e, dim=-1)[:, None] * x for x, e in zip(layer, ego))

    def forward(self, graph: BipartitePropagation) -> Pair:
        """(users, items): the sum of the refined layers 1..L over `graph`."""
        ego = self.ego_embeddings()
        layer, layers = ego, []
        for _ in range(self.config.n_layers):
            layer = self.refined(graph(layer), ego)
            layers.append(layer)
        return tuple(torch.stack(side, dim=0).sum(dim=0) for side in zip(*layers))

    def forward_at(self, graph: BipartitePropagation, rows: Pair) -> Pair:
        """`forward(graph)` at distinct (user_rows, item_rows): the last hop at those rows only
        (each row the same product, the same sum)."""
        ego = self.ego_embeddings()
        layer, layers = ego, []
        for _ in range(self.config.n_layers - 1):
            layer = self.refined(graph(layer), ego)
            layers.append(tuple(x[r] for x, r in zip(layer, rows)))
        ego_at = tuple(e[r] for e, r in zip(ego, rows))
        layers.append(self.refined(graph.rows_step(layer, rows), ego_at))
        return tuple(torch.stack(side, dim=0).sum(dim=0) for side in zip(*layers))

    def loss(self, users: torch.Tensor, pos_items: torch.Tensor,
             neg_items: torch.Tensor | None) -> dict[str, torch.Tensor]:
        if self.train_graph is None:
            raise RuntimeError("layergcn: start_epoch() must run before loss() "
                               "(it samples the epoch's pruned user-item graph)")
        items = torch.cat([pos_items, neg_items])
        user_rows, user_at = torch.unique(users, return_inverse=True)
        item_rows, item_at = torch.unique(items, return_inverse=True)
        user_sum, item_sum = self.forward_at(self.train_graph, (user_rows, item_rows))
        user_e = user_sum[user_at]
        pos_e, neg_e = item_sum[item_at].split(len(users))
        pos_scores = (user_e * pos_e).sum(dim=1)
        neg_scores = (user_e * neg_e).sum(dim=1)
        bpr = torch.sum(-F.logsigmoid(pos_scores - neg_scores))
        reg = sum(torch.sum(e ** 2) * 0.5 for e in (self.user_embeddings[users],
                                                    self.item_embeddings[pos_items],
                                                    self.item_embeddings[neg_items]))
        return {"bpr": bpr, "reg": self.config.reg_weight * reg}

    def scoring_tables(self) -> Pair:
        return self.forward(self.full_graph)

    def score(self, users: torch.Tensor) -> torch.Tensor:
        user_all, item_all = self.scoring_state()
        return dot_scores(user_all[users], item_all)
