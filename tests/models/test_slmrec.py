"""SLMRec: a literal transcription of MMRec's code (ssl_task FAC) gives the same loss,
gradients and scores; the batch-rows computation equals the full one; every parameter
learns; scoring in any chunking; learning from the features; a fixed seed reproduces a run."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch
import torch.nn.functional as F

from crane.models import get
from crane.ops.contrastive import one_way_info_nce
from crane.synthetic import only_modalities, random_train_data, styled_random_cold
from tests.models.checks import (a_batch, assert_learns_from_features_and_reproduces,
                                 assert_same_loss_and_gradients, assert_scores_agree_across_chunks,
                                 parameters_without_gradient)

HP = {"embedding_size": 16, "n_layers": 3, "temp": 0.2, "ssl_temp": 0.5, "ssl_alpha": 0.3}


@pytest.fixture(scope="module")
def data():
    return random_train_data(n_users=30, n_items=20, per_user=4)


def build(data, seed=0, **overrides):
    torch.manual_seed(seed)
    return get("slmrec")(data, {**HP, **overrides})


# -- MMRec's SLMRec (ssl_task FAC, adj_type pre, mm_fusion_mode concat), transcribed ------

def mmrec_norm_adj(data):
    """create_adj_mat with adj_type 'pre', densely."""
    user_np, item_np = data.train_matrix().nonzero()
    n_nodes = data.n_users + data.n_items
    tmp_adj = sp.csr_matrix((np.ones_like(user_np, dtype=np.float32),
                             (user_np, item_np + data.n_users)), shape=(n_nodes, n_nodes))
    adj_mat = tmp_adj + tmp_adj.T
    rowsum = np.array(adj_mat.sum(1)) + 1e-08
    d_inv = np.power(rowsum, -0.5).flatten()
    d_mat_inv = sp.diags(d_inv)
    return torch.as_tensor(d_mat_inv.dot(adj_mat).dot(d_mat_inv).toarray(), dtype=torch.float32)


def mmrec_compute(model, norm_adj):
    n_users, n_items = model.n_users, model.n_items
    users_emb, items_emb = model.embedding_user.weight, model.embedding_item.weight

    def compute_graph(u_emb, i_emb):
        all_emb = torch.cat([u_emb, i_emb])
        embs = [all_emb]
        for _ in range(model.config.n_layers):
            all_emb = norm_adj @ all_emb
            embs.append(all_emb)
        return torch.mean(torch.stack(embs, dim=1), dim=1)

    views = {"id": compute_graph(users_emb, items_emb)}
    for modality in ("image", "text"):           # v, then t
        if modality in model.modalities:
            # self.v_feat was normalised at init (F.normalize(v_feat, dim=1))
            dense = model.dense[modality](model.features(modality))
            views[modality] = compute_graph(users_emb, dense)
    split = {k: torch.split(v, [n_users, n_items]) for k, v in views.items()}
    user = model.embedding_user_after_GCN(torch.cat([u for u, _ in split.values()], dim=1))
    item = model.embedding_item_after_GCN(torch.cat([i for _, i in split.values()], dim=1))
    item_views = {k: i for k, (_, i) in split.items()}
    return user, item, item_views


def mmrec_fac(model, item_views, idx):
    ssl_temp = model.config.ssl_temp
    x_i_iv = model.g_i_iv(item_views["id"][idx])
    loss = 0.0
    if "image" in item_views:
        x_v_iv = model.g_v_iv(item_views["image"][idx])
        v_logits = torch.mm(x_i_iv, x_v_iv.T)
        v_logits /= ssl_temp
        v_labels = torch.tensor(list(range(x_i_iv.shape[0])))
        loss = loss + F.cross_entropy(v_logits, v_labels)
    if "text" in item_views:
        x_iv_iva = model.g_iv_iva(x_i_iv)
        x_iva_ivat = model.g_iva_ivat(x_iv_iva)
        x_t_ivat = model.g_t_ivat(item_views["text"][idx])
        t_logits = torch.mm(x_iva_ivat, x_t_ivat.T)
        t_logits /= ssl_temp
        t_labels = torch.tensor(list(range(x_iva_ivat.shape[0])))
        loss = loss + F.cross_entropy(t_logits, t_labels)
    return loss


def mmrec_calculate_loss(model, users, pos, norm_adj):
    all_users, all_items, item_views = mmrec_compute(model, norm_adj)
    users_emb = F.normalize(all_users[users], dim=1)
    pos_emb = F.normalize(all_items[pos], dim=1)
    logits = torch.mm(users_emb, pos_emb.T)
    logits /= model.config.temp
    labels = torch.tensor(list(range(users_emb.shape[0])))
    main_loss = F.cross_entropy(logits, labels)
    return main_loss + model.config.ssl_alpha * mmrec_fac(model, item_views, pos)


# -- tests ------------------------------------------------------------------------------

@pytest.mark.parametrize("modalities", [("image", "text"), ("image",), ("text",)])
def test_matches_a_transcription_of_mmrec(data, modalities):
    data = only_modalities(data, *modalities)
    model = build(data)
    users, pos, _ = a_batch(data, size=32)
    norm_adj = mmrec_norm_adj(data)
    ours = sum(model.loss(users, pos, None).values())
    assert_same_loss_and_gradients(model, ours,
                                   mmrec_calculate_loss(model, users, pos, norm_adj))
    with torch.no_grad():
        user, item, _ = mmrec_compute(model, norm_adj)
    scores = assert_scores_agree_across_chunks(model)
    # MMRec's full_sort_predict returns sigmoid(scores): the same ranking
    torch.testing.assert_close(torch.sigmoid(scores), torch.sigmoid(user @ item.T),
                               rtol=1e-5, atol=1e-6)


def test_main_loss_is_one_way_info_nce(data):
    model = build(data)
    users, pos, _ = a_batch(data, size=16)
    user_all, item_all = model.scoring_tables()
    labels = torch.arange(len(users))
    logits = F.normalize(user_all[users]) @ F.normalize(item_all[pos]).T / 0.2
    torch.testing.assert_close(one_way_info_nce(user_all[users], item_all[pos], 0.2),
                               F.cross_entropy(logits, labels))


@pytest.mark.parametrize("n_layers", [0, 1, 3])
def test_batch_rows_equal_the_full_propagation(data, n_layers):
    model = build(data, n_layers=n_layers)
    users, pos, _ = a_batch(data, size=40)
    ours = sum(model.loss(users, pos, None).values())
    user_views, item_views = model.propagate()
    user_e = model.embedding_user_after_GCN(user_views)[users]
    item_e = model.embedding_item_after_GCN(item_views)[pos]
    full = (one_way_info_nce(user_e, item_e, model.config.temp)
            + model.config.ssl_alpha * model.fac(item_views[pos]))
    assert_same_loss_and_gradients(model, ours, full, rtol=1e-6, atol=1e-7)


def test_every_parameter_learns_and_no_negatives_are_needed(data):
    model = build(data)
    assert not model.uses_negatives
    users, pos, _ = a_batch(data)
    assert parameters_without_gradient(model, users, pos, None) == []
    image_only = build(only_modalities(data, "image"))
    assert not hasattr(image_only, "g_t_ivat")


def test_bad_input_is_named(data):
    with pytest.raises(ValueError, match=r"unknown hyper-parameter\(s\) \['ssl_task'\]"):
        get("slmrec")(data, {**HP, "ssl_task": "FD"})
    with pytest.raises(ValueError, match=r"slmrec: hyper-parameter temp=0.0 must be > 0"):
        get("slmrec")(data, {**HP, "temp": 0.0})
    with pytest.raises(ValueError, match="slmrec needs item features"):
        get("slmrec")(only_modalities(data), HP)


@pytest.fixture(scope="module")
def styled():
    return styled_random_cold(seed=3, cold_in_train=False)


def test_learns_from_the_features_and_reproduces(styled):
    assert_learns_from_features_and_reproduces(styled, "slmrec", epochs=10,
                                               learning_rate=1e-2, blind_margin=0.1)
