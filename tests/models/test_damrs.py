"""DA-MRS: a literal transcription of MMRec's code (dense similarity, kNN and user-item
matrices, the item-item behaviour graph as the authors' build_iib_graph.py) gives the same
loss, gradients and scores, the batch-row LightGCN included; the masked kNN rule (mean mask,
item_num <= knn_k) block by block; every parameter learns; scoring in any chunking; learning
from the features; a fixed seed reproduces a run."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pytest
import scipy.sparse as sp
import torch
import torch.nn.functional as F

from crane.models import get
from crane.models.damrs import masked_knn_graphs
from crane.synthetic import only_modalities, random_train_data, styled_random_cold
from tests.models.checks import (a_batch, assert_learns_from_features_and_reproduces,
                                 assert_same_loss_and_gradients, assert_scores_agree_across_chunks,
                                 parameters_without_gradient)

HP = {"embedding_size": 16, "masked_knn_k": 9, "n_mm_layers": 2, "n_ui_layers": 2,
      "co_interaction_k": 3, "kl_weight": 0.7, "neighbor_weight": 0.5}


@pytest.fixture(scope="module")
def data():
    return random_train_data(n_users=30, n_items=40, per_user=8)


def build(data, seed=0, **overrides):
    torch.manual_seed(seed)
    return get("damrs")(data, {**HP, **overrides})


# -- MMRec's DAMRS, transcribed statement by statement (dense matrices at tiny size) -----

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


def get_knn_adj_mat(v_embeddings, t_embeddings, knn_k):
    n_items = v_embeddings.shape[0]
    v_context_norm = v_embeddings.div(torch.norm(v_embeddings, p=2, dim=-1, keepdim=True))
    v_sim = torch.mm(v_context_norm, v_context_norm.transpose(1, 0))
    t_context_norm = t_embeddings.div(torch.norm(t_embeddings, p=2, dim=-1, keepdim=True))
    t_sim = torch.mm(t_context_norm, t_context_norm.transpose(1, 0))
    mask_v = v_sim < v_sim.mean()
    mask_t = t_sim < t_sim.mean()
    t_sim[mask_v] = 0
    v_sim[mask_t] = 0
    t_sim[mask_t] = 0
    v_sim[mask_v] = 0
    index_x, index_v, index_t = [], [], []
    item_nums = []
    for i in range(n_items):
        item_num = len(torch.nonzero(t_sim[i]))
        item_nums.append(item_num)
        if item_num <= knn_k:
            _, v_knn_ind = torch.topk(v_sim[i], item_num)
            _, t_knn_ind = torch.topk(t_sim[i], item_num)
        else:
            _, v_knn_ind = torch.topk(v_sim[i], knn_k)
            _, t_knn_ind = torch.topk(t_sim[i], knn_k)
        index_x.append(torch.ones_like(v_knn_ind) * i)
        index_v.append(v_knn_ind)
        index_t.append(t_knn_ind)
    index_x = torch.cat(index_x, dim=0)
    index_v = torch.cat(index_v, dim=0)
    index_t = torch.cat(index_t, dim=0)
    adj_size = (n_items, n_items)
    v_indices = torch.stack((torch.flatten(index_x), torch.flatten(index_v)), 0)
    t_indices = torch.stack((torch.flatten(index_x), torch.flatten(index_t)), 0)
    return (compute_normalized_laplacian(v_indices, adj_size),
            compute_normalized_laplacian(t_indices, adj_size), item_nums)


def one_modality_knn_adj(embeddings, knn_k):
    """The same rule with one modality: its own mask, its own nonzeros as item_num."""
    n_items = embeddings.shape[0]
    context_norm = embeddings.div(torch.norm(embeddings, p=2, dim=-1, keepdim=True))
    sim = torch.mm(context_norm, context_norm.transpose(1, 0))
    sim[sim < sim.mean()] = 0
    index_x, index_y = [], []
    for i in range(n_items):
        item_num = len(torch.nonzero(sim[i]))
        _, knn_ind = torch.topk(sim[i], min(item_num, knn_k))
        index_x.append(torch.ones_like(knn_ind) * i)
        index_y.append(knn_ind)
    indices = torch.stack((torch.cat(index_x), torch.cat(index_y)), 0)
    return compute_normalized_laplacian(indices, (n_items, n_items))


def authors_item_graph_dict(train: sp.csr_matrix, top_k):
    """build_iib_graph.py: gen_item_matrix, then the top-k rule per row. torch.topk is a
    stable descending sort here (ties to the smaller id; torch.topk leaves them open)."""
    coo = train.tocoo()
    edge_dict = defaultdict(set)
    for user, item in zip(coo.row, coo.col):
        edge_dict[int(item)].add(int(user))
    num_item = train.shape[1]
    item_graph_matrix = torch.zeros(num_item, num_item)
    key_list = sorted(edge_dict)
    for head in range(len(key_list)):
        for rear in range(head + 1, len(key_list)):
            inter_len = len(edge_dict[key_list[head]] & edge_dict[key_list[rear]])
            if inter_len >= 2:
                item_graph_matrix[key_list[head]][key_list[rear]] = inter_len
                item_graph_matrix[key_list[rear]][key_list[head]] = inter_len
    item_graph_dict = {}
    for i in range(num_item):
        item_num = len(torch.nonzero(item_graph_matrix[i]))
        values, indices = torch.sort(item_graph_matrix[i], descending=True, stable=True)
        take = item_num if item_num <= top_k else top_k
        item_graph_dict[i] = [indices[:take].tolist(), values[:take].tolist()]
    return item_graph_dict


def get_session_adj(item_graph_dict, n_items):
    index_x, index_y, values = [], [], []
    for i in range(n_items):
        index_x.append(i)
        index_y.append(i)
        values.append(1)
        if i in item_graph_dict.keys():
            item_graph_sample = item_graph_dict[i][0]
            item_graph_weight = item_graph_dict[i][1]
            for j in range(len(item_graph_sample)):
                index_x.append(i)
                index_y.append(item_graph_sample[j])
                values.append(item_graph_weight[j])
    indices = torch.stack((torch.tensor(index_x), torch.tensor(index_y)), 0)
    return compute_normalized_laplacian(indices, (n_items, n_items))


def get_norm_adj_mat(train: sp.csr_matrix):
    n_users, n_items = train.shape
    dense = torch.from_numpy(train.toarray())
    A = torch.zeros(n_users + n_items, n_users + n_items)
    A[:n_users, n_users:] = dense
    A[n_users:, :n_users] = dense.T
    diag = (A > 0).sum(dim=1).to(torch.float32) + 1e-7
    diag = torch.pow(diag, -0.5)
    return diag[:, None] * A * diag[None, :]


class Transcription:
    """MMRec's DAMRS on the model's parameters and the data's features."""

    def __init__(self, model, data):
        self.model = model
        self.n_users, self.n_items = data.n_users, data.n_items
        self.norm_adj = get_norm_adj_mat(data.train_matrix())
        image = torch.as_tensor(data.features["image"])
        text = torch.as_tensor(data.features["text"])
        self.image_adj, self.text_adj, self.item_nums = get_knn_adj_mat(
            image, text, model.config.masked_knn_k)
        self.session_adj = get_session_adj(
            authors_item_graph_dict(data.train_matrix(), model.config.co_interaction_k),
            data.n_items)

    def forward(self):
        m = self.model
        ego_embeddings = torch.cat((m.user_embedding.weight, m.item_id_embedding.weight), dim=0)
        all_embeddings = [ego_embeddings]
        for _ in range(m.config.n_ui_layers):
            ego_embeddings = torch.mm(self.norm_adj, ego_embeddings)
            all_embeddings += [ego_embeddings]
        all_embeddings = torch.stack(all_embeddings, dim=1).mean(dim=1, keepdim=False)
        u_g_embeddings, i_g_embeddings = torch.split(all_embeddings,
                                                     [self.n_users, self.n_items], dim=0)
        h_t = m.item_id_embedding.weight.clone()
        for _ in range(m.config.n_mm_layers):
            h_t = torch.sparse.mm(self.text_adj, h_t)
        h_v = m.item_id_embedding.weight.clone()
        for _ in range(m.config.n_mm_layers):
            h_v = torch.sparse.mm(self.image_adj, h_v)
        h_s = m.item_id_embedding.weight.clone()
        for _ in range(m.config.n_mm_layers):
            h_s = torch.sparse.mm(self.session_adj, h_s)
        return u_g_embeddings, i_g_embeddings, h_t, h_v, h_s

    @staticmethod
    def label_prediction(emb, aug_emb):
        n_emb = F.normalize(emb, dim=1)
        n_aug_emb = F.normalize(aug_emb, dim=1)
        prob = torch.mm(n_emb, n_aug_emb.transpose(0, 1))
        return F.softmax(prob, dim=1)

    @staticmethod
    def generate_pesudo_labels(prob1, prob2, prob3):
        positive = prob1 + prob2 + prob3 + prob3
        _, mm_pos_ind = torch.topk(positive, 10, dim=-1)
        prob = prob3.clone()
        prob.scatter_(1, mm_pos_ind, 0)
        _, single_pos_ind = torch.topk(prob, 10, dim=-1)
        return mm_pos_ind, single_pos_ind

    def neighbor_discrimination(self, mm_positive, s_positive, emb, aug_emb, temperature=0.2):
        def score(x1, x2):
            return torch.sum(torch.mul(x1, x2), dim=2)

        n_aug_emb = F.normalize(aug_emb, dim=1)
        n_emb = F.normalize(emb, dim=1)
        mm_pos_emb = n_aug_emb[mm_positive]
        s_pos_emb = n_aug_emb[s_positive]
        emb2 = torch.reshape(n_emb, [-1, 1, self.model.config.embedding_size])
        emb2 = torch.tile(emb2, [1, 10, 1])
        mm_pos_score = score(emb2, mm_pos_emb)
        s_pos_score = score(emb2, s_pos_emb)
        ttl_score = torch.matmul(n_emb, n_aug_emb.transpose(0, 1))
        mm_pos_score = torch.sum(torch.exp(mm_pos_score / temperature), dim=1)
        s_pos_score = torch.sum(torch.exp(s_pos_score / temperature), dim=1)
        ttl_score = torch.exp(ttl_score / temperature).sum(dim=1)
        cl_loss = - torch.log(mm_pos_score / (ttl_score) + 10e-10) - torch.log(
            s_pos_score / (ttl_score - mm_pos_score) + 10e-10)
        return torch.mean(cl_loss)

    @staticmethod
    def KL(p1, p2):
        return p1 * torch.log(p1) - p1 * torch.log(p2) + \
            (1 - p1) * torch.log(1 - p1) - (1 - p1) * torch.log(1 - p2)

    def calculate_loss(self, users, pos_items, neg_items):
        m = self.model
        user_embeddings, item_embeddings, h_t, h_v, h_s = self.forward()
        u_id = torch.unique(users, return_inverse=True, sorted=False)[0]
        i_id = torch.unique(torch.cat((pos_items, neg_items)), return_inverse=True,
                            sorted=False)[0]
        label_prediction_t = self.label_prediction(h_t[i_id], h_t)
        label_prediction_v = self.label_prediction(h_v[i_id], h_v)
        label_prediction_s = self.label_prediction(h_s[i_id], h_s)
        mm_postive_s, s_postive_s = self.generate_pesudo_labels(
            label_prediction_t, label_prediction_v, label_prediction_s)
        neighbor_dis_loss_1 = self.neighbor_discrimination(mm_postive_s, s_postive_s,
                                                           h_s[i_id], h_s)
        mm_postive_v, s_postive_v = self.generate_pesudo_labels(
            label_prediction_t, label_prediction_s, label_prediction_v)
        neighbor_dis_loss_2 = self.neighbor_discrimination(mm_postive_v, s_postive_v,
                                                           h_v[i_id], h_v)
        mm_postive_t, s_postive_t = self.generate_pesudo_labels(
            label_prediction_v, label_prediction_s, label_prediction_t)
        neighbor_dis_loss_3 = self.neighbor_discrimination(mm_postive_t, s_postive_t,
                                                           h_t[i_id], h_t)
        neighbor_dis_loss = (neighbor_dis_loss_1 + neighbor_dis_loss_2
                             + neighbor_dis_loss_3) / 3.0
        n_u_g_embeddings = user_embeddings[u_id]
        it_embeddings = (h_t + h_s + h_v) / 3.0
        p_g = torch.sigmoid(torch.matmul(
            n_u_g_embeddings, F.normalize(item_embeddings[i_id], dim=-1).transpose(0, 1)))
        p_t = torch.sigmoid(torch.matmul(
            n_u_g_embeddings, F.normalize(it_embeddings[i_id], dim=-1).transpose(0, 1)))
        KL_loss = torch.mean(self.KL(p_g, p_t) + self.KL(p_t, p_g))
        p_weight, n_weight = self.get_weight_modal(users, pos_items, neg_items,
                                                   user_embeddings, h_t, h_v, h_s)
        u_g_embeddings = user_embeddings[users]
        ia_embeddings = item_embeddings + (h_t + h_v + h_s) / 3.0
        pos_i_g_embeddings = ia_embeddings[pos_items]
        neg_i_g_embeddings = ia_embeddings[neg_items]
        batch_mf_loss = self.bpr_loss(u_g_embeddings, pos_i_g_embeddings, neg_i_g_embeddings,
                                      p_weight, n_weight)
        return (batch_mf_loss + m.config.neighbor_weight * (neighbor_dis_loss)
                + KL_loss * m.config.kl_weight)

    def full_sort_predict(self, user):
        user_embeddings, item_embeddings, h_t, h_v, h_s = self.forward()
        user_e = user_embeddings[user, :]
        all_item_e = item_embeddings + (h_v + h_t + h_s) / 3.0
        return torch.matmul(user_e, all_item_e.transpose(0, 1))

    @staticmethod
    def get_weight_modal(users, pos_items, neg_items, user_embeddings, h_t, h_v, h_s):
        u_g_embeddings = user_embeddings[users]
        p_t = torch.sum(torch.mul(u_g_embeddings, F.normalize(h_t[pos_items], dim=-1)), dim=1)
        p_v = torch.sum(torch.mul(u_g_embeddings, F.normalize(h_s[pos_items], dim=-1)), dim=1)
        p_s = torch.sum(torch.mul(u_g_embeddings, F.normalize(h_v[pos_items], dim=-1)), dim=1)
        n_t = torch.sum(torch.mul(u_g_embeddings, F.normalize(h_t[neg_items], dim=-1)), dim=1)
        n_v = torch.sum(torch.mul(u_g_embeddings, F.normalize(h_s[neg_items], dim=-1)), dim=1)
        n_s = torch.sum(torch.mul(u_g_embeddings, F.normalize(h_v[neg_items], dim=-1)), dim=1)
        p_tensor = torch.sigmoid(torch.stack([p_t, p_v, p_s]))
        p_variance = torch.var(p_tensor, dim=0).data
        p_mean_value = torch.mean(p_tensor, dim=0).data
        p_max_value, _ = torch.max(p_tensor, dim=0)
        n_tensor = torch.sigmoid(torch.stack([n_t, n_v, n_s]))
        n_mean_value = torch.mean(n_tensor).data
        p_mean_probability = torch.pow(p_mean_value, 1.0).data
        p_var_probability = torch.pow(torch.exp(-p_variance).data, 2.0)
        pos_weight = p_mean_probability * p_var_probability
        pos_weight = torch.clamp(pos_weight, 0, 1).data
        mask = torch.zeros_like(p_mean_value)
        mask[p_mean_value < n_mean_value] = 1
        neg_weight_max = torch.pow((p_max_value - n_mean_value.data), 1.0) * mask
        neg_weight = torch.clamp(neg_weight_max, 0, 1).data
        return pos_weight, neg_weight

    @staticmethod
    def bpr_loss(users, pos_items, neg_items, p_weight, n_weight):
        pos_scores = torch.sum(torch.mul(users, pos_items), dim=1)
        neg_scores = torch.sum(torch.mul(users, neg_items), dim=1)
        p_maxi = torch.log(torch.sigmoid(pos_scores - neg_scores)) * p_weight
        n_maxi = torch.log(torch.sigmoid(neg_scores - pos_scores)) * n_weight
        return -torch.mean(p_maxi + n_maxi)


def dense(graph) -> np.ndarray:
    """A torch (sparse CSR or COO) or scipy matrix as a dense numpy array."""
    if isinstance(graph, sp.spmatrix):
        return graph.toarray()
    return graph.to_dense().numpy()


# -- tests ------------------------------------------------------------------------------

def test_item_graphs_match_the_transcription(data):
    model = build(data)
    reference = Transcription(model, data)
    nums = np.array(reference.item_nums)
    k = HP["masked_knn_k"]
    assert (nums <= k).any() and (nums > k).any()  # both paths
    for ours, theirs in ((model.views["text"].matrix, reference.text_adj),
                         (model.views["image"].matrix, reference.image_adj),
                         (model.views["session"].matrix, reference.session_adj)):
        np.testing.assert_allclose(dense(ours), dense(theirs), rtol=1e-6, atol=0)
    session_rows = (dense(reference.session_adj) != 0).sum(axis=1)
    assert (session_rows == 1).any() and (session_rows == 1 + HP["co_interaction_k"]).any()


@pytest.mark.parametrize("block_rows", [1, 7, 1000])
def test_masked_knn_rule_block_by_block(data, block_rows):
    """Both modalities' means mask both graphs; a row keeps min(n, knn_k) entries, n its
    masked text row's nonzeros; one modality masks with its own mean only."""
    image = torch.as_tensor(data.features["image"])
    text = torch.as_tensor(data.features["text"])
    for knn_k in (3, 9, 40):
        graphs = masked_knn_graphs({"image": image, "text": text}, knn_k, block_rows)
        image_adj, text_adj, _ = get_knn_adj_mat(image, text, knn_k)
        np.testing.assert_allclose(graphs["image"].toarray(), dense(image_adj), rtol=1e-6)
        np.testing.assert_allclose(graphs["text"].toarray(), dense(text_adj), rtol=1e-6)
        for modality, x in (("image", image), ("text", text)):
            alone = masked_knn_graphs({modality: x}, knn_k, block_rows)[modality]
            np.testing.assert_allclose(alone.toarray(), dense(one_modality_knn_adj(x, knn_k)),
                                       rtol=1e-6)


def test_mean_mask_on_a_hand_made_case():
    # 10 items in 2 groups of 5 with parallel features within a group and orthogonal across:
    # the mean similarity is 0.5, so each item keeps its own group (5 entries of 1/5)
    image = torch.tensor([[1.0, 0.0]] * 5 + [[0.0, 1.0]] * 5)
    text = image.flip(1)
    graphs = masked_knn_graphs({"image": image, "text": text}, knn_k=8)
    expected = np.kron(np.eye(2), np.ones((5, 5))) / 5
    np.testing.assert_allclose(graphs["image"].toarray(), expected, rtol=1e-6)
    np.testing.assert_allclose(graphs["text"].toarray(), expected, rtol=1e-6)
    # text disagreeing on item 0 (now in the second text group) masks it in both graphs
    text[0] = torch.tensor([1.0, 0.0])
    graphs = masked_knn_graphs({"image": image, "text": text}, knn_k=8)
    assert graphs["image"][0].nnz == 1 and graphs["image"][0, 0] > 0
    assert graphs["image"][1].nnz == 4 and graphs["image"][1, 0] == 0


def test_matches_a_transcription_of_mmrec(data):
    """The loss (LightGCN's last layer at the batch's rows only), every gradient and the
    scores against MMRec's full dense computation."""
    model = build(data)
    reference = Transcription(model, data)
    users, pos, neg = a_batch(data, size=32)
    terms = model.loss(users, pos, neg)
    assert set(terms) == {"bpr", "neighbor", "kl"}
    ours = sum(terms.values())
    assert_same_loss_and_gradients(model, ours, reference.calculate_loss(users, pos, neg))
    scores = assert_scores_agree_across_chunks(model)
    with torch.no_grad():
        expected = reference.full_sort_predict(torch.arange(data.n_users))
    torch.testing.assert_close(scores, expected, rtol=1e-5, atol=1e-5)


def test_zero_weights_leave_their_terms_out(data):
    model = build(data, kl_weight=0.0, neighbor_weight=0.0)
    users, pos, neg = a_batch(data, size=32)
    assert set(model.loss(users, pos, neg)) == {"bpr"}
    reference = Transcription(model, data)
    assert_same_loss_and_gradients(model, sum(model.loss(users, pos, neg).values()),
                                   reference.calculate_loss(users, pos, neg))


def test_every_parameter_learns(data):
    model = build(data)
    assert parameters_without_gradient(model, *a_batch(data)) == []
    names = {name for name, _ in model.named_parameters()}
    assert names == {"user_embedding.weight", "item_id_embedding.weight"}


@pytest.mark.parametrize("modality", ["image", "text"])
def test_one_modality_uses_its_view_and_the_behaviour_one(data, modality):
    model = build(only_modalities(data, modality))
    assert list(model.views) == [modality, "session"]
    assert parameters_without_gradient(model, *a_batch(data)) == []
    assert_scores_agree_across_chunks(model)


def test_bad_input_is_named(data):
    with pytest.raises(ValueError, match=r"unknown hyper-parameter\(s\) \['cf_model'\]"):
        get("damrs")(data, {**HP, "cf_model": "LightGCN"})
    with pytest.raises(ValueError, match="damrs needs item features"):
        get("damrs")(only_modalities(data), HP)
    with pytest.raises(ValueError, match="damrs needs at least 10 items"):
        get("damrs")(random_train_data(n_users=5, n_items=8, per_user=2), HP)


@pytest.fixture(scope="module")
def styled():
    return styled_random_cold(seed=3, cold_in_train=False)


def test_learns_from_the_features_and_reproduces(styled):
    assert_learns_from_features_and_reproduces(styled, "damrs", epochs=10,
                                               learning_rate=1e-2, blind_margin=0.2)

