"""Softmax over groups of entries (attention over each node's incoming edges).

`segment_softmax(scores, groups, n_groups)`: entry e divided among the entries of its group
groups[e], exp(s_e - max_g) / (sum over the group of exp(s - max_g) + 1e-16), as
torch_geometric's `softmax(src, index)` (its max is taken on detached scores; softmax does not
depend on the shift, so the gradient is the same). Plain torch autograd: one scatter-max, one
exponential and one scatter-add, O(E) memory; used by GRCN's graph attention.

Plain-autograd reference: `reference_segment_softmax`, one torch.softmax per group;
tests/ops/test_segment_softmax.py checks values and gradients against it.
"""

from __future__ import annotations

import torch


def segment_softmax(scores: torch.Tensor, groups: torch.Tensor, n_groups: int) -> torch.Tensor:
    """Softmax of the 1-d `scores` within each group (groups[e] in [0, n_groups))."""
    maximum = torch.full((n_groups,), float("-inf"), dtype=scores.dtype, device=scores.device)
    maximum = maximum.scatter_reduce(0, groups, scores.detach(), reduce="amax")
    shifted = (scores - maximum[groups]).exp()
    totals = torch.zeros(n_groups, dtype=scores.dtype, device=scores.device)
    totals = totals.index_add(0, groups, shifted)
    return shifted / (totals[groups] + 1e-16)


def reference_segment_softmax(scores: torch.Tensor, groups: torch.Tensor,
                              n_groups: int) -> torch.Tensor:
    out = torch.zeros_like(scores)
    for group in range(n_groups):
        members = (groups == group).nonzero().ravel()
        if len(members):
            out = out.index_put((members,), torch.softmax(scores[members], dim=0))
    return out
