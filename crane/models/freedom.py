"""FREEDOM (Zhou & Shen, ACM MM'22): a frozen item-item graph and a denoised user-item graph.

As MMRec's `freedom.py`:

- item graph, frozen before training: per modality the binary top-`knn_k` cosine graph of
  the raw features, normalised to 1/k per entry; with both modalities
  `mm_image_weight * image + (1 - mm_image_weight) * text`. Item ID embeddings are propagated
  `n_mm_layers` times over it and added to the items' user-item output.
- user-item graph: LightGCN (`n_ui_layers`, mean over layers 0..L) on a graph resampled
  every epoch by degree-sensitive edge pruning: a share `dropout` of the training edges is
  dropped, kept edges drawn without replacement with probability proportional to
  1/sqrt(deg_u * deg_i), then re-normalised D^-1/2 A D^-1/2 on the kept edges. Evaluation
  uses the full graph.
- loss: BPR (MMRec's FREEDOM uses -mean logsigmoid, without the 1e-10 of its BPRLoss) on the
  propagated embeddings + reg_weight * (a BPR per modality between the propagated user and
  the projected raw features of the positive and negative items).

Changes that keep the numbers (up to float rounding; the tests compare with MMRec's
straightforward computation):

- MMRec projects the features of every item at every batch and indexes the batch's items;
  here only the batch's distinct positives and negatives are projected.
- with reg_weight == 0 MMRec still computes the feature terms (times 0) and keeps the
  projection layers and feature tables as parameters (whose gradient is then 0); here they
  are not created at all and no feature work is done.
- the graphs are constant within an epoch, so their products use `constant_sparse_mm`
  (torch's CSR backward re-sorts the indices at every call; on CPU the products go through
  scipy, several times faster than torch's CSR kernels here).

A named deviation: MMRec's raw feature tables are `nn.Embedding.from_pretrained(
freeze=False)`, i.e. trained. `train_features: true` keeps that; Adam then updates the whole
(n_items x D) tables at every step, which dominates the epoch time on CPU with 4096-d image
features. `train_features: false` freezes them. Measured at Baby size (19,445 users, 7,050
items, 118k training pairs, 4096-d image + 384-d text, batch 2048), CPU seconds per epoch
on one thread: train_features true 27 (MMRec's all-item formulation: 31), false 7.0,
reg_weight 0: 1.8.

Unused MMRec keys (lambda_coeff, weight_size, cf_model) are not accepted.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import nn

from crane.graphs.item_knn import cached_neighbours, knn_mean_graph
from crane.graphs.user_item import symmetric_bipartite_adjacency, to_torch_sparse
from crane.models import register
from crane.models.base import Recommender, TrainData, content_modalities
from crane.models.layers import constant_sparse_mm, constant_sparse_rows_mm, dot_scores
from crane.models.vbpr import ReusedRowGather

HPARAMS = ("embedding_size", "feat_embed_dim", "knn_k", "mm_image_weight", "n_mm_layers",
           "n_ui_layers", "dropout", "reg_weight", "train_features")
MODALITIES = ("image", "text")



def logsigmoid_bpr(user: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    """MMRec FREEDOM's BPR: -mean logsigmoid(<u, p> - <u, n>)."""
    return -F.logsigmoid((user * pos).sum(1) - (user * neg).sum(1)).mean()


def edge_keep_weights(edge_user: torch.Tensor, edge_item: torch.Tensor, n_users: int,
                      n_items: int) -> torch.Tensor:
    """1/sqrt(deg_u * deg_i) per edge (MMRec adds 1e-7 to every degree)."""
    user_degree = torch.bincount(edge_user, minlength=n_users).float() + 1e-7
    item_degree = torch.bincount(edge_item, minlength=n_items).float() + 1e-7
    return user_degree[edge_user].pow(-0.5) * item_degree[edge_item].pow(-0.5)


def pruned_adjacency(edge_user: torch.Tensor, edge_item: torch.Tensor, n_users: int,
                     n_items: int) -> torch.Tensor:
    """Symmetric (U+N) x (U+N) CSR of the kept edges, D^-1/2 A D^-1/2 over the kept edges."""
    values = edge_keep_weights(edge_user, edge_item, n_users, n_items)
    rows = torch.cat([edge_user, edge_item + n_users])
    cols = torch.cat([edge_item + n_users, edge_user])
    size = n_users + n_items
    return torch.sparse_coo_tensor(torch.stack([rows, cols]), torch.cat([values, values]),
                                   (size, size), check_invariants=False  # indices from edges
                                   ).coalesce().to_sparse_csr()


def item_item_graph(data: TrainData, modalities: tuple[str, ...], knn_k: int,
                    image_weight: float) -> sp.csr_matrix:
    """The frozen multimodal kNN graph (computed from the raw features, cached by hash)."""
    graphs = {}
    for modality in modalities:
        neighbours = cached_neighbours(data.features[modality], knn_k, data.cache_dir,
                                       data.feature_hashes.get(modality), device=data.device)
        graphs[modality] = knn_mean_graph(neighbours, data.n_items)
    if len(graphs) == 2:
        return (image_weight * graphs["image"] + (1.0 - image_weight) * graphs["text"]).tocsr()
    return next(iter(graphs.values()))


@register("freedom")
class FREEDOM(Recommender):
    hparam_names = HPARAMS
    uses_content = True

    def __init__(self, data: TrainData, hparams: dict[str, Any]):
        super().__init__(data, hparams)
        hp = hparams  # checked against hparam_names by Recommender.__init__
        size = int(hp["embedding_size"])
        if int(hp["feat_embed_dim"]) != size:
            raise ValueError(f"freedom: feat_embed_dim ({hp['feat_embed_dim']}) must equal "
                             f"embedding_size ({size}): projected features meet user vectors")
        self.n_mm_layers = int(hp["n_mm_layers"])
        self.n_ui_layers = int(hp["n_ui_layers"])
        self.dropout = float(hp["dropout"])
        self.reg_weight = float(hp["reg_weight"])
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"freedom: dropout must be in [0, 1), got {self.dropout}")
        image_weight = float(hp["mm_image_weight"])
        if not 0.0 <= image_weight <= 1.0:
            raise ValueError(f"freedom: mm_image_weight must be in [0, 1], got {image_weight}")
        self.modalities = content_modalities("freedom", data, MODALITIES)

        self.user_embedding = nn.Embedding(self.n_users, size, device=self.device)
        self.item_id_embedding = nn.Embedding(self.n_items, size, device=self.device)
        nn.init.xavier_uniform_(self.user_embedding.weight)
        nn.init.xavier_uniform_(self.item_id_embedding.weight)

        # The feature terms exist only when they are weighted (see the module docstring).
        # Trainable tables are model state (checkpointed); frozen ones come from the dataset.
        self.trainable_features = nn.ParameterDict()
        self.projections = nn.ModuleDict()
        if self.reg_weight != 0:
            for modality in self.modalities:
                table = data.feature_tensor(modality)
                if bool(hp["train_features"]):
                    self.trainable_features[modality] = nn.Parameter(table.clone())
                else:
                    self.register_buffer(f"frozen_{modality}", table, persistent=False)
                self.projections[modality] = nn.Linear(table.shape[1], size, device=self.device)

        item_graph = item_item_graph(data, self.modalities, int(hp["knn_k"]), image_weight)
        self.item_graph = to_torch_sparse(item_graph, self.device)
        self.item_graph_t = to_torch_sparse(item_graph.T, self.device)
        train = data.train_matrix()
        self.full_adjacency = to_torch_sparse(symmetric_bipartite_adjacency(train), self.device)
        coo = train.tocoo()
        # Sampling runs on the CPU with the trainer's CPU generator.
        self.edge_user = torch.from_numpy(coo.row.astype(np.int64))
        self.edge_item = torch.from_numpy(coo.col.astype(np.int64))
        self.edge_weight = edge_keep_weights(self.edge_user, self.edge_item,
                                              self.n_users, self.n_items)
        self.train_adjacency: torch.Tensor | None = None
        self._gathers = {modality: ReusedRowGather() for modality in self.modalities}
        self._scoring: tuple[torch.Tensor, torch.Tensor] | None = None

    def start_epoch(self, epoch: int, generator: torch.Generator) -> None:
        """Degree-sensitive edge pruning: a fresh user-item subgraph for this epoch."""
        if self.dropout <= 0.0:
            self.train_adjacency = self.full_adjacency
            return
        n_keep = int(len(self.edge_weight) * (1.0 - self.dropout))
        kept = torch.multinomial(self.edge_weight, n_keep, replacement=False,
                                 generator=generator)
        self.train_adjacency = pruned_adjacency(
            self.edge_user[kept], self.edge_item[kept], self.n_users, self.n_items
        ).to(self.device)

    def propagate(self, adjacency: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(user, item) embeddings after both graphs."""
        h = self.item_id_embedding.weight
        for _ in range(self.n_mm_layers):
            h = constant_sparse_mm(self.item_graph, self.item_graph_t, h)
        layer = torch.cat([self.user_embedding.weight, self.item_id_embedding.weight])
        total = layer
        for _ in range(self.n_ui_layers):
            # Both user-item graphs are symmetric: each is its own transpose.
            layer = constant_sparse_mm(adjacency, adjacency, layer)
            total = total + layer
        mean = total / (self.n_ui_layers + 1)
        users, items = torch.split(mean, [self.n_users, self.n_items])
        return users, items + h

    def batch_embeddings(self, adjacency: torch.Tensor, users: torch.Tensor,
                         items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`propagate(adjacency)` read at `users` and `items`, the last user-item layer
        computed at those rows only (the loss reads nothing else): the same values, the
        additions in the same order."""
        h = self.item_id_embedding.weight
        for _ in range(self.n_mm_layers):
            h = constant_sparse_mm(self.item_graph, self.item_graph_t, h)
        nodes = torch.cat([users, items + self.n_users])
        rows, at = torch.unique(nodes, return_inverse=True)
        layer = torch.cat([self.user_embedding.weight, self.item_id_embedding.weight])
        total = layer
        for _ in range(self.n_ui_layers - 1):
            layer = constant_sparse_mm(adjacency, adjacency, layer)
            total = total + layer
        total = total[rows]
        if self.n_ui_layers > 0:
            total = total + constant_sparse_rows_mm(adjacency, adjacency, rows, layer)
        mean = (total / (self.n_ui_layers + 1))[at]
        return mean[:len(users)], mean[len(users):] + h[items]

    def loss(self, users: torch.Tensor, pos_items: torch.Tensor,
             neg_items: torch.Tensor | None) -> dict[str, torch.Tensor]:
        if self.train_adjacency is None:
            raise RuntimeError("freedom: start_epoch() must run before loss() "
                               "(it samples the epoch's user-item graph)")
        self._scoring = None
        user_e, item_e = self.batch_embeddings(self.train_adjacency, users,
                                               torch.cat([pos_items, neg_items]))
        pos_e, neg_e = item_e.split(len(pos_items))
        terms = {"bpr": logsigmoid_bpr(user_e, pos_e, neg_e)}
        if self.reg_weight != 0:
            # Only the batch's distinct items are projected (MMRec projects all of them).
            distinct, inverse = torch.unique(torch.cat([pos_items, neg_items]),
                                             return_inverse=True)
            pos_at, neg_at = inverse[:len(pos_items)], inverse[len(pos_items):]
            feature_bpr = 0.0
            for modality in self.modalities:
                rows = self._gathers[modality](self._features(modality), distinct)
                projected = self.projections[modality](rows)
                feature_bpr = feature_bpr + logsigmoid_bpr(user_e, projected[pos_at],
                                                           projected[neg_at])
            terms["feature_bpr"] = self.reg_weight * feature_bpr
        return terms

    def _features(self, modality: str) -> torch.Tensor:
        if modality in self.trainable_features:
            return self.trainable_features[modality]
        return getattr(self, f"frozen_{modality}")

    def prepare_scoring(self) -> None:
        self._scoring = self.propagate(self.full_adjacency)

    def score(self, users: torch.Tensor) -> torch.Tensor:
        if self._scoring is None:
            self.prepare_scoring()
        all_users, all_items = self._scoring
        return dot_scores(all_users[users], all_items)
