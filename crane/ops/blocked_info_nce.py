"""InfoNCE over every row of two large tables, computed in row blocks.

`blocked_one_way_info_nce(anchor, positive, tau)` is the one-way InfoNCE of
`crane.ops.contrastive.one_way_info_nce` (row i of `anchor` against row i of `positive`, every
other row of `positive` a negative, cosine / tau), for tables too large for the full
(n x n) logits: MENTOR's reference contrasts all users (and all items) of two noisy views at
every batch. Autograd would keep the n x n logits, their exponentials and their gradient; the
kernel keeps one block of `block_rows` x n logits at a time, in the forward pass and again in
the backward pass (which recomputes each block from the saved unit rows and log-sum-exps).
Memory: O(block_rows n + n d).

Plain-autograd reference: `reference_blocked_one_way_info_nce` (MENTOR's `InfoNCE`, written as
there); tests/ops/test_blocked_info_nce.py checks values and gradients against it, for
blocks that do and do not divide the rows.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from crane.ops.precision import apply_in_float32

# Logits per block: 2^24 float32 values (64 MiB) whatever the table size.
BLOCK_ELEMENTS = 1 << 24


def blocked_one_way_info_nce(anchor: torch.Tensor, positive: torch.Tensor, temperature: float,
                             block_rows: int | None = None) -> torch.Tensor:
    """Mean over rows i of -log(exp(c_ii / tau) / sum_j exp(c_ij / tau)), c the cosines of
    the rows of `anchor` and `positive`; the logits `block_rows` rows at a time."""
    if anchor.shape != positive.shape or anchor.dim() != 2:
        raise ValueError(f"blocked InfoNCE needs two tables of the same (n, d) shape, got "
                         f"{tuple(anchor.shape)} and {tuple(positive.shape)}")
    n = anchor.shape[0]
    rows = block_rows if block_rows is not None else max(1, BLOCK_ELEMENTS // max(n, 1))
    if rows < 1:
        raise ValueError(f"block_rows must be >= 1, got {block_rows}")
    scaled = F.normalize(anchor, dim=1) / temperature  # the temperature folded into one side
    unit = F.normalize(positive, dim=1)
    return apply_in_float32(_BlockedInfoNCE, scaled, unit, rows)


class _BlockedInfoNCE(torch.autograd.Function):
    """mean_i(logsumexp_j(a_i . b_j) - a_i . b_i) with a hand-written, blocked backward."""

    @staticmethod
    def forward(ctx, a: torch.Tensor, b: torch.Tensor, block_rows: int) -> torch.Tensor:
        n = a.shape[0]
        log_sums = torch.empty(n, dtype=a.dtype, device=a.device)
        for start in range(0, n, block_rows):
            stop = min(start + block_rows, n)
            log_sums[start:stop] = torch.logsumexp(a[start:stop] @ b.T, dim=1)
        positives = (a * b).sum(dim=1)
        ctx.save_for_backward(a, b, log_sums)
        ctx.block_rows = block_rows
        return (log_sums - positives).mean()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor):
        a, b, log_sums = ctx.saved_tensors
        n = a.shape[0]
        scale = grad / n
        grad_a = torch.empty_like(a)
        grad_b = torch.zeros_like(b)
        for start in range(0, n, ctx.block_rows):
            stop = min(start + ctx.block_rows, n)
            # d loss / d logits of the block: (softmax of each row - one-hot of i) / n
            weights = (a[start:stop] @ b.T).sub_(log_sums[start:stop, None]).exp_()
            rows = torch.arange(stop - start, device=a.device)
            weights[rows, rows + start] -= 1.0
            weights.mul_(scale)
            grad_a[start:stop] = weights @ b
            grad_b.addmm_(weights.T, a[start:stop])
        return grad_a, grad_b, None


# --------------------------------------------------------------------------- reference


def reference_blocked_one_way_info_nce(anchor: torch.Tensor, positive: torch.Tensor,
                                       temperature: float) -> torch.Tensor:
    """MENTOR's InfoNCE(view1, view2, temp), as written there (full n x n logits)."""
    view1, view2 = F.normalize(anchor, dim=1), F.normalize(positive, dim=1)
    pos_score = (view1 * view2).sum(dim=-1)
    pos_score = torch.exp(pos_score / temperature)
    ttl_score = torch.matmul(view1, view2.transpose(0, 1))
    ttl_score = torch.exp(ttl_score / temperature).sum(dim=1)
    cl_loss = -torch.log(pos_score / ttl_score)
    return torch.mean(cl_loss)
