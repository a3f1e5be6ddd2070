"""Hand-written kernels under autocast (training.precision bf16): they run in float32 on
float32 copies of their inputs, and outside autocast they are untouched."""

from __future__ import annotations

import scipy.sparse as sp
import torch

from crane.ops.contrastive import symmetric_info_nce
from crane.ops.losses import dot_bpr_loss
from crane.ops.sparse import graph_mm, to_torch_sparse


def rows(seed: int, n: int = 12, d: int = 6) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed))


def test_a_kernel_under_autocast_is_the_float32_kernel_on_float32_inputs():
    a = torch.nn.functional.normalize(rows(0), dim=1)
    b = torch.nn.functional.normalize(rows(1), dim=1)
    half_a, half_b = a.bfloat16(), b.bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under = symmetric_info_nce(half_a, half_b, 0.2)
        bpr = dot_bpr_loss(half_a, half_b, a)
    assert under.dtype == torch.float32 and bpr.dtype == torch.float32
    assert torch.equal(bpr, dot_bpr_loss(half_a.float(), half_b.float(), a))
    # the normalisation before the kernel runs in bf16 under autocast: close, not equal
    torch.testing.assert_close(under, symmetric_info_nce(a, b, 0.2), rtol=1e-2, atol=0)


def test_gradients_flow_back_to_bf16_inputs_in_their_dtype():
    a = torch.nn.functional.normalize(rows(2), dim=1).bfloat16().requires_grad_()
    b = torch.nn.functional.normalize(rows(3), dim=1).bfloat16().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = symmetric_info_nce(a, b, 0.2)
    loss.backward()
    assert a.grad.dtype == torch.bfloat16 and torch.isfinite(a.grad.float()).all()
    assert a.grad.abs().sum() > 0


def test_outside_autocast_a_kernel_keeps_its_inputs_dtype():
    a, b = rows(4).double(), rows(5).double()
    assert symmetric_info_nce(a, b, 0.5).dtype == torch.float64


def test_graph_mm_multiplies_in_float32_under_autocast():
    graph = to_torch_sparse(sp.random(12, 12, density=0.3, random_state=0, format="csr"), "cpu")
    dense = rows(6)
    exact = graph_mm(graph, dense)
    assert torch.equal(exact, torch.sparse.mm(graph, dense))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        projected = torch.nn.Linear(6, 6)(dense)         # bf16, as autocast makes it
        assert projected.dtype == torch.bfloat16
        product = graph_mm(graph, projected)
    assert product.dtype == torch.float32
    assert torch.equal(product, torch.sparse.mm(graph, projected.float()))
