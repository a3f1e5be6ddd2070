"""LGMRec: shapes, gradients, scoring consistency, fidelity to MMRec's formulas, learning."""

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

CONFIG = load_model_config("lgmrec")
DEFAULTS = CONFIG["defaults"]


def build(data, seed=0, **overrides):
    torch.manual_seed(seed)
    return get("lgmrec")(data, {**DEFAULTS, **overrides})


def batch(data, size=24, seed=0):
    rng = np.random.default_rng(seed)
    rows = rng.choice(len(data.train_user), size, replace=False)
    negatives = rng.integers(data.n_items, size=size)
    return (torch.as_tensor(data.train_user[rows]), torch.as_tensor(data.train_item[rows]),
            torch.as_tensor(negatives))


def test_config_holds_the_published_baby_point():
    assert CONFIG["grid"] == {}
    assert DEFAULTS == {"embedding_size": 64, "feat_embed_dim": 64, "n_ui_layers": 2,
                        "n_mm_layers": 2, "n_hyper_layer": 1, "hyper_num": 4, "keep_rate": 0.5,
                        "alpha": 0.3, "cl_weight": 1e-4, "reg_weight": 1e-6}


@pytest.mark.parametrize("modalities", [("image", "text"), ("image",), ("text",)])
def test_loss_terms_gradients_and_scores(modalities):
    data = random_train_data(modalities=modalities)
    model = build(data, reg_weight=1e-2)
    users, pos, neg = batch(data)
    terms = model.loss(users, pos, neg)
    # The hypergraph contrast is cross-modal: it needs two modalities.
    assert set(terms) == ({"bpr", "reg", "cl"} if len(modalities) == 2 else {"bpr", "reg"})
    assert all(t.shape == () and torch.isfinite(t) for t in terms.values())
    assert parameters_without_gradient(model, users, pos, neg) == []
    assert_scores_agree_across_chunks(model)


def test_frozen_features_stay_out_of_parameters_and_checkpoints():
    model = build(random_train_data())
    assert not any("features" in name for name, _ in model.named_parameters())
    assert not any("features" in name for name in model.state_dict())


def test_gumbel_and_dropout_follow_the_global_seed():
    data = random_train_data()
    model = build(data)
    users, pos, neg = batch(data)
    torch.manual_seed(5)
    first = model.loss(users, pos, neg)
    torch.manual_seed(5)
    again = model.loss(users, pos, neg)
    other = model.loss(users, pos, neg)
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not torch.equal(first["bpr"], other["bpr"])


@pytest.fixture
def no_gumbel_noise(monkeypatch):
    """Gumbel-softmax without noise, for exact comparisons (dropout off via keep_rate 1)."""
    monkeypatch.setattr(F, "gumbel_softmax",
                        lambda logits, tau, hard=False, dim=-1: torch.softmax(logits / tau, dim))


def ssl_mmrec(emb1, emb2, all_emb, tau=0.2):
    n1, n2, na = F.normalize(emb1), F.normalize(emb2), F.normalize(all_emb)
    pos = torch.exp((n1 * n2).sum(1) / tau)
    return -torch.log(pos / torch.exp(n1 @ na.T / tau).sum(1)).sum()


@pytest.mark.parametrize("hyper_num", [4, 24])  # below / above the embedding size (16)
def test_matches_full_table_transcription_of_mmrec(no_gumbel_noise, hyper_num):
    data = random_train_data(n_users=30, n_items=20)
    model = build(data, embedding_size=16, feat_embed_dim=16, hyper_num=hyper_num,
                  keep_rate=1.0, n_hyper_layer=2, cl_weight=0.1, reg_weight=0.01)
    users, pos, neg = batch(data, size=40)
    users[1], pos[1], neg[1] = users[0], pos[0], neg[0]  # a repeated row, as in real batches
    ours = sum(model.loss(users, pos, neg).values())

    n_users = data.n_users
    train = torch.as_tensor(data.train_matrix().toarray())
    adjacency = torch.as_tensor(symmetric_bipartite_adjacency(data.train_matrix()).toarray())
    ego = torch.cat([model.user_embedding.weight, model.item_embedding.weight])
    cge = torch.stack([ego, adjacency @ ego, adjacency @ adjacency @ ego], 1).mean(1)
    mge, hyper = 0, {}
    for m in ("image", "text"):
        x = torch.as_tensor(data.features[m])
        items = x @ model.projections[m]
        nodes = torch.cat([train @ items / (train.sum(1, keepdim=True) + 1e-7), items])
        mge = mge + F.normalize(adjacency @ adjacency @ nodes)
        item_h = torch.softmax(x @ model.hyperedges[m] / 0.2, 1)
        user_h = torch.softmax(train @ (x @ model.hyperedges[m]) / 0.2, 1)
        i_ret = cge[n_users:]
        for _ in range(2):
            lat = item_h.T @ i_ret
            i_ret = item_h @ lat
        hyper[m] = (user_h @ lat, i_ret)
    ghe = torch.cat([hyper["image"][0] + hyper["text"][0], hyper["image"][1] + hyper["text"][1]])
    final_u, final_i = (cge + mge + 0.3 * F.normalize(ghe)).split([n_users, data.n_items])
    u, p, n = final_u[users], final_i[pos], final_i[neg]
    bpr = -F.logsigmoid((u * p).sum(1) - (u * n).sum(1)).mean()
    (uv, iv), (ut, it) = hyper["image"], hyper["text"]
    hcl = ssl_mmrec(uv[users], ut[users], ut) + ssl_mmrec(iv[pos], it[pos], it)
    reg = (u.norm() + p.norm() + n.norm()) / len(users)
    assert_same_loss_and_gradients(model, ours, bpr + 0.1 * hcl + 0.01 * reg, atol=1e-5)

    model.eval()
    with torch.no_grad():
        model.prepare_scoring()
        torch.testing.assert_close(model.score(torch.arange(n_users)), final_u @ final_i.T)


def test_bad_hyper_parameters_missing_features_and_negatives():
    data = random_train_data()
    with pytest.raises(ValueError, match="lgmrec: unknown hyper-parameter.*cf_model"):
        get("lgmrec")(data, {**DEFAULTS, "cf_model": "lightgcn"})
    with pytest.raises(ValueError, match="lgmrec: missing hyper-parameter.*hyper_num"):
        get("lgmrec")(data, {k: v for k, v in DEFAULTS.items() if k != "hyper_num"})
    with pytest.raises(ValueError, match="feat_embed_dim .* must equal embedding_size"):
        get("lgmrec")(data, {**DEFAULTS, "feat_embed_dim": 32})
    users, pos, _ = batch(data)
    with pytest.raises(ValueError, match="lgmrec trains on .* triples"):
        build(data).loss(users, pos, None)
    data.features = {}
    with pytest.raises(ValueError, match="lgmrec needs item features"):
        get("lgmrec")(data, DEFAULTS)


def test_loss_decreases():
    data = random_train_data(n_users=60, n_items=40)
    means = mean_epoch_losses(build(data), data, epochs=6, learning_rate=1e-3,
                              batch_size=64)
    assert means[-1] < means[0]


@pytest.fixture(scope="module")
def styled():
    return styled_random_cold(seed=3, cold_in_train=False)


def test_learns_styles_and_reads_the_features(styled):
    """Cold items have no training interaction: only the modality and hypergraph views,
    which read the features, can place them."""
    # A larger step than MMRec's 1e-3 only to keep the test short.
    training = TrainingConfig(epochs=5, patience=5, batch_size=256, learning_rate=5e-3)

    def recall(data, model="lgmrec", hparams=DEFAULTS):
        return fit_and_evaluate(data, styled.interactions, model, hparams, 0, training,
                                log=lambda _: None).test["recall@20"]

    learned = recall(styled.data)
    assert learned > 0.5 and learned > 5 * recall(styled.data, "mostpop", {})
    assert recall(shuffled_features(styled.data)) < learned - 0.15
