"""MMGCN: a literal transcription of MMRec's code gives the same loss, gradients and scores;
untrained tables stay untrained; the batch-rows last layer equals the full one; scoring in
any chunking; learning from the features; a fixed seed reproduces a run."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from crane.models import get
from crane.synthetic import only_modalities, random_train_data, styled_random_cold
from tests.models.checks import (a_batch, assert_learns_from_features_and_reproduces,
                                 assert_same_loss_and_gradients, assert_scores_agree_across_chunks,
                                 parameters_without_gradient)

HP = {"embedding_size": 16, "reg_weight": 0.1}


@pytest.fixture(scope="module")
def data():
    return random_train_data(n_users=30, n_items=20, per_user=4)


def build(data, seed=0, **overrides):
    torch.manual_seed(seed)
    return get("mmgcn")(data, {**HP, **overrides})


# -- MMRec's MMGCN, transcribed statement by statement (torch_geometric's MessagePassing with
#    aggr="mean" written as a scatter-mean over edge_index) ------------------------------

def mmrec_edge_index(data):
    rows = torch.as_tensor(data.train_matrix().tocoo().row, dtype=torch.long)
    cols = torch.as_tensor(data.train_matrix().tocoo().col, dtype=torch.long) + data.n_users
    edge_index = torch.stack([rows, cols])                      # pack_edge_index(...).t()
    return torch.cat((edge_index, edge_index[[1, 0]]), dim=1)


def base_model_conv(x, weight, edge_index):
    """BaseModel.forward: x @ weight, then messages x_j averaged at each target i."""
    x = torch.matmul(x, weight)
    x_j = x[edge_index[0]]
    summed = torch.zeros_like(x).index_add(0, edge_index[1], x_j)
    count = torch.zeros(len(x)).index_add(0, edge_index[1], torch.ones(edge_index.shape[1]))
    return summed / count.clamp(min=1)[:, None]


def mmrec_gcn(gcn, features, id_embedding, edge_index):
    """GCN.forward with concate truthy ('False' is a non-empty string) and has_id True."""
    temp_features = gcn.mlp(features) if gcn.mlp is not None else features
    x = torch.cat((gcn.preference, temp_features), dim=0)
    x = F.normalize(x)
    for conv, linear, g in zip(gcn.conv_weights, gcn.linears, gcn.gates):
        h = F.leaky_relu(base_model_conv(x, conv, edge_index))
        x_hat = F.leaky_relu(linear(x)) + id_embedding
        x = F.leaky_relu(g(torch.cat((h, x_hat), dim=1)))
    return x


def mmrec_forward(model, edge_index):
    representation = None
    for modality in ("image", "text"):            # v_gcn first, then t_gcn
        if modality in model.gcns:
            out = mmrec_gcn(model.gcns[modality], model.features(modality),
                            model.id_embedding, edge_index)
            representation = out if representation is None else representation + out
    return representation / len(model.gcns)


def mmrec_calculate_loss(model, users, pos, neg, edge_index):
    n_users = model.n_users
    pos_items, neg_items = pos + n_users, neg + n_users
    user_tensor = users.repeat_interleave(2)
    stacked_items = torch.stack((pos_items, neg_items))
    item_tensor = stacked_items.t().contiguous().view(-1)
    out = mmrec_forward(model, edge_index)
    user_score = out[user_tensor]
    item_score = out[item_tensor]
    score = torch.sum(user_score * item_score, dim=1).view(-1, 2)
    weight = torch.tensor([[1.0], [-1.0]])
    loss = -torch.mean(torch.log(torch.sigmoid(torch.matmul(score, weight))))
    reg_embedding_loss = (model.id_embedding[user_tensor] ** 2
                          + model.id_embedding[item_tensor] ** 2).mean()
    if "image" in model.gcns:
        reg_embedding_loss += (model.gcns["image"].preference ** 2).mean()
    return loss + model.config.reg_weight * reg_embedding_loss


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


def test_trains_what_mmrec_trains(data):
    """The ID table, the preferences and the features are untrained (not parameters in
    MMRec); every Linear and conv weight gets gradient."""
    model = build(data)
    names = {name for name, _ in model.named_parameters()}
    assert not any("preference" in n or "id_embedding" in n or "features" in n for n in names)
    assert {"id_embedding", "gcns.image.preference", "gcns.text.preference"} <= set(
        model.state_dict())
    assert parameters_without_gradient(model, *a_batch(data)) == []
    # the reg term reads untrained tables only: no gradient at all
    reg = model.loss(*a_batch(data))["reg"]
    assert reg > 0 and not reg.requires_grad


def test_structure_is_mmrecs(data):
    model = build(data)
    image, text = model.gcns["image"], model.gcns["text"]
    assert image.mlp.out_features == 256 and text.mlp is None       # dim_latent 256 / None
    assert image.preference.shape == (data.n_users, 256)
    assert text.preference.shape == (data.n_users, data.features["text"].shape[1])
    assert [g.in_features for g in image.gates] == [256 + 16, 32, 32]  # concatenation
    assert len(image.conv_weights) == 3


def test_batch_rows_last_layer_equals_full_forward(data):
    model = build(data)
    users, pos, neg = a_batch(data, size=40)      # users repeat
    rows = torch.unique(torch.cat([users, pos + data.n_users, neg + data.n_users]))
    at_rows = model.representation(rows)
    at_rows.sin().sum().backward()
    fast = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    full = model.representation()
    torch.testing.assert_close(at_rows, full[rows], rtol=1e-6, atol=1e-7)
    full[rows].sin().sum().backward()
    for name, p in model.named_parameters():
        torch.testing.assert_close(fast[name], p.grad, rtol=1e-5, atol=1e-7, msg=name)


def test_bad_input_is_named(data):
    with pytest.raises(ValueError, match=r"unknown hyper-parameter\(s\) \['n_layers'\]"):
        get("mmgcn")(data, {**HP, "n_layers": 2})
    with pytest.raises(ValueError, match="mmgcn needs item features"):
        get("mmgcn")(only_modalities(data), HP)


@pytest.fixture(scope="module")
def styled():
    return styled_random_cold(seed=3, cold_in_train=False)


def test_learns_from_the_features_and_reproduces(styled):
    assert_learns_from_features_and_reproduces(styled, "mmgcn", epochs=10,
                                               learning_rate=1e-3, blind_margin=0.1)

