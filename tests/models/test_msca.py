"""MSCA: a literal transcription of the authors' code (dense user-item matrices, the dense
co-occurrence structural graph, MMRec's sparse kNN graphs) gives the same graphs, loss,
gradients and scores; every parameter learns; scoring in any chunking; one modality;
learning from the features; a fixed seed reproduces a run."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch
import torch.nn.functional as F

from crane.models import get
from crane.synthetic import only_modalities, random_train_data, styled_random_cold
from crane.tuning import load_model_config
from tests.models.checks import (a_batch, assert_learns_from_features_and_reproduces,
                                 assert_same_loss_and_gradients, assert_scores_agree_across_chunks,
                                 parameters_without_gradient)

HP = {"embedding_size": 16, "n_layers": 3, "knn_k": 4, "fusion_coeff": 0.4, "tau": 0.2,
      "cl_weight": 0.5, "reg_weight": 1e-3}


@pytest.fixture(scope="module")
def data():
    return random_train_data(n_users=30, n_items=40, per_user=5)


def build(data, seed=0, **overrides):
    torch.manual_seed(seed)
    return get("msca")(data, {**HP, **overrides})


# -- the authors' MSCA, transcribed statement by statement ------------------------------

def build_sim(context):
    context_norm = context.div(torch.norm(context, p=2, dim=-1, keepdim=True))
    return torch.mm(context_norm, context_norm.transpose(1, 0))


def get_sparse_laplacian(edge_index, edge_weight, num_nodes):
    row, col = edge_index[0], edge_index[1]
    deg = torch.zeros(num_nodes, dtype=edge_weight.dtype).scatter_add_(0, row, edge_weight)
    deg_inv_sqrt = deg.pow_(-0.5)
    deg_inv_sqrt.masked_fill_(deg_inv_sqrt == float('inf'), 0)
    return edge_index, deg_inv_sqrt[row] * edge_weight * deg_inv_sqrt[col]


def build_knn_normalized_graph(adj, topk):
    """MMRec's utils, is_sparse True, norm_type 'sym'."""
    knn_val, knn_ind = torch.topk(adj, topk, dim=-1)
    tuple_list = [[row, int(col)] for row in range(len(knn_ind)) for col in knn_ind[row]]
    row = [i[0] for i in tuple_list]
    col = [i[1] for i in tuple_list]
    i = torch.LongTensor([row, col])
    v = knn_val.flatten()
    edge_index, edge_weight = get_sparse_laplacian(i, v, num_nodes=adj.shape[0])
    return torch.sparse_coo_tensor(edge_index, edge_weight, adj.shape)


def get_norm_adj_mat(interaction_matrix, n_users, n_items):
    R = interaction_matrix.tocsr()
    user_degrees = np.array(R.sum(axis=1)).flatten()
    item_degrees = np.array(R.sum(axis=0)).flatten()
    with np.errstate(divide="ignore"):
        d_user = np.power(user_degrees, -0.5)
        d_item = np.power(item_degrees, -0.5)
    d_user[np.isinf(d_user)] = 0.
    d_item[np.isinf(d_item)] = 0.
    D_user = sp.diags(d_user, shape=(n_users, n_users))
    D_item = sp.diags(d_item, shape=(n_items, n_items))
    norm_R = D_user.dot(R).dot(D_item).tocoo()
    top_mat = sp.hstack([sp.csr_matrix((n_users, n_users)), norm_R])
    bottom_mat = sp.hstack([norm_R.T, sp.csr_matrix((n_items, n_items))])
    norm_adj_mat = sp.vstack([top_mat, bottom_mat]).tocoo()
    return (torch.from_numpy(norm_R.toarray()).float(),
            torch.from_numpy(norm_adj_mat.toarray()).float())


def compute_normalized_laplacian(indices, adj_size):
    adj = torch.sparse_coo_tensor(indices, torch.ones_like(indices[0]), adj_size)
    row_sum = 1e-7 + torch.sparse.sum(adj, -1).to_dense()
    r_inv_sqrt = torch.pow(row_sum, -0.5)
    rows_inv_sqrt = r_inv_sqrt[indices[0]]
    cols_inv_sqrt = r_inv_sqrt[indices[1]]
    values = rows_inv_sqrt * cols_inv_sqrt
    return torch.sparse_coo_tensor(indices, values, adj_size)


def get_struct_adj_mat(interaction_matrix, n_items, knn_k):
    """torch.topk is a stable descending sort here (ties to the smaller id; torch.topk leaves
    them open)."""
    inter_matrix = interaction_matrix.tocsr()
    item_cooccurrence = (inter_matrix.T @ inter_matrix).tocoo()
    row, col, data = item_cooccurrence.row, item_cooccurrence.col, item_cooccurrence.data
    mask = (row != col) & (data > 1)
    item_cooccurrence = sp.coo_matrix((data[mask], (row[mask], col[mask])),
                                      shape=item_cooccurrence.shape)
    item_num = np.bincount(item_cooccurrence.row, minlength=n_items).astype(np.int32)
    item_struct_matrix = torch.from_numpy(item_cooccurrence.toarray())
    item_row, item_col = [], []
    for i in range(n_items):
        item_row.append(i)
        item_col.append(i)
        k = min(int(item_num[i]), knn_k)
        if k > 0:
            indices = torch.sort(item_struct_matrix[i], descending=True, stable=True)[1][:k]
            item_row.extend([i] * k)
            item_col.extend(indices.tolist())
    ii_indices = torch.stack([torch.tensor(item_row, dtype=torch.long),
                              torch.tensor(item_col, dtype=torch.long)], dim=0)
    return compute_normalized_laplacian(ii_indices, (n_items, n_items))


class Transcription:
    """The reference on the model's parameters (its feature tables are the model's)."""

    def __init__(self, model, data):
        self.m = model
        self.n_users, self.n_items = data.n_users, data.n_items
        cfg = model.config
        interaction_matrix = sp.coo_matrix(data.train_matrix()).astype(np.float32)
        self.norm_R, self.norm_adj = get_norm_adj_mat(interaction_matrix, self.n_users,
                                                      self.n_items)
        self.struct_original_adj = get_struct_adj_mat(interaction_matrix, self.n_items,
                                                      cfg.knn_k)
        self.original_adj = {
            m: build_knn_normalized_graph(build_sim(model.features[m].detach()), cfg.knn_k)
            for m in model.modalities}

    def semantic_encode(self, view_ii_adj, initial_item_embeds):
        view_item_embeds = torch.sparse.mm(view_ii_adj, initial_item_embeds)
        view_user_embeds = torch.mm(self.norm_R, view_item_embeds)
        return torch.cat([view_user_embeds, view_item_embeds], dim=0)

    def forward(self, test=True):
        m, cfg = self.m, self.m.config
        image_item_embeds = m.item_id_embedding.weight * m.gates["image"](
            m.projections["image"](m.features["image"]))
        text_item_embeds = m.item_id_embedding.weight * m.gates["text"](
            m.projections["text"](m.features["text"]))
        ego_embeddings = torch.cat([m.user_embedding.weight, m.item_id_embedding.weight], dim=0)
        all_embeddings = []
        for _ in range(cfg.n_layers):
            ego_embeddings = torch.mm(self.norm_adj, ego_embeddings)
            all_embeddings += [ego_embeddings]
        all_embeddings = torch.stack(all_embeddings, dim=1)
        collab_embeds = torch.mean(all_embeddings, dim=1, keepdim=False)
        struct_embeds = self.semantic_encode(self.struct_original_adj, m.item_id_embedding.weight)
        image_embeds = self.semantic_encode(self.original_adj["image"], image_item_embeds)
        text_embeds = self.semantic_encode(self.original_adj["text"], text_item_embeds)
        multi_embed_list = [image_embeds, text_embeds, struct_embeds]
        attn_weights = torch.softmax(
            torch.cat([m.query(embed) for embed in multi_embed_list], dim=-1), dim=-1)
        redundant_embeds = sum(w.unsqueeze(1) * embed
                               for w, embed in zip(attn_weights.unbind(dim=1), multi_embed_list))
        multi_embeds = sum(multi_embed_list) - redundant_embeds
        final_embeds = collab_embeds + cfg.fusion_coeff * multi_embeds
        final_user_embeds, final_item_embeds = torch.split(final_embeds,
                                                           [self.n_users, self.n_items], dim=0)
        if test:
            return final_user_embeds, final_item_embeds
        return (final_user_embeds, final_item_embeds, collab_embeds, struct_embeds,
                image_embeds, text_embeds)

    @staticmethod
    def cal_bpr_loss(users, pos_items, neg_items):
        pos_scores = torch.sum(torch.mul(users, pos_items), dim=1)
        neg_scores = torch.sum(torch.mul(users, neg_items), dim=1)
        maxi = F.logsigmoid(pos_scores - neg_scores)
        return -torch.mean(maxi)

    @staticmethod
    def cal_cl_loss(embed_1, embed_2, tau):
        embed_1, embed_2 = F.normalize(embed_1, p=2, dim=1), F.normalize(embed_2, p=2, dim=1)
        pos = torch.sum(embed_1 * embed_2, dim=-1)
        tot = torch.matmul(embed_1, torch.transpose(embed_2, 0, 1))
        gcl_logits = tot - pos[:, None]
        clogits = torch.logsumexp(gcl_logits / tau, dim=1)
        return torch.mean(clogits)

    def cal_reg_loss(self):
        reg_loss = 0
        for param in self.m.parameters():
            reg_loss += param.norm(2).square()
        return reg_loss

    def calculate_loss(self, users, pos_items, neg_items):
        cfg, tau = self.m.config, self.m.config.tau
        (final_user_embeds, final_item_embeds, collab_embeds, struct_embeds, image_embeds,
         text_embeds) = self.forward(test=False)
        bpr_loss = self.cal_bpr_loss(final_user_embeds[users], final_item_embeds[pos_items],
                                     final_item_embeds[neg_items])
        reg_loss = self.cal_reg_loss()
        split = [self.n_users, self.n_items]
        collab_user_embeds, collab_item_embeds = torch.split(collab_embeds, split, dim=0)
        struct_user_embeds, struct_item_embeds = torch.split(struct_embeds, split, dim=0)
        image_user_embeds, image_item_embeds = torch.split(image_embeds, split, dim=0)
        text_user_embeds, text_item_embeds = torch.split(text_embeds, split, dim=0)
        M_u_loss = (self.cal_cl_loss(collab_user_embeds[users], image_user_embeds[users], tau)
                    + self.cal_cl_loss(collab_user_embeds[users], text_user_embeds[users], tau))
        M_i_loss = (self.cal_cl_loss(collab_item_embeds[pos_items], image_item_embeds[pos_items],
                                     tau)
                    + self.cal_cl_loss(collab_item_embeds[pos_items], text_item_embeds[pos_items],
                                       tau))
        C_u_loss = self.cal_cl_loss(collab_user_embeds[users], struct_user_embeds[users], tau)
        C_i_loss = self.cal_cl_loss(collab_item_embeds[pos_items], struct_item_embeds[pos_items],
                                    tau)
        return (bpr_loss + cfg.cl_weight * (C_u_loss + C_i_loss + M_u_loss + M_i_loss)
                + cfg.reg_weight * reg_loss)

    def full_sort_predict(self, user):
        restore_user_e, restore_item_e = self.forward()
        return torch.matmul(restore_user_e[user], restore_item_e.transpose(0, 1))


def dense(graph) -> np.ndarray:
    return graph.to_dense().numpy()


# -- tests ------------------------------------------------------------------------------

def test_config_holds_the_references_baby_point_and_grid():
    config = load_model_config("msca")
    assert config["defaults"] == {"embedding_size": 64, "n_layers": 2, "knn_k": 10,
                                  "fusion_coeff": 0.4, "tau": 0.2, "cl_weight": 5e-3,
                                  "reg_weight": 3e-7}
    assert config["grid"] == {"n_layers": [1, 2, 3, 4],
                              "fusion_coeff": [0.1, 0.2, 0.3, 0.4, 0.5],
                              "cl_weight": [1e-3, 5e-3, 1e-2, 5e-2, 1e-1],
                              "reg_weight": [5e-6, 5e-7, 5e-8, 5e-9, 5e-10]}


def test_graphs_match_the_transcription(data):
    model = build(data)
    reference = Transcription(model, data)
    np.testing.assert_allclose(dense(model.user_item), reference.norm_R.numpy(), rtol=1e-6)
    np.testing.assert_allclose(dense(model.user_item_graph.matrix), reference.norm_adj.numpy(),
                               rtol=1e-6)
    np.testing.assert_allclose(dense(model.item_graph_structure),
                               dense(reference.struct_original_adj), rtol=1e-6, atol=0)
    for modality in ("image", "text"):
        np.testing.assert_allclose(dense(getattr(model, f"item_graph_{modality}")),
                                   dense(reference.original_adj[modality]), rtol=1e-5, atol=1e-7)
    rows = (dense(reference.struct_original_adj) != 0).sum(axis=1)
    # items with no co-interaction neighbour (self loop only), with some, and with k of them
    assert (rows == 1).any() and ((rows > 1) & (rows < 1 + HP["knn_k"])).any()
    assert (rows == 1 + HP["knn_k"]).any()


def test_matches_a_transcription_of_the_reference(data):
    model = build(data)
    reference = Transcription(model, data)
    users, pos, neg = a_batch(data, size=32)
    assert len(torch.unique(users)) < len(users)  # duplicate users stay in the InfoNCE
    ours = sum(model.loss(users, pos, neg).values())
    assert_same_loss_and_gradients(model, ours, reference.calculate_loss(users, pos, neg))
    scores = assert_scores_agree_across_chunks(model)
    with torch.no_grad():
        expected = reference.full_sort_predict(torch.arange(data.n_users))
    torch.testing.assert_close(scores, expected, rtol=1e-5, atol=1e-5)


def test_zero_weights_leave_only_bpr(data):
    model = build(data, cl_weight=0.0, reg_weight=0.0)
    terms = model.loss(*a_batch(data))
    assert float(terms["cl"]) == 0.0 and float(terms["reg"]) == 0.0
    assert float(terms["bpr"]) > 0.0


def test_every_parameter_learns(data):
    model = build(data)
    assert parameters_without_gradient(model, *a_batch(data)) == []
    names = {name for name, _ in model.named_parameters()}
    assert {"features.image", "features.text", "user_embedding.weight",
            "item_id_embedding.weight", "query.0.weight", "query.2.weight"} <= names


@pytest.mark.parametrize("modality", ["image", "text"])
def test_one_modality_has_its_view_and_the_structural_one(data, modality):
    model = build(only_modalities(data, modality))
    assert model.modalities == (modality,)
    _, others = model.views()
    assert list(others) == [modality, "structure"]
    assert parameters_without_gradient(model, *a_batch(data)) == []
    assert_scores_agree_across_chunks(model)


def test_bad_input_is_named(data):
    with pytest.raises(ValueError, match=r"unknown hyper-parameter\(s\) \['is_sparse'\]"):
        get("msca")(data, {**HP, "is_sparse": True})
    with pytest.raises(ValueError, match="n_layers"):
        get("msca")(data, {**HP, "n_layers": 0})
    with pytest.raises(ValueError, match="msca needs item features"):
        get("msca")(only_modalities(data), HP)


@pytest.fixture(scope="module")
def styled():
    return styled_random_cold(seed=3, cold_in_train=False)


def test_learns_from_the_features_and_reproduces(styled):
    assert_learns_from_features_and_reproduces(styled, "msca", epochs=10, learning_rate=1e-3,
                                               blind_margin=0.2)
