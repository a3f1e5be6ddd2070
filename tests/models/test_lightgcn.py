"""LightGCN: the graph is the training matrix, the loss's row-restricted propagation equals
the full one, gradients equal dense autograd's, scoring in any chunking, and learning."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from crane.engine.runner import fit_and_evaluate
from crane.engine.settings import TrainingConfig
from crane.models import get
from crane.ops.losses import dot_bpr_loss, emb_loss
from crane.ops.propagation import lightgcn_layer_mean
from crane.synthetic import random_train_data, styled_and_grouped
from tests.models.checks import assert_scores_agree_across_chunks, model_defaults


@pytest.fixture(scope="module")
def data():
    return random_train_data(n_users=60, n_items=40, per_user=6, modalities=())


def build(data, **overrides):
    torch.manual_seed(0)
    return get("lightgcn")(data, {**model_defaults("lightgcn"), **overrides})


def test_graph_is_the_normalised_training_matrix(data):
    model = build(data, n_layers=2)
    adjacency = model.propagation.to_scipy()
    train = data.train_matrix()
    n_users = data.n_users
    pattern = (adjacency != 0).astype(np.int8)
    assert (pattern[:n_users, n_users:] != (train != 0).astype(np.int8)).nnz == 0
    assert pattern[:n_users, :n_users].nnz == 0 and pattern[n_users:, n_users:].nnz == 0
    # symmetric normalisation: entry (u, i) = 1 / sqrt(deg u * deg i)
    u, i = train.nonzero()
    deg_u = np.asarray(train.sum(1)).ravel()
    deg_i = np.asarray(train.sum(0)).ravel()
    assert np.allclose(np.asarray(adjacency[u, n_users + i]).ravel(),
                       1 / np.sqrt(deg_u[u] * deg_i[i]))


def test_gradient_matches_dense_autograd(data):
    model = build(data, n_layers=2, reg_weight=0.0)
    users, pos, neg = torch.tensor([0, 1, 2]), torch.tensor([3, 4, 5]), torch.tensor([6, 7, 8])
    model.loss(users, pos, neg)["bpr"].backward()
    fast = model.user_embedding.weight.grad.clone()
    dense = torch.as_tensor(model.propagation.to_scipy().toarray())
    ego = torch.cat([model.user_embedding.weight, model.item_embedding.weight]).detach()
    ego.requires_grad_(True)
    layers = [ego, dense @ ego, dense @ (dense @ ego)]
    final = torch.stack(layers).mean(0)
    ue, ie = final[:data.n_users], final[data.n_users:]
    s_pos = (ue[users] * ie[pos]).sum(1)
    s_neg = (ue[users] * ie[neg]).sum(1)
    (-torch.log(1e-10 + torch.sigmoid(s_pos - s_neg)).mean()).backward()
    assert torch.allclose(fast, ego.grad[:data.n_users], atol=1e-6)


@pytest.mark.parametrize("n_layers", [0, 1, 3])
def test_batch_rows_last_layer_equals_full_propagation(data, n_layers):
    """The loss propagates the last layer at the batch's rows only: the same loss bit for
    bit as MMRec's full propagation indexed by the batch, the same gradients."""
    model = build(data, n_layers=n_layers, reg_weight=0.1)
    generator = torch.Generator().manual_seed(4)
    users = torch.randint(data.n_users, (64,), generator=generator)   # with repeats
    pos, neg = (torch.randint(data.n_items, (64,), generator=generator) for _ in range(2))
    terms = model.loss(users, pos, neg)
    sum(terms.values()).backward()
    fast = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()

    user_all, item_all = lightgcn_layer_mean(model.propagation, model.ego_embeddings(),
                                             n_layers)
    reference = {"bpr": dot_bpr_loss(user_all[users], item_all[pos], item_all[neg]),
                 "reg": 0.1 * emb_loss(model.user_embedding(users), model.item_embedding(pos),
                                       model.item_embedding(neg))}
    assert all(torch.equal(terms[k], reference[k]) for k in reference)
    sum(reference.values()).backward()
    for got, (name, p) in zip(fast, model.named_parameters()):
        torch.testing.assert_close(got, p.grad, rtol=1e-6, atol=1e-7, msg=name)


def test_scores_use_the_layer_mean_in_any_chunking(data):
    model = build(data)
    assert_scores_agree_across_chunks(model)
    users, items = lightgcn_layer_mean(model.propagation, model.ego_embeddings(), 2)
    torch.testing.assert_close(model.score(torch.arange(data.n_users)), users @ items.T)


def test_learns_the_graph_structure():
    """Groups that only the interactions reveal: LightGCN ranks held-out items well above
    popularity."""
    synthetic = styled_and_grouped(cold_share=0.0, modalities=(), seed=1)
    training = TrainingConfig(epochs=20, patience=20, batch_size=256, learning_rate=5e-3)

    def recall(model, hparams):
        return fit_and_evaluate(synthetic.data, synthetic.interactions, model, hparams, 0,
                                training, log=lambda _: None).test["recall@20"]

    assert recall("lightgcn", model_defaults("lightgcn")) > 2 * recall("mostpop", {})
