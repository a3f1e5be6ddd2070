"""BM3: shapes, gradients, scoring consistency, fidelity to MMRec's formulas, learning."""

from __future__ import annotations


import numpy as np
import pytest
import torch
import torch.nn.functional as F

from crane.graphs.user_item import symmetric_bipartite_adjacency
from crane.models import get
from crane.engine.runner import fit_and_evaluate
from crane.engine.settings import TrainingConfig
from crane.tuning import load_model_config
from crane.synthetic import random_train_data, shuffled_features, styled_random_cold
from tests.models.checks import (assert_same_loss_and_gradients,
                                 assert_scores_agree_across_chunks, mean_epoch_losses,
                                 parameters_without_gradient)

CONFIG = load_model_config("bm3")
DEFAULTS = CONFIG["defaults"]


def build(data, seed=0, **overrides):
    torch.manual_seed(seed)
    return get("bm3")(data, {**DEFAULTS, **overrides})


def batch(data, size=24, seed=0):
    rng = np.random.default_rng(seed)
    rows = rng.choice(len(data.train_user), size, replace=False)
    return torch.as_tensor(data.train_user[rows]), torch.as_tensor(data.train_item[rows])


def test_config_holds_mmrec_grid():
    assert CONFIG["grid"] == {"n_layers": [1, 2], "reg_weight": [0.1, 0.01], "dropout": [0.3, 0.5]}
    assert CONFIG["defaults"]["cl_weight"] == 2.0
    assert get("bm3").uses_negatives is False


@pytest.mark.parametrize("modalities", [("image", "text"), ("image",), ("text",)])
def test_loss_terms_gradients_and_scores(modalities):
    data = random_train_data(modalities=modalities)
    model = build(data)
    users, items = batch(data)
    terms = model.loss(users, items, None)
    assert set(terms) == {"rec", "align", "mask", "reg"}
    assert all(t.shape == () and torch.isfinite(t) for t in terms.values())
    assert parameters_without_gradient(model, users, items, None) == []
    assert_scores_agree_across_chunks(model)


def test_zero_weights_drop_their_terms():
    data = random_train_data()
    model = build(data, cl_weight=0.0, reg_weight=0.0)
    users, items = batch(data)
    assert set(model.loss(users, items, None)) == {"rec"}
    # Without the feature losses the feature tables and projections learn nothing.
    idle = parameters_without_gradient(model, users, items, None)
    assert sorted(idle) == sorted(n for n, _ in model.named_parameters()
                                  if n.startswith(("features.", "projections.")))


def test_matches_full_table_transcription_of_mmrec():
    """Without dropout the loss is deterministic: compare with MMRec's all-rows computation."""
    data = random_train_data(n_users=30, n_items=20)
    model = build(data, dropout=0.0, n_layers=2)
    users, items = batch(data, size=40)
    users[1], items[1] = users[0], items[0]  # a repeated row, as in real batches
    ours = sum(model.loss(users, items, None).values())

    adjacency = torch.as_tensor(symmetric_bipartite_adjacency(data.train_matrix()).toarray())
    ego = torch.cat([model.user_embedding.weight, model.item_embedding.weight])
    layers = [ego, adjacency @ ego, adjacency @ adjacency @ ego]
    u_all, i_all = torch.stack(layers, 1).mean(1).split([data.n_users, data.n_items])
    i_all = i_all + model.item_embedding.weight
    u_on, i_on = model.predictor(u_all)[users], model.predictor(i_all)[items]
    u_tg, i_tg = u_all.detach()[users], i_all.detach()[items]
    expected = ((1 - F.cosine_similarity(u_on, i_tg).mean())
                + (1 - F.cosine_similarity(i_on, u_tg).mean()))
    feature_losses = 0
    for modality in ("image", "text"):
        projected = model.projections[modality](model.features[modality])
        online = model.predictor(projected)[items]
        feature_losses = (feature_losses + 1 - F.cosine_similarity(online, i_tg).mean()
                          + 1 - F.cosine_similarity(online, projected.detach()[items]).mean())
    expected = (expected + DEFAULTS["reg_weight"] * (u_all.norm() + i_all.norm()) / data.n_items
                + DEFAULTS["cl_weight"] * feature_losses)
    assert_same_loss_and_gradients(model, ours, expected)

    model.eval()
    with torch.no_grad():
        model.prepare_scoring()
        scores = model.score(torch.arange(data.n_users))
        torch.testing.assert_close(scores, model.predictor(u_all) @ model.predictor(i_all).T)


def test_dropout_follows_the_global_seed():
    data = random_train_data()
    model = build(data)
    users, items = batch(data)
    torch.manual_seed(5)
    first = model.loss(users, items, None)
    torch.manual_seed(5)
    again = model.loss(users, items, None)
    other = model.loss(users, items, None)
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not torch.equal(first["rec"], other["rec"])


def test_bad_hyper_parameters_and_missing_features():
    data = random_train_data()
    with pytest.raises(ValueError, match="bm3: unknown hyper-parameter.*dropuot"):
        get("bm3")(data, {**DEFAULTS, "dropuot": 0.1})
    with pytest.raises(ValueError, match="bm3: missing hyper-parameter.*cl_weight"):
        get("bm3")(data, {k: v for k, v in DEFAULTS.items() if k != "cl_weight"})
    data.features = {}
    with pytest.raises(ValueError, match="bm3 needs item features"):
        get("bm3")(data, DEFAULTS)


def test_loss_decreases():
    data = random_train_data(n_users=60, n_items=40)
    means = mean_epoch_losses(build(data), data, epochs=6, learning_rate=1e-3,
                              batch_size=64)
    assert means[-1] < means[0]


@pytest.fixture(scope="module")
def styled():
    return styled_random_cold(seed=3)


def run(data, interactions, hparams=DEFAULTS, epochs=10):
    training = TrainingConfig(epochs=epochs, patience=epochs, batch_size=256)
    return fit_and_evaluate(data, interactions, "bm3", hparams, 0, training, log=lambda _: None)


def test_learns_styles(styled):
    learned = run(styled.data, styled.interactions).test["recall@20"]
    popular = fit_and_evaluate(styled.data, styled.interactions, "mostpop", {}, 0,
                               TrainingConfig(), log=lambda _: None).test["recall@20"]
    assert learned > 0.3 and learned > 3 * popular


def test_features_reach_the_scores_through_the_predictor(styled):
    """BM3 scores are pred(u) . pred(i): features shape them only through the shared predictor
    (MMRec's full_sort_predict reads no feature), so shuffled features change the scores, but
    they need not lower recall; with cl_weight 0 the features cannot matter at all."""
    shuffled = shuffled_features(styled.data)

    def scores(data, **overrides):
        model = run(data, styled.interactions, {**DEFAULTS, **overrides}, epochs=2).model
        model.eval()
        with torch.no_grad():
            model.prepare_scoring()
            return model.score(torch.arange(data.n_users))

    assert not torch.allclose(scores(styled.data), scores(shuffled))
    torch.testing.assert_close(scores(styled.data, cl_weight=0.0), scores(shuffled, cl_weight=0.0))
