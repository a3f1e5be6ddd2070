"""MGCN (Yu et al., ACM MM 2023, "Multi-View Graph Convolutional Network for Multimedia
Recommendation"), as implemented in MMRec (src/models/mgcn.py).

Three views of each node, from the training graph and the item features:
- user-item view: LightGCN over the normalised bipartite graph (`content` embeddings);
- item-item view per modality m: the item ID embedding purified by a feature gate,
  e_m = id * sigmoid(W proj_m(x)), propagated over m's kNN graph (built once from the raw
  features, top-k cosine, D^-1/2 S D^-1/2); users take the normalised sum of their items;
- behaviour-aware fuser: a softmax attention gives the common part of the modality views,
  user/item-preference gates of the `content` embedding weigh each modality's specific part;
  side = (sum_m specific_m + common) / (n_modalities + 1). Final = content + side.
Loss: BPR (MMRec's log-sigmoid form) + reg_weight * 0.5 * squared L2 of the batch's final
embeddings / batch size + cl_loss * one-way InfoNCE (side -> content, tau 0.2) over the
batch's users and positive items. Scores: final user . final item.

Fidelity notes:
- Item feature tables are trainable, as in MMRec (`from_pretrained(..., freeze=False)`); the
  kNN graphs are built once from the raw features and do not follow them.
- MMRec fuses the views of every node, then keeps the batch rows; the fuser and the gates are
  row-wise, so here they run on the batch's distinct users and items only. Same numbers.
- One modality: MGCN is written for image + text. With one, the attention over modalities is
  the identity (its weight is exactly 1), the specific part is exactly zero, and the formula
  above reduces to side = e_m / 2; the attention and preference gates, which would receive no
  gradient, are not built.
- MMRec divides the squared-L2 term by the configured batch size, which under-regularises the
  last, shorter batch of an epoch; here it is divided by the actual batch size.
- MMRec's kNN normalisation has no degree epsilon; the shared `knn_weighted_graph` adds 1e-7
  to row sums of at least 1 (the item itself is among its neighbours): below float32 resolution.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from crane.graphs.item_knn import cached_neighbours, knn_weighted_graph
from crane.graphs.user_item import symmetric_bipartite_adjacency
from crane.models import register
from crane.models.base import Recommender, TrainData
from crane.models.hyperparameters import HyperParameters, hparam
from crane.models.layers import fused_views_loss
from crane.ops.propagation import SquareGraph, lightgcn_layer_mean
from crane.ops.sparse import graph_mm, to_torch_sparse

INFONCE_TEMPERATURE = 0.2  # fixed in MMRec


@dataclass(frozen=True)
class MGCNConfig(HyperParameters):
    embedding_size: int = hparam(at_least=1)
    n_ui_layers: int = hparam(at_least=0)
    n_layers: int = hparam(at_least=0)
    knn_k: int = hparam(at_least=1)
    reg_weight: float = hparam(at_least=0)
    cl_loss: float = hparam(at_least=0)


def gate(size: int, device: torch.device) -> nn.Sequential:
    return nn.Sequential(nn.Linear(size, size, device=device), nn.Sigmoid())


@register("mgcn")
class MGCN(Recommender):
    config_class = MGCNConfig
    uses_content = True

    def __init__(self, data: TrainData, hparams: dict[str, Any]):
        super().__init__(data, hparams)
        size = self.config.embedding_size
        self.modalities = self.feature_modalities(data)
        device = data.device

        adjacency = symmetric_bipartite_adjacency(data.train_matrix())
        self.register_buffer("adjacency", to_torch_sparse(adjacency, device), persistent=False)
        # Users aggregate items with the bipartite graph's own normalisation (MMRec's R).
        self.register_buffer("user_item", to_torch_sparse(
            adjacency[:self.n_users, self.n_users:], device), persistent=False)
        for modality in self.modalities:
            neighbours = cached_neighbours(data.features[modality], self.config.knn_k,
                                           data.cache_dir, data.feature_hashes.get(modality),
                                           device=device)
            self.register_buffer(f"item_graph_{modality}", to_torch_sparse(
                knn_weighted_graph(neighbours, self.n_items), device), persistent=False)

        self.user_embedding = nn.Embedding(self.n_users, size, device=device)
        self.item_embedding = nn.Embedding(self.n_items, size, device=device)
        nn.init.xavier_uniform_(self.user_embedding.weight)
        nn.init.xavier_uniform_(self.item_embedding.weight)
        self.features = nn.ParameterDict({
            m: nn.Parameter(data.feature_tensor(m).clone()) for m in self.modalities})
        self.projections = nn.ModuleDict({
            m: nn.Linear(self.features[m].shape[1], size, device=device) for m in self.modalities})
        self.feature_gates = nn.ModuleDict({m: gate(size, device) for m in self.modalities})
        if len(self.modalities) > 1:
            self.query_common = nn.Sequential(
                nn.Linear(size, size, device=device), nn.Tanh(),
                nn.Linear(size, 1, bias=False, device=device))
            self.preference_gates = nn.ModuleDict({m: gate(size, device) for m in self.modalities})

    def views(self) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """User-item view (U+N, d) and each modality's item-item view (U+N, d), all nodes."""
        ego = torch.cat([self.user_embedding.weight, self.item_embedding.weight])
        content = lightgcn_layer_mean(SquareGraph(self.adjacency), ego, self.config.n_ui_layers,
                                      stacked_mean=True)
        modal = {}
        for modality in self.modalities:
            projected = self.projections[modality](self.features[modality])
            items = self.item_embedding.weight * self.feature_gates[modality](projected)
            graph = getattr(self, f"item_graph_{modality}")
            for _ in range(self.config.n_layers):
                items = graph_mm(graph, items)
            modal[modality] = torch.cat([graph_mm(self.user_item, items), items])
        return content, modal

    def fuse(self, content: torch.Tensor, modal: dict[str, torch.Tensor]) -> torch.Tensor:
        """Behaviour-aware fuser, row-wise: the side embedding of each given node."""
        if len(self.modalities) == 1:
            return modal[self.modalities[0]] / 2
        views = [modal[m] for m in self.modalities]
        attention = torch.softmax(torch.cat([self.query_common(v) for v in views], dim=-1), dim=-1)
        common = sum(attention[:, j:j + 1] * v for j, v in enumerate(views))
        specific = sum(self.preference_gates[m](content) * (modal[m] - common)
                       for m in self.modalities)
        return (specific + common) / (len(self.modalities) + 1)

    def loss(self, users: torch.Tensor, pos_items: torch.Tensor,
             neg_items: torch.Tensor | None) -> dict[str, torch.Tensor]:
        if neg_items is None:
            raise ValueError("mgcn trains on (user, positive, negative) triples; got no negatives")
        content, modal = self.views()
        return fused_views_loss(content, modal, self.fuse, users, pos_items, neg_items,
                                self.n_users, self.config.reg_weight, self.config.cl_loss,
                                INFONCE_TEMPERATURE)

    def scoring_tables(self) -> tuple[torch.Tensor, torch.Tensor]:
        content, modal = self.views()
        final = content + self.fuse(content, modal)
        return tuple(final.split([self.n_users, self.n_items]))

    def score(self, users: torch.Tensor) -> torch.Tensor:
        user_table, item_table = self.scoring_state()
        return user_table[users] @ item_table.T
