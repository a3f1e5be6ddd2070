"""Building blocks shared by models (skipped by model discovery: nothing here is registered).

- `RecursiveCrossModalAttention`: CRANE's RCA fusion (crane-method.md section 3).
- `ConcatFusion`: the `fusion: concat` ablation (z = [x^v, x^t] W_z).
- `PrototypeAttentionFusion`: the authors' prototype (2-token multi-head self-attention).
- `CsrGraph` + `RowBlock`: row gathers of a sparse graph, so that a training step propagates
  only the rows it needs (never a dense N x N object).
- `degree_sensitive_edge_dropout`: FREEDOM's per-epoch pruning of the user-item graph.
- `lightgcn_propagate`, `info_nce`.
- `constant_sparse_mm`, `constant_sparse_rows_mm`, `csr_mm_with_value_grad`, `csr_matmul`:
  CSR x dense products (scipy on CPU), for a constant graph (all rows, or some) and for one
  whose values carry gradient (LATTICE).
- `dot_scores`: users @ items.T for scoring (numpy's BLAS on CPU).
- `gather_rows`: an embedding lookup with a cheaper backward.

All fusion modules take the modality tokens of a batch of entities as one (M, B, d) tensor
(M = number of modalities, slice m holds modality m) and return one (B, d) vector per entity.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import nn

from crane.graphs.user_item import to_torch_sparse
from crane.ops.threads import run_pair, sparse_product_threads


# --------------------------------------------------------------------------- fusion blocks


class RCAStep(nn.Module):
    """One step of Recursive Cross-modal Attention (crane-method.md section 3, items 1-4).

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


class FastDropout(nn.Module):
    """Inverted dropout (as nn.Dropout: zero with probability p, scale the rest by 1/(1-p);
    identity in eval mode) with the mask drawn by `torch.rand`: on CPU torch's `bernoulli_`
    behind nn.Dropout costs about twice as much, and the RCA branch of a Baby-sized step
    holds over a million entries per step."""

    def __init__(self, p: float):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = torch.rand(x.shape, device=x.device) >= self.p
        return x * keep * (1.0 / (1.0 - self.p))


def _concat_tokens(tokens: torch.Tensor) -> torch.Tensor:
    """(M, B, d) -> (B, M d): the concatenation [h^1, ..., h^M] of every entity."""
    return tokens.transpose(0, 1).reshape(tokens.shape[1], -1)


def _per_modality_weight(n_modalities: int, fan_in: int, fan_out: int) -> nn.Parameter:
    """(M, fan_in, fan_out) right-multiplied weights, initialised as nn.Linear's."""
    bound = fan_in ** -0.5
    return nn.Parameter(torch.empty(n_modalities, fan_in, fan_out).uniform_(-bound, bound))


# --------------------------------------------------------------------------- sparse row gathers


@dataclass(frozen=True)
class RowBlock:
    """The nonzeros of some rows of a sparse matrix, with their columns renumbered densely.

    `columns` are the distinct original column ids the rows reach (sorted); entry e of the
    block sits in output row `entry_row[e]`, reads `columns[entry_col[e]]` with `values[e]`.
    """

    n_rows: int
    columns: torch.Tensor
    entry_row: torch.Tensor
    entry_col: torch.Tensor
    values: torch.Tensor

    def propagate(self, column_values: torch.Tensor) -> torch.Tensor:
        """(rows of the matrix) @ X, given X only at `columns`: (n_rows, d)."""
        weighted = column_values[self.entry_col] * self.values.unsqueeze(1)
        out = column_values.new_zeros((self.n_rows, column_values.shape[1]))
        return out.index_add(0, self.entry_row, weighted)


@dataclass(frozen=True)
class CsrGraph:
    """A sparse matrix held as CSR arrays (torch, on the model's device)."""

    crow: torch.Tensor
    col: torch.Tensor
    val: torch.Tensor
    shape: tuple[int, int]

    @classmethod
    def from_scipy(cls, matrix: sp.spmatrix, device: torch.device | str = "cpu") -> "CsrGraph":
        csr = sp.csr_matrix(matrix)
        csr.sort_indices()
        return cls(torch.as_tensor(csr.indptr.astype(np.int64), device=device),
                   torch.as_tensor(csr.indices.astype(np.int64), device=device),
                   torch.as_tensor(csr.data.astype(np.float32), device=device),
                   tuple(csr.shape))

    def rows(self, rows: torch.Tensor) -> RowBlock:
        """Gather `rows` (cost linear in their nonzeros, plus a sort of those)."""
        starts = self.crow[rows]
        counts = self.crow[rows + 1] - starts
        entry_row = torch.repeat_interleave(torch.arange(len(rows), device=rows.device), counts)
        first_entry = torch.cumsum(counts, 0) - counts
        position = (starts - first_entry)[entry_row] + torch.arange(len(entry_row),
                                                                      device=rows.device)
        columns, entry_col = torch.unique(self.col[position], return_inverse=True)
        return RowBlock(len(rows), columns, entry_row, entry_col, self.val[position])


def multi_hop_blocks(graph: CsrGraph, targets: torch.Tensor, hops: int) -> list[RowBlock]:
    """Row blocks for (graph^hops)[targets] @ X: block l maps hop l+1's columns to hop l's.

    Evaluate as: v = X[blocks[-1].columns]; for block in reversed(blocks): v = block.propagate(v).
    """
    blocks, rows = [], targets
    for _ in range(hops):
        block = graph.rows(rows)
        blocks.append(block)
        rows = block.columns
    return blocks


# --------------------------------------------------------------------------- row gathers

def gather_rows(table: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """`table[index]` (an embedding lookup) whose backward is a zeroed table plus one
    `index_add_`: the same gradient as `nn.Embedding`'s (bitwise on one thread), in 120
    instead of 290 microseconds at Baby's tables (2048 rows of 64 into 19,445)."""
    return _GatherRows.apply(table, index)


class _GatherRows(torch.autograd.Function):
    @staticmethod
    def forward(ctx, table, index):
        ctx.save_for_backward(index)
        ctx.shape = table.shape
        return table.index_select(0, index)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        (index,) = ctx.saved_tensors
        return grad.new_zeros(ctx.shape).index_add_(0, index, grad), None


# --------------------------------------------------------------------------- sparse products
# torch's CPU CSR x dense product is 2.7-5.7x slower than scipy's on this machine
# (benchmarks/README.md, hot spot 4): on CPU, float32 products go through scipy views of the
# same arrays, split into two row halves on two threads when torch may use two.

_RowHalves = tuple[sp.csr_matrix, sp.csr_matrix, int]  # top rows, bottom rows, split row
_SCIPY_VIEWS: dict[int, tuple[sp.csr_matrix, _RowHalves]] = {}


def scipy_view(matrix: torch.Tensor) -> tuple[sp.csr_matrix, _RowHalves]:
    """(scipy CSR, (top rows, bottom rows, split row)) of a CPU torch CSR tensor, cached for as
    long as the tensor lives (graphs are built once and multiplied many times)."""
    key = id(matrix)
    cached = _SCIPY_VIEWS.get(key)
    if cached is None:
        crow = matrix.crow_indices().numpy()
        whole = sp.csr_matrix((matrix.values().detach().numpy(), matrix.col_indices().numpy(),
                               crow), shape=tuple(matrix.shape))
        split = int(np.searchsorted(crow, crow[-1] / 2))  # half of the nonzeros each
        cached = (whole, (whole[:split], whole[split:], split))
        _SCIPY_VIEWS[key] = cached
        weakref.finalize(matrix, _SCIPY_VIEWS.pop, key, None)
    return cached


def csr_matmul(matrix: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
    """matrix @ dense for a CSR tensor, outside autograd (row by row, so exactly as torch's
    up to the order of each row's float additions)."""
    if (dense.device.type != "cpu" or dense.dtype != torch.float32
            or matrix.dtype != torch.float32):
        return matrix.detach() @ dense.detach()
    whole, (top, bottom, split) = scipy_view(matrix)
    x = dense.detach().contiguous().numpy()
    if sparse_product_threads() > 1 and 0 < split < whole.shape[0]:
        # scipy releases the GIL: the two row halves run on two cores
        out = np.concatenate(run_pair(lambda: top @ x, lambda: bottom @ x))
    else:
        out = whole @ x
    return torch.from_numpy(np.asarray(out, dtype=np.float32))


def transposed_csr(block: sp.csr_matrix) -> sp.csr_matrix:
    """`block.T` as CSR. scipy multiplies a CSC matrix (what `.T` gives) by a dense one
    about twice as slowly as the CSR of the same matrix (Baby's batch blocks: 3.6 against
    1.6 ms, plus 0.5 ms to convert); the results are bitwise equal, since each output row
    adds its terms in the same (column) order."""
    return sp.csr_matrix(block.T)


class _ConstantCsrMM(torch.autograd.Function):
    """matrix @ dense, backward transpose @ grad with the transpose given up front.

    torch's own backward of a CSR product converts and sorts the indices at every call;
    for a graph fixed for many batches that costs as much as the product itself.
    """

    @staticmethod
    def forward(ctx, dense: torch.Tensor, matrix: torch.Tensor,
                transpose: torch.Tensor) -> torch.Tensor:
        ctx.transpose = transpose
        return csr_matmul(matrix, dense)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return csr_matmul(ctx.transpose, grad), None, None


def constant_sparse_mm(matrix: torch.Tensor, transpose: torch.Tensor,
                       dense: torch.Tensor) -> torch.Tensor:
    """`matrix @ dense` for a constant CSR `matrix` (gradient to `dense` only)."""
    return _ConstantCsrMM.apply(dense, matrix, transpose)


class _ConstantCsrRowsMM(torch.autograd.Function):
    """matrix[rows] @ dense for a constant CSR matrix (CPU: a scipy row block of it)."""

    @staticmethod
    def forward(ctx, dense: torch.Tensor, block: sp.csr_matrix) -> torch.Tensor:
        ctx.block = block
        return torch.from_numpy(np.asarray(block @ dense.detach().contiguous().numpy(),
                                           dtype=np.float32))

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        product = transposed_csr(ctx.block) @ grad.contiguous().numpy()
        return torch.from_numpy(np.asarray(product, dtype=np.float32)), None


def constant_sparse_rows_mm(matrix: torch.Tensor, transpose: torch.Tensor, rows: torch.Tensor,
                            dense: torch.Tensor) -> torch.Tensor:
    """`(matrix @ dense)[rows]` for a constant CSR `matrix`, computing only those rows on CPU
    (each row the same product as in `constant_sparse_mm`, so the same values)."""
    if (dense.device.type != "cpu" or dense.dtype != torch.float32
            or matrix.dtype != torch.float32):
        return constant_sparse_mm(matrix, transpose, dense)[rows]
    whole, _ = scipy_view(matrix)
    return _ConstantCsrRowsMM.apply(dense, whole[rows.numpy()])


# Entries per block of the value gradient <grad_out[row], dense[col]>: bounds its temporary
# (entries x d floats) to 64 MiB at d = 64.
VALUE_GRAD_BLOCK = 1 << 18


class _CsrValuesMM(torch.autograd.Function):
    """A @ dense where A's values carry gradient, in O(nnz x d) time and memory.

    torch's backward of a CSR product with differentiable values materialises dense N x N
    work (benchmarks/README.md, hot spot 2). Here, for out = A @ dense:
    grad(values[e]) = <grad_out[row e], dense[col e]> and grad(dense) = A^T grad_out.
    """

    @staticmethod
    def forward(ctx, values: torch.Tensor, dense: torch.Tensor, matrix: torch.Tensor):
        ctx.save_for_backward(dense)
        ctx.matrix = matrix
        return csr_matmul(matrix, dense)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (dense,) = ctx.saved_tensors
        matrix = ctx.matrix
        grad_values = grad_dense = None
        if ctx.needs_input_grad[0]:
            crow, col = matrix.crow_indices(), matrix.col_indices()
            row = torch.repeat_interleave(torch.arange(matrix.shape[0], device=crow.device),
                                          crow.diff())
            grad_values = torch.empty(len(col), dtype=grad.dtype, device=grad.device)
            for start in range(0, len(col), VALUE_GRAD_BLOCK):
                stop = start + VALUE_GRAD_BLOCK
                grad_values[start:stop] = (grad[row[start:stop]] * dense[col[start:stop]]).sum(1)
        if ctx.needs_input_grad[1]:
            transpose = matrix.detach().to_sparse_coo().t().coalesce().to_sparse_csr()
            grad_dense = csr_matmul(transpose, grad)
        return grad_values, grad_dense, None


def csr_mm_with_value_grad(matrix: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
    """matrix @ dense for a CSR tensor whose values() carry gradient (and dense's)."""
    return _CsrValuesMM.apply(matrix.values(), dense, matrix.detach())


# --------------------------------------------------------------------------- scoring


def dot_scores(users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
    """users @ items.T; on CPU outside autograd through numpy's BLAS.

    numpy's OpenBLAS sgemm costs about half of torch's MKL one on this machine's AMD CPU for
    the (users x 64) @ (64 x items) scoring products (benchmarks/README.md, hot spot 5). The
    two libraries sum in different orders, so scores may differ in the last bit.
    """
    needs_grad = torch.is_grad_enabled() and (users.requires_grad or items.requires_grad)
    if (users.device.type != "cpu" or needs_grad or users.dtype != torch.float32
            or items.dtype != torch.float32):
        return users @ items.T
    return torch.from_numpy(np.matmul(users.detach().numpy(), items.detach().numpy().T))


# --------------------------------------------------------------------------- user-item graph


def lightgcn_propagate(adjacency: torch.Tensor, ego: torch.Tensor, n_layers: int) -> torch.Tensor:
    """LightGCN: mean of the layer-0..n_layers embeddings A^l ego of the normalised adjacency
    (a constant CSR tensor; symmetric, so it is its own transpose in the backward)."""
    layers = [ego]
    for _ in range(n_layers):
        layers.append(constant_sparse_mm(adjacency, adjacency, layers[-1]))
    return torch.stack(layers, dim=1).mean(dim=1)


@dataclass(frozen=True)
class BipartiteEdges:
    """Training edges (u, i) of the user-item graph and FREEDOM's 1/sqrt(deg u deg i) weights."""

    user: torch.Tensor  # (E,) int64, CPU
    item: torch.Tensor
    weight: torch.Tensor  # (E,) float32: sampling weights of the degree-sensitive dropout
    n_users: int
    n_items: int

    @classmethod
    def from_matrix(cls, train: sp.csr_matrix) -> "BipartiteEdges":
        coo = train.tocoo()
        user = torch.as_tensor(coo.row.astype(np.int64))
        item = torch.as_tensor(coo.col.astype(np.int64))
        return cls(user, item, _edge_norm(user, item, *train.shape), *train.shape)


def _edge_norm(user: torch.Tensor, item: torch.Tensor, n_users: int, n_items: int) -> torch.Tensor:
    """1 / sqrt(deg(u) deg(i)) of every edge (with FREEDOM's 1e-7 guard on the degrees)."""
    user_deg = torch.bincount(user, minlength=n_users).float() + 1e-7
    item_deg = torch.bincount(item, minlength=n_items).float() + 1e-7
    return user_deg[user].rsqrt() * item_deg[item].rsqrt()


def degree_sensitive_edge_dropout(edges: BipartiteEdges, drop_rate: float,
                                  generator: torch.Generator,
                                  device: torch.device | str = "cpu") -> torch.Tensor:
    """`degree_sensitive_dropped_adjacency` as a torch sparse CSR tensor on `device`."""
    return to_torch_sparse(degree_sensitive_dropped_adjacency(edges, drop_rate, generator),
                           device)


def degree_sensitive_dropped_adjacency(edges: BipartiteEdges, drop_rate: float,
                                       generator: torch.Generator) -> sp.csr_matrix:
    """FREEDOM's pruned graph: keep int(E (1 - rate)) edges sampled without replacement with
    probability proportional to 1/sqrt(deg u deg i), renormalise D^-1/2 A D^-1/2 on the
    kept edges; returns the symmetric (U+N) x (U+N) adjacency (scipy CSR, float32)."""
    n_keep = int(len(edges.weight) * (1.0 - drop_rate))
    kept = torch.multinomial(edges.weight, n_keep, replacement=False, generator=generator)
    user, item = edges.user[kept], edges.item[kept]
    values = _edge_norm(user, item, edges.n_users, edges.n_items).numpy()
    n_nodes = edges.n_users + edges.n_items
    rows = np.concatenate([user.numpy(), item.numpy() + edges.n_users])
    cols = np.concatenate([item.numpy() + edges.n_users, user.numpy()])
    return sp.csr_matrix((np.concatenate([values, values]), (rows, cols)),
                         shape=(n_nodes, n_nodes), dtype=np.float32)


# --------------------------------------------------------------------------- contrastive loss


def info_nce(a: torch.Tensor, b: torch.Tensor, tau: float) -> torch.Tensor:
    """Symmetric InfoNCE of paired rows (a_j, b_j), cosine similarity / tau, averaged over
    both directions (a -> b and b -> a). The logits are len(a) x len(a): batch-sized."""
    a, b = F.normalize(a, dim=1), F.normalize(b, dim=1)
    if 2.0 / tau <= _MAX_SHIFTED_EXPONENT:
        return _SharedExpInfoNCE.apply(a, b, tau)
    logits = a @ b.T / tau
    positive = logits.diagonal()
    a_to_b = (torch.logsumexp(logits, dim=1) - positive).mean()
    b_to_a = (torch.logsumexp(logits, dim=0) - positive).mean()
    return 0.5 * (a_to_b + b_to_a)


# Cosine logits lie in [-1/tau, 1/tau]: exp(logit - 1/tau) >= exp(-2/tau) stays a normal
# float32 (> 1.2e-38) while 2/tau <= 80, so one shifted exponential serves the row and the
# column log-sum-exps alike (smaller tau falls back to torch.logsumexp).
_MAX_SHIFTED_EXPONENT = 80.0


class _SharedExpInfoNCE(torch.autograd.Function):
    """Symmetric InfoNCE of unit rows with one n x n exponential shared by both directions
    and a hand-written backward: the contrastive term of a 2048-row batch is otherwise a third
    of a CRANE training step on CPU."""

    @staticmethod
    def forward(ctx, a: torch.Tensor, b: torch.Tensor, tau: float) -> torch.Tensor:
        n = a.shape[0]
        shift = 1.0 / tau
        exp = dot_scores(a, b).mul_(shift).sub_(shift).exp_()  # exp(logits - 1/tau)
        row_sum, col_sum = exp.sum(dim=1), exp.sum(dim=0)
        positive = (a * b).sum(dim=1) * shift - shift
        loss = 0.5 * ((row_sum.log() - positive).sum() + (col_sum.log() - positive).sum()) / n
        ctx.save_for_backward(a, b, exp, row_sum, col_sum)
        ctx.tau = tau
        return loss

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        a, b, exp, row_sum, col_sum = ctx.saved_tensors
        scale = grad_output / (2.0 * a.shape[0] * ctx.tau)
        # d loss / d logits = (softmax_rows + softmax_cols) / 2n - I / n (exp stays intact
        # for a backward with retain_graph)
        grad = exp * row_sum.reciprocal().unsqueeze(1)
        grad.addcmul_(exp, col_sum.reciprocal().unsqueeze(0))
        grad.diagonal().sub_(2.0)
        grad.mul_(scale)
        # dot_scores(x, y) = x @ y.T (numpy's BLAS on CPU: about twice MKL's speed here)
        return dot_scores(grad, b.T), dot_scores(grad.T, a.T), None
