"""XSimGCL: SELFRec's loss, gradients and scores from a literal transcription, batch rows
equal to the full propagation, scoring in any chunking, the noise, learning and
reproducibility."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch
import torch.nn.functional as F

from crane.models import get
from crane.synthetic import random_train_data, styled_and_grouped
from crane.tuning import load_model_config
from tests.models.checks import (a_batch, assert_same_loss_and_gradients,
                                 assert_scores_agree_across_chunks, model_defaults,
                                 parameters_without_gradient, train_and_test)


@pytest.fixture(scope="module")
def data():
    return random_train_data(n_users=30, n_items=20, per_user=4, modalities=())


def build(data, **overrides):
    torch.manual_seed(0)
    return get("xsimgcl")(data, {**model_defaults("xsimgcl"), **overrides})


def test_defaults_are_the_authors_and_cl_layer_is_checked(data):
    config = load_model_config("xsimgcl")
    assert config["defaults"] == {"embedding_size": 64, "n_layers": 2, "cl_layer": 1,
                                  "cl_weight": 0.2, "eps": 0.2, "temperature": 0.15,
                                  "reg_weight": 1e-4}
    with pytest.raises(ValueError, match="xsimgcl: hyper-parameter cl_layer=3 must be at most"):
        build(data, cl_layer=3)


# --------------------------------------------------------------------------- SELFRec, transcribed

def selfrec_norm_adj(data) -> torch.Tensor:
    """Interaction.__create_sparse_bipartite_adjacency + Graph.normalize_graph_mat, dense."""
    n_nodes = data.n_users + data.n_items
    user_np = data.train_user
    item_np = data.train_item + data.n_users
    ratings = np.ones_like(user_np, dtype=np.float32)
    tmp_adj = sp.csr_matrix((ratings, (user_np, item_np)), shape=(n_nodes, n_nodes),
                            dtype=np.float32)
    adj_mat = tmp_adj + tmp_adj.T
    rowsum = np.array(adj_mat.sum(1))
    with np.errstate(divide="ignore"):
        d_inv = np.power(rowsum, -0.5).flatten()
    d_inv[np.isinf(d_inv)] = 0.
    d_mat_inv = sp.diags(d_inv)
    norm_adj_mat = d_mat_inv.dot(adj_mat).dot(d_mat_inv)
    return torch.as_tensor(norm_adj_mat.toarray(), dtype=torch.float32)


def selfrec_forward(model, adjacency, eps, n_layers, layer_cl, perturbed=False):
    """XSimGCL_Encoder.forward."""
    ego_embeddings = torch.cat([model.user_embedding, model.item_embedding], 0)
    all_embeddings = []
    all_embeddings_cl = ego_embeddings
    for k in range(n_layers):
        ego_embeddings = adjacency @ ego_embeddings
        if perturbed:
            random_noise = torch.rand_like(ego_embeddings)
            ego_embeddings += torch.sign(ego_embeddings) * F.normalize(random_noise, dim=-1) * eps
        all_embeddings.append(ego_embeddings)
        if k == layer_cl - 1:
            all_embeddings_cl = ego_embeddings
    final_embeddings = torch.stack(all_embeddings, dim=1)
    final_embeddings = torch.mean(final_embeddings, dim=1)
    user_all, item_all = torch.split(final_embeddings, [model.n_users, model.n_items])
    user_cl, item_cl = torch.split(all_embeddings_cl, [model.n_users, model.n_items])
    if perturbed:
        return user_all, item_all, user_cl, item_cl
    return user_all, item_all


def selfrec_info_nce(view1, view2, temperature):
    view1, view2 = F.normalize(view1, dim=1), F.normalize(view2, dim=1)
    pos_score = (view1 @ view2.T) / temperature
    score = torch.diag(F.log_softmax(pos_score, dim=1))
    return -score.mean()


def selfrec_batch_loss(model, adjacency, user_idx, pos_idx, neg_idx, cfg):
    """The body of XSimGCL.train's batch loop, up to batch_loss."""
    rec_user_emb, rec_item_emb, cl_user_emb, cl_item_emb = selfrec_forward(
        model, adjacency, cfg["eps"], cfg["n_layers"], cfg["cl_layer"], perturbed=True)
    user_emb, pos_item_emb, neg_item_emb = (rec_user_emb[user_idx], rec_item_emb[pos_idx],
                                            rec_item_emb[neg_idx])
    pos_score = torch.mul(user_emb, pos_item_emb).sum(dim=1)
    neg_score = torch.mul(user_emb, neg_item_emb).sum(dim=1)
    rec_loss = torch.mean(-torch.log(10e-6 + torch.sigmoid(pos_score - neg_score)))
    u_idx = torch.unique(user_idx)
    i_idx = torch.unique(pos_idx)
    cl_loss = cfg["cl_weight"] * (
        selfrec_info_nce(rec_user_emb[u_idx], cl_user_emb[u_idx], cfg["temperature"])
        + selfrec_info_nce(rec_item_emb[i_idx], cl_item_emb[i_idx], cfg["temperature"]))
    emb_loss = 0
    for emb in (user_emb, pos_item_emb):
        emb_loss += torch.norm(emb, p=2) / emb.shape[0]
    return rec_loss + emb_loss * cfg["reg_weight"] + cl_loss


@pytest.mark.parametrize("n_layers,cl_layer", [(2, 1), (3, 3), (1, 1)])
def test_loss_gradients_and_scores_match_selfrec_transcription(data, n_layers, cl_layer):
    cfg = {**model_defaults("xsimgcl"), "n_layers": n_layers, "cl_layer": cl_layer,
           "reg_weight": 0.01}
    model = build(data, **cfg)
    users, pos, neg = a_batch(data, size=48)
    torch.manual_seed(21)
    terms = model.loss(users, pos, neg)
    assert set(terms) == {"bpr", "reg", "cl"}
    torch.manual_seed(21)  # the same noise, layer by layer
    expected = selfrec_batch_loss(model, selfrec_norm_adj(data), users, pos, neg, cfg)
    assert_same_loss_and_gradients(model, sum(terms.values()), expected)

    model.eval()
    with torch.no_grad():
        model.prepare_scoring()
        everyone = torch.arange(data.n_users)
        user_e, item_e = selfrec_forward(model, selfrec_norm_adj(data), cfg["eps"], n_layers,
                                         cl_layer)
        torch.testing.assert_close(model.score(everyone), user_e @ item_e.T)


@pytest.mark.parametrize("n_layers,cl_layer", [(2, 1), (2, 2)])
def test_batch_rows_last_hop_equals_full_propagation(data, n_layers, cl_layer):
    model = build(data, n_layers=n_layers, cl_layer=cl_layer)
    users, pos, neg = a_batch(data, size=64)
    user_rows, item_rows = torch.unique(users), torch.unique(torch.cat([pos, neg]))
    torch.manual_seed(4)
    (final_u, final_i), (cl_u, cl_i) = model.forward_at((user_rows, item_rows))
    torch.manual_seed(4)
    (full_u, full_i), (full_cl_u, full_cl_i) = model.forward(perturbed=True)
    assert torch.equal(final_u, full_u[user_rows]) and torch.equal(final_i, full_i[item_rows])
    assert torch.equal(cl_u, full_cl_u[user_rows]) and torch.equal(cl_i, full_cl_i[item_rows])


def test_noise_has_norm_eps_along_the_signs(data):
    model = build(data, eps=0.3)
    layer = (torch.randn(data.n_users, 64), torch.randn(data.n_items, 64))
    layer[0][0] = 0.0  # a node without edges stays at zero
    noisy = model.perturbed(layer)
    for x, y in zip(layer, noisy):
        delta = y - x
        moved = x.abs().sum(1) > 0
        torch.testing.assert_close(delta[moved].norm(dim=1), torch.full((int(moved.sum()),), 0.3))
        assert torch.all(delta * torch.sign(x) >= 0)
    assert torch.all(noisy[0][0] == 0)


def test_every_parameter_learns_and_scores_agree_across_chunks(data):
    model = build(data)
    assert parameters_without_gradient(model, *a_batch(data)) == []
    assert_scores_agree_across_chunks(model)


def test_learns_the_graph_structure_and_a_seed_reproduces_the_run():
    """Groups that only the interactions reveal: XSimGCL ranks held-out items well above
    popularity; the same seed gives the same run bit for bit."""
    synthetic = styled_and_grouped(cold_share=0.0, modalities=(), seed=1)
    hparams = model_defaults("xsimgcl")
    first = train_and_test(synthetic, "xsimgcl", hparams, epochs=10)
    popular = train_and_test(synthetic, "mostpop", {}).test["recall@20"]
    assert first.test["recall@20"] > 2 * popular
    again = train_and_test(synthetic, "xsimgcl", hparams, epochs=10)
    assert first.test == again.test
    for (name, p), q in zip(first.model.named_parameters(), again.model.parameters()):
        assert torch.equal(p, q), name
