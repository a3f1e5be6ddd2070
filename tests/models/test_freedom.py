"""FREEDOM: frozen kNN item graph, degree-sensitive edge pruning, batch-only feature terms."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from crane.models import get
from crane.synthetic import only_modalities, shuffled_features, styled_alternate_cold
from tests.models.checks import (a_batch, assert_scores_agree_across_chunks, mean_epoch_losses,
                                 parameters_without_gradient, random_recall_at_20,
                                 train_and_test)

HP = {"embedding_size": 16, "feat_embed_dim": 16, "knn_k": 5, "mm_image_weight": 0.1,
      "n_mm_layers": 1, "n_ui_layers": 2, "dropout": 0.8, "reg_weight": 1e-3,
      "train_features": True}


@pytest.fixture(scope="module")
def synthetic():
    return styled_alternate_cold()


def make(data, **overrides):
    torch.manual_seed(0)
    model = get("freedom")(data, {**HP, **overrides})
    model.start_epoch(1, torch.Generator().manual_seed(0))
    return model


# -- straightforward dense versions of MMRec's computations ------------------------------

def mmrec_knn_graph(features, k):
    """MMRec FREEDOM's get_knn_adj_mat, densely."""
    x = torch.as_tensor(features)
    unit = x / x.norm(p=2, dim=-1, keepdim=True)
    _, index = (unit @ unit.T).topk(k, dim=-1)
    adjacency = torch.zeros(len(x), len(x)).scatter_(-1, index, 1.0)
    inv_sqrt = (adjacency.sum(-1) + 1e-7).pow(-0.5)
    return inv_sqrt[:, None] * adjacency * inv_sqrt[None, :]


def dense_bipartite(users, items, n_users, n_items):
    """D^-1/2 A D^-1/2 of the user-item graph of the given edges (MMRec's +1e-7)."""
    r = torch.zeros(n_users, n_items)
    r[users, items] = 1.0
    user_inv = (r.sum(1) + 1e-7).pow(-0.5)
    item_inv = (r.sum(0) + 1e-7).pow(-0.5)
    normalised = user_inv[:, None] * r * item_inv[None, :]
    full = torch.zeros(n_users + n_items, n_users + n_items)
    full[:n_users, n_users:] = normalised
    full[n_users:, :n_users] = normalised.T
    return full


def dense_propagate(model, adjacency, item_graph):
    h = model.item_id_embedding.weight
    for _ in range(model.config.n_mm_layers):
        h = item_graph @ h
    layers = [torch.cat([model.user_embedding.weight, model.item_id_embedding.weight])]
    for _ in range(model.config.n_ui_layers):
        layers.append(adjacency @ layers[-1])
    users, items = torch.split(torch.stack(layers, 1).mean(1), [model.n_users, model.n_items])
    return users, items + h


def mmrec_loss(model, users, pos, neg):
    """MMRec's calculate_loss: every item's features projected, then indexed."""
    def bpr(u, p, n):
        return -F.logsigmoid((u * p).sum(1) - (u * n).sum(1)).mean()
    all_users, all_items = model.propagate(model.train_graph)
    u = all_users[users]
    loss = bpr(u, all_items[pos], all_items[neg])
    feature_terms = 0.0
    for modality in model.modalities:
        projected = model.projections[modality](model.features(modality))
        feature_terms = feature_terms + bpr(u, projected[pos], projected[neg])
    return loss + model.config.reg_weight * feature_terms


# -- tests ------------------------------------------------------------------------------

def test_item_graph_is_mmrecs_frozen_multimodal_knn(synthetic):
    model = make(synthetic.data)
    features = synthetic.data.features
    expected = (0.1 * mmrec_knn_graph(features["image"], 5)
                + 0.9 * mmrec_knn_graph(features["text"], 5))
    torch.testing.assert_close(model.item_graph.matrix.to_dense(), expected, rtol=1e-5, atol=1e-6)
    text_only = make(only_modalities(synthetic.data, "text"))
    torch.testing.assert_close(text_only.item_graph.matrix.to_dense(),
                               mmrec_knn_graph(features["text"], 5), rtol=1e-5, atol=1e-6)


def test_edge_pruning_keeps_the_share_and_renormalises(synthetic):
    model = get("freedom")(synthetic.data, HP)
    n_edges = len(model.edges.weight)
    model.start_epoch(3, torch.Generator().manual_seed(11))
    n_keep = int(n_edges * (1.0 - 0.8))  # MMRec's rounding (0.19999..., not 0.2)
    kept = torch.multinomial(model.edges.weight, n_keep, replacement=False,
                             generator=torch.Generator().manual_seed(11))
    expected = dense_bipartite(model.edges.user[kept], model.edges.item[kept], model.n_users,
                               model.n_items)
    assert model.train_graph.matrix._nnz() == 2 * n_keep
    torch.testing.assert_close(model.train_graph.matrix.to_dense(), expected, rtol=1e-5, atol=1e-7)


def test_edge_pruning_prefers_low_degree_edges(synthetic):
    model = get("freedom")(synthetic.data, HP)
    weight = model.edges.weight
    expected = dense_bipartite(model.edges.user, model.edges.item, model.n_users, model.n_items)
    torch.testing.assert_close(
        weight, expected[model.edges.user, model.n_users + model.edges.item], rtol=1e-5, atol=0)
    generator = torch.Generator().manual_seed(0)
    counts = torch.zeros(model.n_users + model.n_items, model.n_users + model.n_items)
    for epoch in range(60):
        model.start_epoch(epoch, generator)
        counts += (model.train_graph.matrix.to_dense() != 0).float()
    kept_share = counts[model.edges.user, model.n_users + model.edges.item] / 60
    light = kept_share[weight > weight.median()].mean()
    heavy = kept_share[weight < weight.median()].mean()
    assert light > 1.2 * heavy
    assert abs(float(kept_share.mean()) - 0.2) < 0.01


def test_feature_terms_equal_mmrecs_all_item_projection(synthetic):
    for train_features in (True, False):
        model = make(synthetic.data, train_features=train_features)
        reference = make(synthetic.data, train_features=train_features)  # same seeds
        users, pos, neg = a_batch(synthetic.data, size=128)
        ours = sum(model.loss(users, pos, neg).values())
        theirs = mmrec_loss(reference, users, pos, neg)
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)
        ours.backward()
        theirs.backward()
        for (name, p), q in zip(model.named_parameters(), reference.parameters()):
            torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-7, msg=name)
        assert ("feature_bpr" in model.loss(users, pos, neg))
        assert any(n.startswith("trainable_features") for n, _ in model.named_parameters()) \
            == train_features


def test_zero_reg_weight_does_no_feature_work(synthetic):
    model = make(synthetic.data, reg_weight=0.0)
    assert {name for name, _ in model.named_parameters()} == {"user_embedding.weight",
                                                               "item_id_embedding.weight"}
    assert set(model.loss(*a_batch(synthetic.data))) == {"bpr"}


def test_evaluation_uses_the_full_graph(synthetic):
    model = make(synthetic.data)
    reference_graph = (0.1 * mmrec_knn_graph(synthetic.data.features["image"], 5)
                       + 0.9 * mmrec_knn_graph(synthetic.data.features["text"], 5))
    full = dense_bipartite(model.edges.user, model.edges.item, model.n_users, model.n_items)
    scores = []
    for seed in (1, 2):
        model.train()
        model.start_epoch(seed, torch.Generator().manual_seed(seed))
        model.eval()
        with torch.no_grad():
            model.prepare_scoring()
            scores.append(model.score(torch.arange(model.n_users)))
    torch.testing.assert_close(scores[0], scores[1])
    with torch.no_grad():
        users, items = dense_propagate(model, full, reference_graph)
    torch.testing.assert_close(scores[0], users @ items.T, rtol=1e-4, atol=1e-5)


def test_every_parameter_gets_gradient(synthetic):
    model = make(synthetic.data)
    assert parameters_without_gradient(model, *a_batch(synthetic.data)) == []
    names = {name.split(".")[0] for name, _ in model.named_parameters()}
    assert names == {"user_embedding", "item_id_embedding", "trainable_features", "projections"}


def test_loss_needs_a_sampled_graph(synthetic):
    model = get("freedom")(synthetic.data, HP)
    with pytest.raises(RuntimeError, match="start_epoch"):
        model.loss(*a_batch(synthetic.data))


def test_loss_decreases(synthetic):
    losses = mean_epoch_losses(make(synthetic.data), synthetic.data, epochs=6, learning_rate=5e-3)
    assert all(later < earlier for earlier, later in zip(losses, losses[1:])), losses
    assert losses[-1] < 0.8 * losses[0], losses


def test_scores_agree_across_chunks(synthetic):
    model = make(synthetic.data)
    mean_epoch_losses(model, synthetic.data, epochs=1, learning_rate=5e-3)
    assert_scores_agree_across_chunks(model)


@pytest.mark.parametrize("modality", ["image", "text"])
def test_single_modality(synthetic, modality):
    data = only_modalities(synthetic.data, modality)
    model = make(data)
    assert list(model.projections) == [modality]
    assert torch.isfinite(sum(model.loss(*a_batch(data)).values()))


def test_learns_from_content(synthetic):
    hp = {**HP, "train_features": False}
    trained = train_and_test(synthetic, "freedom", hp, epochs=15)
    mostpop = train_and_test(synthetic, "mostpop", {}, epochs=1)
    blind = train_and_test(synthetic, "freedom", hp, epochs=15,
                           data=shuffled_features(synthetic.data))
    recall = trained.test["recall@20"]
    assert recall > 3 * random_recall_at_20(synthetic)
    assert recall > 3 * mostpop.test["recall@20"]
    assert blind.test["recall@20"] < recall - 0.2


def test_bad_input_is_named(synthetic):
    with pytest.raises(ValueError, match=r"missing hyper-parameter\(s\) \['train_features'\]"):
        get("freedom")(synthetic.data, {k: v for k, v in HP.items() if k != "train_features"})
    with pytest.raises(ValueError, match=r"unknown hyper-parameter\(s\) \['lambda_coeff'\]"):
        get("freedom")(synthetic.data, {**HP, "lambda_coeff": 0.9})
    with pytest.raises(ValueError,
                       match=r"freedom: hyper-parameter dropout=1.0 must be in \[0, 1\)"):
        get("freedom")(synthetic.data, {**HP, "dropout": 1.0})
    with pytest.raises(ValueError, match="freedom needs item features"):
        get("freedom")(only_modalities(synthetic.data), HP)


@pytest.mark.parametrize("n_ui_layers", [0, 1, 2])
def test_batch_rows_equal_the_full_propagation(synthetic, n_ui_layers):
    """The loss's last user-item layer at the batch's rows only: same values and gradients."""
    model = make(synthetic.data, n_ui_layers=n_ui_layers)
    users, pos, neg = a_batch(synthetic.data)
    items = torch.cat([pos, neg])
    user_e, item_e = model.batch_embeddings(model.train_graph, users, items)
    (user_e.square().sum() + item_e.sin().sum()).backward()
    fast = [p.grad.clone() for p in (model.user_embedding.weight, model.item_id_embedding.weight)]
    model.zero_grad()
    all_users, all_items = model.propagate(model.train_graph)
    assert torch.equal(user_e, all_users[users]) and torch.equal(item_e, all_items[items])
    (all_users[users].square().sum() + all_items[items].sin().sum()).backward()
    for got, want in zip(fast, (model.user_embedding.weight.grad,
                                model.item_id_embedding.weight.grad)):
        torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-7)
