"""Row gathers: embedding lookups cheaper than the plain ones, same values and gradients.

- `gather_rows(table, index)`: `table[index]` whose backward is a zeroed table plus one
  `index_add_` (autograd's embedding backward does more passes); the same gradient as
  `nn.Embedding`'s, bitwise on one thread (tests/ops/test_gather.py).
- `ReusedRowGather`: `table[index]` of a frozen table into one buffer reused across batches.

Plain-autograd reference: `reference_gather_rows` (`table[index]`).
"""

from __future__ import annotations

import torch

from crane.ops.precision import apply_in_float32


def gather_rows(table: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """`table[index]` with a zeros + `index_add_` backward."""
    return apply_in_float32(_GatherRows, table, index)


def reference_gather_rows(table: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    return table[index]


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


class ReusedRowGather:
    """`table[index]` for a frozen table, written into one buffer reused across batches.

    A fresh (batch x 4096) float tensor per batch is a new mapping whose page faults cost as
    much as the gather itself on CPU. Autograd's version counter guards the reuse:
    backpropagating through an older batch after the buffer was overwritten raises.
    A table that requires gradient is gathered plainly.
    """

    def __init__(self) -> None:
        self._buffer: torch.Tensor | None = None

    def __call__(self, table: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        if table.requires_grad:
            return table[index]
        n = len(index)
        buffer = self._buffer
        if (buffer is None or buffer.shape[0] < n or buffer.shape[1:] != table.shape[1:]
                or buffer.dtype != table.dtype or buffer.device != table.device):
            # Some slack: the number of distinct items varies a little from batch to batch.
            buffer = self._buffer = torch.empty((n + n // 4, *table.shape[1:]),
                                                dtype=table.dtype, device=table.device)
        return torch.index_select(table, 0, index, out=buffer[:n])
