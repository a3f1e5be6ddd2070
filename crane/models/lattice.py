"""LATTICE (Zhang et al., ACM MM'21): a learned item-item graph on top of LightGCN.

As MMRec's `lattice.py` (cf_model lightgcn, its default):

- per modality m: trainable raw feature table F_m (MMRec: `from_pretrained(freeze=False)`)
  and a projection P_m = Linear(D_m, feat_embed_dim);
- learned graph: per modality the top-`knn_k` cosine graph of P_m(F_m) (the kept entries
  are the cosine values, differentiable), combined with softmax modal weights w
  (`modal_weight`, a parameter, both modalities only) as sum_m w_m S_m, then normalised
  D^-1/2 S D^-1/2 by row sums;
- original graph: the same top-k cosine graph of the raw features, frozen, normalised per
  modality, combined as sum_m w_m O_m (the same weights, so they also learn from it);
- item graph A = (1 - lambda_coeff) * learned + lambda_coeff * original; item ID embeddings
  are propagated `n_layers` times over it (h = A^n E_item);
- user-item part: LightGCN over MMRec LATTICE's own user-item matrix D^-1 (A + I) (row-
  normalised, with self loops), `n_ui_layers` layers (MMRec: len(weight_size) = 2), mean over
  layers 0..L; item output = LightGCN item + h / ||h||;
- loss: -mean logsigmoid(s_pos - s_neg) + reg_weight * (||u||^2 + ||p||^2 + ||n||^2) /
  (2 * batch) on the propagated embeddings (MMRec LATTICE's own regulariser, squared norms).
  MMRec divides by the configured batch size; here by the actual one (differs on the last,
  shorter batch of an epoch only).

When the learned graph is rebuilt (MMRec's `build_item_graph` flag): at the first batch of
every epoch, with gradients (pre_epoch_processing sets the flag, calculate_loss clears it);
the remaining batches of the epoch reuse that graph detached, so the projections, the
feature tables and the modal weights receive gradient at the first batch of each epoch only.
Evaluation (`full_sort_predict`) rebuilds it from the current parameters. The same here:
`start_epoch` marks the graph stale, the first `loss` of the epoch rebuilds it with
gradients and keeps a detached copy, `prepare_scoring` rebuilds it once per evaluation
pass (MMRec rebuilds it for every evaluated user batch, with the same result).

What is changed, and why: MMRec builds the learned graph as a dense N x N similarity
matrix, which cannot run at Electronics scale (63k items: 16 GB per matrix, several alive
at once). Here the top-k neighbours of the projected features are found `chunk` rows at a
time (crane.graphs.item_knn.top_k_cosine_neighbours, no gradient), then the cosine values
of the N * k kept pairs are recomputed with gradient, and every graph is a sparse matrix.
Top-k of a row does not depend on other rows, and normalisation and propagation only
involve the kept entries, so the numbers equal the dense formulation's (up to float
rounding and exact ties in top-k); the tests compare both on small data. MMRec also
projects all features at every batch although it only needs them when the graph is
rebuilt: here they are projected at rebuilds only (same numbers). The product with the
differentiable graph uses `crane.ops.sparse.csr_mm_with_value_grad`, whose backward is
O(nnz x d) (torch's own backward of a CSR product with gradient-carrying values does dense
N x N work); the constant products go through scipy on CPU.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import nn

from crane.graphs.item_knn import cached_neighbours, knn_weighted_graph, top_k_cosine_neighbours
from crane.models import register
from crane.models.base import Recommender, TrainData
from crane.models.hyperparameters import HyperParameters, hparam, reject
from crane.ops.losses import logsigmoid_bpr_loss
from crane.ops.propagation import SquareGraph, lightgcn_layer_mean
from crane.ops.scores import dot_scores
from crane.ops.sparse import csr_mm_with_value_grad, sparse_transpose, to_torch_sparse


@dataclass(frozen=True)
class LATTICEConfig(HyperParameters):
    embedding_size: int = hparam(at_least=1)
    feat_embed_dim: int = hparam(at_least=1)
    knn_k: int = hparam(at_least=1)
    lambda_coeff: float = hparam(at_least=0, at_most=1)
    n_layers: int = hparam(at_least=0)
    n_ui_layers: int = hparam(at_least=0)
    reg_weight: float = hparam(at_least=0)
    train_features: bool = hparam()


def row_normalised_adjacency_with_self_loops(train: sp.csr_matrix) -> sp.csr_matrix:
    """MMRec LATTICE's user-item matrix: D^-1 (A + I), A = [[0, R], [R^T, 0]]."""
    adjacency = sp.bmat([[None, train], [train.T, None]], format="csr", dtype=np.float32)
    adjacency = (adjacency + sp.eye(adjacency.shape[0], dtype=np.float32)).tocsr()
    inverse_degree = 1.0 / np.asarray(adjacency.sum(axis=1)).ravel()  # >= 1: self loops
    return (sp.diags(inverse_degree.astype(np.float32)) @ adjacency).tocsr()


def learned_knn_entries(projected: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor,
                                                                   torch.Tensor]:
    """(rows, cols, cosine values) of each row's top-k cosine neighbours, values with grad.

    The neighbour search is chunked and gradient-free; only the N * k kept values are
    recomputed with autograd, which is what the dense top-k + scatter differentiates too.
    """
    n = projected.shape[0]
    neighbours = top_k_cosine_neighbours(projected.detach(), k, device=projected.device)
    cols = torch.from_numpy(neighbours.indices).to(projected.device)
    # MMRec's build_sim divides by the norm without an epsilon.
    unit = projected / projected.norm(p=2, dim=-1, keepdim=True)
    values = (unit.unsqueeze(1) * unit[cols]).sum(-1)
    rows = torch.arange(n, device=projected.device).repeat_interleave(k)
    return rows, cols.reshape(-1), values.reshape(-1)


def symmetric_normalise(rows: torch.Tensor, cols: torch.Tensor, values: torch.Tensor,
                        n: int) -> torch.Tensor:
    """Values of D^-1/2 S D^-1/2, D the row sums (rows of zero sum give 0, as MMRec)."""
    row_sum = torch.zeros(n, dtype=values.dtype, device=values.device).index_add(0, rows, values)
    inv_sqrt = row_sum.pow(-0.5)
    inv_sqrt = inv_sqrt.masked_fill(torch.isinf(inv_sqrt), 0.0)
    return inv_sqrt[rows] * values * inv_sqrt[cols]


@dataclass
class _OriginalGraph:
    rows: torch.Tensor
    cols: torch.Tensor
    values: torch.Tensor  # normalised, constant


@register("lattice")
class LATTICE(Recommender):
    config_class = LATTICEConfig
    uses_content = True

    def __init__(self, data: TrainData, hparams: dict[str, Any]):
        super().__init__(data, hparams)
        cfg = self.config
        size = cfg.embedding_size
        if cfg.knn_k > self.n_items:
            reject(self.name, "knn_k", cfg.knn_k, f"at most n_items ({self.n_items})")
        self.modalities = self.feature_modalities(data)  # MMRec's modal_weight order

        self.user_embedding = nn.Embedding(self.n_users, size, device=self.device)
        self.item_id_embedding = nn.Embedding(self.n_items, size, device=self.device)
        nn.init.xavier_uniform_(self.user_embedding.weight)
        nn.init.xavier_uniform_(self.item_id_embedding.weight)
        self.trainable_features = nn.ParameterDict()
        self.projections = nn.ModuleDict()
        self._originals: dict[str, _OriginalGraph] = {}
        for modality in self.modalities:
            table = data.feature_tensor(modality)
            if cfg.train_features:
                self.trainable_features[modality] = nn.Parameter(table.clone())
            else:
                self.register_buffer(f"frozen_{modality}", table, persistent=False)
            self.projections[modality] = nn.Linear(table.shape[1], cfg.feat_embed_dim,
                                                   device=self.device)
            neighbours = cached_neighbours(data.features[modality], cfg.knn_k, data.cache_dir,
                                           data.feature_hashes.get(modality), device=self.device)
            coo = knn_weighted_graph(neighbours, self.n_items).tocoo()
            self._originals[modality] = _OriginalGraph(
                torch.from_numpy(coo.row.astype(np.int64)).to(self.device),
                torch.from_numpy(coo.col.astype(np.int64)).to(self.device),
                torch.from_numpy(coo.data.astype(np.float32)).to(self.device))
        # MMRec always has the two weights; with one modality they are unused, so not made.
        self.modal_weight = (nn.Parameter(torch.tensor([0.5, 0.5], device=self.device))
                             if len(self.modalities) == 2 else None)

        ui_adjacency = row_normalised_adjacency_with_self_loops(data.train_matrix())
        self.ui_graph = SquareGraph(to_torch_sparse(ui_adjacency, self.device),
                                    to_torch_sparse(ui_adjacency.T, self.device))
        # The graph built at the epoch's first batch, detached (and its transpose), reused
        # by the epoch's other batches.
        self._epoch_item_graph: tuple[torch.Tensor, torch.Tensor] | None = None

    def features(self, modality: str) -> torch.Tensor:
        if modality in self.trainable_features:
            return self.trainable_features[modality]
        return getattr(self, f"frozen_{modality}")

    def modal_weights(self) -> list[torch.Tensor | float]:
        if self.modal_weight is None:
            return [1.0]
        weights = torch.softmax(self.modal_weight, dim=0)
        return [weights[0], weights[1]]

    def build_item_graph(self) -> torch.Tensor:
        """A = (1 - lambda) * learned + lambda * original, sparse (N x N), differentiable."""
        weights = self.modal_weights()
        learned, original = [], []
        for weight, modality in zip(weights, self.modalities):
            projected = self.projections[modality](self.features(modality))
            rows, cols, values = learned_knn_entries(projected, self.config.knn_k)
            learned.append((rows, cols, weight * values))
            graph = self._originals[modality]
            original.append((graph.rows, graph.cols, weight * graph.values))
        rows = torch.cat([r for r, _, _ in learned])
        cols = torch.cat([c for _, c, _ in learned])
        values = symmetric_normalise(rows, cols, torch.cat([v for _, _, v in learned]),
                                     self.n_items)
        all_rows = torch.cat([rows] + [r for r, _, _ in original])
        all_cols = torch.cat([cols] + [c for _, c, _ in original])
        lambda_coeff = self.config.lambda_coeff
        all_values = torch.cat([(1.0 - lambda_coeff) * values]
                               + [lambda_coeff * v for _, _, v in original])
        # Duplicate (row, col) pairs are summed by coalesce, as the dense sums do.
        # indices come from valid kNN rows and columns: torch's checks would only cost time
        return torch.sparse_coo_tensor(torch.stack([all_rows, all_cols]), all_values,
                                       (self.n_items, self.n_items),
                                       check_invariants=False).coalesce().to_sparse_csr()

    def propagate(self, item_graph: torch.Tensor, item_graph_t: torch.Tensor | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor]:
        """(user, item) embeddings for an item graph: differentiable, or constant when its
        transpose is given."""
        h = self.item_id_embedding.weight
        step = (SquareGraph(item_graph, item_graph_t) if item_graph_t is not None
                else lambda layer: csr_mm_with_value_grad(item_graph, layer))
        for _ in range(self.config.n_layers):
            h = step(h)
        ego = torch.cat([self.user_embedding.weight, self.item_id_embedding.weight])
        mean = lightgcn_layer_mean(self.ui_graph, ego, self.config.n_ui_layers)
        users, items = torch.split(mean, [self.n_users, self.n_items])
        return users, items + F.normalize(h, p=2, dim=1)

    def start_epoch(self, epoch: int, generator: torch.Generator) -> None:
        self._epoch_item_graph = None  # MMRec: pre_epoch_processing -> build_item_graph = True

    def loss(self, users: torch.Tensor, pos_items: torch.Tensor,
             neg_items: torch.Tensor | None) -> dict[str, torch.Tensor]:
        if self._epoch_item_graph is None:
            item_graph = self.build_item_graph()
            constant = item_graph.detach()
            self._epoch_item_graph = (constant, sparse_transpose(constant))
            all_users, all_items = self.propagate(item_graph)
        else:
            all_users, all_items = self.propagate(*self._epoch_item_graph)
        user_e, pos_e, neg_e = all_users[users], all_items[pos_items], all_items[neg_items]
        terms = {"bpr": logsigmoid_bpr_loss(user_e, pos_e, neg_e)}
        if self.config.reg_weight != 0:
            squares = user_e.pow(2).sum() + pos_e.pow(2).sum() + neg_e.pow(2).sum()
            terms["reg"] = self.config.reg_weight * squares / (2 * len(users))
        return terms

    def scoring_tables(self) -> tuple[torch.Tensor, torch.Tensor]:
        graph = self.build_item_graph().detach()
        return self.propagate(graph, graph)  # no gradient: the transpose is unused

    def score(self, users: torch.Tensor) -> torch.Tensor:
        all_users, all_items = self.scoring_state()
        return dot_scores(all_users[users], all_items)
