"""MVGAE: a literal transcription of MMRec's code, given the same random draws, gives the same
loss, gradients and scores; the untrained tables stay untrained; the draws; scoring in any
chunking; why three lines of MMRec's loss are written as the authors'; learning from the
features; a fixed seed reproduces a run."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from crane.models import get
from crane.synthetic import only_modalities, random_train_data, styled_random_cold
from tests.models.checks import (a_batch, assert_learns_from_features_and_reproduces,
                                 assert_same_loss_and_gradients, assert_scores_agree_across_chunks,
                                 model_defaults, parameters_without_gradient)

HP = {"embedding_size": 16, "n_layers": 1, "beta": 0.5}


@pytest.fixture(scope="module")
def data():
    return random_train_data(n_users=30, n_items=20, per_user=4)


def build(data, seed=0, **overrides):
    torch.manual_seed(seed)
    return get("mvgae")(data, {**HP, **overrides})


# -- MMRec's MVGAE, transcribed statement by statement. torch_geometric's MessagePassing
#    (aggr "mean") is a scatter-mean over edge_index; F.dropout and torch.randn_like take the
#    draws given (`keep` masks, `normal` tables), so both sides see the same randomness.
#    Three lines follow the authors' code instead (see crane/models/mvgae.py); each is
#    marked AUTHORS. --------------------------------------------------------------------

EPS = 1e-15
MAX_LOGVAR = 10


def mmrec_edge_index(data):
    coo = data.train_matrix().tocoo()
    rows = torch.as_tensor(coo.row, dtype=torch.long)
    cols = torch.as_tensor(coo.col, dtype=torch.long) + data.n_users   # pack_edge_index
    edge_index = torch.stack([rows, cols])
    return torch.cat((edge_index, edge_index[[1, 0]]), dim=1)


def base_model(conv, x, edge_index, keep):
    """BaseModel.forward, message (aggr 'mean': x_j as is) and update."""
    edge_index = edge_index[:, edge_index[0] != edge_index[1]]          # remove_self_loops
    loops = torch.arange(x.size(0)).repeat(2, 1)
    edge_index = torch.cat([edge_index, loops], dim=1)                  # add_self_loops
    x = torch.matmul(x, conv.weight)
    x_j = x[edge_index[0]]
    summed = torch.zeros_like(x).index_add(0, edge_index[1], x_j)
    count = torch.zeros(len(x)).index_add(0, edge_index[1], torch.ones(edge_index.shape[1]))
    aggr_out = summed / count[:, None]
    aggr_out = aggr_out + conv.bias
    aggr_out = F.normalize(aggr_out, p=2, dim=-1)
    if keep is None:                                                    # eval: no dropout
        return aggr_out
    return aggr_out * keep / (1 - 0.1)                    # F.dropout(p=0.1), mask given


def mmrec_gcn(encoder, features, edge_index, num_layer, keep):
    """GCN.forward with concate False and dim_latent 128 (linear_layer1/2's outputs are
    discarded there, so they are not computed here)."""
    masks = iter(keep) if keep is not None else iter(lambda: None, 0)
    temp_features = encoder.mlp(features)
    x = torch.cat((encoder.preference, temp_features), dim=0)
    x = F.normalize(x)
    if num_layer > 0:
        h = F.leaky_relu(base_model(encoder.convs[0], x, edge_index, next(masks)))
        x = F.leaky_relu(encoder.gates[0](h))
    if num_layer > 1:
        h = F.leaky_relu(base_model(encoder.convs[1], x, edge_index, next(masks)))
        x = F.leaky_relu(encoder.gates[1](h))
    mu = F.leaky_relu(base_model(encoder.mu.conv, x, edge_index, next(masks)))
    x_hat = F.leaky_relu(encoder.mu.linear(x))
    mu = encoder.mu.gate(mu) + x_hat
    logvar = F.leaky_relu(base_model(encoder.logvar.conv, x, edge_index, next(masks)))
    x_hat = F.leaky_relu(encoder.logvar.linear(x))
    logvar = encoder.logvar.gate(logvar) + x_hat
    return mu, logvar


def experts(mu, logvar, eps=1e-8):
    """ProductOfExperts.forward."""
    var = torch.exp(logvar) + eps
    T = 1. / var
    pd_mu = torch.sum(mu * T, dim=0) / torch.sum(T, dim=0)
    pd_var = 1. / torch.sum(T, dim=0)
    pd_logvar = torch.log(pd_var)
    return pd_mu, pd_logvar, pd_var


def reparametrize(mu, logvar, normal):
    logvar = logvar.clamp(max=MAX_LOGVAR)
    if normal is not None:                                    # self.training
        return mu + normal * 0.1 * torch.exp(logvar.mul(0.5))     # randn_like, draw given
    return mu


def mmrec_forward(model, edge_index, noise):
    """MVGAE.forward: the modality experts (v first, then t), then with c."""
    num_layer = model.config.n_layers
    keep = (lambda name: noise.keep[name]) if noise is not None else (lambda name: None)
    posteriors = {name: mmrec_gcn(model.encoders[name], model.features(name), edge_index,
                                  num_layer, keep(name))
                  for name in ("image", "text", "collaborative") if name in model.encoders}
    c_mu, c_logvar = posteriors.pop("collaborative")
    mu = torch.stack([m for m, _ in posteriors.values()], dim=0)
    logvar = torch.stack([lv for _, lv in posteriors.values()], dim=0)
    pd_mu, pd_logvar, _ = experts(mu, logvar)
    mu = torch.stack([pd_mu, c_mu], dim=0)
    logvar = torch.stack([pd_logvar, c_logvar], dim=0)
    pd_mu, pd_logvar, _ = experts(mu, logvar)
    z = reparametrize(pd_mu, pd_logvar, noise.normal["fused"] if noise is not None else None)
    result_embed = torch.sigmoid(pd_mu)                       # 'amazon' in self.dataset
    return pd_mu, pd_logvar, z, posteriors, (c_mu, c_logvar), result_embed


def dot_product_decode_neg(z, user, neg_items, sigmoid=True):
    # AUTHORS: neg_items is (B, K), each user's own negatives; MMRec passes (B,) and
    # repeats every user B times (neg_items.size(0)), comparing it with all the batch's.
    users = torch.unsqueeze(user, 1)
    re_users = users.repeat(1, neg_items.size(1))
    neg_values = torch.sum(z[re_users] * z[neg_items], -1)
    max_neg_value = torch.max(neg_values, dim=-1).values
    return torch.sigmoid(max_neg_value) if sigmoid else max_neg_value


def dot_product_decode(z, edge_index, sigmoid=True):
    value = torch.sum(z[edge_index[0]] * z[edge_index[1]], dim=1)
    return torch.sigmoid(value) if sigmoid else value


def recon_loss(z, pos_edge_index, user, neg_items, decode_sigmoid=False):
    z = torch.sigmoid(z)                                      # 'amazon' in self.dataset
    # AUTHORS: sigmoid=False (MMRec: True, which decode_sigmoid restores)
    pos_scores = dot_product_decode(z, pos_edge_index, sigmoid=decode_sigmoid)
    neg_scores = dot_product_decode_neg(z, user, neg_items, sigmoid=decode_sigmoid)
    loss = -torch.sum(torch.log2(torch.sigmoid(pos_scores - neg_scores)))
    return loss


def kl_loss(mu, logvar):
    logvar = logvar.clamp(max=MAX_LOGVAR)
    return -0.5 * torch.mean(torch.sum(1 + logvar - mu ** 2 - logvar.exp(), dim=1))


def mmrec_calculate_loss(model, users, pos, neg, edge_index, noise):
    beta = model.config.beta
    user = users
    pos_items = pos + model.n_users            # AUTHORS: item node ids (MMRec: raw item ids)
    neg_items = (neg + model.n_users)[:, None]  # AUTHORS: (B, K) with K = 1, item node ids
    pos_edge_index = torch.stack([user, pos_items], dim=0)
    pd_mu, pd_logvar, z, posteriors, (c_mu, c_logvar), _ = mmrec_forward(model, edge_index,
                                                                         noise)
    normal = (lambda name: noise.normal[name]) if noise is not None else (lambda name: None)
    z_c = reparametrize(c_mu, c_logvar, normal("collaborative"))
    loss = recon_loss(z, pos_edge_index, user, neg_items) + beta * kl_loss(pd_mu, pd_logvar)
    for name, (mu, logvar) in posteriors.items():              # loss_v, then loss_t
        z_m = reparametrize(mu, logvar, normal(name))
        loss = loss + recon_loss(z_m, pos_edge_index, user, neg_items) + beta * kl_loss(mu, logvar)
    return loss + recon_loss(z_c, pos_edge_index, user, neg_items) + beta * kl_loss(c_mu, c_logvar)


def mmrec_full_sort_predict(model, edge_index):
    result_embed = mmrec_forward(model, edge_index, None)[-1]
    return result_embed[:model.n_users] @ result_embed[model.n_users:].t()


# -- tests ------------------------------------------------------------------------------

@pytest.mark.parametrize("modalities,n_layers", [(("image", "text"), 1), (("image", "text"), 2),
                                                 (("image",), 1), (("text",), 2)])
def test_matches_a_transcription_of_mmrec_with_the_same_draws(data, modalities, n_layers):
    data = only_modalities(data, *modalities)
    model = build(data, n_layers=n_layers)
    users, pos, neg = a_batch(data, size=32)
    edge_index = mmrec_edge_index(data)
    model.train()
    torch.manual_seed(5)
    noise = model.draw_noise()
    terms = model.loss_with_noise(users, pos, neg, noise)
    assert set(terms) == {"recon", "kl"}
    expected = mmrec_calculate_loss(model, users, pos, neg, edge_index, noise)
    assert_same_loss_and_gradients(model, sum(terms.values()), expected)
    with torch.no_grad():
        want = mmrec_full_sort_predict(model, edge_index)
    scores = assert_scores_agree_across_chunks(model)
    torch.testing.assert_close(scores, want, rtol=1e-5, atol=1e-6)


def test_loss_draws_its_noise_in_training_and_none_in_eval(data):
    """Training: dropout masks keep about 90% and the normal draws differ per call (the
    global seed fixes them); eval: the loss is the transcription's without draws (MMRec's
    reparametrize returns mu, dropout is off)."""
    model = build(data)
    users, pos, neg = a_batch(data, size=32)
    model.train()
    torch.manual_seed(3)
    first = sum(model.loss(users, pos, neg).values())
    torch.manual_seed(3)
    noise = model.draw_noise()
    torch.testing.assert_close(first, sum(model.loss_with_noise(users, pos, neg, noise).values()))
    assert not torch.equal(first, sum(model.loss(users, pos, neg).values()))
    masks = torch.stack([m for ms in noise.keep.values() for m in ms]).float()
    assert len(noise.keep["image"]) == HP["n_layers"] + 2
    assert 0.88 < masks.mean() < 0.92
    assert set(noise.normal) == {"fused", "image", "text", "collaborative"}
    model.eval()
    with torch.no_grad():
        evaluated = sum(model.loss(users, pos, neg).values())
        expected = mmrec_calculate_loss(model, users, pos, neg, mmrec_edge_index(data), None)
        torch.testing.assert_close(evaluated, expected)
        assert torch.equal(evaluated, sum(model.loss(users, pos, neg).values()))  # no draws


def test_trains_what_mmrec_trains(data):
    """The collaborative item table and the preferences are untrained (plain tensors in
    MMRec) but saved; every Linear and convolution gets gradient; MMRec's discarded
    linear_layer1 is not built."""
    model = build(data)
    names = {name for name, _ in model.named_parameters()}
    assert not any("preference" in n or "features" in n for n in names)
    assert {"features_collaborative", "encoders.image.preference", "encoders.text.preference",
            "encoders.collaborative.preference"} <= set(model.state_dict())
    assert "features_image" not in model.state_dict()      # the dataset's, not the model's
    assert parameters_without_gradient(model, *a_batch(data)) == []
    encoder = model.encoders["collaborative"]
    assert encoder.preference.shape == (data.n_users, 128)
    assert encoder.mlp.in_features == HP["embedding_size"] and encoder.mlp.out_features == 128
    assert len(encoder.convs) == 1 and encoder.convs[0].weight.shape == (128, 16)
    assert model.features("collaborative").shape == (data.n_items, 16)


def test_mmrec_sigmoid_decode_leaves_the_reconstruction_without_signal():
    """Why the decode has no sigmoid: with MMRec's sigmoid=True at embedding_size 64 the
    reconstruction is B to float precision and its gradient a millionth of the KL's."""
    data = styled_random_cold(seed=3).data
    torch.manual_seed(0)
    model = get("mvgae")(data, model_defaults("mvgae"))
    users, pos, neg = a_batch(data, size=256)
    model.train()
    torch.manual_seed(1)
    noise = model.draw_noise()
    pd_mu, pd_logvar, z, _, _, _ = mmrec_forward(model, mmrec_edge_index(data), noise)
    edges = torch.stack([users, pos + data.n_users])
    negatives = (neg + data.n_users)[:, None]
    params = [p for p in model.parameters()]

    def gradient_norm(value):
        grads = torch.autograd.grad(value, params, retain_graph=True, allow_unused=True)
        return torch.sqrt(sum(g.square().sum() for g in grads if g is not None))

    kl = gradient_norm(kl_loss(pd_mu, pd_logvar))
    mmrec = recon_loss(z, edges, users, negatives, decode_sigmoid=True)
    ours = recon_loss(z, edges, users, negatives)
    torch.testing.assert_close(mmrec, torch.tensor(256.0), rtol=1e-5, atol=0.0)
    assert gradient_norm(mmrec) < 1e-5 * kl
    assert gradient_norm(ours) > 0.1 * kl


def test_bad_input_is_named(data):
    with pytest.raises(ValueError, match=r"mvgae: hyper-parameter n_layers=3 must be in \[1, 2\]"):
        build(data, n_layers=3)
    with pytest.raises(ValueError, match="mvgae needs item features"):
        get("mvgae")(only_modalities(data), HP)


def test_learns_from_the_features_and_reproduces():
    styled = styled_random_cold(seed=3)
    trained, again = assert_learns_from_features_and_reproduces(
        styled, "mvgae", epochs=15, learning_rate=1e-2, blind_margin=0.05)
    for (name, p), q in zip(trained.model.named_parameters(), again.model.parameters()):
        assert torch.equal(p, q), name

