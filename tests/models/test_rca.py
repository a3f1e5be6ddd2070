"""The building blocks of crane/models/layers.py: RCA, the other fusions, row gathers,
edge dropout and InfoNCE, each against a direct (loop / dense) reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
import torch
import torch.nn.functional as F

from crane.models.layers import (BipartiteEdges, ConcatFusion, CsrGraph, FastDropout,
                                 PrototypeAttentionFusion, RCAStep,
                                 RecursiveCrossModalAttention, degree_sensitive_edge_dropout,
                                 info_nce, multi_hop_blocks)

DIM = 8


def _tokens(n_modalities: int = 2, batch: int = 5, seed: int = 0) -> torch.Tensor:
    return torch.randn(n_modalities, batch, DIM, generator=torch.Generator().manual_seed(seed))


def _reference_step(step: RCAStep, tokens: torch.Tensor) -> torch.Tensor:
    """crane-method.md section 3, one entity and one modality at a time."""
    n_mod, batch, dim = tokens.shape
    out = torch.empty_like(tokens)
    w_j, b_j = step.joint.weight.T, step.joint.bias
    for e in range(batch):
        joint = tokens[:, e, :] @ w_j + b_j  # J~ = J W_j + b_j: M x d
        for m in range(n_mod):
            h = tokens[m, e:e + 1, :]  # 1 x d
            w_q, w_a = step.query_self[m][:, :dim], step.query_self[m][:, dim:]
            corr = torch.tanh((h @ w_q) @ joint.T / math.sqrt(dim))  # 1 x M
            attended = torch.relu(h @ w_a + (corr @ joint) @ step.context_proj[m])
            out[m, e] = (h + attended @ step.out_proj[m])[0]
    return out


@pytest.mark.parametrize("n_modalities", [1, 2])
def test_rca_step_matches_the_equations(n_modalities):
    torch.manual_seed(0)
    step = RCAStep(DIM, n_modalities, dropout=0.1).eval()
    tokens = _tokens(n_modalities)
    with torch.no_grad():
        assert torch.allclose(step(tokens), _reference_step(step, tokens), atol=1e-5)
        corr = step.correlations(tokens)
    assert corr.shape == (5, n_modalities, n_modalities)
    assert corr.abs().max() <= 1.0


@pytest.mark.parametrize("n_modalities", [1, 2])
def test_rca_shapes(n_modalities):
    rca = RecursiveCrossModalAttention(DIM, n_modalities, steps=2, shared_weights=False,
                                       dropout=0.1)
    tokens = _tokens(n_modalities, batch=7)
    assert rca.refine(tokens).shape == (n_modalities, 7, DIM)
    assert rca(tokens).shape == (7, DIM)


def test_residual_path_keeps_h_when_the_attended_branch_is_zero():
    torch.manual_seed(0)
    rca = RecursiveCrossModalAttention(DIM, 2, steps=3, shared_weights=False, dropout=0.1)
    tokens = _tokens()
    with torch.no_grad():
        assert not torch.allclose(rca.refine(tokens), tokens)
        for step in rca.steps:
            step.out_proj.zero_()
        assert torch.equal(rca.refine(tokens), tokens)
        # then z is the plain concatenation through W_z
        expected = torch.cat([tokens[0], tokens[1]], dim=1) @ rca.output.weight.T
        assert torch.allclose(rca(tokens), expected, atol=1e-6)


def test_steps_own_weights_or_share_one_set():
    torch.manual_seed(0)
    separate = RecursiveCrossModalAttention(DIM, 2, steps=3, shared_weights=False, dropout=0.0)
    shared = RecursiveCrossModalAttention(DIM, 2, steps=3, shared_weights=True, dropout=0.0)
    one = RecursiveCrossModalAttention(DIM, 2, steps=1, shared_weights=False, dropout=0.0)
    assert len(separate.steps) == 3 and len(shared.steps) == 1 and len(one.steps) == 1
    n_params = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    per_step = n_params(one.steps[0])
    assert n_params(separate) - n_params(one) == 2 * per_step
    assert n_params(shared) == n_params(one)
    tokens = _tokens()
    with torch.no_grad():
        step = shared.steps[0]
        assert torch.allclose(shared.refine(tokens), step(step(step(tokens))))
        s = separate.steps
        assert torch.allclose(separate.refine(tokens), s[2](s[1](s[0](tokens))))


def test_dropout_acts_in_training_only_and_entities_never_mix():
    torch.manual_seed(0)
    rca = RecursiveCrossModalAttention(DIM, 2, steps=2, shared_weights=False, dropout=0.5)
    tokens = _tokens(batch=6)
    rca.eval()
    with torch.no_grad():
        full = rca(tokens)
        assert torch.equal(full, rca(tokens))
        # entity e's output depends on entity e alone (no attention across entities)
        singles = torch.cat([rca(tokens[:, e:e + 1]) for e in range(6)])
        assert torch.allclose(full, singles, atol=1e-6)
        rca.train()
        assert not torch.allclose(rca(tokens), full)


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


def test_concat_and_prototype_fusions():
    torch.manual_seed(0)
    tokens = _tokens(batch=4)
    concat = ConcatFusion(DIM, 2)
    with torch.no_grad():
        expected = torch.cat([tokens[0], tokens[1]], 1) @ concat.output.weight.T
        assert torch.allclose(concat(tokens), expected)
    proto = PrototypeAttentionFusion(DIM, 2, heads=4).eval()
    with torch.no_grad():
        out = proto(tokens)
        singles = torch.cat([proto(tokens[:, e:e + 1]) for e in range(4)])
    assert out.shape == (4, DIM)
    assert torch.allclose(out, singles, atol=1e-6)  # attention over an item's own 2 tokens
    with pytest.raises(ValueError, match="divisible"):
        PrototypeAttentionFusion(6, 2, heads=4)


def test_row_gathers_equal_dense_powers():
    rng = np.random.default_rng(0)
    dense = (rng.random((30, 30)) < 0.1) * rng.random((30, 30))
    dense[3] = 0.0  # an empty row
    graph = CsrGraph.from_scipy(sp.csr_matrix(dense.astype(np.float32)))
    x = torch.randn(30, 4)
    targets = torch.tensor([0, 3, 7, 29])
    for hops in (1, 2, 3):
        blocks = multi_hop_blocks(graph, targets, hops)
        values = x[blocks[-1].columns]
        for block in reversed(blocks):
            values = block.propagate(values)
        expected = np.linalg.matrix_power(dense, hops)[targets.numpy()] @ x.numpy()
        assert np.allclose(values.numpy(), expected, atol=1e-5)
    one_hop = multi_hop_blocks(graph, targets, 1)[0]
    reached = np.flatnonzero(dense[targets.numpy()].sum(0))
    assert np.array_equal(one_hop.columns.numpy(), reached)


def test_degree_sensitive_edge_dropout():
    train = sp.random(40, 30, density=0.2, random_state=1, format="csr", dtype=np.float32)
    train.data[:] = 1.0
    edges = BipartiteEdges.from_matrix(train)
    n_edges = train.nnz
    deg_u = np.asarray(train.sum(1)).ravel()
    deg_i = np.asarray(train.sum(0)).ravel()
    coo = train.tocoo()
    assert np.allclose(edges.weight.numpy(), 1 / np.sqrt(deg_u[coo.row] * deg_i[coo.col]))

    adjacency = degree_sensitive_edge_dropout(edges, 0.5, torch.Generator().manual_seed(3))
    dense = adjacency.to_dense().numpy()
    assert np.allclose(dense, dense.T)
    block = dense[:40, 40:]
    kept = block > 0
    assert kept.sum() == int(n_edges * 0.5)
    assert not np.any(kept & (train.toarray() == 0))  # only training edges survive
    ku, ki = kept.sum(1), kept.sum(0)
    rows, cols = np.nonzero(kept)
    assert np.allclose(block[rows, cols], 1 / np.sqrt(ku[rows] * ki[cols]), rtol=1e-5)
    again = degree_sensitive_edge_dropout(edges, 0.5, torch.Generator().manual_seed(3))
    assert np.array_equal(again.to_dense().numpy(), dense)
    other = degree_sensitive_edge_dropout(edges, 0.5, torch.Generator().manual_seed(4))
    assert not np.array_equal(other.to_dense().numpy(), dense)


def test_info_nce_matches_its_definition():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(6, 5, generator=g), torch.randn(6, 5, generator=g)
    tau = 0.3
    cos = F.normalize(a, dim=1) @ F.normalize(b, dim=1).T / tau
    a_to_b = -torch.mean(torch.diag(cos) - torch.logsumexp(cos, dim=1))
    b_to_a = -torch.mean(torch.diag(cos) - torch.logsumexp(cos, dim=0))
    assert torch.allclose(info_nce(a, b, tau), (a_to_b + b_to_a) / 2, atol=1e-6)
    assert info_nce(a, 3 * a, tau) < info_nce(a, b, tau)  # aligned views: lower loss


@pytest.mark.parametrize("tau", [0.2, 0.02])  # shared-exponential path and logsumexp path
def test_info_nce_gradient_matches_the_definition(tau):
    g = torch.Generator().manual_seed(1)
    a = torch.randn(7, 4, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(7, 4, generator=g, dtype=torch.float64, requires_grad=True)

    def reference(a, b):
        logits = F.normalize(a, dim=1) @ F.normalize(b, dim=1).T / tau
        labels = torch.arange(len(a))
        return 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels))

    assert torch.allclose(info_nce(a, b, tau), reference(a, b))
    got = torch.autograd.grad(info_nce(a, b, tau), (a, b))
    expected = torch.autograd.grad(reference(a, b), (a, b))
    for g_got, g_expected in zip(got, expected):
        assert torch.allclose(g_got, g_expected, atol=1e-10)
    assert torch.autograd.gradcheck(lambda x, y: info_nce(x, y, tau), (a, b))
