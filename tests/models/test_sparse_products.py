"""The CSR x dense fast paths equal torch's reference products (values and gradients)."""

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from crane.models import layers
from crane.models.layers import constant_sparse_mm, csr_matmul, csr_mm_with_value_grad, dot_scores


def random_csr(n_rows, n_cols, density, seed):
    matrix = sp.random(n_rows, n_cols, density=density, format="csr", dtype=np.float32,
                       random_state=seed)
    return torch.sparse_csr_tensor(torch.from_numpy(matrix.indptr.astype(np.int64)),
                                   torch.from_numpy(matrix.indices.astype(np.int64)),
                                   torch.from_numpy(matrix.data), matrix.shape,
                                   check_invariants=False)


@pytest.mark.parametrize("threads", [1, 2])
def test_csr_matmul_equals_dense_product(threads):
    matrix = random_csr(300, 200, 0.05, seed=0)
    dense = torch.randn(200, 16, generator=torch.Generator().manual_seed(0))
    before = torch.get_num_threads()
    torch.set_num_threads(threads)  # 2: the two row halves run on two threads
    try:
        out = csr_matmul(matrix, dense)
    finally:
        torch.set_num_threads(before)
    torch.testing.assert_close(out, matrix.to_dense() @ dense, rtol=1e-5, atol=1e-6)


def test_constant_product_gradient_is_the_transpose_product():
    matrix = random_csr(50, 40, 0.2, seed=1)
    transpose = matrix.to_sparse_coo().t().coalesce().to_sparse_csr()
    dense = torch.randn(40, 8, requires_grad=True)
    reference = dense.detach().clone().requires_grad_()
    weights = torch.randn(50, 8)
    (constant_sparse_mm(matrix, transpose, dense) * weights).sum().backward()
    ((matrix.to_dense() @ reference) * weights).sum().backward()
    torch.testing.assert_close(dense.grad, reference.grad, rtol=1e-5, atol=1e-6)


def test_value_gradients_equal_the_dense_reference(monkeypatch):
    monkeypatch.setattr(layers, "VALUE_GRAD_BLOCK", 7)  # several blocks, a ragged last one
    base = random_csr(60, 60, 0.1, seed=2)
    values = base.values().clone().requires_grad_()
    matrix = torch.sparse_csr_tensor(base.crow_indices(), base.col_indices(), values * 1.5,
                                     base.shape, check_invariants=True)
    h = torch.randn(60, 8, generator=torch.Generator().manual_seed(1), requires_grad=True)
    weights = torch.randn(60, 8, generator=torch.Generator().manual_seed(2))
    (csr_mm_with_value_grad(matrix, h) * weights).sum().backward()

    ref_values = base.values().clone().requires_grad_()
    ref_h = h.detach().clone().requires_grad_()
    dense = torch.sparse_csr_tensor(base.crow_indices(), base.col_indices(), ref_values * 1.5,
                                    base.shape, check_invariants=True).to_dense()
    ((dense @ ref_h) * weights).sum().backward()
    torch.testing.assert_close(values.grad, ref_values.grad, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(h.grad, ref_h.grad, rtol=1e-5, atol=1e-6)


def test_dot_scores_equal_torch_matmul_and_keep_autograd():
    users, items = torch.randn(30, 16), torch.randn(50, 16)
    with torch.no_grad():
        torch.testing.assert_close(dot_scores(users, items), users @ items.T)
    users.requires_grad_()
    out = dot_scores(users, items)
    assert out.grad_fn is not None  # with gradients it stays torch's product


def test_transposed_csr_product_is_bitwise_the_transpose_product():
    """The CSR of block.T multiplies bitwise like scipy's CSC block.T (same term order)."""
    from crane.models.layers import transposed_csr

    rng = np.random.default_rng(3)
    block = sp.random(300, 500, density=0.02, format="csr", dtype=np.float32, random_state=4)
    dense = rng.standard_normal((300, 64)).astype(np.float32)
    as_csr = transposed_csr(block)
    assert sp.isspmatrix_csr(as_csr) and as_csr.shape == (500, 300)
    assert np.array_equal(as_csr @ dense, block.T @ dense)
