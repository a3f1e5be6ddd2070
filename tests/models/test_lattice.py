"""LATTICE: the sparse, chunked learned graph equals MMRec's dense one; rebuild semantics."""

from __future__ import annotations

import functools

import pytest
import torch
import torch.nn.functional as F

import crane.models.lattice as lattice_module
from crane.models import get
from crane.synthetic import only_modalities, shuffled_features, styled_alternate_cold
from tests.models.checks import (a_batch, assert_scores_agree_across_chunks, mean_epoch_losses,
                                 parameters_without_gradient, random_recall_at_20,
                                 train_and_test)

HP = {"embedding_size": 16, "feat_embed_dim": 16, "knn_k": 5, "lambda_coeff": 0.9,
      "n_layers": 1, "n_ui_layers": 2, "reg_weight": 1e-3, "train_features": True}
GRAPH_PARTS = ("projections", "modal_weight", "trainable_features")


@pytest.fixture(scope="module")
def synthetic():
    return styled_alternate_cold()


def make(data, **overrides):
    torch.manual_seed(0)
    model = get("lattice")(data, {**HP, **overrides})
    with torch.no_grad():  # move the modal weights off 0.5/0.5 so that they matter
        if model.modal_weight is not None:
            model.modal_weight.copy_(torch.tensor([0.3, 0.8]))
    return model


# -- MMRec's dense formulation (utils.build_sim / build_knn_neighbourhood / laplacian) -------

def build_sim(x):
    unit = x / x.norm(p=2, dim=-1, keepdim=True)
    return unit @ unit.T


def knn_neighbourhood(sim, k):
    values, index = sim.topk(k, dim=-1)
    return torch.zeros_like(sim).scatter(-1, index, values)


def normalized_laplacian(adjacency):
    inv_sqrt = adjacency.sum(-1).pow(-0.5)
    inv_sqrt = torch.where(torch.isinf(inv_sqrt), torch.zeros_like(inv_sqrt), inv_sqrt)
    return inv_sqrt[:, None] * adjacency * inv_sqrt[None, :]


def dense_item_graph(model, data):
    learned, original = [], []
    for modality in model.modalities:
        projected = model.projections[modality](model.features(modality))
        learned.append(knn_neighbourhood(build_sim(projected), model.config.knn_k))
        raw = torch.as_tensor(data.features[modality])
        original.append(normalized_laplacian(knn_neighbourhood(build_sim(raw), model.config.knn_k)))
    if len(learned) == 2:
        weight = torch.softmax(model.modal_weight, dim=0)
        learned = weight[0] * learned[0] + weight[1] * learned[1]
        original = weight[0] * original[0] + weight[1] * original[1]
    else:
        learned, original = learned[0], original[0]
    lam = model.config.lambda_coeff
    return (1 - lam) * normalized_laplacian(learned) + lam * original


def dense_ui_adjacency(data):
    n = data.n_users + data.n_items
    adjacency = torch.eye(n)
    adjacency[data.train_user, data.n_users + data.train_item] = 1.0
    adjacency[data.n_users + data.train_item, data.train_user] = 1.0
    return adjacency / adjacency.sum(1, keepdim=True)


def mmrec_loss(model, data, users, pos, neg):
    """MMRec LATTICE's calculate_loss (cf_model lightgcn) with dense graphs."""
    h = model.item_id_embedding.weight
    graph = dense_item_graph(model, data)
    for _ in range(model.config.n_layers):
        h = graph @ h
    adjacency = dense_ui_adjacency(data)
    layers = [torch.cat([model.user_embedding.weight, model.item_id_embedding.weight])]
    for _ in range(model.config.n_ui_layers):
        layers.append(adjacency @ layers[-1])
    all_users, all_items = torch.split(torch.stack(layers, 1).mean(1),
                                       [model.n_users, model.n_items])
    all_items = all_items + F.normalize(h, p=2, dim=1)
    u, p, n = all_users[users], all_items[pos], all_items[neg]
    bpr = -F.logsigmoid((u * p).sum(1) - (u * n).sum(1)).mean()
    reg = (u.pow(2).sum() + p.pow(2).sum() + n.pow(2).sum()) / 2 / len(users)
    return bpr + model.config.reg_weight * reg


# -- tests ------------------------------------------------------------------------------

@pytest.mark.parametrize("modalities", [("image", "text"), ("text",), ("image",)])
def test_sparse_item_graph_equals_dense(synthetic, modalities):
    data = only_modalities(synthetic.data, *modalities)
    sparse_model, dense_model = make(data), make(data)
    sparse = sparse_model.build_item_graph()
    dense = dense_item_graph(dense_model, data)
    torch.testing.assert_close(sparse.to_dense(), dense, rtol=1e-5, atol=1e-6)
    # Gradients through the kept similarity values and the modal weights agree too.
    probe = torch.randn(data.n_items, 4, generator=torch.Generator().manual_seed(3))
    (sparse @ probe).pow(2).sum().backward()
    (dense @ probe).pow(2).sum().backward()
    for (name, p), q in zip(sparse_model.named_parameters(), dense_model.parameters()):
        if name.startswith(GRAPH_PARTS):
            assert p.grad is not None and q.grad is not None, name
            torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-6, msg=name)


def test_chunked_neighbour_search_gives_the_same_graph(synthetic, monkeypatch):
    whole = make(synthetic.data).build_item_graph().to_dense()
    chunked_search = functools.partial(lattice_module.top_k_cosine_neighbours, chunk_rows=7)
    monkeypatch.setattr(lattice_module, "top_k_cosine_neighbours", chunked_search)
    chunked = make(synthetic.data).build_item_graph().to_dense()
    torch.testing.assert_close(chunked, whole)


def test_first_batch_loss_equals_mmrecs_dense_forward(synthetic):
    model, reference = make(synthetic.data), make(synthetic.data)
    users, pos, neg = a_batch(synthetic.data, size=128)
    model.start_epoch(1, torch.Generator())
    ours = sum(model.loss(users, pos, neg).values())
    theirs = mmrec_loss(reference, synthetic.data, users, pos, neg)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)
    ours.backward()
    theirs.backward()
    for (name, p), q in zip(model.named_parameters(), reference.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-7, msg=name)


def test_graph_is_rebuilt_at_each_epochs_first_batch_only(synthetic):
    model = make(synthetic.data)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    first, second = a_batch(synthetic.data, seed=1), a_batch(synthetic.data, seed=2)
    model.start_epoch(1, torch.Generator())
    assert parameters_without_gradient(model, *first) == []
    graph = model._epoch_item_graph[0]
    optimizer.step()
    # Later batches reuse the first batch's graph, detached: no gradient reaches its parts.
    missing = parameters_without_gradient(model, *second)
    assert model._epoch_item_graph[0] is graph
    assert sorted(missing) == sorted(n for n, _ in model.named_parameters()
                                     if n.startswith(GRAPH_PARTS))
    # Evaluation rebuilds the graph from the current (updated) parameters.
    model.eval()
    with torch.no_grad():
        model.prepare_scoring()
        current = dense_item_graph(model, synthetic.data)
    assert not torch.allclose(graph.to_dense(), current, atol=1e-4)
    with torch.no_grad():
        torch.testing.assert_close(model.build_item_graph().to_dense(), current,
                                   rtol=1e-5, atol=1e-6)
    # The next epoch rebuilds it with gradient again.
    model.start_epoch(2, torch.Generator())
    assert parameters_without_gradient(model, *second) == []


def test_frozen_features_and_reg_zero(synthetic):
    model = make(synthetic.data, train_features=False, reg_weight=0.0)
    assert not any(n.startswith("trainable_features") for n, _ in model.named_parameters())
    model.start_epoch(1, torch.Generator())
    assert set(model.loss(*a_batch(synthetic.data))) == {"bpr"}


def test_loss_decreases(synthetic):
    losses = mean_epoch_losses(make(synthetic.data), synthetic.data, epochs=6, learning_rate=5e-3)
    assert all(later < earlier for earlier, later in zip(losses, losses[1:])), losses
    assert losses[-1] < 0.8 * losses[0], losses


def test_scores_agree_across_chunks(synthetic):
    model = make(synthetic.data)
    mean_epoch_losses(model, synthetic.data, epochs=1, learning_rate=5e-3)
    assert_scores_agree_across_chunks(model)


def test_learns_from_content(synthetic):
    hp = {**HP, "train_features": False}
    trained = train_and_test(synthetic, "lattice", hp, epochs=15)
    mostpop = train_and_test(synthetic, "mostpop", {}, epochs=1)
    blind = train_and_test(synthetic, "lattice", hp, epochs=15,
                           data=shuffled_features(synthetic.data))
    recall = trained.test["recall@20"]
    assert recall > 3 * random_recall_at_20(synthetic)
    assert recall > 3 * mostpop.test["recall@20"]
    assert blind.test["recall@20"] < recall - 0.2


def test_bad_input_is_named(synthetic):
    with pytest.raises(ValueError, match=r"missing hyper-parameter\(s\) \['n_ui_layers'\]"):
        get("lattice")(synthetic.data, {k: v for k, v in HP.items() if k != "n_ui_layers"})
    with pytest.raises(ValueError, match=r"unknown hyper-parameter\(s\) \['cf_model'\]"):
        get("lattice")(synthetic.data, {**HP, "cf_model": "lightgcn"})
    with pytest.raises(ValueError, match="knn_k=500"):
        get("lattice")(synthetic.data, {**HP, "knn_k": 500})
    with pytest.raises(ValueError, match="lattice needs item features"):
        get("lattice")(only_modalities(synthetic.data), HP)
