"""CRANE's scale switches (docs/crane-model.md, section 8): historical neighbour embeddings
(`neighbour_cache`), the InfoNCE row cap (`cl_max_rows`), the input reduction (`input_dim`)
and bf16 autocast (`training.precision`). Each does what it says: with the cache just
refreshed the loss equals exact CRANE's; a stale cache is what the step reads; the cap bounds
the contrastive matrices; the reduction feeds the asked width and records the variance kept;
bf16 changes the steps and still learns; together they still learn."""

from __future__ import annotations

import json

import pytest
import torch

import crane.models.crane as crane_module
from crane.engine.runner import fit_and_evaluate
from crane.engine.settings import TrainingConfig
from crane.models.crane import Crane
from crane.synthetic import styled_and_grouped
from tests.models.checks import model_defaults

DEFAULTS = {**model_defaults("crane"), "knn_k": 3}
# RCA dropout off: the cache is computed in eval mode, a step in training mode.
EXACT_STEP = {"rca_dropout": 0.0}


@pytest.fixture(scope="module")
def wide():
    return styled_and_grouped(n_users=120, n_items=600, n_styles=20, n_train=6, n_valid=1,
                              n_test=1, seed=4)


def build(data, **overrides) -> Crane:
    torch.manual_seed(0)
    model = Crane(data, {**DEFAULTS, **overrides})
    model.train()
    model.start_epoch(1, torch.Generator().manual_seed(5))
    return model


def batch(data, size: int = 16, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    rows = torch.randperm(len(data.train_user), generator=g)[:size]
    neg = torch.randint(0, data.n_items, (size,), generator=g)
    return (torch.as_tensor(data.train_user)[rows], torch.as_tensor(data.train_item)[rows], neg)


def loss_terms(model: Crane, users, pos, neg) -> dict[str, torch.Tensor]:
    return {k: v.detach() for k, v in model.loss(users, pos, neg).items()}


@pytest.mark.parametrize("overrides", [
    {"user_profiles": False}, {"user_profiles": False, "item_graph_layers": 2},
])
def test_a_fresh_cache_gives_exact_cranes_loss_bit_for_bit(wide, overrides):
    """Without user profiles the cached step computes the same numbers in the same order."""
    step = batch(wide.data)
    exact = build(wide.data, **EXACT_STEP, **overrides)
    cached = build(wide.data, **EXACT_STEP, **overrides, neighbour_cache=True)
    exact_terms, cached_terms = loss_terms(exact, *step), loss_terms(cached, *step)
    assert exact_terms.keys() == cached_terms.keys()
    for name in exact_terms:
        assert torch.equal(exact_terms[name], cached_terms[name]), name


@pytest.mark.parametrize("overrides", [{}, {"profile_norm": "sym"}, {"item_graph": False}])
def test_a_fresh_cache_with_precomputed_profiles_gives_exact_cranes_loss(wide, overrides):
    """(norm R F) W + rowsum b equals norm R (F W + b): the same loss up to float rounding."""
    step = batch(wide.data)
    exact = build(wide.data, **EXACT_STEP, **overrides)
    cached = build(wide.data, **EXACT_STEP, **overrides, neighbour_cache=True)
    exact_terms, cached_terms = loss_terms(exact, *step), loss_terms(cached, *step)
    for name in exact_terms:
        assert torch.allclose(exact_terms[name], cached_terms[name], rtol=1e-5, atol=1e-7), name


def test_a_step_reads_the_cache_of_the_epochs_start(wide):
    exact = build(wide.data, **EXACT_STEP, user_profiles=False)
    cached = build(wide.data, **EXACT_STEP, user_profiles=False, neighbour_cache=True)
    for model in (exact, cached):  # move the projections: z of every item changes
        with torch.no_grad():
            for projection in model.projections:
                projection.weight.mul_(1.5)
    step = batch(wide.data)
    stale = loss_terms(cached, *step)["bpr"]
    assert not torch.equal(stale, loss_terms(exact, *step)["bpr"])
    cached.refresh_neighbour_cache()
    assert torch.equal(loss_terms(cached, *step)["bpr"], loss_terms(exact, *step)["bpr"])


def test_the_cache_is_refreshed_at_every_epochs_start(wide):
    model = build(wide.data, neighbour_cache=True)
    with torch.no_grad():
        model.projections[0].weight.add_(0.1)
    before = model.z_cache.clone()
    model.start_epoch(2, torch.Generator().manual_seed(5))
    assert not torch.equal(before, model.z_cache)
    assert torch.equal(model.z_cache, model._all_items_z())


def test_gradients_reach_every_parameter_through_the_fresh_rows(wide):
    model = build(wide.data, neighbour_cache=True)
    sum(model.loss(*batch(wide.data, size=64)).values()).backward()
    silent = [name for name, p in model.named_parameters()
              if p.grad is None or not torch.any(p.grad != 0)]
    assert silent == []


@pytest.mark.parametrize("change, message", [
    ({"trainable_features": True}, "frozen features"),
    ({"semantic_ui_propagation": True}, "semantic_ui_propagation"),
])
def test_the_cache_refuses_settings_it_cannot_approximate(wide, change, message):
    with pytest.raises(ValueError, match=message):
        Crane(wide.data, {**DEFAULTS, "neighbour_cache": True, **change})


def test_the_row_cap_bounds_the_contrastive_matrices(wide, monkeypatch):
    sizes = []
    info_nce = crane_module.symmetric_info_nce

    def recording(a, b, tau):
        sizes.append(len(a))
        return info_nce(a, b, tau)

    monkeypatch.setattr(crane_module, "symmetric_info_nce", recording)
    users, pos, neg = batch(wide.data, size=64)
    build(wide.data).loss(users, pos, neg)
    uncapped = list(sizes)
    assert uncapped == [len(torch.unique(pos)), len(torch.unique(users))]
    sizes.clear()
    build(wide.data, cl_max_rows=10).loss(users, pos, neg)
    assert sizes == [10, 10]


def test_the_row_cap_draws_distinct_rows_from_the_trainers_generator(wide):
    model = build(wide.data, cl_max_rows=10)
    first = model._contrastive_rows(50, torch.device("cpu"))
    assert len(torch.unique(first)) == 10 and int(first.max()) < 50
    assert model._contrastive_rows(10, torch.device("cpu")) is None  # nothing to drop
    model.start_epoch(2, torch.Generator().manual_seed(5))
    again = model._contrastive_rows(50, torch.device("cpu"))
    assert torch.equal(first, again)  # the same generator state draws the same rows


def test_the_scale_switches_learn(tmp_path):
    synthetic = styled_and_grouped(n_users=300, n_items=200, cold_share=0.4, seed=11)
    training = TrainingConfig(epochs=12, patience=4, batch_size=256, learning_rate=5e-3)
    hparams = {**DEFAULTS, "neighbour_cache": True, "cl_max_rows": 64, "input_dim": 16}
    scaled = fit_and_evaluate(synthetic.data, synthetic.interactions, "crane", hparams,
                              seed=2024, training=training, log=lambda _: None,
                              run_dir=tmp_path / "run")
    recorded = json.loads((tmp_path / "run" / "metrics.json").read_text())["model_info"]
    assert recorded["input_dim"] == 16 and recorded["retained_variance"]
    mostpop = fit_and_evaluate(synthetic.data, synthetic.interactions, "mostpop", {},
                               seed=2024, training=training, log=lambda _: None)
    losses = [row["loss"] for row in scaled.history]
    assert losses[-1] < 0.8 * losses[0]
    assert scaled.test["recall@20"] > mostpop.test["recall@20"] + 0.1


def test_bf16_autocast_runs_and_learns():
    synthetic = styled_and_grouped(n_users=300, n_items=200, cold_share=0.4, seed=11)
    runs = {}
    for precision in ("fp32", "bf16"):
        training = TrainingConfig(epochs=8, patience=8, batch_size=256, learning_rate=5e-3,
                                  precision=precision)
        runs[precision] = fit_and_evaluate(synthetic.data, synthetic.interactions, "crane",
                                           DEFAULTS, seed=2024, training=training,
                                           log=lambda _: None)
    bf16, fp32 = runs["bf16"], runs["fp32"]
    # the steps ran in bf16 (other losses), yet learned about as much as float32 steps
    assert [row["loss"] for row in bf16.history] != [row["loss"] for row in fp32.history]
    losses = [row["loss"] for row in bf16.history]
    assert losses[-1] < 0.8 * losses[0]
    assert bf16.test["recall@20"] > fp32.test["recall@20"] - 0.05


def test_input_dim_projects_principal_components_and_records_the_variance(wide):
    model = build(wide.data, input_dim=8)
    for modality, projection in zip(model.modalities, model.projections):
        assert projection.in_features == 8
        assert model.get_buffer(f"{modality}_features").shape == (wide.data.n_items, 8)
    info = model.run_info()
    assert info["input_dim"] == 8 and set(info["retained_variance"]) == set(model.modalities)
    assert all(0 < v <= 1 for v in info["retained_variance"].values())
    assert build(wide.data).run_info() == {}  # the method reads the raw features


def test_input_dim_wider_than_a_modality_leaves_it_raw(wide):
    widths = {m: wide.data.features[m].shape[1] for m in wide.data.features}
    model = build(wide.data, input_dim=max(widths.values()))
    assert [p.in_features for p in model.projections] == [widths[m] for m in model.modalities]
