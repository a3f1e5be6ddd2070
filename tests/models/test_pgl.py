"""PGL: the principal subgraphs (local sampling, global SVD) and the loss, gradients and scores
against a literal transcription of MMRec's pgl.py; batch rows equal the full propagation;
learning from the features; a fixed seed reproduces a run."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch
import torch.nn.functional as F

from crane.models import get
from crane.models.pgl import global_principal_subgraph
from crane.synthetic import (only_modalities, random_train_data, shuffled_features,
                             styled_alternate_cold)
from crane.tuning import load_model_config
from tests.models.checks import (a_batch, assert_same_loss_and_gradients,
                                 assert_scores_agree_across_chunks, mean_epoch_losses,
                                 parameters_without_gradient, random_recall_at_20,
                                 train_and_test)

CONFIG = load_model_config("pgl")
HP = {**CONFIG["defaults"], "embedding_size": 16, "feat_embed_dim": 16, "knn_k": 5}


@pytest.fixture(scope="module")
def synthetic():
    return styled_alternate_cold()


def make(data, seed=0, **overrides):
    torch.manual_seed(seed)
    model = get("pgl")(data, {**HP, **overrides})
    model.start_epoch(1, torch.Generator().manual_seed(0))
    return model


# -- MMRec's pgl.py, written out with dense matrices ---------------------------------------

def mmrec_norm_adj(data) -> np.ndarray:
    """get_norm_adj_mat: D^-1/2 A D^-1/2 of the (U+N) x (U+N) graph, +1e-7 on degrees."""
    n_users, n_nodes = data.n_users, data.n_users + data.n_items
    adjacency = np.zeros((n_nodes, n_nodes))
    adjacency[data.train_user, data.train_item + n_users] = 1.0
    adjacency[data.train_item + n_users, data.train_user] = 1.0
    diag = np.power((adjacency > 0).sum(axis=1) + 1e-7, -0.5)
    return diag[:, None] * adjacency * diag[None, :]


def mmrec_global_subgraph_extraction(norm_adj: np.ndarray, embedding_dim: int) -> np.ndarray:
    """global_subgraph_extraction, with sparsesvd's (ut, s, vt) from a dense SVD."""
    u, s, v_t = np.linalg.svd(norm_adj)
    ut, s, vt = u[:, :embedding_dim].T, s[:embedding_dim], v_t[:embedding_dim]
    num_top_bottom = int(0.25 * embedding_dim)
    top_singular_values = s[:num_top_bottom]
    bottom_singular_values = s[-num_top_bottom:]
    product_singular_values = top_singular_values * bottom_singular_values
    product_matrix = np.diag(product_singular_values)
    product = ut.T[:, :num_top_bottom] @ product_matrix @ vt[:num_top_bottom, :]
    return product * (abs(product) >= 1e-3)


def mmrec_knn_adj(features, k) -> torch.Tensor:
    """get_knn_adj_mat + compute_normalized_laplacian, densely."""
    x = torch.as_tensor(features)
    context_norm = x.div(torch.norm(x, p=2, dim=-1, keepdim=True))
    _, knn_ind = torch.topk(context_norm @ context_norm.T, k, dim=-1)
    adjacency = torch.zeros(len(x), len(x)).scatter_(-1, knn_ind, 1.0)
    r_inv_sqrt = (1e-7 + adjacency.sum(-1)).pow(-0.5)
    return r_inv_sqrt[:, None] * adjacency * r_inv_sqrt[None, :]


def mmrec_mm_adj(data, model) -> torch.Tensor:
    adjs = {m: mmrec_knn_adj(data.features[m], model.config.knn_k) for m in model.modalities}
    if len(adjs) == 1:
        return next(iter(adjs.values()))
    weight = model.config.mm_image_weight
    return weight * adjs["image"] + (1.0 - weight) * adjs["text"]


def mmrec_normalize_adj_m(users, items, n_users, n_items) -> torch.Tensor:
    adjacency = torch.zeros(n_users, n_items)
    adjacency[users, items] = 1.0
    row_sum = 1e-7 + adjacency.sum(-1)
    col_sum = 1e-7 + adjacency.sum(0)
    return row_sum.pow(-0.5)[users] * col_sum.pow(-0.5)[items]


def mmrec_local_sub_graph(model, generator) -> torch.Tensor:
    """pre_epoch_processing with mode 'local' (edges in our order, drawn on `generator`)."""
    edge_indices = torch.stack([model.edges.user, model.edges.item])
    edge_values = mmrec_normalize_adj_m(*edge_indices, model.n_users, model.n_items)
    degree_len = int(edge_values.size(0) * 0.3)
    degree_idx = torch.multinomial(edge_values, degree_len, generator=generator)
    keep_indices = edge_indices[:, degree_idx]
    keep_values = mmrec_normalize_adj_m(*keep_indices, model.n_users, model.n_items)
    n_nodes = model.n_users + model.n_items
    sub_graph = torch.zeros(n_nodes, n_nodes)
    sub_graph[keep_indices[0], keep_indices[1] + model.n_users] = keep_values
    sub_graph[keep_indices[1] + model.n_users, keep_indices[0]] = keep_values
    return sub_graph


def mmrec_forward(model, adj, mm_adj):
    """forward(adj), one modality's part per present modality (MMRec: image and text)."""
    feats = [F.normalize(model.projections[m](model.features(m))) for m in model.modalities]
    user_embeds = torch.cat([model.user_preference[m] for m in model.modalities], dim=1)
    item_embeds = torch.cat(feats, dim=1)
    h = item_embeds
    for _ in range(model.config.n_mm_layers):
        h = mm_adj @ h
    ego_embeddings = torch.cat((user_embeds, item_embeds), dim=0)
    all_embeddings = [ego_embeddings]
    for _ in range(model.config.n_ui_layers):
        ego_embeddings = adj @ ego_embeddings
        all_embeddings += [ego_embeddings]
    all_embeddings = torch.stack(all_embeddings, dim=1).mean(dim=1)
    u_g, i_g = torch.split(all_embeddings, [model.n_users, model.n_items], dim=0)
    return u_g, i_g + h


def mmrec_info_nce(view1, view2, temperature):
    view1, view2 = F.normalize(view1, dim=1), F.normalize(view2, dim=1)
    pos_score = torch.exp((view1 * view2).sum(dim=-1) / temperature)
    ttl_score = torch.exp(view1 @ view2.T / temperature).sum(dim=1)
    return torch.mean(-torch.log(pos_score / ttl_score))


def mmrec_calculate_loss(model, users, pos, neg, sub_graph, mm_adj):
    """calculate_loss; dropout as x * (rand >= p) / (1 - p), FastDropout's draws."""
    def dropoutf(x):
        p = model.config.dropout
        return x * (torch.rand(x.shape) >= p) * (1.0 / (1.0 - p))
    ua, ia = mmrec_forward(model, sub_graph, mm_adj)
    u_g, pos_g, neg_g = ua[users], ia[pos], ia[neg]
    mf_loss = -torch.mean(F.logsigmoid((u_g * pos_g).sum(1) - (u_g * neg_g).sum(1)))
    cl_loss = (mmrec_info_nce(dropoutf(u_g), dropoutf(u_g), 0.2)
               + mmrec_info_nce(dropoutf(pos_g), dropoutf(pos_g), 0.2)) / 2
    return mf_loss + model.config.reg_weight * cl_loss


def batch_with_repeats(data, size=48):
    users, pos, neg = a_batch(data, size=size)
    users[1], pos[1], neg[1] = users[0], pos[0], neg[0]  # a repeated row, as in real batches
    return users, pos, neg


# -- configuration -------------------------------------------------------------------------

def test_config_holds_the_reference_values():
    defaults = CONFIG["defaults"]
    assert (defaults["embedding_size"], defaults["knn_k"], defaults["mm_image_weight"],
            defaults["n_mm_layers"], defaults["n_ui_layers"]) == (64, 10, 0.1, 1, 2)
    assert (defaults["dropout"], defaults["reg_weight"], defaults["mode"]) == (0.2, 0.05, "local")
    assert CONFIG["grid"] == {"dropout": [0.05, 0.1, 0.2], "reg_weight": [0.05, 0.1, 0.5]}
    assert CONFIG["training"]["defaults"] == {"lr_scheduler": [0.96, 50]}


def test_bad_input_is_named(synthetic):
    data = synthetic.data
    with pytest.raises(ValueError, match=r"unknown hyper-parameter\(s\) \['lambda_coeff'\]"):
        get("pgl")(data, {**HP, "lambda_coeff": 0.9})
    with pytest.raises(ValueError, match=r"pgl: hyper-parameter mode='svd' must be one of"):
        get("pgl")(data, {**HP, "mode": "svd"})
    with pytest.raises(ValueError, match="pgl: feat_embed_dim .* must equal embedding_size"):
        get("pgl")(data, {**HP, "feat_embed_dim": 8})
    for size in (4, 6, 12, 20):  # int(d / 4) odd or zero: a pair of singular values split
        with pytest.raises(ValueError, match=f"pgl: mode 'global' needs .* got {size}"):
            get("pgl")(data, {**HP, "embedding_size": size, "feat_embed_dim": size,
                              "mode": "global"})
    get("pgl")(data, {**HP, "embedding_size": 10, "feat_embed_dim": 10, "mode": "global"})
    with pytest.raises(ValueError, match="pgl needs item features"):
        get("pgl")(only_modalities(data), HP)
    with pytest.raises(ValueError, match="pgl trains on .* triples"):
        make(data).loss(*a_batch(data)[:2], None)


# -- principal subgraphs ---------------------------------------------------------------------

@pytest.mark.parametrize("embedding_size", [10, 16, 64])
def test_global_subgraph_is_the_references_svd_product(embedding_size):
    data = random_train_data(n_users=40, n_items=30, per_user=6)
    model = make(data, embedding_size=embedding_size, feat_embed_dim=embedding_size,
                 mode="global")
    expected = mmrec_global_subgraph_extraction(mmrec_norm_adj(data), embedding_size)
    n_users = data.n_users
    assert not expected[:n_users, :n_users].any() and not expected[n_users:, n_users:].any()
    ours = model.train_graph.matrix.to_dense().double().numpy()
    np.testing.assert_allclose(ours, expected, rtol=1e-4, atol=1e-6)
    assert (ours != 0).sum() == (expected != 0).sum()


def test_global_subgraph_threshold_drops_small_entries():
    """On 300 users x 200 items the 1e-3 threshold bites: kept entries as the reference's.
    (Random interactions: the styled data's components repeat the singular value 1, and
    then the reference's product depends on the basis its solver picks.)"""
    data = random_train_data(n_users=300, n_items=200, per_user=6)
    model = make(data, embedding_size=64, feat_embed_dim=64, mode="global")
    expected = mmrec_global_subgraph_extraction(mmrec_norm_adj(data), 64)
    ours = model.train_graph.matrix.to_dense().double().numpy()
    kept = (expected != 0).sum()
    assert 0 < kept < 0.9 * 2 * data.n_users * data.n_items
    np.testing.assert_allclose(ours, expected, rtol=1e-4, atol=1e-6)
    assert (ours != 0).sum() == kept


def test_svds_and_dense_svd_give_the_same_global_subgraph():
    model = make(random_train_data(n_users=300, n_items=200, per_user=6))
    user_item = model.full_graph.matrix.to_dense()[:model.n_users, model.n_users:].numpy()
    dense = global_principal_subgraph(sp.csr_matrix(user_item), 64)
    sparse = global_principal_subgraph(sp.csr_matrix(user_item), 64, dense_max_cells=0,
                                       block_users=37)
    assert dense.nnz == sparse.nnz > 0
    np.testing.assert_allclose(sparse.toarray(), dense.toarray(), rtol=1e-4, atol=1e-6)


def test_local_subgraph_is_the_references_sampling(synthetic):
    model = make(synthetic.data)
    model.start_epoch(3, torch.Generator().manual_seed(11))
    expected = mmrec_local_sub_graph(model, torch.Generator().manual_seed(11))
    assert model.train_graph.matrix._nnz() == 2 * int(len(model.edges.weight) * 0.3)
    torch.testing.assert_close(model.train_graph.matrix.to_dense(), expected, rtol=1e-5,
                               atol=1e-7)


def test_local_subgraph_is_resampled_and_evaluation_uses_the_full_graph(synthetic):
    model = make(synthetic.data)
    graphs, scores = [], []
    for seed in (1, 2):
        model.train()
        model.start_epoch(seed, torch.Generator().manual_seed(seed))
        graphs.append(model.train_graph.matrix.to_dense())
        model.eval()
        with torch.no_grad():
            model.prepare_scoring()
            scores.append(model.score(torch.arange(model.n_users)))
    assert not torch.equal(graphs[0], graphs[1])
    assert torch.equal(scores[0], scores[1])


def test_loss_needs_a_sampled_graph(synthetic):
    local = get("pgl")(synthetic.data, HP)
    with pytest.raises(RuntimeError, match="start_epoch"):
        local.loss(*a_batch(synthetic.data))
    global_mode = get("pgl")(synthetic.data, {**HP, "mode": "global"})
    assert torch.isfinite(sum(global_mode.loss(*a_batch(synthetic.data)).values()))


# -- loss, gradients, scores -----------------------------------------------------------------

@pytest.mark.parametrize("modalities", [("image", "text"), ("text",), ("image",)])
@pytest.mark.parametrize("mode", ["local", "global"])
@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_matches_the_transcription_of_mmrec(modalities, mode, dropout):
    # random interactions: distinct singular values, so the global product is well defined
    data = random_train_data(n_users=60, n_items=40, per_user=6, modalities=modalities)
    model = make(data, mode=mode, dropout=dropout, reg_weight=0.1)
    mm_adj = mmrec_mm_adj(data, model)
    if mode == "local":
        model.start_epoch(2, torch.Generator().manual_seed(5))
        sub_graph = mmrec_local_sub_graph(model, torch.Generator().manual_seed(5))
    else:
        sub_graph = torch.as_tensor(
            mmrec_global_subgraph_extraction(mmrec_norm_adj(data), HP["embedding_size"]),
            dtype=torch.float32)
    users, pos, neg = batch_with_repeats(data)
    torch.manual_seed(7)
    ours = sum(model.loss(users, pos, neg).values())
    torch.manual_seed(7)
    expected = mmrec_calculate_loss(model, users, pos, neg, sub_graph, mm_adj)
    assert_same_loss_and_gradients(model, ours, expected, rtol=1e-5, atol=1e-5)

    norm_adj = torch.as_tensor(mmrec_norm_adj(data), dtype=torch.float32)
    with torch.no_grad():
        users_all, items_all = mmrec_forward(model, norm_adj, mm_adj)
    scores = assert_scores_agree_across_chunks(model)
    torch.testing.assert_close(scores, users_all @ items_all.T, rtol=1e-4, atol=1e-5)


def test_dropout_views_are_independent(synthetic):
    model = make(synthetic.data, dropout=0.5, reg_weight=1.0)
    users, pos, neg = a_batch(synthetic.data)
    with_dropout = model.loss(users, pos, neg)["cl"]
    without = make(synthetic.data, dropout=0.0, reg_weight=1.0).loss(users, pos, neg)["cl"]
    assert with_dropout.item() > without.item()  # two different masks: positives less alike


def test_zero_reg_weight_drops_the_contrastive_term(synthetic):
    model = make(synthetic.data, reg_weight=0.0)
    assert set(model.loss(*a_batch(synthetic.data))) == {"bpr"}


@pytest.mark.parametrize("train_features", [True, False])
def test_every_parameter_gets_gradient(synthetic, train_features):
    model = make(synthetic.data, train_features=train_features)
    assert parameters_without_gradient(model, *a_batch(synthetic.data)) == []
    names = {name for name, _ in model.named_parameters()}
    expected = {f"{part}.{m}" for part in ("user_preference",) for m in ("image", "text")}
    expected |= {f"projections.{m}.{p}" for m in ("image", "text") for p in ("weight", "bias")}
    if train_features:
        expected |= {"trainable_features.image", "trainable_features.text"}
    assert names == expected


@pytest.mark.parametrize("mode", ["local", "global"])
@pytest.mark.parametrize("n_ui_layers", [0, 1, 2])
def test_batch_rows_equal_the_full_propagation(synthetic, mode, n_ui_layers):
    """The loss's last user-item layer at the batch's rows only: same values and gradients."""
    model = make(synthetic.data, mode=mode, n_ui_layers=n_ui_layers)
    users, pos, neg = a_batch(synthetic.data)
    items = torch.cat([pos, neg])
    user_e, item_e = model.batch_embeddings(model.train_graph, users, items)
    (user_e.square().sum() + item_e.sin().sum()).backward()
    fast = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    all_users, all_items = model.propagate(model.train_graph)
    assert torch.equal(user_e, all_users[users]) and torch.equal(item_e, all_items[items])
    (all_users[users].square().sum() + all_items[items].sin().sum()).backward()
    for got, want in zip(fast, (p.grad for p in model.parameters())):
        torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-7)


def test_loss_decreases(synthetic):
    losses = mean_epoch_losses(make(synthetic.data), synthetic.data, epochs=6,
                               learning_rate=5e-3)
    assert losses[-1] < 0.8 * losses[0], losses


# -- learning ----------------------------------------------------------------------------------

def test_learns_from_the_features_and_reproduces(synthetic):
    hp = {**CONFIG["defaults"], "knn_k": 5}
    trained = train_and_test(synthetic, "pgl", hp, epochs=15, learning_rate=1e-3)
    again = train_and_test(synthetic, "pgl", hp, epochs=15, learning_rate=1e-3)
    mostpop = train_and_test(synthetic, "mostpop", {}, epochs=1)
    blind = train_and_test(synthetic, "pgl", hp, epochs=15, learning_rate=1e-3,
                           data=shuffled_features(synthetic.data))
    recall = trained.test["recall@20"]
    assert recall > 3 * random_recall_at_20(synthetic)
    assert recall > 3 * mostpop.test["recall@20"]
    assert blind.test["recall@20"] < recall - 0.2
    assert again.test == trained.test
    for (name, p), q in zip(trained.model.state_dict().items(),
                            again.model.state_dict().values()):
        assert torch.equal(p, q), name
