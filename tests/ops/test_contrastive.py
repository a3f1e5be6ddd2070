"""crane.ops.contrastive: each InfoNCE variant against its definition, values and gradients."""

import pytest
import torch
import torch.nn.functional as F

from crane.ops.contrastive import (log_sum_exp_of_product, one_way_info_nce,
                                   reference_log_sum_exp_of_product,
                                   reference_one_way_info_nce, reference_symmetric_info_nce,
                                   symmetric_info_nce)


def pair(rows: int, cols: int, seed: int, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(rows, cols, generator=g, dtype=dtype, requires_grad=True),
            torch.randn(rows, cols, generator=g, dtype=dtype, requires_grad=True))


def test_symmetric_info_nce_matches_its_definition():
    a, b = pair(6, 5, 0)
    tau = 0.3
    cos = F.normalize(a, dim=1) @ F.normalize(b, dim=1).T / tau
    a_to_b = -torch.mean(torch.diag(cos) - torch.logsumexp(cos, dim=1))
    b_to_a = -torch.mean(torch.diag(cos) - torch.logsumexp(cos, dim=0))
    assert torch.allclose(symmetric_info_nce(a, b, tau), (a_to_b + b_to_a) / 2, atol=1e-6)
    assert symmetric_info_nce(a, 3 * a, tau) < symmetric_info_nce(a, b, tau)  # aligned: lower


@pytest.mark.parametrize("tau", [0.2, 0.02])  # shared-exponential path and logsumexp path
def test_symmetric_info_nce_gradient_matches_the_definition(tau):
    a, b = pair(7, 4, 1, torch.float64)
    assert torch.allclose(symmetric_info_nce(a, b, tau), reference_symmetric_info_nce(a, b, tau))
    got = torch.autograd.grad(symmetric_info_nce(a, b, tau), (a, b))
    expected = torch.autograd.grad(reference_symmetric_info_nce(a, b, tau), (a, b))
    for g_got, g_expected in zip(got, expected):
        assert torch.allclose(g_got, g_expected, atol=1e-10)
    assert torch.autograd.gradcheck(lambda x, y: symmetric_info_nce(x, y, tau), (a, b))


def test_one_way_info_nce_is_mmrecs_and_not_symmetric():
    a, b = pair(9, 6, 2, torch.float64)
    ours = one_way_info_nce(a, b, 0.2)
    expected = reference_one_way_info_nce(a, b, 0.2)
    assert torch.allclose(ours, expected)
    for got, want in zip(torch.autograd.grad(ours, (a, b)),
                         torch.autograd.grad(expected, (a, b))):
        assert torch.allclose(got, want, atol=1e-10)
    # anchor -> positive only: swapping the roles changes the value
    assert not torch.allclose(one_way_info_nce(b, a, 0.2), ours)


def test_log_sum_exp_of_product_equals_logsumexp():
    a, b = pair(8, 5, 3, torch.float64)
    b = b[:6].detach().requires_grad_()
    ours = log_sum_exp_of_product(a, b)
    expected = reference_log_sum_exp_of_product(a, b)
    torch.testing.assert_close(ours, expected)
    weights = torch.arange(8, dtype=torch.float64)
    for got, want in zip(torch.autograd.grad((ours * weights).sum(), (a, b)),
                         torch.autograd.grad((expected * weights).sum(), (a, b))):
        torch.testing.assert_close(got, want)
