"""Some rows of a sparse graph, so that a training step propagates only the rows it needs
(never a dense N x N object): CRANE's item-item graph and user profiles.

`CsrGraph.rows(rows)` gathers the rows' nonzeros as a `RowBlock` whose columns are renumbered
densely; `multi_hop_blocks` chains them for (graph^hops)[targets]. Reference: the dense matrix
power, tests/ops/test_row_blocks.py.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch


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
        """(rows of the matrix) @ X, given X only at `columns`: (n_rows, d), in the matrix's
        precision (float32) whatever X's (bf16 under autocast): sums of many terms."""
        weighted = column_values[self.entry_col].to(self.values.dtype) * self.values.unsqueeze(1)
        out = weighted.new_zeros((self.n_rows, column_values.shape[1]))
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

    def to_torch(self) -> torch.Tensor:
        """The matrix as a torch sparse CSR tensor (the same arrays)."""
        return torch.sparse_csr_tensor(self.crow, self.col, self.val, size=self.shape,
                                       check_invariants=False)  # built from a valid CSR

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
