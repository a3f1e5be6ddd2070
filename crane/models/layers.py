"""Model-level building blocks shared by models (skipped by model discovery: nothing here is
registered). The kernels they run on live in `crane.ops`.

- `RecursiveCrossModalAttention`: CRANE's RCA fusion (docs/crane-method.md, section 3).
- `ConcatFusion`: the `fusion: concat` ablation (z = [x^v, x^t] W_z).
- `PrototypeAttentionFusion`: the authors' prototype (2-token multi-head self-attention).
- `multimodal_knn_graph`: the frozen item-item graph of FREEDOM and CRANE, a weighted mix of
  the per-modality top-k cosine graphs of the raw features.
- `PreferenceGCN`, `softmax_pair_weights`, `sampled_user_graph`: the per-modality GCN, the
  softmax-normalised modality weights and the per-epoch user graph of MMRec's DualGNN and
  DRAGON (one GCN class and one sampling routine in MMRec too).
- `fused_views_loss`: MGCN's batch loss over a content and a fused side view, which SMORE's
  reference repeats line for line.

All fusion modules take the modality tokens of a batch of entities as one (M, B, d) tensor
(M = number of modalities, slice m holds modality m) and return one (B, d) vector per entity.
tests/models/test_rca.py checks each against a direct (loop) reference.
"""

from __future__ import annotations

import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import nn

from crane.graphs.item_knn import cached_neighbours, knn_mean_graph
from crane.graphs.user_user import neighbour_lists_matrix, softmax_neighbour_lists
from crane.models.base import TrainData
from crane.ops.contrastive import one_way_info_nce
from crane.ops.dropout import FastDropout
from crane.ops.losses import logsigmoid_bpr_loss
from crane.ops.propagation import BipartitePropagation, SquareGraph, lightgcn_layer_sum
from crane.ops.sparse import to_torch_sparse

PREFERENCE_GCN_HOPS = 2  # MMRec's GCN applies its conv twice: h + x + h_1


# --------------------------------------------------------------------------- fusion blocks


class RCAStep(nn.Module):
    """One step of Recursive Cross-modal Attention (docs/crane-method.md section 3, items 1-4).

    Every modality token h^m of an entity is refined from the same joint tokens of this step
    (all modalities are updated simultaneously, then the next step sees the new tokens):

        J~  = J W_j + b_j                                  (M x d, J = stacked tokens)
        c^m = tanh((h^m W_q^m) J~^T / sqrt(d))             (1 x M: intra- and inter-modal)
        a^m = ReLU(h^m W_a^m + (c^m J~) W_c^m)             (1 x d)
        h^m <- h^m + Dropout(a^m W_o^m)                    (residual refinement)

    Biases only where the method writes them (b_j); the modality projections before RCA
    carry their own biases. Tokens are laid out (M, B, d) so that each per-modality weight
    is one (B x d) @ (d x d) product over the whole batch; W_q^m and W_a^m share one product.
    """

    def __init__(self, dim: int, n_modalities: int, dropout: float):
        super().__init__()
        self.dim = dim
        self.joint = nn.Linear(dim, dim)  # W_j, b_j: the joint latent space
        self.query_self = _per_modality_weight(n_modalities, dim, 2 * dim)  # [W_q^m | W_a^m]
        self.context_proj = _per_modality_weight(n_modalities, dim, dim)  # W_c^m
        self.out_proj = _per_modality_weight(n_modalities, dim, dim)  # W_o^m
        self.dropout = FastDropout(dropout)
        self.scale = dim ** -0.5

    def _parts(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        joint = self.joint(tokens)  # (M, B, d)
        query, self_term = torch.bmm(tokens, self.query_self).split(self.dim, dim=-1)
        # corr[m, k, b] = tanh(<q^m_b, J~^k_b> / sqrt(d)): M x M per entity, never across entities
        corr = torch.tanh((query.unsqueeze(1) * joint.unsqueeze(0)).sum(-1) * self.scale)
        return joint, self_term, corr

    def correlations(self, tokens: torch.Tensor) -> torch.Tensor:
        """c^m of every entity: (B, M, M), row m holds modality m's affinities."""
        return self._parts(tokens)[2].permute(2, 0, 1)

    def attended(self, tokens: torch.Tensor) -> torch.Tensor:
        """a^m W_o^m, the residual branch before dropout: (M, B, d)."""
        joint, self_term, corr = self._parts(tokens)
        context = (corr.unsqueeze(-1) * joint.unsqueeze(0)).sum(1)  # c^m J~: (M, B, d)
        attended = F.relu(self_term + torch.bmm(context, self.context_proj))
        return torch.bmm(attended, self.out_proj)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return tokens + self.dropout(self.attended(tokens))


class RecursiveCrossModalAttention(nn.Module):
    """R steps of `RCAStep` (own weights per step, or one shared step), then z = [h^1..h^M] W_z.

    Input: (M, B, d) modality tokens. With one modality the joint space holds a single token
    and c is the 1 x 1 intra-modal affinity: the block still refines that token recursively
    (no inter-modal term exists).
    """

    def __init__(self, dim: int, n_modalities: int, steps: int, shared_weights: bool,
                 dropout: float):
        super().__init__()
        if steps < 1:
            raise ValueError(f"rca_steps must be >= 1, got {steps}")
        self.n_steps = steps
        self.shared_weights = shared_weights
        n_blocks = 1 if shared_weights else steps
        self.steps = nn.ModuleList(RCAStep(dim, n_modalities, dropout) for _ in range(n_blocks))
        self.output = nn.Linear(n_modalities * dim, dim, bias=False)  # W_z

    def refine(self, tokens: torch.Tensor) -> torch.Tensor:
        for r in range(self.n_steps):
            tokens = self.steps[0 if self.shared_weights else r](tokens)
        return tokens

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.output(_concat_tokens(self.refine(tokens)))


class ConcatFusion(nn.Module):
    """w/o RCA: z = [x^1, ..., x^M] W_z."""

    def __init__(self, dim: int, n_modalities: int):
        super().__init__()
        self.output = nn.Linear(n_modalities * dim, dim, bias=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.output(_concat_tokens(tokens))


class PrototypeAttentionFusion(nn.Module):
    """The authors' prototype: one more Linear d -> d per modality, the M tokens through
    multi-head self-attention, mean over the tokens.

    Attention runs over each item's own modality tokens (a sequence of length M), not across
    items.
    """

    def __init__(self, dim: int, n_modalities: int, heads: int):
        super().__init__()
        if dim % heads:
            raise ValueError(f"embedding_size {dim} is not divisible by {heads} attention heads")
        self.token_proj = nn.ModuleList(nn.Linear(dim, dim) for _ in range(n_modalities))
        self.attention = nn.MultiheadAttention(dim, heads, batch_first=True)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        seq = torch.stack([proj(tokens[m]) for m, proj in enumerate(self.token_proj)], dim=1)
        attended, _ = self.attention(seq, seq, seq, need_weights=False)
        return attended.mean(dim=1)


def _concat_tokens(tokens: torch.Tensor) -> torch.Tensor:
    """(M, B, d) -> (B, M d): the concatenation [h^1, ..., h^M] of every entity."""
    return tokens.transpose(0, 1).reshape(tokens.shape[1], -1)


def _per_modality_weight(n_modalities: int, fan_in: int, fan_out: int) -> nn.Parameter:
    """(M, fan_in, fan_out) right-multiplied weights, initialised as nn.Linear's."""
    bound = fan_in ** -0.5
    return nn.Parameter(torch.empty(n_modalities, fan_in, fan_out).uniform_(-bound, bound))


# --------------------------------------------------------------------------- item-item graph


def multimodal_knn_graph(data: TrainData, modalities: tuple[str, ...], knn_k: int,
                         image_weight: float) -> sp.csr_matrix:
    """a A_image + (1 - a) A_text of the per-modality top-`knn_k` mean graphs (rows of k
    entries 1/k) of the raw features; with one modality, that modality's graph."""
    graphs = {}
    for modality in modalities:
        neighbours = cached_neighbours(data.features[modality], knn_k, data.cache_dir,
                                       data.feature_hashes.get(modality), device=data.device)
        graphs[modality] = knn_mean_graph(neighbours, data.n_items)
    if len(graphs) == 1:
        return next(iter(graphs.values())).tocsr()
    return (image_weight * graphs["image"] + (1.0 - image_weight) * graphs["text"]).tocsr()


class PreferenceGCN(nn.Module):
    """MMRec's `GCN` with dim_latent (DualGNN, DRAGON): [preference; MLP_1(leaky_relu(MLP(
    features)))], each normalised, summed over 0..2 hops of the normalised user-item graph."""

    def __init__(self, n_users: int, feature_width: int, size: int, device: torch.device):
        super().__init__()
        self.preference = nn.Parameter(
            nn.init.xavier_normal_(torch.empty(n_users, size, device=device)))
        self.mlp = nn.Linear(feature_width, 4 * size, device=device)
        self.mlp_1 = nn.Linear(4 * size, size, device=device)

    def forward(self, features: torch.Tensor, graph: BipartitePropagation
                ) -> tuple[torch.Tensor, torch.Tensor]:
        items = self.mlp_1(F.leaky_relu(self.mlp(features)))
        layer = (F.normalize(self.preference), F.normalize(items))
        return lightgcn_layer_sum(graph, layer, PREFERENCE_GCN_HOPS)


def softmax_pair_weights(n_rows: int, device: torch.device) -> nn.Parameter:
    """MMRec's weight_u / weight_i: xavier_normal of (n_rows, 2, 1), softmax over the 2."""
    weights = nn.init.xavier_normal_(torch.empty(n_rows, 2, 1, device=device))
    return nn.Parameter(F.softmax(weights, dim=1))


def sampled_user_graph(neighbours: sp.csr_matrix, k: int, n_users: int,
                       generator: torch.Generator, device: torch.device) -> SquareGraph:
    """One epoch's user graph (MMRec's topk_sample): each user's k neighbours drawn from the
    co-interaction graph with softmax weights, as a row-stochastic users x users operator."""
    indices, weights = softmax_neighbour_lists(neighbours, k, generator)
    matrix = neighbour_lists_matrix(indices, weights, n_users)
    return SquareGraph(to_torch_sparse(matrix, device), to_torch_sparse(matrix.T, device))


def fused_views_loss(content: torch.Tensor, modal: dict[str, torch.Tensor], fuse,
                     users: torch.Tensor, pos_items: torch.Tensor, neg_items: torch.Tensor,
                     n_users: int, reg_weight: float, cl_weight: float,
                     temperature: float) -> dict[str, torch.Tensor]:
    """MGCN's loss, which SMORE's reference repeats: the content view plus the side view that
    `fuse(content_rows, modal_rows)` makes, computed at the batch's distinct nodes only (it is
    row-wise, so the numbers are the reference's); log-sigmoid BPR, a squared-L2 term over the
    batch's final embeddings, and one-way InfoNCE from the side to the content view of the
    positive items and of the users."""
    nodes = torch.cat([users, n_users + pos_items, n_users + neg_items])
    unique_nodes, index = torch.unique(nodes, return_inverse=True)
    content_rows = content[unique_nodes]
    side_rows = fuse(content_rows, {name: view[unique_nodes] for name, view in modal.items()})
    final = (content_rows + side_rows)[index]
    user_e, pos_e, neg_e = final.split(len(users))
    terms = {"bpr": logsigmoid_bpr_loss(user_e, pos_e, neg_e)}
    if reg_weight != 0:
        squared = user_e.square().sum() + pos_e.square().sum() + neg_e.square().sum()
        terms["reg"] = reg_weight * 0.5 * squared / len(users)
    if cl_weight != 0:
        side, content_b = side_rows[index], content_rows[index]
        n = len(users)
        terms["cl"] = cl_weight * (
            one_way_info_nce(side[n:2 * n], content_b[n:2 * n], temperature)
            + one_way_info_nce(side[:n], content_b[:n], temperature))
    return terms
