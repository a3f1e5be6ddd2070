"""crane.ops.gather: row gathers with the same values and gradients as plain indexing."""

import pytest
import torch
from torch import nn

from crane.ops.gather import ReusedRowGather, gather_rows, reference_gather_rows
from crane.ops.threads import torch_threads


def test_gather_rows_gradient_is_the_embedding_gradient():
    index = torch.tensor([3, 0, 3, 7, 7, 7, 1])
    table = torch.randn(10, 6, generator=torch.Generator().manual_seed(0), requires_grad=True)
    embedding = nn.Embedding(10, 6)
    with torch.no_grad():
        embedding.weight.copy_(table)
    grad = torch.randn(len(index), 6, generator=torch.Generator().manual_seed(1))
    with torch_threads(1):
        rows = gather_rows(table, index)
        assert torch.equal(rows, embedding(index))
        assert torch.equal(rows, reference_gather_rows(table, index))
        rows.backward(grad)
        embedding(index).backward(grad)
    assert torch.equal(table.grad, embedding.weight.grad)


def test_reused_gather_equals_indexing_and_reuses_its_buffer():
    table = torch.randn(50, 12, generator=torch.Generator().manual_seed(2))
    gather = ReusedRowGather()
    first = gather(table, torch.tensor([4, 1, 1, 30]))
    assert torch.equal(first, table[torch.tensor([4, 1, 1, 30])])
    second = gather(table, torch.tensor([7, 8, 9]))
    assert torch.equal(second, table[torch.tensor([7, 8, 9])])
    assert second.data_ptr() == first.data_ptr()   # the same buffer, no new allocation
    trainable = table.clone().requires_grad_()
    assert gather(trainable, torch.tensor([2, 3])).grad_fn is not None


def test_backward_through_an_overwritten_buffer_raises():
    """Autograd's version counter guards the reuse: a batch's graph cannot silently read the
    next batch's rows."""
    table = torch.randn(50, 12)
    weight = torch.randn(12, 3, requires_grad=True)
    gather = ReusedRowGather()
    old = gather(table, torch.tensor([1, 2])) @ weight
    gather(table, torch.tensor([5, 6]))
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        old.sum().backward()
