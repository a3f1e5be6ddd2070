"""Sparse (CSR) x dense products for square graphs: item-item kNN graphs, LATTICE's user-item
matrix, the concatenated user-item adjacency of BM3, MGCN and LGMRec.

- `csr_matmul(matrix, dense)`: outside autograd; on CPU through a scipy view of the same
  arrays, the two row halves on two threads when the run has two.
- `constant_sparse_mm(matrix, transpose, dense)`: a graph fixed for many batches; the backward
  multiplies by the given transpose (torch's own CSR backward re-sorts indices every call).
- `constant_sparse_rows_mm(matrix, transpose, rows, dense)`: the same at some rows only.
- `csr_mm_with_value_grad(matrix, dense, values)`: a graph whose values carry gradient
  (LATTICE's learned graph, GRCN's attention weights), backward in O(nnz x d) time and
  memory.
- `to_torch_sparse(matrix, device)`: a scipy matrix as a torch CSR tensor.
- `graph_mm(graph, dense)`: torch.sparse.mm, in float32 under autocast.
- `transposed_csr(block)`: block.T as CSR (scipy multiplies CSR faster than CSC; same bits).

Every product computes each output row from that row's nonzeros in column order, so a row
block, a row half and the whole matrix give the same values. Plain-autograd reference:
`reference_csr_mm`; tests/ops/test_sparse.py checks values and gradients against it.
"""

from __future__ import annotations

import warnings
import weakref

import numpy as np
import scipy.sparse as sp
import torch

from crane.ops.precision import apply_in_float32
from crane.ops.threads import run_pair, sparse_product_threads

# torch warns once per process that CSR support is "beta"; we rely only on its stable core
# (construction and sparse @ dense), so the warning is noise in every log.
warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta state")

def graph_mm(graph: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
    """`torch.sparse.mm(graph, dense)` for a torch sparse graph; under autocast in float32
    (torch has no bf16 CSR product on CPU, and a graph's row sums are reductions)."""
    device_type = dense.device.type
    if not torch.is_autocast_enabled(device_type):
        return torch.sparse.mm(graph, dense)
    with torch.autocast(device_type, enabled=False):
        return torch.sparse.mm(graph, dense.float())


def to_torch_sparse(matrix: sp.spmatrix, device: torch.device | str = "cpu") -> torch.Tensor:
    """scipy sparse -> torch sparse CSR (fast sparse-dense products on CPU and GPU)."""
    csr = sp.csr_matrix(matrix)
    return torch.sparse_csr_tensor(
        torch.from_numpy(csr.indptr.astype(np.int64)),
        torch.from_numpy(csr.indices.astype(np.int64)),
        torch.from_numpy(csr.data.astype(np.float32)),
        size=csr.shape,
        device=device,
        check_invariants=False,  # scipy already guarantees a valid CSR
    )


_RowHalves = tuple[sp.csr_matrix, sp.csr_matrix, int]  # top rows, bottom rows, split row
_SCIPY_VIEWS: dict[int, tuple[sp.csr_matrix, _RowHalves]] = {}


def reference_csr_mm(matrix: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
    """matrix @ dense in plain autograd (dense matrix; gradient to values and to dense)."""
    return matrix.to_dense() @ dense


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
    """`block.T` as CSR. scipy multiplies a CSC matrix (what `.T` gives) by a dense one more
    slowly than the CSR of the same matrix; the results are bitwise equal, since each output
    row adds its terms in the same (column) order (tests/ops/test_sparse.py)."""
    return sp.csr_matrix(block.T)


class _ConstantCsrMM(torch.autograd.Function):
    """matrix @ dense, backward transpose @ grad with the transpose given up front."""

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
    return apply_in_float32(_ConstantCsrMM, dense, matrix, transpose)


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
    return apply_in_float32(_ConstantCsrRowsMM, dense, whole[rows.numpy()])


# Entries per block of the value gradient <grad_out[row], dense[col]>: bounds its temporary
# (entries x d floats) to 64 MiB at d = 64.
VALUE_GRAD_BLOCK = 1 << 18


class _CsrValuesMM(torch.autograd.Function):
    """A @ dense where A's values carry gradient, in O(nnz x d) time and memory.

    torch's backward of a CSR product with differentiable values does dense N x N work.
    Here, for out = A @ dense: grad(values[e]) = <grad_out[row e], dense[col e]> and
    grad(dense) = A^T grad_out.
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
            grad_dense = csr_matmul(sparse_transpose(matrix.detach()), grad)
        return grad_values, grad_dense, None


def csr_mm_with_value_grad(matrix: torch.Tensor, dense: torch.Tensor,
                           values: torch.Tensor | None = None) -> torch.Tensor:
    """matrix @ dense for a CSR tensor whose values carry gradient (and dense's).

    `values`: the matrix's values in CSR order, with their gradient, for a matrix built from
    detached values. Pass them whenever the values would otherwise reach the matrix through
    `torch.sparse_csr_tensor`: that constructor's backward makes a dense rows x columns
    gradient (GRCN's users x items at every step). A matrix made by `coalesce()` and
    `to_sparse_csr()` (LATTICE's) keeps a sparse gradient and may carry its own values.
    """
    values = matrix.values() if values is None else values
    return apply_in_float32(_CsrValuesMM, values, dense, matrix.detach())


def sparse_transpose(matrix: torch.Tensor) -> torch.Tensor:
    """Transpose of a CSR tensor, as CSR."""
    return matrix.to_sparse_coo().t().coalesce().to_sparse_csr()
