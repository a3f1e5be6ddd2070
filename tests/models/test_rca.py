"""The fusion blocks of crane/models/layers.py: RCA and the other fusions, each against a
direct (loop) reference. The kernels they run on are tested in tests/ops."""

from __future__ import annotations

import math

import pytest
import torch

from crane.models.layers import (ConcatFusion, PrototypeAttentionFusion, RCAStep,
                                 RecursiveCrossModalAttention)

DIM = 8


def _tokens(n_modalities: int = 2, batch: int = 5, seed: int = 0) -> torch.Tensor:
    return torch.randn(n_modalities, batch, DIM, generator=torch.Generator().manual_seed(seed))


def _reference_step(step: RCAStep, tokens: torch.Tensor) -> torch.Tensor:
    """docs/crane-method.md section 3, one entity and one modality at a time."""
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
