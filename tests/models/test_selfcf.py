"""SelfCF_ed: MMRec's loss, gradients and scores from a literal transcription, no negatives,
scoring in any chunking, per-batch random graph dropout, learning and reproducibility."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from crane.models import get
from crane.synthetic import random_train_data, styled_and_grouped
from tests.models.checks import (assert_same_loss_and_gradients,
                                 assert_scores_agree_across_chunks, model_defaults,
                                 parameters_without_gradient, train_and_test)
from crane.tuning import load_model_config


@pytest.fixture(scope="module")
def data():
    return random_train_data(n_users=30, n_items=20, per_user=4, modalities=())


def build(data, **overrides):
    torch.manual_seed(0)
    return get("selfcf")(data, {**model_defaults("selfcf"), **overrides})


def batch(data, size=24, seed=0):
    rows = np.random.default_rng(seed).choice(len(data.train_user), size, replace=False)
    users, items = torch.as_tensor(data.train_user[rows]), torch.as_tensor(data.train_item[rows])
    users[1], items[1] = users[0], items[0]  # a repeated pair, as in real batches
    return users, items


def test_config_holds_mmrec_grid():
    config = load_model_config("selfcf")
    assert config["grid"] == {"n_layers": [1, 2], "dropout": [0.1, 0.2, 0.5],
                              "reg_weight": [1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 0.0]}
    assert config["defaults"]["embedding_size"] == 64
    assert get("selfcf").uses_negatives is False


# --------------------------------------------------------------------------- MMRec, transcribed

def mmrec_norm_adj(data) -> torch.Tensor:
    """LightGCN_Encoder.get_norm_adj_mat, dense."""
    n_users, n_items = data.n_users, data.n_items
    A = np.zeros((n_users + n_items, n_users + n_items), dtype=np.float32)
    A[data.train_user, data.train_item + n_users] = 1
    A[data.train_item + n_users, data.train_user] = 1
    sumArr = (A > 0).sum(axis=1)
    diag = np.array(sumArr.flatten()) + 1e-7
    diag = np.power(diag, -0.5)
    D = np.diag(diag)
    L = D @ A @ D
    return torch.FloatTensor(L.astype(np.float32))


def mmrec_sparse_dropout(x: torch.Tensor, rate: float, noise_shape: int) -> torch.Tensor:
    """LightGCN_Encoder.sparse_dropout on a dense matrix (nonzeros in coalesced COO order)."""
    random_tensor = 1 - rate
    random_tensor += torch.rand(noise_shape)
    dropout_mask = torch.floor(random_tensor).type(torch.bool)
    i = x.nonzero().T
    v = x[i[0], i[1]]
    i = i[:, dropout_mask]
    v = v[dropout_mask]
    out = torch.zeros_like(x)
    out[i[0], i[1]] = v
    return out * (1. / (1 - rate))


def mmrec_encoder(model, A_hat, n_layers):
    ego_embeddings = torch.cat([model.user_embedding, model.item_embedding], 0)
    all_embeddings = [ego_embeddings]
    for k in range(n_layers):
        ego_embeddings = A_hat @ ego_embeddings
        all_embeddings += [ego_embeddings]
    all_embeddings = torch.stack(all_embeddings, dim=1)
    all_embeddings = torch.mean(all_embeddings, dim=1)
    return all_embeddings[:model.n_users, :], all_embeddings[model.n_users:, :]


def mmrec_calculate_loss(model, adjacency, users, items, n_layers, dropout, reg_weight):
    """SELFCFED_LGN.calculate_loss: the rate comes from torch's generator instead of numpy's
    (the one deliberate difference), drawn at the same point."""
    # forward -> online_encoder(inputs)
    A_hat = mmrec_sparse_dropout(adjacency, torch.rand(()).item() * 1.0,
                                 int((adjacency != 0).sum()))
    user_all, item_all = mmrec_encoder(model, A_hat, n_layers)
    u_online, i_online = user_all[users, :], item_all[items, :]
    with torch.no_grad():
        u_target, i_target = u_online.clone(), i_online.clone()
        u_target = F.dropout(u_target, dropout)
        i_target = F.dropout(i_target, dropout)
    # L2Loss
    reg_loss = torch.zeros(1)
    for embedding in (u_online, i_online):
        reg_loss += torch.sum(embedding ** 2) * 0.5
    u_online, i_online = model.predictor(u_online), model.predictor(i_online)
    loss_ui = - F.cosine_similarity(u_online, i_target.detach(), dim=-1).mean() / 2
    loss_iu = - F.cosine_similarity(i_online, u_target.detach(), dim=-1).mean() / 2
    return (loss_ui + loss_iu + reg_weight * reg_loss).squeeze()


def mmrec_full_sort_predict(model, adjacency, users, n_layers):
    u, i = mmrec_encoder(model, adjacency, n_layers)
    u_online, u_target, i_online, i_target = model.predictor(u), u, model.predictor(i), i
    return u_online[users] @ i_target.T + u_target[users] @ i_online.T


@pytest.mark.parametrize("n_layers,dropout", [(1, 0.1), (2, 0.5)])
def test_loss_gradients_and_scores_match_mmrec_transcription(data, n_layers, dropout):
    model = build(data, n_layers=n_layers, dropout=dropout, reg_weight=0.01)
    users, items = batch(data)
    torch.manual_seed(11)
    terms = model.loss(users, items, None)
    assert set(terms) == {"cos", "reg"}
    torch.manual_seed(11)  # the same draws: the rate, the entry mask, both target dropouts
    expected = mmrec_calculate_loss(model, mmrec_norm_adj(data), users, items, n_layers,
                                    dropout, 0.01)
    assert_same_loss_and_gradients(model, sum(terms.values()), expected)

    model.eval()
    with torch.no_grad():
        model.prepare_scoring()
        everyone = torch.arange(data.n_users)
        torch.testing.assert_close(
            model.score(everyone),
            mmrec_full_sort_predict(model, mmrec_norm_adj(data), everyone, n_layers))


def test_every_parameter_learns_and_scores_agree_across_chunks(data):
    model = build(data)
    users, items = batch(data)
    assert parameters_without_gradient(model, users, items, None) == []
    scores = assert_scores_agree_across_chunks(model)
    assert scores.shape == (data.n_users, data.n_items)


def test_graph_dropout_is_redrawn_every_batch_from_the_global_seed(data):
    model = build(data, dropout=0.0)  # only the graph dropout is random now
    users, items = batch(data)
    torch.manual_seed(3)
    first = model.loss(users, items, None)["cos"]
    second = model.loss(users, items, None)["cos"]
    torch.manual_seed(3)
    again = model.loss(users, items, None)["cos"]
    assert torch.equal(first, again)
    assert not torch.equal(first, second)


def test_learns_the_graph_structure_and_a_seed_reproduces_the_run():
    """Groups that only the interactions reveal: SelfCF ranks held-out items well above
    popularity; the same seed gives the same run bit for bit."""
    synthetic = styled_and_grouped(cold_share=0.0, modalities=(), seed=1)
    hparams = model_defaults("selfcf")
    first = train_and_test(synthetic, "selfcf", hparams, epochs=15)
    popular = train_and_test(synthetic, "mostpop", {}).test["recall@20"]
    assert first.test["recall@20"] > 2 * popular
    again = train_and_test(synthetic, "selfcf", hparams, epochs=15)
    assert first.test == again.test
    for (name, p), q in zip(first.model.named_parameters(), again.model.parameters()):
        assert torch.equal(p, q), name
