"""crane.ops.sparse: the CSR x dense products equal the plain-autograd reference (values and
gradients); transposed_csr multiplies bitwise like scipy's CSC transpose."""

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from crane.ops import sparse
from crane.ops.sparse import (constant_sparse_mm, constant_sparse_rows_mm, csr_matmul,
                              csr_mm_with_value_grad, reference_csr_mm, sparse_transpose,
                              transposed_csr)
from crane.ops.threads import torch_threads


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
    with torch_threads(threads):  # 2: the two row halves run on two threads
        out = csr_matmul(matrix, dense)
    torch.testing.assert_close(out, reference_csr_mm(matrix, dense), rtol=1e-5, atol=1e-6)


def test_row_halves_on_two_threads_are_bitwise_the_whole_product():
    matrix = random_csr(300, 200, 0.05, seed=5)
    dense = torch.randn(200, 16, generator=torch.Generator().manual_seed(5))
    with torch_threads(1):
        whole = csr_matmul(matrix, dense)
    with torch_threads(2):
        halves = csr_matmul(matrix, dense)
    assert torch.equal(whole, halves)


def test_constant_product_gradient_is_the_transpose_product():
    matrix = random_csr(50, 40, 0.2, seed=1)
    transpose = sparse_transpose(matrix)
    dense = torch.randn(40, 8, requires_grad=True)
    reference = dense.detach().clone().requires_grad_()
    weights = torch.randn(50, 8)
    (constant_sparse_mm(matrix, transpose, dense) * weights).sum().backward()
    (reference_csr_mm(matrix, reference) * weights).sum().backward()
    torch.testing.assert_close(dense.grad, reference.grad, rtol=1e-5, atol=1e-6)


def test_constant_rows_product_is_the_full_product_at_the_rows():
    """Each row the same product: equal values; the gradient is the rows' share."""
    matrix = random_csr(60, 50, 0.2, seed=3)
    transpose = sparse_transpose(matrix)
    rows = torch.tensor([0, 7, 8, 41, 59])
    dense = torch.randn(50, 8, generator=torch.Generator().manual_seed(3), requires_grad=True)
    reference = dense.detach().clone().requires_grad_()
    weights = torch.randn(len(rows), 8, generator=torch.Generator().manual_seed(4))
    out = constant_sparse_rows_mm(matrix, transpose, rows, dense)
    assert torch.equal(out, constant_sparse_mm(matrix, transpose, dense)[rows])
    (out * weights).sum().backward()
    (reference_csr_mm(matrix, reference)[rows] * weights).sum().backward()
    torch.testing.assert_close(dense.grad, reference.grad, rtol=1e-5, atol=1e-6)


def test_value_gradients_equal_the_dense_reference(monkeypatch):
    monkeypatch.setattr(sparse, "VALUE_GRAD_BLOCK", 7)  # several blocks, a ragged last one
    base = random_csr(60, 60, 0.1, seed=2)
    values = base.values().clone().requires_grad_()
    matrix = torch.sparse_csr_tensor(base.crow_indices(), base.col_indices(), values * 1.5,
                                     base.shape, check_invariants=True)
    h = torch.randn(60, 8, generator=torch.Generator().manual_seed(1), requires_grad=True)
    weights = torch.randn(60, 8, generator=torch.Generator().manual_seed(2))
    (csr_mm_with_value_grad(matrix, h) * weights).sum().backward()

    ref_values = base.values().clone().requires_grad_()
    ref_h = h.detach().clone().requires_grad_()
    ref_matrix = torch.sparse_csr_tensor(base.crow_indices(), base.col_indices(),
                                         ref_values * 1.5, base.shape, check_invariants=True)
    (reference_csr_mm(ref_matrix, ref_h) * weights).sum().backward()
    torch.testing.assert_close(values.grad, ref_values.grad, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(h.grad, ref_h.grad, rtol=1e-5, atol=1e-6)


def test_values_given_apart_keep_the_gradient_sparse():
    """GRCN's use: a users x items matrix built from detached values, the values passed
    with their gradient. A dense gradient of this shape would need 4 TB."""
    n, nnz = 10**6, 40
    generator = torch.Generator().manual_seed(5)
    rows = torch.sort(torch.randint(0, n, (nnz,), generator=generator)).values
    cols = torch.randint(0, n, (nnz,), generator=generator)
    crow = torch.zeros(n + 1, dtype=torch.int64)
    crow[1:] = torch.cumsum(torch.bincount(rows, minlength=n), 0)
    values = torch.rand(nnz, generator=generator, requires_grad=True)
    matrix = torch.sparse_csr_tensor(crow, cols, values.detach(), (n, n), check_invariants=True)
    dense = torch.randn(n, 3, generator=generator)
    weights = torch.randn(n, 3, generator=generator)
    (csr_mm_with_value_grad(matrix, dense, values=values) * weights).sum().backward()
    torch.testing.assert_close(values.grad, (weights[rows] * dense[cols]).sum(dim=1))


def test_sparse_transpose_is_the_transpose():
    matrix = random_csr(30, 20, 0.2, seed=6)
    transpose = sparse_transpose(matrix)
    assert transpose.layout == torch.sparse_csr
    assert torch.equal(transpose.to_dense(), matrix.to_dense().T)


def test_transposed_csr_product_is_bitwise_the_transpose_product():
    """The CSR of block.T multiplies bitwise like scipy's CSC block.T (same term order)."""
    rng = np.random.default_rng(3)
    block = sp.random(300, 500, density=0.02, format="csr", dtype=np.float32, random_state=4)
    dense = rng.standard_normal((300, 64)).astype(np.float32)
    as_csr = transposed_csr(block)
    assert sp.isspmatrix_csr(as_csr) and as_csr.shape == (500, 300)
    assert np.array_equal(as_csr @ dense, block.T @ dense)
