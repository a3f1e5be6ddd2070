"""GRCN (Wei et al., ACM MM'20, "Graph-Refined Convolutional Network for Multimedia
Recommendation with Implicit Feedback"), as implemented in MMRec (enoche/MMRec,
src/models/grcn.py).

Per modality m (MMRec's `CGCN`): a trained user preference table P_m and the item features
through Linear + leaky_relu, both rows L2-normalised; one attention layer over the training
edges in both directions (torch_geometric's `GATConv` there): the weight of an edge (u, i)
is the softmax, over the edges entering the target node, of <p_u, f_i>; a node's output is
its input plus the attention-weighted sum of its neighbours' inputs.

Graph refining (MMRec's weight_mode 'confid' with pruning): each directed edge's weight is
relu(max over modalities of attention_m x confidence_m(source node)), with a trained
(U+N) x M confidence table. The ID view (MMRec's `EGCN`) propagates the L2-normalised ID
embeddings twice over the refined edges (sum aggregation, no activation) and keeps
x + x1 + x2. A node's representation is cat(ID view, modality outputs in image, text order);
scores are user . item. Loss: -mean log sigmoid(s_pos - s_neg) + reg_weight * (mean of
id^2 over the batch's (user, item) rows + mean of the image preference^2 over all users +
sum over modalities of the mean of preference^2 at the batch's users). Every table is
trained (the confidence table through the refined weights); the raw features are frozen.

Deliberate differences from MMRec:
- MMRec's routing loop (`num_routing` = its `n_layers` passes) sends messages along the
  one-way user -> item edge_index, so every user row of its output is zero and the loop only
  re-normalises the (already unit) preferences: it changes nothing, so it is not run and
  `n_layers` is not accepted (tests/models/test_grcn.py runs the routing literally and gets
  the same numbers);
- text alone: MMRec assigns the text output to a misspelt variable (`conetent_rep`) and
  crashes; here it is used;
- message passing is sparse products over the training edges: the attention softmax is
  `crane.ops.segment_softmax`, the weighted sums `crane.ops.sparse.csr_mm_with_value_grad`
  (edge weights carry gradient) instead of torch_geometric;
- the BPR term uses logsigmoid (the same value as log(sigmoid), without its underflow);
- MMRec's edge dropout has rate 0 (a no-op) and is left out; its unused confidence
  regulariser (`reg_confid_loss`, computed, never added) too;
- MMRec's `full_sort_predict` reads the representation of the last training batch's
  forward (parameters before the last optimizer step); here scores use the current
  parameters (`scoring_tables`).

Memory: O(E x latent_embedding) for the per-edge attention scores and O((U+N) x
(embedding_size + M x latent_embedding)) for the representation; no U x U or N x N object.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import nn

from crane.models import register
from crane.models.base import Recommender, TrainData
from crane.models.hyperparameters import HyperParameters, hparam
from crane.ops.losses import logsigmoid_bpr_loss
from crane.ops.scores import dot_scores
from crane.ops.segment_softmax import segment_softmax
from crane.ops.sparse import csr_mm_with_value_grad

N_ID_LAYERS = 2  # EGCN's conv_embed_1 and conv_embed_2


@dataclass(frozen=True)
class GRCNConfig(HyperParameters):
    embedding_size: int = hparam(at_least=1)
    latent_embedding: int = hparam(at_least=1)
    reg_weight: float = hparam(at_least=0)


class TrainingEdges:
    """The E training edges (u, i) in user-major order, and the two weighted products over
    them: to users (R_w @ items, CSR rows = users, values in edge order) and to items
    (R_w^T @ users, CSR rows = items, values permuted by `to_item_order`)."""

    def __init__(self, train: sp.csr_matrix, device: torch.device):
        n_users, n_items = train.shape
        coo = train.tocoo()
        self.n_users, self.n_items = n_users, n_items
        self.user = torch.as_tensor(coo.row.astype(np.int64), device=device)
        self.item = torch.as_tensor(coo.col.astype(np.int64), device=device)
        self.user_crow = torch.as_tensor(train.indptr.astype(np.int64), device=device)
        numbered = sp.csr_matrix((np.arange(1, train.nnz + 1, dtype=np.float64),
                                  train.indices, train.indptr), shape=train.shape)
        by_item = sp.csr_matrix(numbered.T)
        self.item_crow = torch.as_tensor(by_item.indptr.astype(np.int64), device=device)
        self.to_item_order = torch.as_tensor(by_item.data.astype(np.int64) - 1, device=device)

    def to_users(self, weight: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Row u: sum over u's edges e of weight[e] * items[i_e]."""
        matrix = torch.sparse_csr_tensor(self.user_crow, self.item, weight.detach(),
                                         size=(self.n_users, self.n_items),
                                         check_invariants=False)
        return csr_mm_with_value_grad(matrix, items, values=weight)

    def to_items(self, weight: torch.Tensor, users: torch.Tensor) -> torch.Tensor:
        """Row i: sum over i's edges e of weight[e] * users[u_e]."""
        order = self.to_item_order
        values = weight[order]
        matrix = torch.sparse_csr_tensor(self.item_crow, self.user[order], values.detach(),
                                         size=(self.n_items, self.n_users),
                                         check_invariants=False)
        return csr_mm_with_value_grad(matrix, users, values=values)


class ModalityAttention(nn.Module):
    """MMRec's `CGCN` without its no-op routing: one attention layer over [P; f(features)]."""

    def __init__(self, n_users: int, feature_width: int, latent: int, device: torch.device):
        super().__init__()
        self.preference = nn.Parameter(nn.init.xavier_normal_(
            torch.rand((n_users, latent), device=device)))
        self.mlp = nn.Linear(feature_width, latent, device=device)
        nn.init.xavier_normal_(self.mlp.weight)

    def forward(self, features: torch.Tensor, edges: TrainingEdges
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(output at all nodes, attention of the edges into items, of the edges into
        users), the attentions in edge order."""
        preference = F.normalize(self.preference)
        items = F.normalize(F.leaky_relu(self.mlp(features)))
        scores = (preference[edges.user] * items[edges.item]).sum(dim=1)
        into_items = segment_softmax(scores, edges.item, edges.n_items)
        into_users = segment_softmax(scores, edges.user, edges.n_users)
        user_out = preference + edges.to_users(into_users, items)
        item_out = items + edges.to_items(into_items, preference)
        return torch.cat([user_out, item_out]), into_items, into_users


@register("grcn")
class GRCN(Recommender):
    config_class = GRCNConfig
    uses_content = True

    def __init__(self, data: TrainData, hparams: dict[str, Any]):
        super().__init__(data, hparams)
        cfg = self.config
        self.modalities = self.feature_modalities(data)
        n_nodes = self.n_users + self.n_items
        # MMRec's order: the ID view, then the modalities, then the confidence table
        self.id_embedding = nn.Parameter(nn.init.xavier_normal_(
            torch.rand((n_nodes, cfg.embedding_size), device=self.device)))
        self.attention = nn.ModuleDict()
        for modality in self.modalities:
            table = data.feature_tensor(modality)
            self.register_buffer(f"features_{modality}", table, persistent=False)
            self.attention[modality] = ModalityAttention(self.n_users, table.shape[1],
                                                         cfg.latent_embedding, self.device)
        self.model_specific_conf = nn.Parameter(nn.init.xavier_normal_(
            torch.rand((n_nodes, len(self.modalities)), device=self.device)))
        self.edges = TrainingEdges(data.train_matrix(), self.device)

    def features(self, modality: str) -> torch.Tensor:
        return getattr(self, f"features_{modality}")

    def refined_weights(self, into_items: torch.Tensor, into_users: torch.Tensor
                        ) -> tuple[torch.Tensor, torch.Tensor]:
        """relu(max over modalities of attention x the source node's confidence), for the
        edges into items (source: the user) and into users (source: the item)."""
        edges = self.edges
        user_conf = self.model_specific_conf[edges.user]
        item_conf = self.model_specific_conf[self.n_users + edges.item]
        to_items = torch.relu((into_items * user_conf).max(dim=1).values)
        to_users = torch.relu((into_users * item_conf).max(dim=1).values)
        return to_items, to_users

    def representation(self) -> torch.Tensor:
        outputs, into_items, into_users = [], [], []
        for modality in self.modalities:
            out, to_items, to_users = self.attention[modality](self.features(modality),
                                                               self.edges)
            outputs.append(out)
            into_items.append(to_items)
            into_users.append(to_users)
        weight_items, weight_users = self.refined_weights(torch.stack(into_items, dim=1),
                                                          torch.stack(into_users, dim=1))
        x = F.normalize(self.id_embedding)
        total, layer = x, x
        for _ in range(N_ID_LAYERS):
            users, items = layer[:self.n_users], layer[self.n_users:]
            layer = torch.cat([self.edges.to_users(weight_users, items),
                               self.edges.to_items(weight_items, users)])
            total = total + layer
        return torch.cat([total, *outputs], dim=1)

    def loss(self, users: torch.Tensor, pos_items: torch.Tensor,
             neg_items: torch.Tensor | None) -> dict[str, torch.Tensor]:
        out = self.representation()
        nodes = torch.cat([users, pos_items + self.n_users, neg_items + self.n_users])
        user_e, pos_e, neg_e = out[nodes].split(len(users))
        terms = {"bpr": logsigmoid_bpr_loss(user_e, pos_e, neg_e)}
        # MMRec: (id[u]^2 + id[i]^2).mean() over the batch's (user, item) pairs (each user
        # with its positive and with its negative), + the image preference^2 mean over all
        # users, + per modality the preference^2 mean at the batch's users.
        ids = self.id_embedding[nodes].square()
        user_sq, pos_sq, neg_sq = ids.split(len(users))
        reg = (2 * user_sq + pos_sq + neg_sq).sum() / (2 * len(users) * ids.shape[1])
        if "image" in self.attention:
            reg = reg + self.attention["image"].preference.square().mean()
        for modality in self.modalities:
            reg = reg + self.attention[modality].preference[users].square().mean()
        terms["reg"] = self.config.reg_weight * reg
        return terms

    def scoring_tables(self) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.representation()
        return out[:self.n_users], out[self.n_users:]

    def score(self, users: torch.Tensor) -> torch.Tensor:
        user_all, item_all = self.scoring_state()
        return dot_scores(user_all[users], item_all)
