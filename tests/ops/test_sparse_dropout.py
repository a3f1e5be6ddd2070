"""crane.ops.sparse_dropout: MMRec's independent dropout of stored graph entries."""

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from crane.ops.sparse_dropout import (DroppableGraph, random_sparse_dropout,
                                      reference_sparse_dropout)


@pytest.fixture(scope="module")
def adjacency() -> sp.csr_matrix:
    train = sp.random(12, 9, density=0.3, random_state=3, format="csr", dtype=np.float32)
    train.data = np.random.default_rng(0).random(train.nnz).astype(np.float32) + 0.1
    return sp.bmat([[None, train], [train.T, None]], format="csr")


@pytest.mark.parametrize("rate", [0.0, 0.3, 0.9])
def test_dropped_graph_matches_mmrec_formula_values_and_gradients(adjacency, rate):
    graph = DroppableGraph(adjacency, "cpu")
    uniform = torch.rand(graph.nnz, generator=torch.Generator().manual_seed(1))
    dropped = graph.dropped(rate, uniform)
    expected = reference_sparse_dropout(torch.as_tensor(adjacency.toarray()), rate, uniform)
    assert torch.equal(dropped.matrix.to_dense(), expected)
    assert torch.equal(dropped.transpose.to_dense(), expected.T)
    if rate > 0:  # the (u, i) and (i, u) entries are dropped independently
        assert not torch.equal(expected, expected.T)

    x = torch.randn(adjacency.shape[0], 4, requires_grad=True)
    weights = torch.randn(adjacency.shape[0], 4)
    (dropped(x) * weights).sum().backward()
    ours = x.grad.clone()
    x.grad = None
    (expected @ x * weights).sum().backward()
    torch.testing.assert_close(ours, x.grad)


def test_full_graph_and_draws(adjacency):
    graph = DroppableGraph(adjacency, "cpu")
    assert torch.equal(graph.full().matrix.to_dense(), torch.as_tensor(adjacency.toarray()))
    torch.manual_seed(5)
    first = random_sparse_dropout(graph).matrix.values()
    torch.manual_seed(5)
    again = random_sparse_dropout(graph).matrix.values()
    assert torch.equal(first, again)
    assert not torch.equal(first, random_sparse_dropout(graph).matrix.values())


def test_bad_input_is_refused(adjacency):
    with pytest.raises(ValueError, match="pattern is symmetric"):
        DroppableGraph(sp.triu(adjacency, format="csr") + sp.eye(21, format="csr"), "cpu")
    graph = DroppableGraph(adjacency, "cpu")
    with pytest.raises(ValueError, match=r"rate must be in \[0, 1\)"):
        graph.dropped(1.0, torch.rand(graph.nnz))
    with pytest.raises(ValueError, match="one draw per stored entry"):
        graph.dropped(0.5, torch.rand(3))
