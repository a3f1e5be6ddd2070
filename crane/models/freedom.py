"""FREEDOM (Zhou & Shen, ACM MM 2023; arXiv 2022): a frozen item-item graph and a denoised user-item graph.

As MMRec's `freedom.py`:

- item graph, frozen before training: per modality the binary top-`knn_k` cosine graph of
  the raw features, normalised to 1/k per entry; with both modalities
  `mm_image_weight * image + (1 - mm_image_weight) * text`. Item ID embeddings are propagated
  `n_mm_layers` times over it and added to the items' user-item output.
- user-item graph: LightGCN (`n_ui_layers`, mean over layers 0..L) on a graph resampled
  every epoch by degree-sensitive edge dropout (`crane.ops.dropout`); evaluation uses the
  full graph.
- loss: BPR (MMRec's FREEDOM uses -mean logsigmoid, without the 1e-10 of its BPRLoss) on the
  propagated embeddings + reg_weight * (a BPR per modality between the propagated user and
  the projected raw features of the positive and negative items).

Changes that keep the numbers (tests/models/test_freedom.py compares with MMRec's
straightforward computation): only the batch's distinct positives and negatives are
projected (MMRec projects every item at every batch); the last user-item layer is computed
at the batch's rows only; with reg_weight == 0 the projections and feature tables are not
created (MMRec keeps them, with zero gradient).

`train_features: true` keeps MMRec's trainable raw feature tables (`from_pretrained(
freeze=False)`): Adam then updates the whole (n_items x D) tables at every step, which
dominates a CPU epoch with 4096-d image features; `false` freezes them (a named deviation).
Unused MMRec keys (lambda_coeff, weight_size, cf_model) are not accepted.
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
from crane.models.layers import multimodal_knn_graph
from crane.ops.dropout import BipartiteEdges, degree_sensitive_edge_dropout
from crane.ops.gather import ReusedRowGather
from crane.ops.losses import logsigmoid_bpr_loss
from crane.ops.propagation import SquareGraph, lightgcn_layer_mean, lightgcn_layer_sum_at
from crane.ops.scores import dot_scores
from crane.ops.sparse import to_torch_sparse


@dataclass(frozen=True)
class FREEDOMConfig(HyperParameters):
    embedding_size: int = hparam(at_least=1)
    feat_embed_dim: int = hparam(at_least=1)
    knn_k: int = hparam(at_least=1)
    mm_image_weight: float = hparam(at_least=0, at_most=1)
    n_mm_layers: int = hparam(at_least=0)
    n_ui_layers: int = hparam(at_least=0)
    dropout: float = hparam(at_least=0, below=1)
    reg_weight: float = hparam(at_least=0)
    train_features: bool = hparam()

    def check(self, model: str) -> None:
        if self.feat_embed_dim != self.embedding_size:
            raise ValueError(f"{model}: feat_embed_dim ({self.feat_embed_dim}) must equal "
                             f"embedding_size ({self.embedding_size}): projected features "
                             "meet user vectors")


@register("freedom")
class FREEDOM(Recommender):
    config_class = FREEDOMConfig
    uses_content = True

    def __init__(self, data: TrainData, hparams: dict[str, Any]):
        super().__init__(data, hparams)
        cfg = self.config
        self.modalities = self.feature_modalities(data)
        self.user_embedding = nn.Embedding(self.n_users, cfg.embedding_size, device=self.device)
        self.item_id_embedding = nn.Embedding(self.n_items, cfg.embedding_size,
                                              device=self.device)
        nn.init.xavier_uniform_(self.user_embedding.weight)
        nn.init.xavier_uniform_(self.item_id_embedding.weight)

        # Trainable feature tables are model state (checkpointed); frozen ones are inputs.
        self.trainable_features = nn.ParameterDict()
        self.projections = nn.ModuleDict()
        if cfg.reg_weight != 0:
            for modality in self.modalities:
                table = data.feature_tensor(modality)
                if cfg.train_features:
                    self.trainable_features[modality] = nn.Parameter(table.clone())
                else:
                    self.register_buffer(f"frozen_{modality}", table, persistent=False)
                self.projections[modality] = nn.Linear(table.shape[1], cfg.embedding_size,
                                                       device=self.device)

        item_graph = multimodal_knn_graph(data, self.modalities, cfg.knn_k, cfg.mm_image_weight)
        self.item_graph = SquareGraph(to_torch_sparse(item_graph, self.device),
                                      to_torch_sparse(item_graph.T, self.device))
        train = data.train_matrix()
        self.full_graph = SquareGraph(
            to_torch_sparse(symmetric_bipartite_adjacency(train), self.device))
        self.edges = BipartiteEdges.from_matrix(train)  # sampled on the CPU generator
        self.train_graph: SquareGraph | None = None
        self._gathers = {modality: ReusedRowGather() for modality in self.modalities}

    def start_epoch(self, epoch: int, generator: torch.Generator) -> None:
        """Degree-sensitive edge dropout: a fresh user-item subgraph for this epoch."""
        if self.config.dropout <= 0.0:
            self.train_graph = self.full_graph
            return
        self.train_graph = SquareGraph(to_torch_sparse(
            degree_sensitive_edge_dropout(self.edges, self.config.dropout, generator),
            self.device))

    def item_graph_embeddings(self) -> torch.Tensor:
        h = self.item_id_embedding.weight
        for _ in range(self.config.n_mm_layers):
            h = self.item_graph(h)
        return h

    def ego_embeddings(self) -> torch.Tensor:
        return torch.cat([self.user_embedding.weight, self.item_id_embedding.weight])

    def propagate(self, graph: SquareGraph) -> tuple[torch.Tensor, torch.Tensor]:
        """(user, item) embeddings after both graphs."""
        h = self.item_graph_embeddings()
        mean = lightgcn_layer_mean(graph, self.ego_embeddings(), self.config.n_ui_layers)
        users, items = torch.split(mean, [self.n_users, self.n_items])
        return users, items + h

    def batch_embeddings(self, graph: SquareGraph, users: torch.Tensor,
                         items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`propagate(graph)` read at `users` and `items`, the last user-item layer computed
        at those rows only: the same values, the additions in the same order."""
        h = self.item_graph_embeddings()
        rows, at = torch.unique(torch.cat([users, items + self.n_users]), return_inverse=True)
        n_layers = self.config.n_ui_layers
        total = lightgcn_layer_sum_at(graph, self.ego_embeddings(), n_layers, rows)
        mean = (total / (n_layers + 1))[at]
        return mean[:len(users)], mean[len(users):] + h[items]

    def loss(self, users: torch.Tensor, pos_items: torch.Tensor,
             neg_items: torch.Tensor | None) -> dict[str, torch.Tensor]:
        if self.train_graph is None:
            raise RuntimeError("freedom: start_epoch() must run before loss() "
                               "(it samples the epoch's user-item graph)")
        items = torch.cat([pos_items, neg_items])
        user_e, item_e = self.batch_embeddings(self.train_graph, users, items)
        pos_e, neg_e = item_e.split(len(pos_items))
        terms = {"bpr": logsigmoid_bpr_loss(user_e, pos_e, neg_e)}
        if self.config.reg_weight != 0:
            distinct, inverse = torch.unique(items, return_inverse=True)
            pos_at, neg_at = inverse[:len(pos_items)], inverse[len(pos_items):]
            feature_bpr = 0.0
            for modality in self.modalities:
                rows = self._gathers[modality](self.features(modality), distinct)
                projected = self.projections[modality](rows)
                feature_bpr = feature_bpr + logsigmoid_bpr_loss(user_e, projected[pos_at],
                                                                projected[neg_at])
            terms["feature_bpr"] = self.config.reg_weight * feature_bpr
        return terms

    def features(self, modality: str) -> torch.Tensor:
        if modality in self.trainable_features:
            return self.trainable_features[modality]
        return getattr(self, f"frozen_{modality}")

    def scoring_tables(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.propagate(self.full_graph)

    def score(self, users: torch.Tensor) -> torch.Tensor:
        all_users, all_items = self.scoring_state()
        return dot_scores(all_users[users], all_items)
