"""crane.ops.dropout: inverted dropout, and FREEDOM's degree-sensitive edge dropout."""

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from crane.ops.sparse import to_torch_sparse
from crane.ops.dropout import BipartiteEdges, FastDropout, degree_sensitive_edge_dropout


def test_fast_dropout_is_inverted_dropout():
    """Zero with probability p, survivors scaled by 1/(1-p), the same mask in backward;
    identity in eval mode and at p = 0."""
    torch.manual_seed(0)
    dropout = FastDropout(0.3).train()
    x = torch.full((200, 500), 2.0, requires_grad=True)
    out = dropout(x)
    kept = out != 0
    assert abs(kept.float().mean().item() - 0.7) < 0.01
    assert torch.allclose(out[kept], torch.tensor(2.0 / 0.7))
    out.sum().backward()
    assert torch.equal(x.grad != 0, kept)  # the gradient passes where the value passed
    assert torch.allclose(x.grad[kept], torch.tensor(1.0 / 0.7))
    assert dropout.eval()(x) is x
    assert FastDropout(0.0).train()(x) is x
    with pytest.raises(ValueError, match=r"dropout probability must be in \[0, 1\)"):
        FastDropout(1.0)


@pytest.fixture(scope="module")
def train() -> sp.csr_matrix:
    matrix = sp.random(40, 30, density=0.2, random_state=1, format="csr", dtype=np.float32)
    matrix.data[:] = 1.0
    return matrix


def test_degree_sensitive_edge_dropout(train):
    edges = BipartiteEdges.from_matrix(train)
    n_edges = train.nnz
    deg_u = np.asarray(train.sum(1)).ravel()
    deg_i = np.asarray(train.sum(0)).ravel()
    coo = train.tocoo()
    assert np.allclose(edges.weight.numpy(), 1 / np.sqrt(deg_u[coo.row] * deg_i[coo.col]))

    adjacency = degree_sensitive_edge_dropout(edges, 0.5, torch.Generator().manual_seed(3))
    dense = adjacency.toarray()
    assert np.allclose(dense, dense.T)
    block = dense[:40, 40:]
    kept = block > 0
    assert kept.sum() == int(n_edges * 0.5)
    assert not np.any(kept & (train.toarray() == 0))  # only training edges survive
    ku, ki = kept.sum(1), kept.sum(0)
    rows, cols = np.nonzero(kept)
    assert np.allclose(block[rows, cols], 1 / np.sqrt(ku[rows] * ki[cols]), rtol=1e-5)
    again = degree_sensitive_edge_dropout(edges, 0.5, torch.Generator().manual_seed(3))
    assert np.array_equal(again.toarray(), dense)
    other = degree_sensitive_edge_dropout(edges, 0.5, torch.Generator().manual_seed(4))
    assert not np.array_equal(other.toarray(), dense)


def test_edge_dropout_is_bitwise_mmrecs_torch_construction(train):
    """MMRec FREEDOM's pruning written in torch (multinomial over pow(-0.5) degree weights,
    a coalesced COO of the kept edges): the same CSR, index for index and bit for bit."""
    edges = BipartiteEdges.from_matrix(train)
    n_users, n_items = train.shape
    for seed in (0, 1, 2):
        ours = to_torch_sparse(degree_sensitive_edge_dropout(
            edges, 0.8, torch.Generator().manual_seed(seed)))

        user, item = edges.user, edges.item
        user_deg = torch.bincount(user, minlength=n_users).float() + 1e-7
        item_deg = torch.bincount(item, minlength=n_items).float() + 1e-7
        weight = user_deg[user].pow(-0.5) * item_deg[item].pow(-0.5)
        kept = torch.multinomial(weight, int(len(weight) * (1.0 - 0.8)), replacement=False,
                                 generator=torch.Generator().manual_seed(seed))
        user, item = user[kept], item[kept]
        user_deg = torch.bincount(user, minlength=n_users).float() + 1e-7
        item_deg = torch.bincount(item, minlength=n_items).float() + 1e-7
        values = user_deg[user].pow(-0.5) * item_deg[item].pow(-0.5)
        size = n_users + n_items
        theirs = torch.sparse_coo_tensor(
            torch.stack([torch.cat([user, item + n_users]), torch.cat([item + n_users, user])]),
            torch.cat([values, values]), (size, size), check_invariants=True
        ).coalesce().to_sparse_csr()
        for part in ("crow_indices", "col_indices", "values"):
            assert torch.equal(getattr(ours, part)(), getattr(theirs, part)()), part
