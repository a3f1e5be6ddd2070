"""COHESION: a literal transcription of the authors' code (dense kNN item graph and user-item
matrices, the same user-graph draws and edge-dropout draws) gives the same loss, gradients
and scores; the ID branch is detached and its GCN never trains; every other parameter learns;
scoring in any chunking; one modality; learning from the features; a fixed seed reproduces
a run."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch
import torch.nn.functional as F

from crane.graphs.user_user import softmax_neighbour_lists
from crane.models import get
from crane.synthetic import only_modalities, random_train_data, styled_random_cold
from tests.models.checks import (a_batch, assert_learns_from_features_and_reproduces,
                                 assert_same_loss_and_gradients, assert_scores_agree_across_chunks,
                                 parameters_without_gradient)

HP = {"embedding_size": 16, "knn_k": 4, "mm_image_weight": 0.3, "n_mm_layers": 2,
      "num_layer": 3, "user_knn_k": 6, "dropout": 0.0, "reg_weight": 0.1}


@pytest.fixture(scope="module")
def data():
    return random_train_data(n_users=30, n_items=40, per_user=3)


def build(data, seed=0, **overrides):
    torch.manual_seed(seed)
    return get("cohesion")(data, {**HP, **overrides})


# -- the authors' COHESION, transcribed statement by statement (dense matrices) ----------

def compute_normalized_laplacian(indices, adj_size):
    # torch.sparse.FloatTensor in the reference (deprecated): the same COO tensors
    adj = torch.sparse_coo_tensor(indices, torch.ones_like(indices[0]), adj_size,
                                  check_invariants=True)
    row_sum = 1e-7 + torch.sparse.sum(adj, -1).to_dense()
    r_inv_sqrt = torch.pow(row_sum, -0.5)
    rows_inv_sqrt = r_inv_sqrt[indices[0]]
    cols_inv_sqrt = r_inv_sqrt[indices[1]]
    values = rows_inv_sqrt * cols_inv_sqrt
    return torch.sparse_coo_tensor(indices, values, adj_size, check_invariants=True)


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


def normalize_adj_m(indices, adj_size):
    adj = torch.sparse_coo_tensor(indices, torch.ones_like(indices[0]), adj_size,
                                  check_invariants=True)
    row_sum = 1e-7 + torch.sparse.sum(adj, -1).to_dense()
    col_sum = 1e-7 + torch.sparse.sum(adj.t(), -1).to_dense()
    r_inv_sqrt = torch.pow(row_sum, -0.5)
    rows_inv_sqrt = r_inv_sqrt[indices[0]]
    c_inv_sqrt = torch.pow(col_sum, -0.5)
    cols_inv_sqrt = c_inv_sqrt[indices[1]]
    return rows_inv_sqrt * cols_inv_sqrt


def get_norm_adj_mat(train: sp.csr_matrix) -> torch.Tensor:
    n_users, n_items = train.shape
    dense = torch.from_numpy(train.toarray())
    A = torch.zeros(n_users + n_items, n_users + n_items)
    A[:n_users, n_users:] = dense
    A[n_users:, :n_users] = dense.T
    diag = (A > 0).sum(dim=1).to(torch.float32) + 1e-7
    diag = torch.pow(diag, -0.5)
    return diag[:, None] * A * diag[None, :]


def masked_adj(train: sp.csr_matrix, dropout, generator) -> torch.Tensor:
    """pre_epoch_processing's edge dropout, drawing from `generator`."""
    n_users, n_items = train.shape
    coo = train.tocoo()
    edge_indices = torch.stack([torch.from_numpy(coo.row), torch.from_numpy(coo.col)]).long()
    edge_values = normalize_adj_m(edge_indices, torch.Size((n_users, n_items)))
    degree_len = int(edge_values.size(0) * (1. - dropout))
    degree_idx = torch.multinomial(edge_values, degree_len, generator=generator)
    keep_indices = edge_indices[:, degree_idx]
    keep_values = normalize_adj_m(keep_indices, torch.Size((n_users, n_items)))
    all_values = torch.cat((keep_values, keep_values))
    keep_indices[1] += n_users
    all_indices = torch.cat((keep_indices, torch.flip(keep_indices, [0])), 1)
    n_nodes = n_users + n_items
    return torch.sparse_coo_tensor(all_indices, all_values, (n_nodes, n_nodes),
                                   check_invariants=True).to_dense()


def gcn_layer(gcn, features, id_embd, adj, num_layer):
    """GCNLayer.forward."""
    temp_features = gcn.mlp_1(F.leaky_relu(gcn.mlp(features)))
    temp_features = torch.abs(
        ((torch.mul(id_embd, id_embd) + torch.mul(temp_features, temp_features)) / 2)
        + 1e-8).sqrt()
    x = torch.cat((gcn.preference, temp_features), dim=0)
    x = F.normalize(x)
    ego_embeddings = x
    all_embeddings = ego_embeddings
    embeddings_layers = [all_embeddings]
    for _ in range(num_layer):
        all_embeddings = torch.mm(adj, all_embeddings)
        _weights = F.cosine_similarity(all_embeddings, ego_embeddings, dim=-1)
        all_embeddings = torch.einsum('a,ab->ab', _weights, all_embeddings)
        embeddings_layers.append(all_embeddings)
    ui_all_embeddings = torch.sum(torch.stack(embeddings_layers, dim=0), dim=0)
    return ui_all_embeddings, gcn.preference


def user_graph_sample(features, user_graph, user_matrix):
    u_features = features[user_graph]
    user_matrix = user_matrix.unsqueeze(1)
    u_pre = torch.matmul(user_matrix, u_features)
    return u_pre.squeeze()


class Transcription:
    """The reference on the model's parameters, one epoch's graphs."""

    def __init__(self, model, data, adj, epoch_user_graph, user_weight_matrix):
        self.model = model
        self.n_users = data.n_users
        self.adj = adj
        self.epoch_user_graph = epoch_user_graph
        self.user_weight_matrix = user_weight_matrix
        cfg = model.config
        _, image_adj = get_knn_adj_mat(model.features("image"), cfg.knn_k)
        _, text_adj = get_knn_adj_mat(model.features("text"), cfg.knn_k)
        self.mm_adj = cfg.mm_image_weight * image_adj + (1.0 - cfg.mm_image_weight) * text_adj

    def build_representation(self):
        m, num_layer = self.model, self.model.config.num_layer
        id_rep, _ = gcn_layer(m.gcns["id"], m.id_feat, m.id_feat, self.adj, num_layer)
        id_rep_data = id_rep.data
        self.v_rep, self.v_preference = gcn_layer(m.gcns["image"], m.features("image"),
                                                  m.id_feat, self.adj, num_layer)
        self.t_rep, self.t_preference = gcn_layer(m.gcns["text"], m.features("text"),
                                                  m.id_feat, self.adj, num_layer)
        representation = torch.cat((id_rep_data, self.v_rep, self.t_rep), dim=1)
        self.v_rep = torch.unsqueeze(self.v_rep, 2)
        self.t_rep = torch.unsqueeze(self.t_rep, 2)
        id_rep_data = torch.unsqueeze(id_rep_data, 2)
        return representation, id_rep_data

    def process_user_item_representation(self, representation, id_rep_data):
        n_users = self.n_users
        user_rep = torch.cat((id_rep_data[:n_users], self.v_rep[:n_users],
                              self.t_rep[:n_users]), dim=2)
        user_rep = torch.cat((user_rep[:, :, 0], user_rep[:, :, 1], user_rep[:, :, 2]), dim=1)
        item_rep = representation[n_users:]
        h_i = item_rep
        for _ in range(self.model.config.n_mm_layers):
            h_i = torch.sparse.mm(self.mm_adj, h_i)
        h_u = user_graph_sample(user_rep, self.epoch_user_graph, self.user_weight_matrix)
        user_rep = user_rep + h_u
        item_rep = item_rep + h_i
        self.result_embed = torch.cat((user_rep, item_rep), dim=0)
        return user_rep, item_rep

    def adaptive_optimization(self, user_e, pos_e, neg_e):
        dim_latent = self.model.config.embedding_size
        pos_score_ = torch.mul(user_e, pos_e).view(-1, 3, dim_latent).sum(dim=-1)
        neg_score_ = torch.mul(user_e, neg_e).view(-1, 3, dim_latent).sum(dim=-1)
        modality_indicator = 1 - (pos_score_ - neg_score_).softmax(-1).detach()
        adaptive_weight = torch.tile(modality_indicator.view(-1, 3, 1), [1, 1, dim_latent])
        return adaptive_weight.view(-1, 3 * dim_latent)

    def forward(self, user_nodes, pos_item_nodes, neg_item_nodes):
        pos_item_nodes = pos_item_nodes + self.n_users
        neg_item_nodes = neg_item_nodes + self.n_users
        representation, id_rep_data = self.build_representation()
        user_rep, item_rep = self.process_user_item_representation(representation, id_rep_data)
        self.result_embed = torch.cat((user_rep, item_rep), dim=0)
        user_tensor = self.result_embed[user_nodes]
        pos_item_tensor = self.result_embed[pos_item_nodes]
        neg_item_tensor = self.result_embed[neg_item_nodes]
        adaptive_weight = self.adaptive_optimization(user_tensor, pos_item_tensor,
                                                     neg_item_tensor)
        pos_scores = torch.sum(user_tensor * pos_item_tensor * adaptive_weight, dim=1)
        neg_scores = torch.sum(user_tensor * neg_item_tensor * adaptive_weight, dim=1)
        return pos_scores, neg_scores

    def calculate_loss(self, user, pos, neg):
        reg_weight = self.model.config.reg_weight
        pos_scores, neg_scores = self.forward(user, pos, neg)
        loss_value = -torch.mean(torch.log2(torch.sigmoid(pos_scores - neg_scores)))
        reg_embedding_loss_v = (self.v_preference[user] ** 2).mean()
        reg_embedding_loss_t = (self.t_preference[user] ** 2).mean()
        reg_loss = reg_weight * (reg_embedding_loss_v + reg_embedding_loss_t)
        reg_loss += reg_weight * (self.model.weight_u ** 2).mean()
        return loss_value + reg_loss

    def full_sort_predict(self, users):
        user_tensor = self.result_embed[:self.n_users]
        item_tensor = self.result_embed[self.n_users:]
        return torch.matmul(user_tensor[users, :], item_tensor.t())


def epoch_graphs(model, data, seed):
    """Start an epoch on a seeded generator; the reference's adjacency, epoch_user_graph and
    user_weight_matrix of the same draws (user graph first, then the edge dropout)."""
    model.start_epoch(0, torch.Generator().manual_seed(seed))
    generator = torch.Generator().manual_seed(seed)
    indices, weights = softmax_neighbour_lists(model.user_neighbours, model.config.user_knn_k,
                                               generator)
    train = data.train_matrix()
    adj = (get_norm_adj_mat(train) if model.config.dropout <= 0
           else masked_adj(train, model.config.dropout, generator))
    return adj, torch.from_numpy(indices), torch.from_numpy(weights)


# -- tests ------------------------------------------------------------------------------

@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_matches_a_transcription_of_the_reference(data, dropout):
    model = build(data, dropout=dropout)
    lengths = np.diff(model.user_neighbours.indptr)
    assert (lengths == 6).any() and ((lengths > 0) & (lengths < 6)).any()  # both paths
    reference = Transcription(model, data, *epoch_graphs(model, data, seed=4))
    users, pos, neg = a_batch(data, size=32)
    ours = sum(model.loss(users, pos, neg).values())
    assert_same_loss_and_gradients(model, ours, reference.calculate_loss(users, pos, neg))
    scores = assert_scores_agree_across_chunks(model)
    with torch.no_grad():
        reference.forward(users, pos, neg)
        expected = reference.full_sort_predict(torch.arange(data.n_users))
    torch.testing.assert_close(scores, expected, rtol=1e-5, atol=1e-5)


def test_the_id_branch_is_detached_and_its_gcn_never_trains(data):
    model = build(data)
    assert parameters_without_gradient(model, *a_batch(data)) == []
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    frozen = {name for name, p in model.named_parameters() if not p.requires_grad}
    per_branch = ("preference", "mlp.weight", "mlp.bias", "mlp_1.weight", "mlp_1.bias")
    assert trainable == {"id_feat", "weight_u"} | {
        f"gcns.{m}.{p}" for m in ("image", "text") for p in per_branch}
    assert frozen == {f"gcns.id.{p}" for p in per_branch}
    # with its weights made trainable, the loss still sends them nothing (the reference's .data)
    model.gcns["id"].requires_grad_(True)
    model.zero_grad(set_to_none=True)
    sum(model.loss(*a_batch(data)).values()).backward()
    assert all(p.grad is None for p in model.gcns["id"].parameters())
    assert model.id_feat.grad is not None and torch.any(model.id_feat.grad != 0)


@pytest.mark.parametrize("modality", ["image", "text"])
def test_one_modality_has_an_id_and_a_modality_branch(data, modality):
    model = build(only_modalities(data, modality))
    assert list(model.gcns) == ["id", modality]
    assert parameters_without_gradient(model, *a_batch(data)) == []
    user_all, item_all = model.representations()
    assert user_all.shape == (data.n_users, 2 * HP["embedding_size"])
    assert item_all.shape == (data.n_items, 2 * HP["embedding_size"])
    assert_scores_agree_across_chunks(model)


def test_graphs_are_resampled_each_epoch_and_read_by_scores(data):
    model = build(data, dropout=0.3)
    model.eval()
    first = model.score(torch.arange(data.n_users))
    model.start_epoch(1, torch.Generator().manual_seed(1))
    model.eval()
    second = model.score(torch.arange(data.n_users))
    assert not torch.equal(first, second)
    model.start_epoch(1, torch.Generator().manual_seed(1))
    model.eval()
    assert torch.equal(model.score(torch.arange(data.n_users)), second)
    rows = model.user_graph.matrix.crow_indices().diff()
    assert int(rows.max()) <= HP["user_knn_k"]  # U x k entries, never U x U


def test_bad_input_is_named(data):
    with pytest.raises(ValueError, match=r"unknown hyper-parameter\(s\) \['feat_embed_dim'\]"):
        get("cohesion")(data, {**HP, "feat_embed_dim": 64})
    with pytest.raises(ValueError, match="cohesion needs item features"):
        get("cohesion")(only_modalities(data), HP)


@pytest.fixture(scope="module")
def styled():
    return styled_random_cold(seed=3, cold_in_train=False)


def test_learns_from_the_features_and_reproduces(styled):
    assert_learns_from_features_and_reproduces(styled, "cohesion", epochs=10,
                                               learning_rate=1e-3, blind_margin=0.2)

