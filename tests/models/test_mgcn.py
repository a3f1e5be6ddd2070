"""MGCN: shapes, gradients, scoring consistency, fidelity to MMRec's formulas, learning."""

from __future__ import annotations


import numpy as np
import pytest
import torch
import torch.nn.functional as F

from crane.graphs.item_knn import build_neighbour_cache
from crane.graphs.user_item import symmetric_bipartite_adjacency
from crane.models import get
from crane.engine.runner import fit_and_evaluate
from crane.engine.settings import TrainingConfig
from crane.tuning import load_model_config
from crane.synthetic import random_train_data, shuffled_features, styled_random_cold
from tests.models.checks import (assert_same_loss_and_gradients,
                                 assert_scores_agree_across_chunks, mean_epoch_losses,
                                 parameters_without_gradient)

CONFIG = load_model_config("mgcn")
DEFAULTS, TRAINER = CONFIG["defaults"], CONFIG["training"]["defaults"]


def build(data, seed=0, **overrides):
    torch.manual_seed(seed)
    return get("mgcn")(data, {**DEFAULTS, "knn_k": 5, **overrides})


def batch(data, size=24, seed=0):
    rng = np.random.default_rng(seed)
    rows = rng.choice(len(data.train_user), size, replace=False)
    negatives = rng.integers(data.n_items, size=size)
    return (torch.as_tensor(data.train_user[rows]), torch.as_tensor(data.train_item[rows]),
            torch.as_tensor(negatives))


def test_config_holds_mmrec_grid():
    assert CONFIG["grid"] == {"cl_loss": [1e-3, 1e-2, 1e-1]}
    assert TRAINER == {"lr_scheduler": [0.96, 50]}
    assert (DEFAULTS["reg_weight"], DEFAULTS["knn_k"]) == (1e-4, 10)


@pytest.mark.parametrize("modalities", [("image", "text"), ("image",), ("text",)])
def test_loss_terms_gradients_and_scores(modalities):
    data = random_train_data(modalities=modalities)
    model = build(data)
    users, pos, neg = batch(data)
    terms = model.loss(users, pos, neg)
    assert set(terms) == {"bpr", "reg", "cl"}
    assert all(t.shape == () and torch.isfinite(t) for t in terms.values())
    assert parameters_without_gradient(model, users, pos, neg) == []
    assert_scores_agree_across_chunks(model)


def test_zero_weights_drop_their_terms():
    data = random_train_data()
    users, pos, neg = batch(data)
    assert set(build(data, cl_loss=0.0, reg_weight=0.0).loss(users, pos, neg)) == {"bpr"}


def knn_graph(features: torch.Tensor, k: int) -> torch.Tensor:
    """MMRec's build_sim + top-k + symmetric normalisation by row sums, densely."""
    unit = features / features.norm(dim=1, keepdim=True)
    values, index = torch.topk(unit @ unit.T, k, dim=1)
    graph = torch.zeros(len(features), len(features)).scatter_(1, index, values)
    inv_sqrt = graph.sum(1).pow(-0.5)
    return inv_sqrt[:, None] * graph * inv_sqrt[None, :]


def info_nce_mmrec(a, b, t=0.2):
    a, b = F.normalize(a, dim=1), F.normalize(b, dim=1)
    pos = torch.exp((a * b).sum(1) / t)
    return torch.mean(-torch.log(pos / torch.exp(a @ b.T / t).sum(1)))


def test_matches_full_table_transcription_of_mmrec():
    data = random_train_data(n_users=30, n_items=20)
    model = build(data, cl_loss=0.1)
    users, pos, neg = batch(data, size=40)
    users[1], pos[1], neg[1] = users[0], pos[0], neg[0]  # a repeated row, as in real batches
    ours = sum(model.loss(users, pos, neg).values())

    n_users = data.n_users
    adjacency = torch.as_tensor(symmetric_bipartite_adjacency(data.train_matrix()).toarray())
    ego = torch.cat([model.user_embedding.weight, model.item_embedding.weight])
    content = torch.stack([ego, adjacency @ ego, adjacency @ adjacency @ ego], 1).mean(1)
    views = []
    for modality in ("image", "text"):
        feats = model.projections[modality](model.features[modality])
        items = model.item_embedding.weight * model.feature_gates[modality](feats)
        items = knn_graph(torch.as_tensor(data.features[modality]), 5) @ items
        views.append(torch.cat([adjacency[:n_users, n_users:] @ items, items]))
    image, text = views
    attention = torch.cat([model.query_common(image), model.query_common(text)], -1)
    weights = torch.softmax(attention, -1)
    common = weights[:, :1] * image + weights[:, 1:] * text
    side = (model.preference_gates["image"](content) * (image - common)
            + model.preference_gates["text"](content) * (text - common) + common) / 3
    final_u, final_i = (content + side).split([n_users, data.n_items])
    u, p, n = final_u[users], final_i[pos], final_i[neg]
    bpr = -F.logsigmoid((u * p).sum(1) - (u * n).sum(1)).mean()
    reg = 0.5 * (u.square().sum() + p.square().sum() + n.square().sum()) / len(users)
    side_u, side_i = side.split([n_users, data.n_items])
    content_u, content_i = content.split([n_users, data.n_items])
    cl = (info_nce_mmrec(side_i[pos], content_i[pos])
          + info_nce_mmrec(side_u[users], content_u[users]))
    expected = bpr + DEFAULTS["reg_weight"] * reg + 0.1 * cl
    assert_same_loss_and_gradients(model, ours, expected)

    model.eval()
    with torch.no_grad():
        model.prepare_scoring()
        torch.testing.assert_close(model.score(torch.arange(n_users)), final_u @ final_i.T)


def test_bad_hyper_parameters_missing_features_and_negatives():
    data = random_train_data()
    with pytest.raises(ValueError, match="mgcn: unknown hyper-parameter.*lambda_coeff"):
        get("mgcn")(data, {**DEFAULTS, "lambda_coeff": 0.9})
    with pytest.raises(ValueError, match="mgcn: missing hyper-parameter.*knn_k"):
        get("mgcn")(data, {k: v for k, v in DEFAULTS.items() if k != "knn_k"})
    users, pos, _ = batch(data)
    with pytest.raises(ValueError, match="mgcn trains on .* triples"):
        build(data).loss(users, pos, None)
    data.features = {}
    with pytest.raises(ValueError, match="mgcn needs item features"):
        get("mgcn")(data, DEFAULTS)


def test_item_graphs_are_read_from_the_cache_by_feature_hash(tmp_path, caplog):
    data = random_train_data()
    data.cache_dir = tmp_path
    data.feature_hashes = {"image": "a" * 64, "text": "b" * 64}
    for modality, content_hash in data.feature_hashes.items():
        build_neighbour_cache(data.features[modality], 5, tmp_path, content_hash)
    build(data)
    assert "computing it in memory" not in caplog.text  # both read, none written
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        f"knn_{'a' * 20}_k5.npz", f"knn_{'b' * 20}_k5.npz"]


def test_loss_decreases():
    data = random_train_data(n_users=60, n_items=40)
    means = mean_epoch_losses(build(data), data, epochs=6, learning_rate=1e-3,
                              batch_size=64)
    assert means[-1] < means[0]


@pytest.fixture(scope="module")
def styled():
    return styled_random_cold(seed=3, cold_in_train=False)


def test_learns_styles_and_reads_the_features(styled):
    """Cold items have no training interaction: only the feature kNN views can place them."""
    training = TrainingConfig(epochs=8, patience=8, batch_size=256)

    def recall(data, model="mgcn", hparams=DEFAULTS):
        return fit_and_evaluate(data, styled.interactions, model, hparams, 0, training,
                                log=lambda _: None).test["recall@20"]

    learned = recall(styled.data)
    assert learned > 0.6 and learned > 5 * recall(styled.data, "mostpop", {})
    assert recall(shuffled_features(styled.data)) < learned - 0.2
