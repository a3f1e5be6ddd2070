"""crane.ops.blocked_info_nce: the blocked InfoNCE against MENTOR's full-logits formula,
values and gradients, whatever the block size."""

import pytest
import torch

from crane.ops.blocked_info_nce import (blocked_one_way_info_nce,
                                        reference_blocked_one_way_info_nce)
from crane.ops.contrastive import one_way_info_nce


def pair(rows: int, cols: int, seed: int, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(rows, cols, generator=g, dtype=dtype, requires_grad=True),
            torch.randn(rows, cols, generator=g, dtype=dtype, requires_grad=True))


@pytest.mark.parametrize("block_rows", [1, 3, 4, 11, 12, 50, None])
@pytest.mark.parametrize("temperature", [0.2, 0.6])
def test_values_and_gradients_match_the_full_formula(block_rows, temperature):
    a, b = pair(12, 5, 0)
    ours = blocked_one_way_info_nce(a, b, temperature, block_rows)
    expected = reference_blocked_one_way_info_nce(a, b, temperature)
    torch.testing.assert_close(ours, expected)
    for got, want in zip(torch.autograd.grad(3.0 * ours, (a, b)),
                         torch.autograd.grad(3.0 * expected, (a, b))):
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-12)


def test_gradcheck_and_agreement_with_the_batch_kernel():
    a, b = pair(7, 4, 1)
    assert torch.autograd.gradcheck(lambda x, y: blocked_one_way_info_nce(x, y, 0.3, 2), (a, b))
    torch.testing.assert_close(blocked_one_way_info_nce(a, b, 0.3, 3), one_way_info_nce(a, b, 0.3))


def test_one_way_and_lower_for_aligned_views():
    a, b = pair(9, 6, 2)
    assert not torch.allclose(blocked_one_way_info_nce(b, a, 0.2, 4),
                              blocked_one_way_info_nce(a, b, 0.2, 4))
    assert blocked_one_way_info_nce(a, 2 * a + 0.01 * b, 0.2, 4) < blocked_one_way_info_nce(
        a, b, 0.2, 4)


def test_float32_tables_larger_than_a_block():
    a, b = pair(300, 16, 3, torch.float32)
    ours = blocked_one_way_info_nce(a, b, 0.2, 64)
    expected = reference_blocked_one_way_info_nce(a, b, 0.2)
    torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-6)
    for got, want in zip(torch.autograd.grad(ours, (a, b)),
                         torch.autograd.grad(expected, (a, b))):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-7)


def test_bad_shapes_are_named():
    a, b = pair(5, 3, 4)
    with pytest.raises(ValueError, match=r"same \(n, d\) shape, got \(5, 3\) and \(4, 3\)"):
        blocked_one_way_info_nce(a, b[:4], 0.2)
    with pytest.raises(ValueError, match="block_rows must be >= 1"):
        blocked_one_way_info_nce(a, b, 0.2, 0)
