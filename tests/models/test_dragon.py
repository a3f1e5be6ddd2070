"""DRAGON: a literal transcription of MMRec's code (dense kNN item graph, 'cat'
construction) gives the same loss, gradients and scores; every parameter learns; the user
graph is resampled per epoch from the sparse top-k graph; scoring in any chunking; learning
from the features; a fixed seed reproduces a run."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from crane.graphs.user_user import softmax_neighbour_lists
from crane.models import get
from crane.synthetic import only_modalities, random_train_data, styled_random_cold
from tests.models.checks import (a_batch, assert_learns_from_features_and_reproduces,
                                 assert_same_loss_and_gradients, assert_scores_agree_across_chunks,
                                 parameters_without_gradient)

HP = {"embedding_size": 16, "knn_k": 4, "mm_image_weight": 0.3, "n_mm_layers": 2,
      "user_knn_k": 6, "reg_weight": 0.1}


@pytest.fixture(scope="module")
def data():
    return random_train_data(n_users=30, n_items=40, per_user=3)


def build(data, seed=0, **overrides):
    torch.manual_seed(seed)
    return get("dragon")(data, {**HP, **overrides})


# -- MMRec's DRAGON, transcribed statement by statement (torch_geometric's MessagePassing
#    with aggr "add" written as an index_add over edge_index, source -> target) -----------

def mmrec_edge_index(data):
    coo = data.train_matrix().tocoo()
    rows = torch.as_tensor(coo.row, dtype=torch.long)
    cols = torch.as_tensor(coo.col, dtype=torch.long) + data.n_users
    edge_index = torch.stack([rows, cols])                      # pack_edge_index(...).t()
    return torch.cat((edge_index, edge_index[[1, 0]]), dim=1)


def base_gcn(x, edge_index):
    """Base_gcn.forward + message (aggr 'add'): norm deg^-1/2[row] deg^-1/2[col]."""
    row, col = edge_index
    deg = torch.zeros(x.size(0)).index_add(0, row, torch.ones(row.shape[0]))  # degree(row)
    deg_inv_sqrt = deg.pow(-0.5)
    norm = deg_inv_sqrt[row] * deg_inv_sqrt[col]
    x_j = x[row]
    return torch.zeros_like(x).index_add(0, col, norm.view(-1, 1) * x_j)


def mmrec_gcn(gcn, features, edge_index):
    temp_features = gcn.mlp_1(F.leaky_relu(gcn.mlp(features)))
    x = torch.cat((gcn.preference, temp_features), dim=0)
    x = F.normalize(x)
    h = base_gcn(x, edge_index)
    h_1 = base_gcn(h, edge_index)
    x_hat = h + x + h_1
    return x_hat, gcn.preference


def user_graph_sample(features, user_graph, user_matrix):
    u_features = features[user_graph]
    user_matrix = user_matrix.unsqueeze(1)
    u_pre = torch.matmul(user_matrix, u_features)
    return u_pre.squeeze()


def get_knn_adj_mat(mm_embeddings, knn_k):
    context_norm = mm_embeddings.div(torch.norm(mm_embeddings, p=2, dim=-1, keepdim=True))
    sim = torch.mm(context_norm, context_norm.transpose(1, 0))
    _, knn_ind = torch.topk(sim, knn_k, dim=-1)
    adj_size = sim.size()
    indices0 = torch.arange(knn_ind.shape[0])
    indices0 = torch.unsqueeze(indices0, 1)
    indices0 = indices0.expand(-1, knn_k)
    indices = torch.stack((torch.flatten(indices0), torch.flatten(knn_ind)), 0)
    return indices, compute_normalized_laplacian(indices, adj_size)


def compute_normalized_laplacian(indices, adj_size):
    # torch.sparse.FloatTensor in MMRec (deprecated): the same COO tensors
    adj = torch.sparse_coo_tensor(indices, torch.ones_like(indices[0]), adj_size,
                                  check_invariants=True)
    row_sum = 1e-7 + torch.sparse.sum(adj, -1).to_dense()
    r_inv_sqrt = torch.pow(row_sum, -0.5)
    rows_inv_sqrt = r_inv_sqrt[indices[0]]
    cols_inv_sqrt = r_inv_sqrt[indices[1]]
    values = rows_inv_sqrt * cols_inv_sqrt
    return torch.sparse_coo_tensor(indices, values, adj_size, check_invariants=True)


def mmrec_mm_adj(model):
    """The constructor's mm_adj (no cached file)."""
    cfg = model.config
    if "image" in model.gcns:
        _, image_adj = get_knn_adj_mat(model.features("image"), cfg.knn_k)
        mm_adj = image_adj
    if "text" in model.gcns:
        _, text_adj = get_knn_adj_mat(model.features("text"), cfg.knn_k)
        mm_adj = text_adj
    if "image" in model.gcns and "text" in model.gcns:
        mm_adj = cfg.mm_image_weight * image_adj + (1.0 - cfg.mm_image_weight) * text_adj
    return mm_adj


def mmrec_forward(model, edge_index, epoch_user_graph, user_weight_matrix):
    n_users = model.n_users
    mm_adj = mmrec_mm_adj(model)
    v_rep = t_rep = v_preference = t_preference = representation = None
    if "image" in model.gcns:
        v_rep, v_preference = mmrec_gcn(model.gcns["image"], model.features("image"),
                                        edge_index)
        representation = v_rep
    if "text" in model.gcns:
        t_rep, t_preference = mmrec_gcn(model.gcns["text"], model.features("text"),
                                        edge_index)
        if representation is None:
            representation = t_rep
        else:
            representation = torch.cat((v_rep, t_rep), dim=1)     # construction == 'cat'
    if v_rep is not None:
        user_rep = v_rep[:n_users]
    if t_rep is not None:
        user_rep = t_rep[:n_users]
    if v_rep is not None and t_rep is not None:
        v_rep = torch.unsqueeze(v_rep, 2)
        t_rep = torch.unsqueeze(t_rep, 2)
        user_rep = torch.cat((v_rep[:n_users], t_rep[:n_users]), dim=2)
        user_rep = model.weight_u.transpose(1, 2) * user_rep
        user_rep = torch.cat((user_rep[:, :, 0], user_rep[:, :, 1]), dim=1)
    item_rep = representation[n_users:]
    h = item_rep
    for _ in range(model.config.n_mm_layers):
        h = torch.sparse.mm(mm_adj, h)
    h_u1 = user_graph_sample(user_rep, epoch_user_graph, user_weight_matrix)
    user_rep = user_rep + h_u1
    item_rep = item_rep + h
    result_embed = torch.cat((user_rep, item_rep), dim=0)
    return result_embed, v_preference, t_preference


def mmrec_calculate_loss(model, users, pos, neg, *graph):
    result_embed, v_preference, t_preference = mmrec_forward(model, *graph)
    user_tensor = result_embed[users]
    pos_scores = torch.sum(user_tensor * result_embed[pos + model.n_users], dim=1)
    neg_scores = torch.sum(user_tensor * result_embed[neg + model.n_users], dim=1)
    loss_value = -torch.mean(torch.log2(torch.sigmoid(pos_scores - neg_scores)))
    reg_v = (v_preference[users] ** 2).mean() if v_preference is not None else 0.0
    reg_t = (t_preference[users] ** 2).mean() if t_preference is not None else 0.0
    reg_loss = model.config.reg_weight * (reg_v + reg_t)
    reg_loss += model.config.reg_weight * (model.weight_u ** 2).mean()   # construction 'cat'
    return loss_value + reg_loss


def sampled_epoch(model, seed):
    """Start an epoch on a seeded generator; MMRec's (epoch_user_graph, user_weight_matrix)
    of the same draws."""
    model.start_epoch(0, torch.Generator().manual_seed(seed))
    indices, weights = softmax_neighbour_lists(model.user_neighbours, model.config.user_knn_k,
                                               torch.Generator().manual_seed(seed))
    return torch.from_numpy(indices), torch.from_numpy(weights)


# -- tests ------------------------------------------------------------------------------

@pytest.mark.parametrize("modalities", [("image", "text"), ("image",), ("text",)])
def test_matches_a_transcription_of_mmrec(data, modalities):
    data = only_modalities(data, *modalities)
    model = build(data)
    lengths = np.diff(model.user_neighbours.indptr)
    assert (lengths == 6).any() and ((lengths > 0) & (lengths < 6)).any()  # both paths
    graph = (mmrec_edge_index(data), *sampled_epoch(model, seed=4))
    users, pos, neg = a_batch(data, size=32)
    ours = sum(model.loss(users, pos, neg).values())
    assert_same_loss_and_gradients(model, ours,
                                   mmrec_calculate_loss(model, users, pos, neg, *graph))
    with torch.no_grad():
        out, _, _ = mmrec_forward(model, *graph)
    scores = assert_scores_agree_across_chunks(model)
    torch.testing.assert_close(scores, out[:data.n_users] @ out[data.n_users:].T,
                               rtol=1e-5, atol=1e-5)


def test_every_parameter_learns(data):
    model = build(data)
    assert parameters_without_gradient(model, *a_batch(data)) == []
    names = {name for name, _ in model.named_parameters()}
    assert names == {"weight_u"} | {
        f"gcns.{m}.{p}" for m in ("image", "text")
        for p in ("preference", "mlp.weight", "mlp.bias", "mlp_1.weight", "mlp_1.bias")}
    assert model.weight_u.shape == (data.n_users, 2, 1)
    torch.testing.assert_close(model.weight_u.sum(1), torch.ones(data.n_users, 1))


def test_user_graph_is_resampled_each_epoch_and_read_by_scores(data):
    model = build(data)
    model.eval()
    first = model.score(torch.arange(data.n_users))
    model.start_epoch(1, torch.Generator().manual_seed(1))
    model.eval()
    second = model.score(torch.arange(data.n_users))
    assert not torch.equal(first, second)     # a new padding of the short lists
    model.start_epoch(1, torch.Generator().manual_seed(1))
    model.eval()
    assert torch.equal(model.score(torch.arange(data.n_users)), second)
    rows = model.user_graph.matrix.crow_indices().diff()
    assert int(rows.max()) <= 6                # U x k entries, never U x U


def test_bad_input_is_named(data):
    with pytest.raises(ValueError, match=r"unknown hyper-parameter\(s\) \['feat_embed_dim'\]"):
        get("dragon")(data, {**HP, "feat_embed_dim": 64})
    with pytest.raises(ValueError, match="dragon needs item features"):
        get("dragon")(only_modalities(data), HP)


@pytest.fixture(scope="module")
def styled():
    return styled_random_cold(seed=3, cold_in_train=False)


def test_learns_from_the_features_and_reproduces(styled):
    assert_learns_from_features_and_reproduces(styled, "dragon", epochs=10,
                                               learning_rate=1e-3, blind_margin=0.1)

