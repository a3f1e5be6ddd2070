"""DRAGON (Zhou et al., ACM MM Asia 2023, "Enhancing Dyadic Relations with Homogeneous Graphs
for Multimodal Recommendation"), as implemented in MMRec (enoche/MMRec, src/models/dragon.py;
its user graph from preprocessing/dualgnn-gen-u-u-matrix.py).

DualGNN's heterogeneous part, with concatenation ('cat') and a homogeneous item graph:
- per modality, a GCN over the user-item graph: input [preference; MLP_1(leaky_relu(
  MLP(features)))] (a trained user table next to the projected item features, rows
  L2-normalised), output x + A x + A^2 x, A = D^-1/2 A D^-1/2 of the bipartite graph;
- users: [w_u0 image_u, w_u1 text_u] (weight_u trained, softmax at initialisation), plus
  the user graph sum_v W[u, v] user[v], W the softmax over the counts of u's 40 users with
  most shared training items (crane/graphs/user_user.py; resampled before every epoch, as
  MMRec's `pre_epoch_processing`: a user with fewer than 40 is padded by random repeats);
- items: [image_i, text_i] plus `n_mm_layers` products with the frozen item graph
  mm_image_weight * A_image + (1 - mm_image_weight) * A_text, each the binary top-`knn_k`
  cosine graph of the raw features normalised to 1/k per entry (MMRec's
  D^-1/2 A D^-1/2 with D = k + 1e-7, the same float32 number);
- loss: -mean log2 sigmoid(s_pos - s_neg) + reg_weight * (mean preference^2 over the
  batch's users, per modality, + mean weight_u^2).
With one modality, users and items are that modality's output (weight_u then enters the reg
term only, as in MMRec).

Deliberate differences from MMRec:
- the user graph is sparse: top-40 per user from R R^T in row blocks, never the dense U x U
  matrix MMRec's preprocessing builds; ties at the 40th place go to the smaller user id
  (torch.topk leaves them unspecified); padding draws come from the engine's generator;
- the item kNN graph is read from the graph jobs' cache (crane.graphs.item_knn, computed in
  row tiles), never the dense N x N similarity MMRec builds;
- left out, because no loss or score reads them: the trainable copies of the features
  (image_embedding, text_embedding) and their projections (image_trs, text_trs, hence
  feat_embed_dim), weight_i, MLP_v, MLP_t, MLP_user, `result_embed`'s initialisation and the
  item dropping (`edge_index_dropv`, ...) that the GCN never reads; MMRec's `n_layers` is
  never read (the GCN always has two hops), its `aggr_mode` grid holds only 'add' (fixed
  here), and `dim_latent` (64 in its code) is `embedding_size` (64 in its config);
- the log2-BPR is written with logsigmoid / ln 2 (the same value without underflow);
- MMRec scores with `result_embed`, the last training batch's forward (parameters before the
  last optimizer step); here scores come from the current parameters and the current epoch's
  user graph (`scoring_tables`);
- the whole graph is propagated at every batch, as in MMRec: the first hop reads every item's
  projected features, whose MLP dominates the cost.

Memory: the user-item graph 2E nonzeros, the item graph at most 2 N knn_k, the user graph
U x 40 entries, activations (U + N) x embedding_size per layer and modality (doubled by the
concatenation) plus N x 4 embedding_size for the MLP. No U x U or N x N object.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from crane.graphs.user_item import symmetric_bipartite_adjacency
from crane.graphs.user_user import user_co_interaction_graph
from crane.models import register
from crane.models.base import Recommender, TrainData
from crane.models.hyperparameters import HyperParameters, hparam
from crane.models.layers import (PreferenceGCN, multimodal_knn_graph, sampled_user_graph,
                                 softmax_pair_weights)
from crane.ops.losses import logsigmoid_bpr_loss
from crane.ops.propagation import BipartitePropagation, SquareGraph
from crane.ops.scores import dot_scores
from crane.ops.sparse import to_torch_sparse


@dataclass(frozen=True)
class DRAGONConfig(HyperParameters):
    embedding_size: int = hparam(at_least=1)
    knn_k: int = hparam(at_least=1)
    mm_image_weight: float = hparam(at_least=0, at_most=1)
    n_mm_layers: int = hparam(at_least=0)
    user_knn_k: int = hparam(at_least=1)
    reg_weight: float = hparam(at_least=0)


@register("dragon")
class DRAGON(Recommender):
    config_class = DRAGONConfig
    uses_content = True

    def __init__(self, data: TrainData, hparams: dict[str, Any]):
        super().__init__(data, hparams)
        size = self.config.embedding_size
        self.modalities = self.feature_modalities(data)
        self.gcns = nn.ModuleDict()
        for modality in self.modalities:
            table = data.feature_tensor(modality)
            self.register_buffer(f"features_{modality}", table, persistent=False)
            self.gcns[modality] = PreferenceGCN(self.n_users, table.shape[1], size, self.device)
        self.weight_u = softmax_pair_weights(self.n_users, self.device)
        train = data.train_matrix()
        self.graph = BipartitePropagation(symmetric_bipartite_adjacency(train), self.n_users,
                                          self.device)
        item_graph = multimodal_knn_graph(data, self.modalities, self.config.knn_k,
                                          self.config.mm_image_weight)
        self.item_graph = SquareGraph(to_torch_sparse(item_graph, self.device),
                                      to_torch_sparse(item_graph.T, self.device))
        self.user_neighbours = user_co_interaction_graph(train, self.config.user_knn_k)
        # a graph before the first epoch (the engine resamples it before every epoch)
        seed = int(torch.randint(0, 2 ** 62, (1,)).item())
        self.resample_user_graph(torch.Generator().manual_seed(seed))

    def features(self, modality: str) -> torch.Tensor:
        return getattr(self, f"features_{modality}")

    def start_epoch(self, epoch: int, generator: torch.Generator) -> None:
        """MMRec's pre_epoch_processing: the user graph of this epoch."""
        self.resample_user_graph(generator)

    def resample_user_graph(self, generator: torch.Generator) -> None:
        self.user_graph = sampled_user_graph(self.user_neighbours, self.config.user_knn_k,
                                             self.n_users, generator, self.device)
        self._scoring_cache = None  # scores read the user graph

    def representations(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(users, items) of every node: MMRec's forward up to `result_embed`."""
        outputs = {m: self.gcns[m](self.features(m), self.graph) for m in self.modalities}
        if len(outputs) == 1:
            users, items = next(iter(outputs.values()))
        else:
            (image_users, image_items), (text_users, text_items) = (outputs["image"],
                                                                    outputs["text"])
            # construction 'cat': each modality's user part scaled by its weight
            users = torch.cat([image_users * self.weight_u[:, 0],
                               text_users * self.weight_u[:, 1]], dim=1)
            items = torch.cat([image_items, text_items], dim=1)
        h = items
        for _ in range(self.config.n_mm_layers):
            h = self.item_graph(h)
        return users + self.user_graph(users), items + h

    def loss(self, users: torch.Tensor, pos_items: torch.Tensor,
             neg_items: torch.Tensor | None) -> dict[str, torch.Tensor]:
        user_all, item_all = self.representations()
        bpr = logsigmoid_bpr_loss(user_all[users], item_all[pos_items],
                                  item_all[neg_items]) / math.log(2.0)
        reg = sum(self.gcns[m].preference[users].square().mean() for m in self.modalities)
        reg = reg + self.weight_u.square().mean()
        return {"bpr": bpr, "reg": self.config.reg_weight * reg}

    def scoring_tables(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.representations()

    def score(self, users: torch.Tensor) -> torch.Tensor:
        user_all, item_all = self.scoring_state()
        return dot_scores(user_all[users], item_all)
