"""GRCN: a literal transcription of MMRec's code (its routing loop included) gives the same
loss, gradients and scores; every table learns; scoring in any chunking; learning from the
features; a fixed seed reproduces a run."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from crane.models import get
from crane.synthetic import only_modalities, random_train_data, styled_random_cold
from tests.models.checks import (a_batch, assert_learns_from_features_and_reproduces,
                                 assert_same_loss_and_gradients, assert_scores_agree_across_chunks,
                                 parameters_without_gradient)

HP = {"embedding_size": 16, "latent_embedding": 8, "reg_weight": 0.1}


@pytest.fixture(scope="module")
def data():
    return random_train_data(n_users=30, n_items=20, per_user=4)


def build(data, seed=0, **overrides):
    torch.manual_seed(seed)
    return get("grcn")(data, {**HP, **overrides})


# -- MMRec's GRCN, transcribed statement by statement; torch_geometric's MessagePassing
#    (flow source_to_target: x_j = x[edge_index[0]], aggregated at edge_index[1]) and its
#    softmax written with dense group masks --------------------------------------------

def mmrec_edge_index(data):
    coo = data.train_matrix().tocoo()
    rows = torch.as_tensor(coo.row, dtype=torch.long)
    cols = torch.as_tensor(coo.col, dtype=torch.long) + data.n_users
    return torch.stack([rows, cols])          # not doubled: GRCN keeps it one-way


def pyg_softmax(src, index, num_nodes):
    mask = (index[None, :] == torch.arange(num_nodes)[:, None]).float()   # nodes x edges
    exp = torch.exp(src - src.max())
    return exp / (mask.T @ (mask @ exp) + 1e-16)


def gat_conv(x, edge_index):
    """GATConv.forward + message (self_loops False; no self-loops to remove here)."""
    x_i, x_j = x[edge_index[1]], x[edge_index[0]]
    alpha = torch.mul(x_i, x_j).sum(dim=-1)
    alpha = pyg_softmax(alpha, edge_index[1], len(x))
    out = torch.zeros_like(x).index_add(0, edge_index[1], x_j * alpha.view(-1, 1))
    return out, alpha


def sage_conv(x, edge_index, weight_vector):
    """SAGEConv with aggr 'add' (GRCN's aggr_mode)."""
    x_j = x[edge_index[0]]
    return torch.zeros_like(x).index_add(0, edge_index[1], x_j * weight_vector)


def mmrec_cgcn(cgcn, features_table, n_users, num_routing, edge_index):
    features = F.leaky_relu(cgcn.mlp(features_table))
    preference = F.normalize(cgcn.preference)
    features = F.normalize(features)
    for _ in range(num_routing):
        x = torch.cat((preference, features), dim=0)
        x_hat_1, _ = gat_conv(x, edge_index)
        preference = preference + x_hat_1[:n_users]
        preference = F.normalize(preference)
    x = torch.cat((preference, features), dim=0)
    edge_index = torch.cat((edge_index, edge_index[[1, 0]]), dim=1)
    x_hat_1, alpha = gat_conv(x, edge_index)
    return x + x_hat_1, alpha.view(-1, 1)


def mmrec_egcn(id_embedding, edge_index, weight_vector):
    x = id_embedding
    edge_index = torch.cat((edge_index, edge_index[[1, 0]]), dim=1)
    x = F.normalize(x)
    x_hat_1 = sage_conv(x, edge_index, weight_vector)
    x_hat_2 = sage_conv(x_hat_1, edge_index, weight_vector)
    return x + x_hat_1 + x_hat_2


def mmrec_forward(model, edge_index, num_routing=3):
    weight, content_rep = None, None
    for modality in ("image", "text"):       # v_gcn, then t_gcn
        if modality not in model.attention:
            continue
        rep, weight_m = mmrec_cgcn(model.attention[modality], model.features(modality),
                                   model.n_users, num_routing, edge_index)
        if weight is None:
            weight, content_rep = weight_m, rep   # (text alone: MMRec's typo fixed)
        else:
            content_rep = torch.cat((content_rep, rep), dim=1)
            weight = torch.cat((weight, weight_m), dim=1)
    confidence = torch.cat((model.model_specific_conf[edge_index[0]],
                            model.model_specific_conf[edge_index[1]]), dim=0)
    weight = weight * confidence
    weight, _ = torch.max(weight, dim=1)
    weight = weight.view(-1, 1)
    weight = torch.relu(weight)
    id_rep = mmrec_egcn(model.id_embedding, edge_index, weight)
    return torch.cat((id_rep, content_rep), dim=1)


def mmrec_calculate_loss(model, users, pos, neg, edge_index):
    n_users = model.n_users
    user_tensor = users.repeat_interleave(2)
    stacked_items = torch.stack((pos + n_users, neg + n_users))
    item_tensor = stacked_items.t().contiguous().view(-1)
    out = mmrec_forward(model, edge_index)
    score = torch.sum(out[user_tensor] * out[item_tensor], dim=1).view(-1, 2)
    loss = -torch.mean(torch.log(torch.sigmoid(torch.matmul(score,
                                                            torch.tensor([[1.0], [-1.0]])))))
    reg_embedding_loss = (model.id_embedding[user_tensor] ** 2
                          + model.id_embedding[item_tensor] ** 2).mean()
    if "image" in model.attention:
        reg_embedding_loss += (model.attention["image"].preference ** 2).mean()
    reg_content_loss = torch.zeros(1)
    for modality in ("image", "text"):
        if modality in model.attention:
            reg_content_loss = reg_content_loss + (
                model.attention[modality].preference[user_tensor] ** 2).mean()
    reg_loss = model.config.reg_weight * (reg_embedding_loss + reg_content_loss)
    return (loss + reg_loss).squeeze(0)


# -- tests ------------------------------------------------------------------------------

@pytest.mark.parametrize("modalities", [("image", "text"), ("image",), ("text",)])
def test_matches_a_transcription_of_mmrec(data, modalities):
    data = only_modalities(data, *modalities)
    model = build(data)
    users, pos, neg = a_batch(data, size=32)
    edge_index = mmrec_edge_index(data)
    ours = sum(model.loss(users, pos, neg).values())
    assert_same_loss_and_gradients(model, ours,
                                   mmrec_calculate_loss(model, users, pos, neg, edge_index))
    with torch.no_grad():
        out = mmrec_forward(model, edge_index)
    scores = assert_scores_agree_across_chunks(model)
    torch.testing.assert_close(scores, out[:data.n_users] @ out[data.n_users:].T,
                               rtol=1e-5, atol=1e-6)


def test_mmrec_routing_changes_nothing(data):
    """The routing loop's messages go user -> item only: its user rows are zero, so any
    number of routing passes gives the same representation."""
    model = build(data)
    edge_index = mmrec_edge_index(data)
    with torch.no_grad():
        torch.testing.assert_close(mmrec_forward(model, edge_index, num_routing=0),
                                   mmrec_forward(model, edge_index, num_routing=3))


def test_every_table_learns(data):
    model = build(data)
    names = {name for name, _ in model.named_parameters()}
    assert names == {"id_embedding", "model_specific_conf", "attention.image.preference",
                     "attention.image.mlp.weight", "attention.image.mlp.bias",
                     "attention.text.preference", "attention.text.mlp.weight",
                     "attention.text.mlp.bias"}
    assert parameters_without_gradient(model, *a_batch(data)) == []


def test_refined_weights_prune_and_take_the_most_confident_modality(data):
    model = build(data)
    with torch.no_grad():
        model.model_specific_conf[:, 0] = -1.0          # image never trusted
        model.model_specific_conf[:, 1] = 2.0
        attention = torch.rand(len(model.edges.user), 2)
        to_items, to_users = model.refined_weights(attention, attention)
        torch.testing.assert_close(to_items, 2.0 * attention[:, 1])
        model.model_specific_conf[:] = -1.0
        assert not model.refined_weights(attention, attention)[0].any()  # all pruned


def test_bad_input_is_named(data):
    with pytest.raises(ValueError, match=r"unknown hyper-parameter\(s\) \['n_layers'\]"):
        get("grcn")(data, {**HP, "n_layers": 3})
    with pytest.raises(ValueError, match="grcn needs item features"):
        get("grcn")(only_modalities(data), HP)


@pytest.fixture(scope="module")
def styled():
    return styled_random_cold(seed=3, cold_in_train=False)


def test_learns_from_the_features_and_reproduces(styled):
    assert_learns_from_features_and_reproduces(styled, "grcn", epochs=10,
                                               learning_rate=1e-2, blind_margin=0.1)
