"""segment_softmax equals one torch.softmax per group, in value and gradient."""

from __future__ import annotations

import torch

from crane.ops.segment_softmax import reference_segment_softmax, segment_softmax


def test_values_and_gradients_match_a_softmax_per_group():
    generator = torch.Generator().manual_seed(0)
    groups = torch.randint(7, (50,), generator=generator)   # group 6 may be empty
    groups[groups == 5] = 4                                  # an empty group for sure
    scores = (10 * torch.randn(50, generator=generator)).requires_grad_()
    weights = torch.randn(50, generator=generator)
    ours = segment_softmax(scores, groups, 7)
    (ours * weights).sum().backward()
    fast = scores.grad.clone()
    scores.grad = None
    reference = reference_segment_softmax(scores, groups, 7)
    (reference * weights).sum().backward()
    torch.testing.assert_close(ours, reference)
    torch.testing.assert_close(fast, scores.grad)
    sums = torch.zeros(7).index_add(0, groups, ours.detach())
    torch.testing.assert_close(sums[torch.unique(groups)], torch.ones(len(torch.unique(groups))))


def test_large_scores_do_not_overflow():
    scores = torch.tensor([1000.0, 999.0, -1000.0, 0.0])
    groups = torch.tensor([0, 0, 1, 1])
    out = segment_softmax(scores, groups, 2)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, reference_segment_softmax(scores, groups, 2))
