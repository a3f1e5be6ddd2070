"""crane.ops.propagation: both backends of the bipartite step, row steps, and LightGCN's layer
mean and row layer sums, against the dense plain-autograd references and against each other."""

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from crane.graphs.user_item import symmetric_bipartite_adjacency
from crane.ops.sparse import to_torch_sparse
from crane.ops.propagation import (BipartitePropagation, SquareGraph, lightgcn_layer_mean,
                                   lightgcn_layer_sum, lightgcn_layer_sum_at,
                                   reference_layer_mean, reference_layer_sum)
from crane.ops.threads import torch_threads

N_USERS, N_ITEMS, DIM = 50, 40, 8


@pytest.fixture(scope="module")
def adjacency() -> sp.csr_matrix:
    train = sp.random(N_USERS, N_ITEMS, density=0.12, format="csr", dtype=np.float32,
                      random_state=0)
    train.data[:] = 1.0
    return symmetric_bipartite_adjacency(train)


def tables(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """User and item tables with gradients, the same for the same seed."""
    generator = torch.Generator().manual_seed(seed)
    return (torch.randn(N_USERS, DIM, generator=generator).requires_grad_(),
            torch.randn(N_ITEMS, DIM, generator=generator).requires_grad_())


def probe(users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
    """A scalar whose gradient differs row by row."""
    return users.square().sum() + items.sin().sum()


@pytest.mark.parametrize("threads", [1, 2])   # 2: the two blocks run concurrently
def test_torch_backend_equals_scipy_backend(adjacency, threads):
    """The GPU path (torch CSR) checked on CPU against the scipy path, values and gradients."""
    results = []
    with torch_threads(threads):
        for backend in ("scipy", "torch"):
            propagation = BipartitePropagation(adjacency, N_USERS, "cpu", backend=backend)
            users, items = tables()
            out_users, out_items = propagation.step(*propagation.step(users, items))
            probe(out_users, out_items).backward()
            results.append((out_users, out_items, users.grad, items.grad))
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_step_equals_the_dense_product(adjacency):
    propagation = BipartitePropagation(adjacency, N_USERS, "cpu")
    users, items = tables()
    out = torch.cat(propagation((users, items)))
    dense = torch.as_tensor(adjacency.toarray())
    torch.testing.assert_close(out, dense @ torch.cat([users, items]), rtol=1e-5, atol=1e-6)
    assert (propagation.to_scipy() != adjacency).nnz == 0


def test_rows_step_backends_agree_and_equal_the_full_step_at_the_rows(adjacency):
    rows = torch.tensor([0, 3, 5]), torch.tensor([1, 2, 7, 9])
    results = []
    for backend in ("scipy", "torch"):
        propagation = BipartitePropagation(adjacency, N_USERS, "cpu", backend=backend)
        users, items = tables()
        out_users, out_items = propagation.rows_step((users, items), rows)
        full_users, full_items = propagation.step(users, items)
        assert torch.equal(out_users, full_users[rows[0]])
        assert torch.equal(out_items, full_items[rows[1]])
        probe(out_users, out_items).backward()
        results.append((out_users, out_items, users.grad, items.grad))
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_asymmetric_adjacency_and_unknown_backend_are_refused(adjacency):
    with pytest.raises(ValueError, match="symmetric"):
        BipartitePropagation(sp.triu(adjacency).tocsr(), N_USERS, "cpu")
    with pytest.raises(ValueError, match="backend must be"):
        BipartitePropagation(adjacency, N_USERS, "cpu", backend="cuda")


@pytest.mark.parametrize("n_layers", [0, 1, 3])
def test_layer_mean_equals_the_dense_reference(adjacency, n_layers):
    dense = torch.as_tensor(adjacency.toarray())
    bipartite = BipartitePropagation(adjacency, N_USERS, "cpu")
    square = SquareGraph(to_torch_sparse(adjacency))
    users, items = tables()
    ego = torch.cat([users, items])
    expected = reference_layer_mean(dense, ego, n_layers)
    pair = torch.cat(lightgcn_layer_mean(bipartite, (users, items), n_layers))
    torch.testing.assert_close(pair, expected, rtol=1e-5, atol=1e-6)
    for stacked in (False, True):
        got = lightgcn_layer_mean(square, ego, n_layers, stacked_mean=stacked)
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    # the bipartite blocks and the square graph multiply each row alike: the same bits
    assert torch.equal(pair, lightgcn_layer_mean(square, ego, n_layers))
    torch.testing.assert_close(torch.cat(lightgcn_layer_sum(bipartite, (users, items), n_layers)),
                               reference_layer_sum(dense, ego, n_layers), rtol=1e-5, atol=1e-6)


def test_layer_mean_keeps_each_models_float_order(adjacency):
    """Bitwise equal to the two loops the models were written with: one layer added at a time
    then divided (LightGCN, FREEDOM, LATTICE, CRANE) and torch.stack(...).mean (BM3, MGCN,
    LGMRec)."""
    graph = SquareGraph(to_torch_sparse(adjacency))
    ego = torch.cat(tables())
    layer = total = ego
    layers = [ego]
    for _ in range(3):
        layer = graph(layer)
        total = total + layer
        layers.append(layer)
    assert torch.equal(lightgcn_layer_mean(graph, ego, 3), total / 4)
    assert torch.equal(lightgcn_layer_mean(graph, ego, 3, stacked_mean=True),
                       torch.stack(layers, dim=1).mean(dim=1))


@pytest.mark.parametrize("n_layers", [0, 1, 3])
@pytest.mark.parametrize("kind", ["scipy", "scipy-fused", "torch", "square"])
def test_layer_sum_at_rows_equals_the_full_sum(adjacency, n_layers, kind):
    """The last layer at the rows only: the same values bit for bit, the same gradients."""
    user_rows, item_rows = torch.tensor([0, 4, 9, 33]), torch.tensor([2, 3, 17, 39])
    if kind == "square":
        graph = SquareGraph(to_torch_sparse(adjacency))
        rows = torch.cat([user_rows, item_rows + N_USERS])

        def run(users, items):
            ego = torch.cat([users, items])
            return (lightgcn_layer_sum_at(graph, ego, n_layers, rows),
                    lightgcn_layer_sum(graph, ego, n_layers)[rows])
    else:
        graph = BipartitePropagation(adjacency, N_USERS, "cpu", backend=kind.split("-")[0])

        def run(users, items):
            fast = lightgcn_layer_sum_at(graph, (users, items), n_layers, (user_rows, item_rows),
                                         fused_backward=kind.endswith("fused"))
            full_users, full_items = lightgcn_layer_sum(graph, (users, items), n_layers)
            return torch.cat(fast), torch.cat([full_users[user_rows], full_items[item_rows]])

    users, items = tables(1)
    fast, _ = run(users, items)
    (fast.square().sum() + fast.sin().sum()).backward()
    fast_grads = users.grad, items.grad
    users, items = tables(1)
    _, full = run(users, items)
    assert torch.equal(fast, full)
    (full.square().sum() + full.sin().sum()).backward()
    for got, want in zip(fast_grads, (users.grad, items.grad)):
        torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-7)
