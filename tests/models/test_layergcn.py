"""LayerGCN: MMRec's pruning, loss, gradients and scores from a literal transcription, the
alternating prunings, batch rows equal to the full propagation, scoring in any chunking,
learning and reproducibility."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch
import torch.nn.functional as F

from crane.models import get
from crane.ops.dropout import BipartiteEdges, degree_sensitive_edge_dropout
from crane.synthetic import random_train_data, styled_and_grouped
from crane.tuning import load_model_config
from tests.models.checks import (a_batch, assert_same_loss_and_gradients,
                                 assert_scores_agree_across_chunks, model_defaults,
                                 parameters_without_gradient, train_and_test)


@pytest.fixture(scope="module")
def data():
    return random_train_data(n_users=30, n_items=20, per_user=4, modalities=())


def build(data, epoch=0, seed=0, **overrides):
    torch.manual_seed(0)
    model = get("layergcn")(data, {**model_defaults("layergcn"), **overrides})
    model.train()
    model.start_epoch(epoch, torch.Generator().manual_seed(seed))
    return model


def test_config_holds_mmrec_grid():
    config = load_model_config("layergcn")
    assert config["grid"] == {"n_layers": [4], "reg_weight": [1e-2, 1e-3, 1e-4, 1e-5],
                              "dropout": [0.0, 0.1, 0.2]}
    assert config["defaults"]["n_layers"] == 4


# --------------------------------------------------------------------------- MMRec, transcribed

def mmrec_normalize_adj_m(indices, adj_size):
    adj = torch.sparse_coo_tensor(indices, torch.ones_like(indices[0]), adj_size,
                                  check_invariants=True)
    row_sum = 1e-7 + torch.sparse.sum(adj, -1).to_dense()
    col_sum = 1e-7 + torch.sparse.sum(adj.t(), -1).to_dense()
    r_inv_sqrt = torch.pow(row_sum, -0.5)
    rows_inv_sqrt = r_inv_sqrt[indices[0]]
    c_inv_sqrt = torch.pow(col_sum, -0.5)
    cols_inv_sqrt = c_inv_sqrt[indices[1]]
    values = rows_inv_sqrt * cols_inv_sqrt
    return values


def mmrec_masked_adj(keep_indices, n_users, n_items):
    """The end of LayerGCN.pre_epoch_processing, given the kept (user, item) edges; dense."""
    keep_indices = keep_indices.clone()
    keep_values = mmrec_normalize_adj_m(keep_indices, torch.Size((n_users, n_items)))
    all_values = torch.cat((keep_values, keep_values))
    keep_indices[1] += n_users
    all_indices = torch.cat((keep_indices, torch.flip(keep_indices, [0])), 1)
    n_nodes = n_users + n_items
    return torch.sparse_coo_tensor(all_indices, all_values, (n_nodes, n_nodes),
                                   check_invariants=True).to_dense()


def mmrec_norm_adj(data):
    """LayerGCN.get_norm_adj_mat, dense."""
    n_users, n_items = data.n_users, data.n_items
    A = np.zeros((n_users + n_items, n_users + n_items), dtype=np.float32)
    A[data.train_user, data.train_item + n_users] = 1
    A[data.train_item + n_users, data.train_user] = 1
    diag = np.array((A > 0).sum(axis=1).flatten()) + 1e-7
    diag = np.power(diag, -0.5)
    D = np.diag(diag)
    return torch.FloatTensor((D @ A @ D).astype(np.float32))


def mmrec_forward(model, forward_adj, n_layers):
    ego_embeddings = torch.cat([model.user_embeddings, model.item_embeddings], 0)
    all_embeddings = ego_embeddings
    embeddings_layers = []
    for layer_idx in range(n_layers):
        all_embeddings = forward_adj @ all_embeddings
        _weights = F.cosine_similarity(all_embeddings, ego_embeddings, dim=-1)
        all_embeddings = torch.einsum('a,ab->ab', _weights, all_embeddings)
        embeddings_layers.append(all_embeddings)
    ui_all_embeddings = torch.sum(torch.stack(embeddings_layers, dim=0), dim=0)
    return torch.split(ui_all_embeddings, [model.n_users, model.n_items])


def mmrec_calculate_loss(model, masked_adj, user, pos_item, neg_item, n_layers, reg_weight):
    user_all_embeddings, item_all_embeddings = mmrec_forward(model, masked_adj, n_layers)
    u_embeddings = user_all_embeddings[user]
    posi_embeddings = item_all_embeddings[pos_item]
    negi_embeddings = item_all_embeddings[neg_item]
    pos_scores = torch.mul(u_embeddings, posi_embeddings).sum(dim=1)
    neg_scores = torch.mul(u_embeddings, negi_embeddings).sum(dim=1)
    m = torch.nn.LogSigmoid()
    mf_loss = torch.sum(-m(pos_scores - neg_scores))
    reg_loss = torch.zeros(1)
    for embedding in (model.user_embeddings[user], model.item_embeddings[pos_item],
                      model.item_embeddings[neg_item]):
        reg_loss += torch.sum(embedding ** 2) * 0.5
    return (mf_loss + reg_weight * reg_loss).squeeze()


def kept_edges(model) -> torch.Tensor:
    """The (user, item) edges of the model's training graph, as MMRec's keep_indices."""
    block = sp.coo_matrix(model.train_graph.user_item)
    return torch.as_tensor(np.stack([block.row, block.col]).astype(np.int64))


@pytest.mark.parametrize("epoch,n_layers,dropout", [(0, 4, 0.2), (1, 2, 0.5), (0, 1, 0.0)])
def test_loss_gradients_and_scores_match_mmrec_transcription(data, epoch, n_layers, dropout):
    model = build(data, epoch=epoch, n_layers=n_layers, dropout=dropout, reg_weight=0.01)
    keep = kept_edges(model)
    assert keep.shape[1] == int(len(data.train_user) * (1 - dropout))
    masked_adj = mmrec_masked_adj(keep, data.n_users, data.n_items)
    torch.testing.assert_close(torch.as_tensor(model.train_graph.to_scipy().toarray()),
                               masked_adj)
    users, pos, neg = a_batch(data, size=48)
    terms = model.loss(users, pos, neg)
    assert set(terms) == {"bpr", "reg"}
    expected = mmrec_calculate_loss(model, masked_adj, users, pos, neg, n_layers, 0.01)
    assert_same_loss_and_gradients(model, sum(terms.values()), expected)

    model.eval()
    with torch.no_grad():
        model.prepare_scoring()
        everyone = torch.arange(data.n_users)
        user_e, item_e = mmrec_forward(model, mmrec_norm_adj(data), n_layers)
        torch.testing.assert_close(model.score(everyone), user_e @ item_e.T)


def test_prunings_alternate_degree_sensitive_and_uniform(data):
    """Even epochs: FREEDOM's degree-sensitive draw (low-degree edges kept more often); odd
    epochs: a uniform draw (every edge kept as often)."""
    train = data.train_matrix()
    edges = BipartiteEdges.from_matrix(train)
    model = build(data, epoch=0, seed=5, dropout=0.5)
    expected = degree_sensitive_edge_dropout(edges, 0.5, torch.Generator().manual_seed(5))
    assert (model.train_graph.to_scipy() != expected).nnz == 0

    generator = torch.Generator().manual_seed(0)
    kept = {0: np.zeros(train.nnz), 1: np.zeros(train.nnz)}
    for draw in range(400):
        model.start_epoch(draw, generator)
        block = model.train_graph.user_item.tocoo()
        flat = np.ravel_multi_index((block.row, block.col), train.shape)
        kept[draw % 2] += np.isin(np.ravel_multi_index(train.nonzero(), train.shape), flat)
    weight = edges.weight.numpy()  # CSR order, as train.nonzero()
    assert np.corrcoef(weight, kept[0])[0, 1] > 0.5
    assert abs(np.corrcoef(weight, kept[1])[0, 1]) < 0.3
    assert kept[1].std() < kept[0].std()


@pytest.mark.parametrize("n_layers", [1, 3])
def test_batch_rows_last_hop_equals_full_propagation(data, n_layers):
    model = build(data, n_layers=n_layers, reg_weight=0.1, dropout=0.2)
    users, pos, neg = a_batch(data, size=64)
    terms = model.loss(users, pos, neg)
    sum(terms.values()).backward()
    fast = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()

    user_all, item_all = model.forward(model.train_graph)
    pos_scores = (user_all[users] * item_all[pos]).sum(1)
    neg_scores = (user_all[users] * item_all[neg]).sum(1)
    full_bpr = torch.sum(-F.logsigmoid(pos_scores - neg_scores))
    assert torch.equal(terms["bpr"], full_bpr)
    reg = sum(torch.sum(e ** 2) * 0.5 for e in (model.user_embeddings[users],
                                                model.item_embeddings[pos],
                                                model.item_embeddings[neg]))
    (full_bpr + 0.1 * reg).backward()
    for got, (name, p) in zip(fast, model.named_parameters()):
        torch.testing.assert_close(got, p.grad, rtol=1e-6, atol=1e-7, msg=name)


def test_every_parameter_learns_and_scores_agree_across_chunks(data):
    model = build(data)
    assert parameters_without_gradient(model, *a_batch(data)) == []
    assert_scores_agree_across_chunks(model)


def test_loss_needs_an_epoch_graph(data):
    model = get("layergcn")(data, model_defaults("layergcn"))
    with pytest.raises(RuntimeError, match="layergcn: start_epoch"):
        model.loss(*a_batch(data))


def test_learns_the_graph_structure_and_a_seed_reproduces_the_run():
    """Groups that only the interactions reveal: LayerGCN ranks held-out items well above
    popularity; the same seed gives the same run bit for bit."""
    synthetic = styled_and_grouped(cold_share=0.0, modalities=(), seed=1)
    hparams = model_defaults("layergcn")
    first = train_and_test(synthetic, "layergcn", hparams, epochs=8)
    popular = train_and_test(synthetic, "mostpop", {}).test["recall@20"]
    assert first.test["recall@20"] > 2 * popular
    again = train_and_test(synthetic, "layergcn", hparams, epochs=8)
    assert first.test == again.test
    for (name, p), q in zip(first.model.named_parameters(), again.model.parameters()):
        assert torch.equal(p, q), name
