"""Independent dropout of the stored entries of a sparse graph, as BUIR's and MMRec's
`LightGCN_Encoder.sparse_dropout` (SelfCF's encoder) does it.

Every stored entry of the (U+N) x (U+N) adjacency is kept independently, the (u, i) and the
(i, u) entry each with its own draw, so the dropped graph is in general not symmetric. With a
rate r and one uniform draw x per entry, an entry is kept where floor(1 - r + x) is 1 (x >= r
up to float rounding), and kept entries are scaled by 1 / (1 - r).

`DroppableGraph` keeps the adjacency as one torch CSR tensor; a dropped graph has the same
structure with the dropped values set to zero (adding an exact zero changes no float sum, so
the products equal those with the entries removed) and comes with its transpose, whose values
are a fixed permutation of the matrix's values: a `SquareGraph` whose backward multiplies by
the transpose without sorting indices. Memory: O(nnz) for the permutation and each draw.

Plain-autograd reference: `reference_sparse_dropout` (MMRec's formula on a dense matrix);
tests/ops/test_sparse_dropout.py checks values and gradients against it.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from crane.ops.propagation import SquareGraph
from crane.ops.sparse import to_torch_sparse


class DroppableGraph:
    """A square sparse graph with a symmetric pattern whose entries can be dropped."""

    def __init__(self, adjacency: sp.spmatrix, device: torch.device | str):
        csr = sp.csr_matrix(adjacency, dtype=np.float32)
        csr.sort_indices()
        self.device = torch.device(device)
        self.matrix = to_torch_sparse(csr, self.device)
        self.nnz = csr.nnz
        # position of entry (c, r) for the entry (r, c) at each CSR position
        positions = sp.csr_matrix((np.arange(csr.nnz, dtype=np.int64), csr.indices, csr.indptr),
                                  shape=csr.shape)
        transposed = sp.csr_matrix(positions.T)
        transposed.sort_indices()
        if not (np.array_equal(transposed.indptr, csr.indptr)
                and np.array_equal(transposed.indices, csr.indices)):
            raise ValueError("DroppableGraph needs an adjacency whose pattern is symmetric "
                             "(a (u, i) entry for every (i, u) entry)")
        self.transpose_position = torch.as_tensor(transposed.data, device=self.device)

    def full(self) -> SquareGraph:
        """The graph with no entry dropped."""
        return SquareGraph(self.matrix)

    def dropped(self, rate: float, uniform: torch.Tensor) -> SquareGraph:
        """The graph keeping the entries where floor(1 - rate + uniform) is 1, scaled by
        1 / (1 - rate); `uniform` holds one U[0, 1) draw per stored entry, in CSR order."""
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"sparse dropout rate must be in [0, 1), got {rate}")
        if uniform.shape != (self.nnz,):
            raise ValueError(f"sparse dropout needs one draw per stored entry ({self.nnz}), "
                             f"got shape {tuple(uniform.shape)}")
        keep = torch.floor((1 - rate) + uniform).to(torch.bool)
        values = torch.where(keep, self.matrix.values(), 0.0) * (1.0 / (1 - rate))
        crow, col = self.matrix.crow_indices(), self.matrix.col_indices()
        size = tuple(self.matrix.shape)
        matrix = torch.sparse_csr_tensor(crow, col, values, size=size, check_invariants=False)
        transpose = torch.sparse_csr_tensor(crow, col, values[self.transpose_position],
                                            size=size, check_invariants=False)
        return SquareGraph(matrix, transpose)


def random_sparse_dropout(graph: DroppableGraph, max_rate: float = 1.0) -> SquareGraph:
    """MMRec's per-batch draw: a rate uniform in [0, max_rate), then one uniform per entry,
    both from torch's global generator (so that the run's seed fixes them)."""
    rate = torch.rand(()).item() * max_rate
    uniform = torch.rand(graph.nnz, device=graph.device)
    return graph.dropped(rate, uniform)


# --------------------------------------------------------------------------- reference

def reference_sparse_dropout(adjacency: torch.Tensor, rate: float,
                             uniform: torch.Tensor) -> torch.Tensor:
    """MMRec's `sparse_dropout` on a dense matrix: the nonzeros in row-major (coalesced COO)
    order, kept where floor(1 - rate + uniform) is 1, the result scaled by 1 / (1 - rate)."""
    rows, cols = adjacency.nonzero(as_tuple=True)
    random_tensor = 1 - rate
    random_tensor += uniform
    mask = torch.floor(random_tensor).type(torch.bool)
    out = torch.zeros_like(adjacency)
    out[rows[mask], cols[mask]] = adjacency[rows[mask], cols[mask]]
    return out * (1. / (1 - rate))
