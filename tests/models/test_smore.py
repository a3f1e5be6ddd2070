"""SMORE: shapes, gradients, scoring consistency, a literal transcription of MMRec's
smore.py (loss, gradients, scores), the batch-restricted preference module against the full
one, the kNN cache, one modality, learning from the features, reproducibility."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch
import torch.nn.functional as F

from crane.graphs.item_knn import build_neighbour_cache
from crane.models import get
from crane.models.smore import max_pooled_graph
from crane.synthetic import random_train_data, shuffled_features, styled_random_cold
from crane.tuning import load_model_config
from tests.models.checks import (a_batch, assert_same_loss_and_gradients, assert_same_run,
                                 assert_scores_agree_across_chunks, mean_epoch_losses,
                                 parameters_without_gradient, train_and_test)

CONFIG = load_model_config("smore")
DEFAULTS, TRAINER = CONFIG["defaults"], CONFIG["training"]["defaults"]
SMALL = {**DEFAULTS, "embedding_size": 16, "image_knn_k": 4, "text_knn_k": 5}


def build(data, seed=0, **overrides):
    torch.manual_seed(seed)
    return get("smore")(data, {**SMALL, **overrides})


def test_config_holds_mmrec_fixed_values_and_grid():
    assert CONFIG["grid"] == {"n_ui_layers": [3, 4], "image_knn_k": [10, 15, 20, 40],
                              "text_knn_k": [10, 15, 20, 40], "reg_weight": [1e-5, 1e-4],
                              "dropout_rate": [0.0, 0.1]}
    assert TRAINER == {"lr_scheduler": [0.96, 50]}
    assert (DEFAULTS["embedding_size"], DEFAULTS["n_layers"], DEFAULTS["cl_loss"]) == (64, 1, 1e-2)


@pytest.mark.parametrize("modalities", [("image", "text"), ("image",), ("text",)])
def test_loss_terms_gradients_and_scores(modalities):
    data = random_train_data(modalities=modalities)
    model = build(data, dropout_rate=0.1)
    users, pos, neg = a_batch(data, size=24)
    terms = model.loss(users, pos, neg)
    assert set(terms) == {"bpr", "reg", "cl"}
    assert all(t.shape == () and torch.isfinite(t) for t in terms.values())
    assert parameters_without_gradient(model, users, pos, neg) == []
    scores = assert_scores_agree_across_chunks(model)
    assert scores.shape == (data.n_users, data.n_items)


def test_zero_weights_drop_their_terms():
    data = random_train_data()
    users, pos, neg = a_batch(data, size=24)
    assert set(build(data, cl_loss=0.0, reg_weight=0.0).loss(users, pos, neg)) == {"bpr"}


def test_max_pooled_graph_takes_the_union_and_keeps_negative_single_edges():
    a = sp.csr_matrix(np.array([[0.5, -0.2, 0.0], [0.0, 0.3, 0.0], [0.0, 0.0, 1.0]],
                               dtype=np.float32))
    b = sp.csr_matrix(np.array([[0.1, 0.0, -0.4], [0.0, 0.7, 0.0], [0.2, 0.0, 0.0]],
                               dtype=np.float32))
    pooled = max_pooled_graph([a, b]).toarray()
    np.testing.assert_array_equal(pooled, np.array(
        [[0.5, -0.2, -0.4], [0.0, 0.7, 0.0], [0.2, 0.0, 1.0]], dtype=np.float32))
    np.testing.assert_array_equal(max_pooled_graph([a]).toarray(), a.toarray())


# -- a literal transcription of MMRec's smore.py, dense at tiny size ---------------------------

def mmrec_knn_graph(features: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """build_sim + build_knn_normalized_graph(is_sparse=True, norm_type='sym'), densely;
    also the edge mask (the sparse tensor's pattern)."""
    context_norm = features.div(torch.norm(features, p=2, dim=-1, keepdim=True))
    sim = torch.mm(context_norm, context_norm.transpose(1, 0))
    knn_val, knn_ind = torch.topk(sim, k, dim=-1)
    rows = torch.arange(len(features)).repeat_interleave(k)
    cols, values = knn_ind.flatten(), knn_val.flatten()
    deg = torch.zeros(len(features)).index_add_(0, rows, values)       # scatter_add over rows
    deg_inv_sqrt = deg.pow(-0.5)
    deg_inv_sqrt.masked_fill_(deg_inv_sqrt == float("inf"), 0)
    weights = deg_inv_sqrt[rows] * values * deg_inv_sqrt[cols]
    graph = torch.zeros(len(features), len(features)).index_put_((rows, cols), weights)
    mask = torch.zeros(len(features), len(features), dtype=torch.bool)
    mask[rows, cols] = True
    return graph, mask


def mmrec_max_pool_fusion(image, image_mask, text, text_mask):
    """max_pool_fusion: values on the union of the patterns, a missing edge is -inf."""
    combined_image = torch.where(image_mask, image, torch.tensor(float("-inf")))
    combined_text = torch.where(text_mask, text, torch.tensor(float("-inf")))
    combined, _ = torch.max(torch.stack((combined_image, combined_text)), dim=0)
    return torch.where(image_mask | text_mask, combined, torch.zeros(()))


def mmrec_norm_adj(data):
    """get_adj_mat: D^-1/2 A D^-1/2 of the (U+N) square interaction graph, and its R block."""
    n_users, n = data.n_users, data.n_users + data.n_items
    adj = torch.zeros(n, n)
    r = torch.as_tensor(data.train_matrix().toarray())
    adj[:n_users, n_users:] = r
    adj[n_users:, :n_users] = r.T
    d_inv = adj.sum(1).pow(-0.5)
    d_inv[torch.isinf(d_inv)] = 0.0
    norm_adj = torch.diag(d_inv) @ adj @ torch.diag(d_inv)
    return norm_adj, norm_adj[:n_users, n_users:]


def mmrec_info_nce(view1, view2, temperature):
    view1, view2 = F.normalize(view1, dim=1), F.normalize(view2, dim=1)
    pos_score = torch.exp((view1 * view2).sum(dim=-1) / temperature)
    ttl_score = torch.exp(torch.matmul(view1, view2.transpose(0, 1)) / temperature).sum(dim=1)
    return torch.mean(-torch.log(pos_score / ttl_score))


def mmrec_forward(model, data, k_image, k_text, n_ui_layers, n_layers):
    """SMORE.forward(norm_adj, train=True) in eval-free form (dropout_rate 0)."""
    image_adj, image_mask = mmrec_knn_graph(torch.as_tensor(data.features["image"]), k_image)
    text_adj, text_mask = mmrec_knn_graph(torch.as_tensor(data.features["text"]), k_text)
    fusion_adj = mmrec_max_pool_fusion(image_adj, image_mask, text_adj, text_mask)
    adj, R = mmrec_norm_adj(data)
    d = model.config.embedding_size

    image_feats = model.projections["image"](model.features["image"])
    text_feats = model.projections["text"](model.features["text"])
    # spectrum_convolution
    image_fft = torch.fft.rfft(image_feats, dim=1, norm="ortho")
    text_fft = torch.fft.rfft(text_feats, dim=1, norm="ortho")
    image_w = torch.view_as_complex(model.filters["image"])
    text_w = torch.view_as_complex(model.filters["text"])
    fusion_w = torch.view_as_complex(model.filters["fusion"])
    image_conv = torch.fft.irfft(image_fft * image_w, n=d, dim=1, norm="ortho")
    text_conv = torch.fft.irfft(text_fft * text_w, n=d, dim=1, norm="ortho")
    fusion_conv = torch.fft.irfft(text_fft * image_fft * fusion_w, n=d, dim=1, norm="ortho")
    item_id = model.item_embedding.weight
    image_item_embeds = torch.multiply(item_id, model.view_gates["image"](image_conv))
    text_item_embeds = torch.multiply(item_id, model.view_gates["text"](text_conv))
    fusion_item_embeds = torch.multiply(item_id, model.view_gates["fusion"](fusion_conv))

    ego_embeddings = torch.cat([model.user_embedding.weight, item_id], dim=0)
    all_embeddings = [ego_embeddings]
    for _ in range(n_ui_layers):
        ego_embeddings = torch.mm(adj, ego_embeddings)
        all_embeddings += [ego_embeddings]
    content_embeds = torch.stack(all_embeddings, dim=1).mean(dim=1, keepdim=False)

    for _ in range(n_layers):
        image_item_embeds = torch.mm(image_adj, image_item_embeds)
    image_embeds = torch.cat([torch.mm(R, image_item_embeds), image_item_embeds], dim=0)
    for _ in range(n_layers):
        text_item_embeds = torch.mm(text_adj, text_item_embeds)
    text_embeds = torch.cat([torch.mm(R, text_item_embeds), text_item_embeds], dim=0)
    for _ in range(n_layers):
        fusion_item_embeds = torch.mm(fusion_adj, fusion_item_embeds)
    fusion_embeds = torch.cat([torch.mm(R, fusion_item_embeds), fusion_item_embeds], dim=0)

    fusion_att_v = model.queries["image"](fusion_embeds)
    fusion_att_t = model.queries["text"](fusion_embeds)
    agg_image_embeds = torch.softmax(fusion_att_v, dim=-1) * image_embeds
    agg_text_embeds = torch.softmax(fusion_att_t, dim=-1) * text_embeds
    image_prefer = model.preference_gates["image"](content_embeds)
    text_prefer = model.preference_gates["text"](content_embeds)
    fusion_prefer = model.preference_gates["fusion"](content_embeds)
    agg_image_embeds = torch.multiply(image_prefer, agg_image_embeds)
    agg_text_embeds = torch.multiply(text_prefer, agg_text_embeds)
    fusion_embeds = torch.multiply(fusion_prefer, fusion_embeds)
    side_embeds = torch.mean(torch.stack([agg_image_embeds, agg_text_embeds, fusion_embeds]),
                             dim=0)
    all_embeds = content_embeds + side_embeds
    users, items = torch.split(all_embeds, [data.n_users, data.n_items], dim=0)
    return users, items, side_embeds, content_embeds


def mmrec_calculate_loss(model, data, users, pos_items, neg_items, reg_weight, cl_weight,
                         **shape):
    ua, ia, side_embeds, content_embeds = mmrec_forward(model, data, **shape)
    u_g, pos_g, neg_g = ua[users], ia[pos_items], ia[neg_items]
    pos_scores = torch.sum(torch.mul(u_g, pos_g), dim=1)
    neg_scores = torch.sum(torch.mul(u_g, neg_g), dim=1)
    regularizer = 1. / 2 * (u_g ** 2).sum() + 1. / 2 * (pos_g ** 2).sum() + 1. / 2 * (neg_g ** 2).sum()
    regularizer = regularizer / len(users)   # MMRec: / the configured batch size
    mf_loss = -torch.mean(F.logsigmoid(pos_scores - neg_scores))
    side_u, side_i = torch.split(side_embeds, [data.n_users, data.n_items], dim=0)
    content_u, content_i = torch.split(content_embeds, [data.n_users, data.n_items], dim=0)
    cl_loss = (mmrec_info_nce(side_i[pos_items], content_i[pos_items], 0.2)
               + mmrec_info_nce(side_u[users], content_u[users], 0.2))
    return mf_loss + reg_weight * regularizer + cl_weight * cl_loss, ua, ia


@pytest.mark.parametrize("n_ui_layers, n_layers", [(3, 1), (2, 2)])
def test_matches_a_transcription_of_mmrec(n_ui_layers, n_layers):
    data = random_train_data(n_users=30, n_items=20)
    model = build(data, n_ui_layers=n_ui_layers, n_layers=n_layers, cl_loss=0.1,
                  reg_weight=1e-3)
    users, pos, neg = a_batch(data, size=40)
    users[1], pos[1], neg[1] = users[0], pos[0], neg[0]  # a repeated row, as in real batches
    model.train()
    ours = sum(model.loss(users, pos, neg).values())
    expected, user_table, item_table = mmrec_calculate_loss(
        model, data, users, pos, neg, 1e-3, 0.1, k_image=4, k_text=5,
        n_ui_layers=n_ui_layers, n_layers=n_layers)
    assert_same_loss_and_gradients(model, ours, expected)

    model.eval()
    with torch.no_grad():
        model.prepare_scoring()
        torch.testing.assert_close(model.score(torch.arange(data.n_users)),
                                   user_table @ item_table.T)


def test_batch_preference_module_equals_the_full_one():
    """The loss fuses the batch's distinct nodes only; fusing every node and keeping the
    batch rows gives the same terms and gradients."""
    data = random_train_data(n_users=30, n_items=20)
    model = build(data, cl_loss=0.1, reg_weight=1e-3)
    users, pos, neg = a_batch(data, size=32)
    ours = sum(model.loss(users, pos, neg).values())
    content, modal = model.views()
    side = model.fuse(content, modal)
    final_u, final_i = (content + side).split([data.n_users, data.n_items])
    side_u, side_i = side.split([data.n_users, data.n_items])
    content_u, content_i = content.split([data.n_users, data.n_items])
    u, p, n = final_u[users], final_i[pos], final_i[neg]
    full = (-F.logsigmoid((u * p).sum(1) - (u * n).sum(1)).mean()
            + 1e-3 * 0.5 * (u.square().sum() + p.square().sum() + n.square().sum()) / len(users)
            + 0.1 * (mmrec_info_nce(side_i[pos], content_i[pos], 0.2)
                     + mmrec_info_nce(side_u[users], content_u[users], 0.2)))
    assert_same_loss_and_gradients(model, ours, full)


def test_preference_dropout_acts_in_training_only():
    data = random_train_data(n_users=30, n_items=20)
    users, pos, neg = a_batch(data, size=32)
    model = build(data, dropout_rate=0.5)
    plain = build(data, dropout_rate=0.0)
    model.train()
    torch.manual_seed(1)
    dropped = sum(model.loss(users, pos, neg).values())
    assert not torch.allclose(dropped, sum(plain.loss(users, pos, neg).values()))
    model.eval()
    plain.eval()
    with torch.no_grad():
        torch.testing.assert_close(model.score(torch.arange(5)), plain.score(torch.arange(5)))


def test_bad_hyper_parameters_missing_features_and_negatives():
    data = random_train_data()
    with pytest.raises(ValueError, match="smore: unknown hyper-parameter.*lambda_coeff"):
        get("smore")(data, {**SMALL, "lambda_coeff": 0.9})
    with pytest.raises(ValueError, match="smore: missing hyper-parameter.*text_knn_k"):
        get("smore")(data, {k: v for k, v in SMALL.items() if k != "text_knn_k"})
    with pytest.raises(ValueError, match="smore.*dropout_rate"):
        get("smore")(data, {**SMALL, "dropout_rate": 1.0})
    users, pos, _ = a_batch(data, size=8)
    with pytest.raises(ValueError, match="smore trains on .* triples"):
        build(data).loss(users, pos, None)
    data.features = {}
    with pytest.raises(ValueError, match="smore needs item features"):
        get("smore")(data, SMALL)


def test_item_graphs_are_read_from_the_cache_by_feature_hash_and_own_k(tmp_path, caplog):
    data = random_train_data()
    data.cache_dir = tmp_path
    data.feature_hashes = {"image": "a" * 64, "text": "b" * 64}
    build_neighbour_cache(data.features["image"], 4, tmp_path, data.feature_hashes["image"])
    build_neighbour_cache(data.features["text"], 5, tmp_path, data.feature_hashes["text"])
    build(data)
    assert "computing it in memory" not in caplog.text  # both read, none written
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        f"knn_{'a' * 20}_k4.npz", f"knn_{'b' * 20}_k5.npz"]


def test_loss_decreases():
    data = random_train_data(n_users=60, n_items=40)
    means = mean_epoch_losses(build(data), data, epochs=6, learning_rate=1e-3, batch_size=64)
    assert means[-1] < means[0]


@pytest.fixture(scope="module")
def styled():
    return styled_random_cold(seed=3, cold_in_train=False)


def test_learns_from_the_features_and_reproduces(styled):
    """Cold items have no training interaction: only the feature views can place them."""
    def run(data=None, model="smore", hparams=DEFAULTS):
        return train_and_test(styled, model, hparams, epochs=8, learning_rate=1e-3, data=data)

    trained, again = run(), run()
    recall = trained.test["recall@20"]
    mostpop = run(model="mostpop", hparams={}).test["recall@20"]
    blind = run(data=shuffled_features(styled.data)).test["recall@20"]
    assert recall > 0.7 and recall > 5 * mostpop, (recall, mostpop)
    assert blind < recall - 0.3, (recall, blind)
    assert_same_run(trained, again)

