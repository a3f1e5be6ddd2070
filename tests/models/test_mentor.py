"""MENTOR: the loss, gradients and scores against a literal transcription of the authors'
mentor.py (with dense matrices); which parameters exist and learn; the constant
feature-masking term; learning from the features; a fixed seed reproduces a run. (Nothing is
restricted to the batch: like the reference, every batch propagates the whole graph.)"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from crane.models import get
from crane.synthetic import (only_modalities, random_train_data, shuffled_features,
                             styled_alternate_cold)
from crane.tuning import load_model_config
from tests.models.checks import (a_batch, assert_same_loss_and_gradients,
                                 assert_scores_agree_across_chunks, mean_epoch_losses,
                                 parameters_without_gradient, random_recall_at_20,
                                 train_and_test)

CONFIG = load_model_config("mentor")
HP = {**CONFIG["defaults"], "embedding_size": 16, "knn_k": 5}


@pytest.fixture(scope="module")
def synthetic():
    return styled_alternate_cold()


def make(data, seed=0, **overrides):
    torch.manual_seed(seed)
    return get("mentor")(data, {**HP, **overrides})


# -- the authors' mentor.py, written out with dense matrices -------------------------------

def dense_user_item_graph(data) -> torch.Tensor:
    """Base_gcn's message normalisation on the two-way training edges: D^-1/2 A D^-1/2."""
    n_users, n_nodes = data.n_users, data.n_users + data.n_items
    adjacency = torch.zeros(n_nodes, n_nodes)
    adjacency[data.train_user, data.train_item + n_users] = 1.0
    adjacency[data.train_item + n_users, data.train_user] = 1.0
    deg = adjacency.sum(1)
    deg_inv_sqrt = torch.where(deg > 0, deg.pow(-0.5), torch.zeros_like(deg))
    return deg_inv_sqrt[:, None] * adjacency * deg_inv_sqrt[None, :]


def get_knn_adj_mat(features, knn_k) -> torch.Tensor:
    """get_knn_adj_mat + compute_normalized_laplacian, densely."""
    mm_embeddings = torch.as_tensor(features)
    context_norm = mm_embeddings.div(torch.norm(mm_embeddings, p=2, dim=-1, keepdim=True))
    sim = torch.mm(context_norm, context_norm.transpose(1, 0))
    _, knn_ind = torch.topk(sim, knn_k, dim=-1)
    adjacency = torch.zeros_like(sim).scatter_(-1, knn_ind, 1.0)
    r_inv_sqrt = torch.pow(1e-7 + adjacency.sum(-1), -0.5)
    return r_inv_sqrt[:, None] * adjacency * r_inv_sqrt[None, :]


def mm_adj(data, model) -> torch.Tensor:
    cfg = model.config
    image_adj = get_knn_adj_mat(data.features["image"], cfg.knn_k)
    text_adj = get_knn_adj_mat(data.features["text"], cfg.knn_k)
    return cfg.mm_image_weight * image_adj + (1.0 - cfg.mm_image_weight) * text_adj


def gcn_forward(gcn, adj, features, perturbed=False):
    """GCN.forward; Base_gcn's conv is the dense product with the normalised graph."""
    temp_features = gcn.mlp_1(F.leaky_relu(gcn.mlp(features)))
    x = torch.cat((gcn.preference, temp_features), dim=0)
    x = F.normalize(x)
    h = adj @ x
    if perturbed:
        random_noise = torch.rand_like(h)
        h += torch.sign(h) * F.normalize(random_noise, dim=-1) * 0.1
    h_1 = adj @ h
    if perturbed:
        random_noise = torch.rand_like(h)
        h_1 += torch.sign(h_1) * F.normalize(random_noise, dim=-1) * 0.1
    x_hat = x + h + h_1
    return x_hat, gcn.preference


def mentor_forward(model, adj, item_adj):
    """forward() up to the six result_embed tables; MENTOR's v_gcn, t_gcn, id_gcn, v_gcn_n1,
    ... are our gcns['image'], gcns['text'], id_gcn, noisy_gcns['image_n1'], ..."""
    n_users, weight_u = model.n_users, model.weight_u
    v_feat, t_feat = model.features("image"), model.features("text")
    v_rep, v_preference = gcn_forward(model.gcns["image"], adj, v_feat)
    t_rep, t_preference = gcn_forward(model.gcns["text"], adj, t_feat)
    id_rep, _ = gcn_forward(model.id_gcn, adj, model.id_feat)
    v_rep_n1, _ = gcn_forward(model.noisy_gcns["image_n1"], adj, v_feat, perturbed=True)
    t_rep_n1, _ = gcn_forward(model.noisy_gcns["text_n1"], adj, t_feat, perturbed=True)
    v_rep_n2, _ = gcn_forward(model.noisy_gcns["image_n2"], adj, v_feat, perturbed=True)
    t_rep_n2, _ = gcn_forward(model.noisy_gcns["text_n2"], adj, t_feat, perturbed=True)

    representation = torch.cat((v_rep, t_rep), dim=1)
    guide_representation = torch.cat((id_rep, id_rep), dim=1)
    v_representation = torch.cat((v_rep, v_rep), dim=1)
    t_representation = torch.cat((t_rep, t_rep), dim=1)
    representation_n1 = torch.cat((v_rep_n1, t_rep_n1), dim=1)
    representation_n2 = torch.cat((v_rep_n2, t_rep_n2), dim=1)

    def weighted(v, t):
        user_rep = torch.cat((v[:n_users, :, None], t[:n_users, :, None]), dim=2)
        user_rep = weight_u.transpose(1, 2) * user_rep
        return torch.cat((user_rep[:, :, 0], user_rep[:, :, 1]), dim=1)

    def twice(r):
        user_rep = torch.cat((r[:n_users, :, None], r[:n_users, :, None]), dim=2)
        return torch.cat((user_rep[:, :, 0], user_rep[:, :, 1]), dim=1)

    def build_item_graph(h):
        for _ in range(model.config.n_mm_layers):
            h = item_adj @ h
        return h

    tables = {}
    for name, users, rep in (
            ("main", weighted(v_rep, t_rep), representation),
            ("guide", twice(id_rep), guide_representation),
            ("v", twice(v_rep), v_representation),
            ("t", twice(t_rep), t_representation),
            ("n1", weighted(v_rep_n1, t_rep_n1), representation_n1),
            ("n2", weighted(v_rep_n2, t_rep_n2), representation_n2)):
        item_rep = rep[n_users:]
        tables[name] = torch.cat((users, item_rep + build_item_graph(item_rep)), dim=0)
    return tables, v_preference, t_preference


def info_nce(view1, view2, temp):
    view1, view2 = F.normalize(view1, dim=1), F.normalize(view2, dim=1)
    pos_score = torch.exp((view1 * view2).sum(dim=-1) / temp)
    ttl_score = torch.exp(torch.matmul(view1, view2.transpose(0, 1)) / temp).sum(dim=1)
    return torch.mean(-torch.log(pos_score / ttl_score))


def mentor_calculate_loss(model, users, pos, neg, adj, item_adj):
    """calculate_loss; F.dropout as x * (rand >= p) / (1 - p), FastDropout's draws."""
    cfg, n_users = model.config, model.n_users
    tables, v_preference, t_preference = mentor_forward(model, adj, item_adj)
    result_embed = tables["main"]
    user_tensor = result_embed[users]
    pos_scores = torch.sum(user_tensor * result_embed[pos + n_users], dim=1)
    neg_scores = torch.sum(user_tensor * result_embed[neg + n_users], dim=1)
    loss_value = -torch.mean(torch.log2(torch.sigmoid(pos_scores - neg_scores)))

    reg_loss = cfg.reg_weight * ((v_preference[users] ** 2).mean()
                                 + (t_preference[users] ** 2).mean())
    reg_loss += cfg.reg_weight * (model.weight_u ** 2).mean()

    def dropout(x):
        return x * (torch.rand(x.shape) >= cfg.dropout) * (1.0 / (1.0 - cfg.dropout))

    with torch.no_grad():
        user_rep, item_rep = result_embed[:n_users], result_embed[n_users:]
        u_temp2, i_temp2 = model.mlp(user_rep.clone()), model.mlp(item_rep.clone())
        u_temp, i_temp = dropout(user_rep.clone()), dropout(item_rep.clone())
    mask_loss_u = 1 - F.cosine_similarity(u_temp, u_temp2).mean()
    mask_loss_i = 1 - F.cosine_similarity(i_temp, i_temp2).mean()
    mask_f_loss = cfg.mask_weight_f * (mask_loss_i + mask_loss_u)

    stats = {name: (torch.var(tables[name]), torch.mean(tables[name]))
             for name in ("main", "guide", "v", "t")}
    (r_var, r_mean), (g_var, g_mean) = stats["main"], stats["guide"]
    (v_var, v_mean), (t_var, t_mean) = stats["v"], stats["t"]
    align_loss = ((torch.abs(g_var - r_var) + torch.abs(g_mean - r_mean)).mean()
                  + (torch.abs(g_var - v_var) + torch.abs(g_mean - v_mean)).mean()
                  + (torch.abs(g_var - t_var) + torch.abs(g_mean - t_mean)).mean()
                  + (torch.abs(r_var - v_var) + torch.abs(r_mean - v_mean)).mean()
                  + (torch.abs(r_var - t_var) + torch.abs(r_mean - t_mean)).mean()
                  + (torch.abs(v_var - t_var) + torch.abs(v_mean - t_mean)).mean())

    n1, n2 = tables["n1"], tables["n2"]
    mask_g_loss = (info_nce(n1[:n_users], n2[:n_users], cfg.temp)
                   + info_nce(n1[n_users:], n2[n_users:], cfg.temp))
    mask_g_loss = mask_g_loss * cfg.mask_weight_g
    align_loss = align_loss * cfg.align_weight
    return loss_value + reg_loss + align_loss + mask_f_loss + mask_g_loss


def batch_with_repeats(data, size=48):
    users, pos, neg = a_batch(data, size=size)
    users[1], pos[1], neg[1] = users[0], pos[0], neg[0]  # a repeated row, as in real batches
    return users, pos, neg


# -- configuration -------------------------------------------------------------------------

def test_config_holds_the_reference_values():
    defaults = CONFIG["defaults"]
    assert (defaults["embedding_size"], defaults["knn_k"], defaults["mm_image_weight"],
            defaults["n_mm_layers"]) == (64, 10, 0.1, 1)
    assert (defaults["reg_weight"], defaults["dropout"], defaults["mask_weight_f"],
            defaults["align_weight"]) == (1e-3, 0.5, 1.5, 0.1)
    assert CONFIG["grid"] == {"mask_weight_g": [1e-4, 1e-3], "temp": [0.2, 0.4, 0.6]}
    assert all(defaults[key] == values[0] for key, values in CONFIG["grid"].items())
    assert CONFIG["training"]["defaults"] == {"learning_rate": 1e-4}


def test_bad_input_is_named(synthetic):
    data = synthetic.data
    with pytest.raises(ValueError, match=r"unknown hyper-parameter\(s\) \['feat_embed_dim'\]"):
        get("mentor")(data, {**HP, "feat_embed_dim": 64})
    with pytest.raises(ValueError, match=r"mentor: hyper-parameter temp=0.0 must be > 0"):
        get("mentor")(data, {**HP, "temp": 0.0})
    for modality, missing in (("image", "text"), ("text", "image")):
        with pytest.raises(ValueError, match=f"mentor needs the {missing} features"):
            get("mentor")(only_modalities(data, modality), HP)
    with pytest.raises(ValueError, match="mentor trains on .* triples"):
        make(data).loss(*a_batch(data)[:2], None)


# -- loss, gradients, scores -----------------------------------------------------------------

@pytest.mark.parametrize("n_mm_layers", [0, 1, 2])
@pytest.mark.parametrize("temp", [0.2, 0.6])
def test_matches_the_transcription_of_the_reference(n_mm_layers, temp):
    data = random_train_data(n_users=40, n_items=30, per_user=5)
    model = make(data, n_mm_layers=n_mm_layers, temp=temp, mask_weight_g=0.5, align_weight=0.5)
    adj, item_adj = dense_user_item_graph(data), mm_adj(data, model)
    users, pos, neg = batch_with_repeats(data)
    model.train()
    torch.manual_seed(7)
    ours = sum(model.loss(users, pos, neg).values())
    torch.manual_seed(7)
    expected = mentor_calculate_loss(model, users, pos, neg, adj, item_adj)
    assert_same_loss_and_gradients(model, ours, expected, rtol=1e-5, atol=1e-6)

    with torch.no_grad():
        tables, _, _ = mentor_forward(model, adj, item_adj)
    scores = assert_scores_agree_across_chunks(model)
    main = tables["main"]
    torch.testing.assert_close(scores, main[:model.n_users] @ main[model.n_users:].T,
                               rtol=1e-4, atol=1e-5)


def test_the_feature_masking_term_is_a_constant(synthetic):
    model = make(synthetic.data)
    model.train()
    terms = model.loss(*a_batch(synthetic.data))
    assert set(terms) == {"bpr", "reg", "mask_f", "align", "mask_g"}
    assert not terms["mask_f"].requires_grad and terms["mask_f"].item() > 0
    assert not any(p.requires_grad for p in model.mlp.parameters())
    assert {"mlp.weight", "mlp.bias"} <= set(model.state_dict())


def test_every_parameter_gets_gradient(synthetic):
    model = make(synthetic.data)
    assert parameters_without_gradient(model, *a_batch(synthetic.data)) == []
    gcn = {"preference", "mlp.weight", "mlp.bias", "mlp_1.weight", "mlp_1.bias"}
    gcns = ["gcns.image", "gcns.text", "id_gcn"] + [
        f"noisy_gcns.{m}_{v}" for v in ("n1", "n2") for m in ("image", "text")]
    expected = {f"{g}.{p}" for g in gcns for p in gcn} | {"id_feat", "weight_u"}
    assert {name for name, p in model.named_parameters() if p.requires_grad} == expected


def test_zero_weights_drop_their_modules_and_terms(synthetic):
    model = make(synthetic.data, mask_weight_f=0.0, mask_weight_g=0.0, align_weight=0.0)
    assert set(model.loss(*a_batch(synthetic.data))) == {"bpr", "reg"}
    names = {name.split(".")[0] for name, p in model.named_parameters() if p.requires_grad}
    assert names == {"gcns", "weight_u"}
    assert parameters_without_gradient(model, *a_batch(synthetic.data)) == []


def test_noisy_views_are_redrawn_and_scores_are_not(synthetic):
    model = make(synthetic.data)
    model.train()
    batch = a_batch(synthetic.data)
    first, second = model.loss(*batch)["mask_g"], model.loss(*batch)["mask_g"]
    assert first.item() != second.item()
    model.eval()
    with torch.no_grad():
        model.prepare_scoring()
        once = model.score(torch.arange(model.n_users))
        model.train()
        model.eval()
        model.prepare_scoring()
        assert torch.equal(once, model.score(torch.arange(model.n_users)))


def test_loss_decreases(synthetic):
    # without the constant mask_f term, which would hide the rest
    losses = mean_epoch_losses(make(synthetic.data, mask_weight_f=0.0), synthetic.data,
                               epochs=6, learning_rate=1e-3)
    assert losses[-1] < 0.8 * losses[0], losses


# -- learning ----------------------------------------------------------------------------------

def test_learns_from_the_features_and_reproduces(synthetic):
    # the reference's learning rate 1e-4 needs far more than 15 epochs on this small data
    hp = {**CONFIG["defaults"], "knn_k": 5}
    trained = train_and_test(synthetic, "mentor", hp, epochs=15, learning_rate=1e-3)
    again = train_and_test(synthetic, "mentor", hp, epochs=15, learning_rate=1e-3)
    mostpop = train_and_test(synthetic, "mostpop", {}, epochs=1)
    blind = train_and_test(synthetic, "mentor", hp, epochs=15, learning_rate=1e-3,
                           data=shuffled_features(synthetic.data))
    recall = trained.test["recall@20"]
    assert recall > 3 * random_recall_at_20(synthetic)
    assert recall > 3 * mostpop.test["recall@20"]
    assert blind.test["recall@20"] < recall - 0.2
    assert again.test == trained.test
    for (name, p), q in zip(trained.model.state_dict().items(),
                            again.model.state_dict().values()):
        assert torch.equal(p, q), name
