"""LGMRec (Guo et al., AAAI 2024, "LGMRec: Local and Global Graph Learning for Multimodal
Recommendation"), as implemented in MMRec (src/models/lgmrec.py).

- Collaborative graph embedding (CGE): LightGCN over the normalised user-item graph.
- Modality graph embedding (MGE), per modality m: items x_i W_m (frozen features, learned
  projection), users the mean of their items, propagated `n_mm_layers` times over the same
  graph (last layer kept).
- Global hypergraph embedding (GHE), per modality m: `hyper_num` hyperedges; item memberships
  are Gumbel-softmax(x_i H_m, tau 0.2), user memberships Gumbel-softmax(sum of their items'
  logits); after dropout (keep_rate), hyperedge states are M_i^T CGE_items and every node reads
  them back: (items x hyper_num) and (users x hyper_num) matrices, linear in the graph size.
- Final = CGE + sum_m normalize(MGE_m) + alpha * normalize(sum_m GHE_m).
Loss: BPR (log-sigmoid) + cl_weight * HCL + reg_weight * EmbLoss of the batch's final
embeddings; HCL is a cross-modal InfoNCE (tau 0.2, summed over the batch) between the image
and text hypergraph embeddings of the batch's users (all users as candidates) and positive
items (all items as candidates). Scores: final user . final item.

Fidelity notes:
- As in MMRec (and the authors' code), Gumbel noise is drawn in every forward pass, at
  evaluation too (only the dropout is off there): scores depend on the global torch seed.
- Same numbers, less work (tests compare losses and gradients with a transcription of
  MMRec's all-rows computation): the HCL candidates' hypergraph embeddings are M @ S
  (memberships times hyperedge states, rank <= hyper_num), so when hyper_num is below the
  embedding size the (batch x all) similarities are (q S^T) M^T scaled by the candidates'
  inverse norms; the log-sum-exp over all candidates keeps one (batch x all) buffer
  (`crane.ops.contrastive.log_sum_exp_of_product`); each modality's projection and hyperedge logits come from one
  product with the feature matrix.
- One modality: MMRec's LGMRec crashes without both. Here MGE and GHE sum over the present
  modalities and the cross-modal HCL term, which needs two, is left out.
- The combination of views runs on the batch's distinct nodes only (row-wise, same numbers).
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
from crane.ops.contrastive import log_sum_exp_of_product
from crane.ops.losses import emb_loss, logsigmoid_bpr_loss
from crane.ops.propagation import SquareGraph, lightgcn_layer_mean
from crane.ops.sparse import graph_mm, to_torch_sparse

TAU = 0.2  # Gumbel-softmax and HCL temperature, fixed in MMRec


@dataclass(frozen=True)
class LGMRecConfig(HyperParameters):
    embedding_size: int = hparam(at_least=1)
    feat_embed_dim: int = hparam(at_least=1)
    n_ui_layers: int = hparam(at_least=0)
    n_mm_layers: int = hparam(at_least=0)
    n_hyper_layer: int = hparam(at_least=1)
    hyper_num: int = hparam(at_least=1)
    keep_rate: float = hparam(above=0, at_most=1)
    alpha: float = hparam()
    cl_weight: float = hparam(at_least=0)
    reg_weight: float = hparam(at_least=0)

    def check(self, model: str) -> None:
        if self.feat_embed_dim != self.embedding_size:
            raise ValueError(f"{model}: feat_embed_dim ({self.feat_embed_dim}) must equal "
                             f"embedding_size ({self.embedding_size}): modality and "
                             "collaborative embeddings are added")


def xavier_parameter(rows: int, cols: int, device: torch.device) -> nn.Parameter:
    return nn.Parameter(nn.init.xavier_uniform_(torch.empty(rows, cols, device=device)))


def hyper_contrast(anchor: torch.Tensor, positive: torch.Tensor, memberships: torch.Tensor,
                   states: torch.Tensor) -> torch.Tensor:
    """Summed InfoNCE of anchor rows against their positives among all rows of M @ S."""
    anchor, positive = F.normalize(anchor), F.normalize(positive)
    candidates = memberships @ states
    # Each candidate's 1 / (norm * TAU), folded into the (all x ...) side.
    scale = 1.0 / (candidates.norm(dim=1, keepdim=True).clamp_min(1e-12) * TAU)
    if states.shape[0] < states.shape[1]:
        # The same products reassociated: batch x hyper_num x all instead of batch x d x all.
        log_total = log_sum_exp_of_product(anchor @ states.T, memberships * scale)
    else:
        log_total = log_sum_exp_of_product(anchor, candidates * scale)
    # Cosines / TAU lie in [-5, 5]: the plain exp-sum-log (MMRec's form) cannot overflow.
    positive_logit = (anchor * positive).sum(dim=1) / TAU
    return (log_total - positive_logit).sum()


@register("lgmrec")
class LGMRec(Recommender):
    config_class = LGMRecConfig
    uses_content = True

    def __init__(self, data: TrainData, hparams: dict[str, Any]):
        super().__init__(data, hparams)
        size, hyper_num = self.config.embedding_size, self.config.hyper_num
        self.modalities = self.feature_modalities(data)
        device = data.device

        train = data.train_matrix()
        self.register_buffer("adjacency", to_torch_sparse(
            symmetric_bipartite_adjacency(train), device), persistent=False)
        self.register_buffer("interactions", to_torch_sparse(train, device), persistent=False)
        degree = torch.as_tensor(train.sum(axis=1).A.ravel(), dtype=torch.float32, device=device)
        self.register_buffer("inv_user_degree", (1.0 / (degree + 1e-7))[:, None], persistent=False)

        self.user_embedding = nn.Embedding(self.n_users, size, device=device)
        self.item_embedding = nn.Embedding(self.n_items, size, device=device)
        nn.init.xavier_uniform_(self.user_embedding.weight)
        nn.init.xavier_uniform_(self.item_embedding.weight)
        # Features are frozen in LGMRec: buffers, rebuilt from the data, kept out of checkpoints.
        for modality in self.modalities:
            self.register_buffer(f"features_{modality}", data.feature_tensor(modality),
                                 persistent=False)
        self.projections = nn.ParameterDict({
            m: xavier_parameter(data.features[m].shape[1], size, device) for m in self.modalities})
        self.hyperedges = nn.ParameterDict({
            m: xavier_parameter(data.features[m].shape[1], hyper_num, device)
            for m in self.modalities})

    def modality_graph_embedding(self, items: torch.Tensor) -> torch.Tensor:
        """MGE of every node (U+N, d) from the projected item features (N, d)."""
        users = graph_mm(self.interactions, items) * self.inv_user_degree
        nodes = torch.cat([users, items])
        for _ in range(self.config.n_mm_layers):
            nodes = graph_mm(self.adjacency, nodes)
        return nodes

    def hypergraph(self, item_logits: torch.Tensor, cge_items: torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(user memberships U x H, item memberships N x H, hyperedge states H x d)."""
        user_logits = graph_mm(self.interactions, item_logits)
        item_members = F.gumbel_softmax(item_logits, TAU, hard=False, dim=1)
        user_members = F.gumbel_softmax(user_logits, TAU, hard=False, dim=1)
        drop = 1.0 - self.config.keep_rate
        item_members = F.dropout(item_members, drop, training=self.training)
        user_members = F.dropout(user_members, drop, training=self.training)
        item_state = cge_items
        for _ in range(self.config.n_hyper_layer):
            states = item_members.T @ item_state
            item_state = item_members @ states
        return user_members, item_members, states

    def views(self) -> tuple[torch.Tensor, dict[str, torch.Tensor], dict[str, tuple]]:
        ego = torch.cat([self.user_embedding.weight, self.item_embedding.weight])
        cge = lightgcn_layer_mean(SquareGraph(self.adjacency), ego, self.config.n_ui_layers,
                                  stacked_mean=True)
        mge, hyper = {}, {}
        for m in self.modalities:
            # One pass over the features for both products: a (D x hyper_num) product on its
            # own is a skinny matrix product, much slower per flop on CPU.
            weights = torch.cat([self.projections[m], self.hyperedges[m]], dim=1)
            items, item_logits = (getattr(self, f"features_{m}") @ weights).split(
                [self.config.embedding_size, self.config.hyper_num], dim=1)
            mge[m] = self.modality_graph_embedding(items)
            hyper[m] = self.hypergraph(item_logits, cge[self.n_users:])
        return cge, mge, hyper

    def combine(self, nodes: torch.Tensor, cge: torch.Tensor, mge: dict[str, torch.Tensor],
                hyper: dict[str, tuple]) -> torch.Tensor:
        """Final embeddings of `nodes` (ids in 0..U+N): CGE + MGE + alpha * GHE."""
        local = cge[nodes] + sum(F.normalize(mge[m][nodes]) for m in self.modalities)
        ghe = sum(torch.cat([user_members, item_members])[nodes] @ states
                  for user_members, item_members, states in hyper.values())
        return local + self.config.alpha * F.normalize(ghe)

    def loss(self, users: torch.Tensor, pos_items: torch.Tensor,
             neg_items: torch.Tensor | None) -> dict[str, torch.Tensor]:
        if neg_items is None:
            raise ValueError("lgmrec trains on (user, positive, negative) triples; "
                             "got no negatives")
        cge, mge, hyper = self.views()
        nodes = torch.cat([users, self.n_users + pos_items, self.n_users + neg_items])
        unique_nodes, index = torch.unique(nodes, return_inverse=True)
        final = self.combine(unique_nodes, cge, mge, hyper)[index]
        user_e, pos_e, neg_e = final.split(len(users))
        cfg = self.config
        terms = {"bpr": logsigmoid_bpr_loss(user_e, pos_e, neg_e)}
        if cfg.cl_weight != 0 and len(self.modalities) == 2:
            (uv, iv, sv), (ut, it, st) = (hyper[m] for m in self.modalities)
            terms["cl"] = cfg.cl_weight * (
                hyper_contrast(uv[users] @ sv, ut[users] @ st, ut, st)
                + hyper_contrast(iv[pos_items] @ sv, it[pos_items] @ st, it, st))
        if cfg.reg_weight != 0:
            terms["reg"] = cfg.reg_weight * emb_loss(user_e, pos_e, neg_e)
        return terms

    def scoring_tables(self) -> tuple[torch.Tensor, torch.Tensor]:
        cge, mge, hyper = self.views()
        nodes = torch.arange(self.n_users + self.n_items, device=cge.device)
        final = self.combine(nodes, cge, mge, hyper)
        return tuple(final.split([self.n_users, self.n_items]))

    def score(self, users: torch.Tensor) -> torch.Tensor:
        user_table, item_table = self.scoring_state()
        return user_table[users] @ item_table.T
