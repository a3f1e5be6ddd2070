"""COHESION (Xu et al., SIGIR 2025): composite graph convolution with dual-stage fusion.

Paper: *COHESION: Composite Graph Convolutional Network with Dual-Stage Fusion for Multimodal
Recommendation*. Reference: the authors' Jinfeng-Xu/COHESION `src/models/cohesion.py` with its
`src/configs/model/COHESION.yaml` and `src/configs/overall.yaml` (built on MMRec; its user
graph from `preprocessing/dualgnn-gen-u-u-matrix.py`, DualGNN's and DRAGON's).

As the reference:

- three branches, each a composite GCN over the normalised user-item graph: ID (input: a
  trained item table id_feat), image and text (input: the raw features); each has its own
  trained user table `preference` and MLP_1(leaky_relu(MLP(input))) for the items;
- early fusion: the item rows become sqrt(|(id_feat^2 + items^2) / 2 + 1e-8|) (element-wise:
  every branch's items are fused with the ID table), the rows [preference; items]
  L2-normalised; then `num_layer` layers x_l = c_l * (A x_{l-1}), c_l the per-row cosine of
  A x_{l-1} and x_0 (layer refinement), summed over 0..num_layer;
- the ID branch's output is detached (the reference's `id_rep.data`): no gradient reaches its
  GCN, whose weights therefore stay at their initial values (here: requires_grad False);
  id_feat learns through the image and text branches' fusion;
- users and items: the concatenation [id, image, text] of the branches, plus for users the
  user graph sum_v W[u, v] user[v] (W: softmax over the counts of u's `user_knn_k` users
  with most shared training items, resampled before every epoch, a user with fewer padded by
  random repeats; crane/graphs/user_user.py) and for items `n_mm_layers` products with
  FREEDOM's frozen item graph mm_image_weight * A_image + (1 - mm_image_weight) * A_text
  (binary top-`knn_k` cosine graphs of the raw features, entries 1/k);
- late fusion in the loss: per triple, the score of each branch's slice, w_b = 1 -
  softmax_b(s_pos,b - s_neg,b) (no gradient), scores sum_b w_b <u_b, i_b>; loss
  -mean log2 sigmoid(s_pos - s_neg) + reg_weight * (mean preference^2 over the batch's
  users, image and text, + mean weight_u^2), weight_u the (U, 2, 1) softmax-initialised
  table that nothing else reads (kept: it is in the reference's loss);
- `dropout` > 0: FREEDOM's degree-sensitive edge dropout of the user-item graph before every
  epoch (the reference's grid holds only 0, the default).
- scores: <u, i> of the concatenations, without the late-fusion weights.

Deliberate differences:

- the user graph is sparse: top-`user_knn_k` per user from R R^T in row blocks, never the
  dense U x U matrix of the reference's preprocessing; ties at the k-th place go to the
  smaller user id; its padding draws and the edge dropout come from the engine's generator;
- the item kNN graph is read from the graph jobs' cache (crane.graphs.item_knn), never the
  dense N x N similarity; the reference caches it as `mm_adj_<knn_k>.pt` by k alone (a file
  left by another model or weight would be read), here it is keyed by the features' hash;
- one modality is supported (the reference needs both): the branches are ID and that
  modality, the late-fusion softmax is over two;
- left out, because no loss or score reads them: the trainable copies of the features
  (image_embedding, text_embedding), result_embed's initialisation, feat_embed_dim, and the
  YAML's n_layers (never read; the code reads n_mm_layers); `dim_latent`, 64 in the code, is
  `embedding_size` (64 in the config);
- the log2-BPR is written with logsigmoid / ln 2 (the same value without underflow);
  A_hat gives isolated nodes a zero row (the reference adds 1e-7 to every degree);
- the reference scores with `result_embed`, the last training batch's forward (parameters
  before the last optimizer step); here scores come from the current parameters and the
  current epoch's user graph and user-item graph (`scoring_tables`);
- the whole graph is propagated at every batch, as in the reference;
- the reference's trainer evaluates the test split every epoch and reports the grid point
  with the best test score; here the epoch and the point are selected on validation and the
  test split is scored once (docs/training.md).

Memory: the user-item graph 2E nonzeros, the item graph at most 2 N knn_k, the user graph
U x user_knn_k entries, activations (U + N) x embedding_size per layer and branch (tripled
by the concatenation) plus N x 4 embedding_size per MLP. No U x U or N x N object.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from crane.graphs.user_item import symmetric_bipartite_adjacency
from crane.graphs.user_user import user_co_interaction_graph
from crane.models import register
from crane.models.base import Recommender, TrainData
from crane.models.hyperparameters import HyperParameters, hparam
from crane.models.layers import (multimodal_knn_graph, sampled_user_graph,
                                 softmax_pair_weights)
from crane.ops.dropout import BipartiteEdges, degree_sensitive_edge_dropout
from crane.ops.propagation import SquareGraph
from crane.ops.scores import dot_scores
from crane.ops.sparse import to_torch_sparse

ID_BRANCH = "id"


@dataclass(frozen=True)
class COHESIONConfig(HyperParameters):
    embedding_size: int = hparam(at_least=1)
    knn_k: int = hparam(at_least=1)
    mm_image_weight: float = hparam(at_least=0, at_most=1)
    n_mm_layers: int = hparam(at_least=0)
    num_layer: int = hparam(at_least=0)
    user_knn_k: int = hparam(at_least=1)
    dropout: float = hparam(at_least=0, below=1)
    reg_weight: float = hparam(at_least=0)


class CompositeGCN(nn.Module):
    """The reference's GCNLayer: early fusion of a branch's projected items with the ID table,
    then layer-refined propagation (each layer scaled row-wise by its cosine to layer 0)."""

    def __init__(self, n_users: int, feature_width: int, size: int, n_layers: int,
                 device: torch.device):
        super().__init__()
        self.n_layers = n_layers
        self.preference = nn.Parameter(
            nn.init.xavier_normal_(torch.empty(n_users, size, device=device)))
        self.mlp = nn.Linear(feature_width, 4 * size, device=device)
        self.mlp_1 = nn.Linear(4 * size, size, device=device)

    def forward(self, features: torch.Tensor, id_table: torch.Tensor,
                graph: SquareGraph) -> torch.Tensor:
        items = self.mlp_1(F.leaky_relu(self.mlp(features)))
        items = torch.abs((id_table * id_table + items * items) / 2 + 1e-8).sqrt()
        ego = F.normalize(torch.cat([self.preference, items]))
        layer, total = ego, ego
        for _ in range(self.n_layers):
            layer = graph(layer)
            layer = F.cosine_similarity(layer, ego, dim=-1).unsqueeze(1) * layer
            total = total + layer
        return total


@register("cohesion")
class COHESION(Recommender):
    config_class = COHESIONConfig
    uses_content = True

    def __init__(self, data: TrainData, hparams: dict[str, Any]):
        super().__init__(data, hparams)
        cfg = self.config
        size = cfg.embedding_size
        self.modalities = self.feature_modalities(data)
        self.gcns = nn.ModuleDict()
        self.id_feat = nn.Parameter(
            nn.init.xavier_normal_(torch.empty(self.n_items, size, device=self.device)))
        self.gcns[ID_BRANCH] = CompositeGCN(self.n_users, size, size, cfg.num_layer,
                                            self.device)
        self.gcns[ID_BRANCH].requires_grad_(False)  # its output is detached: never trained
        for modality in self.modalities:
            table = data.feature_tensor(modality)
            self.register_buffer(f"features_{modality}", table, persistent=False)
            self.gcns[modality] = CompositeGCN(self.n_users, table.shape[1], size,
                                               cfg.num_layer, self.device)
        self.weight_u = softmax_pair_weights(self.n_users, self.device)
        train = data.train_matrix()
        self.full_graph = SquareGraph(
            to_torch_sparse(symmetric_bipartite_adjacency(train), self.device))
        self.edges = BipartiteEdges.from_matrix(train)  # sampled on the CPU generator
        item_graph = multimodal_knn_graph(data, self.modalities, cfg.knn_k,
                                          cfg.mm_image_weight)
        self.item_graph = SquareGraph(to_torch_sparse(item_graph, self.device),
                                      to_torch_sparse(item_graph.T, self.device))
        self.user_neighbours = user_co_interaction_graph(train, cfg.user_knn_k)
        # graphs before the first epoch (the engine resamples them before every epoch)
        seed = int(torch.randint(0, 2 ** 62, (1,)).item())
        self.start_epoch(0, torch.Generator().manual_seed(seed))

    def features(self, modality: str) -> torch.Tensor:
        return getattr(self, f"features_{modality}")

    def start_epoch(self, epoch: int, generator: torch.Generator) -> None:
        """The reference's pre_epoch_processing: this epoch's user graph, then (dropout > 0)
        its user-item graph."""
        self.user_graph = sampled_user_graph(self.user_neighbours, self.config.user_knn_k,
                                             self.n_users, generator, self.device)
        if self.config.dropout <= 0.0:
            self.train_graph = self.full_graph
        else:
            self.train_graph = SquareGraph(to_torch_sparse(
                degree_sensitive_edge_dropout(self.edges, self.config.dropout, generator),
                self.device))
        self._scoring_cache = None  # scores read both graphs

    def representations(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(users, items) of every node, the branches concatenated [id, image, text]:
        the reference's forward up to `result_embed`."""
        with torch.no_grad():  # the reference's id_rep.data
            branches = [self.gcns[ID_BRANCH](self.id_feat, self.id_feat, self.train_graph)]
        branches += [self.gcns[m](self.features(m), self.id_feat, self.train_graph)
                     for m in self.modalities]
        users, items = torch.cat(branches, dim=1).split([self.n_users, self.n_items])
        h = items
        for _ in range(self.config.n_mm_layers):
            h = self.item_graph(h)
        return users + self.user_graph(users), items + h

    def loss(self, users: torch.Tensor, pos_items: torch.Tensor,
             neg_items: torch.Tensor | None) -> dict[str, torch.Tensor]:
        user_all, item_all = self.representations()
        user_e, pos_e, neg_e = user_all[users], item_all[pos_items], item_all[neg_items]
        weight = self.branch_weights(user_e, pos_e, neg_e)
        pos_scores = (user_e * pos_e * weight).sum(dim=1)
        neg_scores = (user_e * neg_e * weight).sum(dim=1)
        bpr = -F.logsigmoid(pos_scores - neg_scores).mean() / math.log(2.0)
        reg = sum(self.gcns[m].preference[users].square().mean() for m in self.modalities)
        reg = reg + self.weight_u.square().mean()
        return {"bpr": bpr, "reg": self.config.reg_weight * reg}

    def branch_weights(self, user_e: torch.Tensor, pos_e: torch.Tensor,
                       neg_e: torch.Tensor) -> torch.Tensor:
        """The reference's adaptive_optimization: per triple and branch, 1 - softmax over the
        branches of (positive - negative) slice scores, repeated over the branch's columns."""
        n_branches, size = len(self.gcns), self.config.embedding_size
        with torch.no_grad():
            pos_part = (user_e * pos_e).view(-1, n_branches, size).sum(dim=-1)
            neg_part = (user_e * neg_e).view(-1, n_branches, size).sum(dim=-1)
            indicator = 1 - (pos_part - neg_part).softmax(dim=-1)
        return indicator.repeat_interleave(size, dim=1)

    def scoring_tables(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.representations()

    def score(self, users: torch.Tensor) -> torch.Tensor:
        user_all, item_all = self.scoring_state()
        return dot_scores(user_all[users], item_all)
