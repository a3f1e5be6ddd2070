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
  (`LogSumExpOfProduct`); each modality's projection and hyperedge logits come from one
  product with the feature matrix.
- One modality: MMRec's LGMRec crashes without both. Here MGE and GHE sum over the present
  modalities and the cross-modal HCL term, which needs two, is left out.
- The combination of views runs on the batch's distinct nodes only (row-wise, same numbers).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from crane.graphs.user_item import symmetric_bipartite_adjacency, to_torch_sparse
from crane.models import register
from crane.models.base import Recommender, TrainData, emb_loss, content_modalities
from crane.models.layers import lightgcn_propagate

HPARAM_KEYS = ("embedding_size", "feat_embed_dim", "n_ui_layers", "n_mm_layers",
               "n_hyper_layer", "hyper_num", "keep_rate", "alpha", "cl_weight", "reg_weight")
TAU = 0.2  # Gumbel-softmax and HCL temperature, fixed in MMRec


def xavier_parameter(rows: int, cols: int, device: torch.device) -> nn.Parameter:
    return nn.Parameter(nn.init.xavier_uniform_(torch.empty(rows, cols, device=device)))


class LogSumExpOfProduct(torch.autograd.Function):
    """log(sum_j exp(a_i . b_j)) per row i of a, with one (rows(a) x rows(b)) buffer.

    Autograd would keep the products, their exponentials and their gradient as three
    matrices of that size (batch x all users here); this keeps one and reuses it in the
    backward pass: 28% less time measured at Baby scale. Callers keep a_i . b_j bounded.
    """

    @staticmethod
    def forward(ctx, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        exponentials = (a @ b.T).exp_()
        sums = exponentials.sum(dim=1)
        ctx.save_for_backward(a, b, exponentials, sums)
        return sums.log()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a, b, exponentials, sums = ctx.saved_tensors
        weights = exponentials.mul_((grad / sums)[:, None])  # softmax * grad, in place
        return weights @ b, weights.T @ a


def hyper_contrast(anchor: torch.Tensor, positive: torch.Tensor, memberships: torch.Tensor,
                   states: torch.Tensor) -> torch.Tensor:
    """Summed InfoNCE of anchor rows against their positives among all rows of M @ S."""
    anchor, positive = F.normalize(anchor), F.normalize(positive)
    candidates = memberships @ states
    # Each candidate's 1 / (norm * TAU), folded into the (all x ...) side.
    scale = 1.0 / (candidates.norm(dim=1, keepdim=True).clamp_min(1e-12) * TAU)
    if states.shape[0] < states.shape[1]:
        # The same products reassociated: batch x hyper_num x all instead of batch x d x all.
        log_total = LogSumExpOfProduct.apply(anchor @ states.T, memberships * scale)
    else:
        log_total = LogSumExpOfProduct.apply(anchor, candidates * scale)
    # Cosines / TAU lie in [-5, 5]: the plain exp-sum-log (MMRec's form) cannot overflow.
    positive_logit = (anchor * positive).sum(dim=1) / TAU
    return (log_total - positive_logit).sum()


@register("lgmrec")
class LGMRec(Recommender):
    hparam_names = HPARAM_KEYS
    uses_content = True

    def __init__(self, data: TrainData, hparams: dict[str, Any]):
        super().__init__(data, hparams)
        hp = hparams  # checked against hparam_names by Recommender.__init__
        size = int(hp["embedding_size"])
        feature_size = int(hp["feat_embed_dim"])
        if feature_size != size:
            raise ValueError(f"lgmrec: feat_embed_dim ({feature_size}) must equal embedding_size "
                             f"({size}): modality and collaborative embeddings are added")
        self.n_ui_layers = int(hp["n_ui_layers"])
        self.n_mm_layers = int(hp["n_mm_layers"])
        self.n_hyper_layers = int(hp["n_hyper_layer"])
        if self.n_hyper_layers < 1:
            raise ValueError(f"lgmrec: n_hyper_layer must be at least 1, got {self.n_hyper_layers}")
        self.embedding_size = size
        self.hyper_num = int(hp["hyper_num"])
        self.keep_rate = float(hp["keep_rate"])
        if not 0.0 < self.keep_rate <= 1.0:
            raise ValueError(f"lgmrec: keep_rate must be in (0, 1], got {self.keep_rate}")
        self.alpha = float(hp["alpha"])
        self.cl_weight = float(hp["cl_weight"])
        self.reg_weight = float(hp["reg_weight"])
        self.modalities = content_modalities("lgmrec", data)
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
            m: xavier_parameter(data.features[m].shape[1], self.hyper_num, device)
            for m in self.modalities})
        self._scoring: tuple[torch.Tensor, torch.Tensor] | None = None

    def modality_graph_embedding(self, items: torch.Tensor) -> torch.Tensor:
        """MGE of every node (U+N, d) from the projected item features (N, d)."""
        users = torch.sparse.mm(self.interactions, items) * self.inv_user_degree
        nodes = torch.cat([users, items])
        for _ in range(self.n_mm_layers):
            nodes = torch.sparse.mm(self.adjacency, nodes)
        return nodes

    def hypergraph(self, item_logits: torch.Tensor, cge_items: torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(user memberships U x H, item memberships N x H, hyperedge states H x d)."""
        user_logits = torch.sparse.mm(self.interactions, item_logits)
        item_members = F.gumbel_softmax(item_logits, TAU, hard=False, dim=1)
        user_members = F.gumbel_softmax(user_logits, TAU, hard=False, dim=1)
        drop = 1.0 - self.keep_rate
        item_members = F.dropout(item_members, drop, training=self.training)
        user_members = F.dropout(user_members, drop, training=self.training)
        item_state = cge_items
        for _ in range(self.n_hyper_layers):
            states = item_members.T @ item_state
            item_state = item_members @ states
        return user_members, item_members, states

    def views(self) -> tuple[torch.Tensor, dict[str, torch.Tensor], dict[str, tuple]]:
        cge = lightgcn_propagate(self.adjacency, torch.cat(
            [self.user_embedding.weight, self.item_embedding.weight]), self.n_ui_layers)
        mge, hyper = {}, {}
        for m in self.modalities:
            # One pass over the features for both products: a (D x hyper_num) product on its
            # own is a skinny matrix product, 4x slower per flop on CPU (measured).
            weights = torch.cat([self.projections[m], self.hyperedges[m]], dim=1)
            items, item_logits = (getattr(self, f"features_{m}") @ weights).split(
                [self.embedding_size, self.hyper_num], dim=1)
            mge[m] = self.modality_graph_embedding(items)
            hyper[m] = self.hypergraph(item_logits, cge[self.n_users:])
        return cge, mge, hyper

    def combine(self, nodes: torch.Tensor, cge: torch.Tensor, mge: dict[str, torch.Tensor],
                hyper: dict[str, tuple]) -> torch.Tensor:
        """Final embeddings of `nodes` (ids in 0..U+N): CGE + MGE + alpha * GHE."""
        local = cge[nodes] + sum(F.normalize(mge[m][nodes]) for m in self.modalities)
        ghe = sum(torch.cat([user_members, item_members])[nodes] @ states
                  for user_members, item_members, states in hyper.values())
        return local + self.alpha * F.normalize(ghe)

    def loss(self, users: torch.Tensor, pos_items: torch.Tensor,
             neg_items: torch.Tensor | None) -> dict[str, torch.Tensor]:
        if neg_items is None:
            raise ValueError("lgmrec trains on (user, positive, negative) triples; "
                             "got no negatives")
        self._scoring = None
        cge, mge, hyper = self.views()
        nodes = torch.cat([users, self.n_users + pos_items, self.n_users + neg_items])
        unique_nodes, index = torch.unique(nodes, return_inverse=True)
        final = self.combine(unique_nodes, cge, mge, hyper)[index]
        user_e, pos_e, neg_e = final.split(len(users))
        pos_scores, neg_scores = (user_e * pos_e).sum(1), (user_e * neg_e).sum(1)
        terms = {"bpr": -F.logsigmoid(pos_scores - neg_scores).mean()}
        if self.cl_weight != 0 and len(self.modalities) == 2:
            (uv, iv, sv), (ut, it, st) = (hyper[m] for m in self.modalities)
            terms["cl"] = self.cl_weight * (
                hyper_contrast(uv[users] @ sv, ut[users] @ st, ut, st)
                + hyper_contrast(iv[pos_items] @ sv, it[pos_items] @ st, it, st))
        if self.reg_weight != 0:
            terms["reg"] = self.reg_weight * emb_loss(user_e, pos_e, neg_e)
        return terms

    def prepare_scoring(self) -> None:
        cge, mge, hyper = self.views()
        nodes = torch.arange(self.n_users + self.n_items, device=cge.device)
        final = self.combine(nodes, cge, mge, hyper)
        self._scoring = tuple(final.split([self.n_users, self.n_items]))

    def score(self, users: torch.Tensor) -> torch.Tensor:
        if self._scoring is None:
            self.prepare_scoring()
        user_table, item_table = self._scoring
        return user_table[users] @ item_table.T
