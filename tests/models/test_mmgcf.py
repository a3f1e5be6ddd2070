"""MMGCF: the loss, gradients and scores against a literal transcription of MMRec's mmgcf.py for
every fusion mode, weighting and modality set; the degree-sensitive edge dropout; batch rows
equal the full propagation; learning from the features; a fixed seed reproduces a run."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from crane.models import get
from crane.synthetic import (only_modalities, random_train_data, shuffled_features,
                             styled_alternate_cold)
from crane.tuning import load_model_config
from tests.models.checks import (a_batch, assert_same_loss_and_gradients,
                                 assert_scores_agree_across_chunks, mean_epoch_losses,
                                 random_recall_at_20,
                                 train_and_test)

CONFIG = load_model_config("mmgcf")
HP = {**CONFIG["defaults"], "embedding_size": 16, "feat_embed_dim": 16}
FUSIONS = ("mean", "sum", "concat")
WEIGHTINGS = ("equal", "alpha", "normalized")


@pytest.fixture(scope="module")
def synthetic():
    return styled_alternate_cold()


def make(data, seed=0, **overrides):
    torch.manual_seed(seed)
    model = get("mmgcf")(data, {**HP, **overrides})
    model.start_epoch(1, torch.Generator().manual_seed(0))
    return model


# -- MMRec's mmgcf.py, written out with dense matrices ---------------------------------------

def mmrec_norm_adj(data) -> torch.Tensor:
    """get_norm_adj_mat: D^-1/2 A D^-1/2 of the (U+N) x (U+N) graph, +1e-7 on degrees."""
    n_users, n_nodes = data.n_users, data.n_users + data.n_items
    adjacency = np.zeros((n_nodes, n_nodes), dtype=np.float32)
    adjacency[data.train_user, data.train_item + n_users] = 1
    adjacency[data.train_item + n_users, data.train_user] = 1
    diag = np.power((adjacency > 0).sum(axis=1) + 1e-7, -0.5)
    return torch.as_tensor(diag[:, None] * adjacency * diag[None, :], dtype=torch.float32)


def mmrec_normalize_adj_m(indices, n_users, n_items) -> torch.Tensor:
    """_normalize_adj_m: D_u^-1/2 D_i^-1/2 of each edge of a bipartite sub-graph."""
    adjacency = torch.zeros(n_users, n_items)
    adjacency[indices[0], indices[1]] = 1.0
    row_sum = 1e-7 + adjacency.sum(-1)
    col_sum = 1e-7 + adjacency.sum(0)
    return torch.pow(row_sum, -0.5)[indices[0]] * torch.pow(col_sum, -0.5)[indices[1]]


def mmrec_masked_adj(model, generator) -> torch.Tensor:
    """pre_epoch_processing (edges in our order, drawn on `generator`), densely."""
    n_users, n_items = model.n_users, model.n_items
    edge_indices = torch.stack([model.edges.user, model.edges.item])
    edge_values = mmrec_normalize_adj_m(edge_indices, n_users, n_items)
    degree_len = int(edge_values.size(0) * (1.0 - model.config.dropout))
    degree_idx = torch.multinomial(edge_values, degree_len, generator=generator)
    keep_idx = edge_indices[:, degree_idx]
    keep_vals = mmrec_normalize_adj_m(keep_idx, n_users, n_items)
    masked = torch.zeros(n_users + n_items, n_users + n_items)
    masked[keep_idx[0], keep_idx[1] + n_users] = keep_vals
    masked[keep_idx[1] + n_users, keep_idx[0]] = keep_vals
    return masked


def mmrec_forward(model, adj):
    """forward(adj): lightgcn_propagate, then fuse_item_embeddings; MMRec's image_trs,
    text_trs and concat layers are our projections and concat_layers."""
    cfg = model.config
    ego = torch.cat([model.user_embedding.weight, model.item_id_embedding.weight], dim=0)
    layers = [ego]
    for _ in range(cfg.n_ui_layers):
        ego = adj @ ego
        layers.append(ego)
    out = torch.stack(layers, dim=1).mean(dim=1)
    user_emb, item_emb = torch.split(out, [model.n_users, model.n_items], dim=0)

    mm_feats = []
    for modality in ("image", "text"):
        if modality in model.modalities:
            mm_feats.append(model.projections[modality](getattr(model, f"frozen_{modality}")))
    n_modalities = len(mm_feats)

    def apply_fusion(tensors, concat_layer=None):
        if cfg.fusion_mode == "mean":
            return torch.stack(tensors).mean(dim=0)
        elif cfg.fusion_mode == "sum":
            return torch.stack(tensors).sum(dim=0)
        return concat_layer(torch.cat(tensors, dim=-1))

    layers = model.concat_layers
    if cfg.weighting == "alpha":
        alpha = torch.sigmoid(model.mm_alpha)
        tensors = [item_emb * alpha] + [f * (1.0 - alpha) for f in mm_feats]
        item_emb = apply_fusion(tensors, layers["all"] if cfg.fusion_mode == "concat" else None)
    elif cfg.weighting == "normalized":
        tensors = [F.normalize(item_emb) * n_modalities] + [F.normalize(f) for f in mm_feats]
        item_emb = apply_fusion(tensors, layers["all"] if cfg.fusion_mode == "concat" else None)
    else:
        if len(mm_feats) > 1:
            mm_fused = apply_fusion(mm_feats,
                                    layers["mm"] if cfg.fusion_mode == "concat" else None)
        else:
            mm_fused = mm_feats[0]
        item_emb = apply_fusion([item_emb, mm_fused],
                                layers["id_mm"] if cfg.fusion_mode == "concat" else None)
    return user_emb, item_emb


def mmrec_calculate_loss(model, users, pos_items, neg_items, masked_adj):
    ua_emb, ia_emb = mmrec_forward(model, masked_adj)
    u, p, n = ua_emb[users], ia_emb[pos_items], ia_emb[neg_items]
    mf_loss = -F.logsigmoid((u * p).sum(dim=1) - (u * n).sum(dim=1)).mean()
    reg_loss = (model.user_embedding.weight[users].norm(2).pow(2)
                + model.item_id_embedding.weight[pos_items].norm(2).pow(2)
                + model.item_id_embedding.weight[neg_items].norm(2).pow(2)) / (2 * len(users))
    return mf_loss + model.config.reg_weight * reg_loss


def batch_with_repeats(data, size=48):
    users, pos, neg = a_batch(data, size=size)
    users[1], pos[1], neg[1] = users[0], pos[0], neg[0]  # a repeated row, as in real batches
    return users, pos, neg


def perturb_parameters(model, seed=3):
    """Move every parameter off its initial value (mm_alpha starts at 0, biases near 0)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=generator))


# -- configuration -------------------------------------------------------------------------

def test_config_holds_the_reference_grid_and_its_first_point():
    assert CONFIG["grid"] == {"n_ui_layers": [1, 2, 3],
                              "reg_weight": [0.1, 0.01, 1e-3, 1e-4],
                              "fusion_mode": ["mean", "sum", "concat"],
                              "weighting": ["equal", "alpha", "normalized"],
                              "dropout": [0.2, 0.5, 0.8]}
    defaults = CONFIG["defaults"]
    assert (defaults["embedding_size"], defaults["feat_embed_dim"]) == (64, 64)
    assert all(defaults[key] == values[0] for key, values in CONFIG["grid"].items())
    assert CONFIG["training"] == {"defaults": {}, "grid": {}}


def test_bad_input_is_named(synthetic):
    data = synthetic.data
    with pytest.raises(ValueError, match=r"mmgcf: hyper-parameter fusion_mode='prod' must be "
                                         r"one of"):
        get("mmgcf")(data, {**HP, "fusion_mode": "prod"})
    with pytest.raises(ValueError, match=r"mmgcf: hyper-parameter weighting='learned' must be"):
        get("mmgcf")(data, {**HP, "weighting": "learned"})
    with pytest.raises(ValueError, match="mmgcf: fusion_mode 'sum' .* feat_embed_dim .* must "
                                         "equal embedding_size"):
        get("mmgcf")(data, {**HP, "fusion_mode": "sum", "feat_embed_dim": 8})
    get("mmgcf")(data, {**HP, "fusion_mode": "concat", "feat_embed_dim": 8})
    with pytest.raises(ValueError, match=r"mmgcf: hyper-parameter dropout=1.0 must be in"):
        get("mmgcf")(data, {**HP, "dropout": 1.0})
    with pytest.raises(ValueError, match="mmgcf needs item features"):
        get("mmgcf")(only_modalities(data), HP)
    with pytest.raises(ValueError, match="mmgcf trains on .* triples"):
        make(data).loss(*a_batch(data)[:2], None)


# -- edge dropout ----------------------------------------------------------------------------

@pytest.mark.parametrize("dropout", [0.2, 0.8])
def test_edge_dropout_is_the_references_sampling(synthetic, dropout):
    model = make(synthetic.data, dropout=dropout)
    model.start_epoch(3, torch.Generator().manual_seed(11))
    expected = mmrec_masked_adj(model, torch.Generator().manual_seed(11))
    n_keep = int(len(model.edges.weight) * (1.0 - dropout))
    assert model.train_graph.matrix._nnz() == 2 * n_keep
    torch.testing.assert_close(model.train_graph.matrix.to_dense(), expected, rtol=1e-5,
                               atol=1e-7)


def test_zero_dropout_trains_on_the_full_graph(synthetic):
    model = make(synthetic.data, dropout=0.0)
    assert model.train_graph is model.full_graph
    torch.testing.assert_close(model.full_graph.matrix.to_dense(),
                               mmrec_norm_adj(synthetic.data), rtol=1e-5, atol=1e-7)


def test_graph_is_resampled_and_evaluation_uses_the_full_graph(synthetic):
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
    model = get("mmgcf")(synthetic.data, HP)
    with pytest.raises(RuntimeError, match="start_epoch"):
        model.loss(*a_batch(synthetic.data))


# -- loss, gradients, scores -----------------------------------------------------------------

@pytest.mark.parametrize("modalities", [("image", "text"), ("text",), ("image",)])
@pytest.mark.parametrize("weighting", WEIGHTINGS)
@pytest.mark.parametrize("fusion_mode", FUSIONS)
def test_matches_the_transcription_of_mmrec(modalities, weighting, fusion_mode):
    data = random_train_data(n_users=40, n_items=30, per_user=6, modalities=modalities)
    model = make(data, fusion_mode=fusion_mode, weighting=weighting, n_ui_layers=2,
                 dropout=0.5, reg_weight=0.1)
    perturb_parameters(model)
    model.start_epoch(2, torch.Generator().manual_seed(5))
    masked_adj = mmrec_masked_adj(model, torch.Generator().manual_seed(5))
    users, pos, neg = batch_with_repeats(data)
    ours = sum(model.loss(users, pos, neg).values())
    expected = mmrec_calculate_loss(model, users, pos, neg, masked_adj)
    assert_same_loss_and_gradients(model, ours, expected, rtol=1e-5, atol=1e-6)

    with torch.no_grad():
        users_all, items_all = mmrec_forward(model, mmrec_norm_adj(data))
    scores = assert_scores_agree_across_chunks(model)
    torch.testing.assert_close(scores, users_all @ items_all.T, rtol=1e-4, atol=1e-5)


def item_shift_biases(fusion_mode, weighting):
    """The biases that move every item's fused vector by the same amount, so that BPR (a
    difference of two items' scores) cannot see them: the last fusion step's, and before an
    unnormalised fusion the projections' and the modality concat's (as in the reference)."""
    shifts = set()
    if weighting != "normalized":
        shifts |= {f"projections.{m}.bias" for m in ("image", "text")}
    if fusion_mode == "concat":
        shifts |= ({"concat_layers.mm.bias", "concat_layers.id_mm.bias"}
                   if weighting == "equal" else {"concat_layers.all.bias"})
    return shifts


@pytest.mark.parametrize("fusion_mode", FUSIONS)
@pytest.mark.parametrize("weighting", WEIGHTINGS)
def test_every_parameter_gets_gradient(synthetic, fusion_mode, weighting):
    model = make(synthetic.data, fusion_mode=fusion_mode, weighting=weighting)
    perturb_parameters(model)
    names = {name for name, _ in model.named_parameters()}
    expected = {"user_embedding.weight", "item_id_embedding.weight"}
    expected |= {f"projections.{m}.{p}" for m in ("image", "text") for p in ("weight", "bias")}
    if weighting == "alpha":
        expected.add("mm_alpha")
    if fusion_mode == "concat":
        layers = ("mm", "id_mm") if weighting == "equal" else ("all",)
        expected |= {f"concat_layers.{layer}.{p}" for layer in layers for p in ("weight", "bias")}
    assert names == expected
    model.train()
    sum(model.loss(*a_batch(synthetic.data)).values()).backward()
    largest = {name: float(p.grad.abs().max()) if p.grad is not None else 0.0
               for name, p in model.named_parameters()}
    assert {name for name, g in largest.items() if g < 1e-6} == item_shift_biases(
        fusion_mode, weighting), largest


def test_features_are_frozen_inputs(synthetic):
    model = make(synthetic.data)
    assert not any("frozen" in name for name, _ in model.named_parameters())
    assert not any("frozen" in name for name in model.state_dict())


@pytest.mark.parametrize("weighting", WEIGHTINGS)
@pytest.mark.parametrize("n_ui_layers", [0, 1, 2])
def test_batch_rows_equal_the_full_propagation(synthetic, weighting, n_ui_layers):
    """The loss's last user-item layer at the batch's rows and the batch's item features
    only: same values and gradients."""
    model = make(synthetic.data, weighting=weighting, fusion_mode="concat",
                 n_ui_layers=n_ui_layers)
    users, pos, neg = a_batch(synthetic.data)
    items = torch.cat([pos, neg])
    user_e, item_e = model.batch_embeddings(model.train_graph, users, items)
    (user_e.square().sum() + item_e.sin().sum()).backward()
    fast = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    all_users, all_items = model.propagate(model.train_graph)
    assert torch.equal(user_e, all_users[users])
    torch.testing.assert_close(item_e, all_items[items], rtol=1e-6, atol=1e-7)
    (all_users[users].square().sum() + all_items[items].sin().sum()).backward()
    for got, want in zip(fast, (p.grad for p in model.parameters())):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def test_loss_decreases(synthetic):
    losses = mean_epoch_losses(make(synthetic.data), synthetic.data, epochs=6,
                               learning_rate=5e-3)
    assert losses[-1] < 0.8 * losses[0], losses


# -- learning ----------------------------------------------------------------------------------

def test_learns_from_the_features_and_reproduces(synthetic):
    hp = dict(CONFIG["defaults"])
    trained = train_and_test(synthetic, "mmgcf", hp, epochs=15, learning_rate=5e-3)
    again = train_and_test(synthetic, "mmgcf", hp, epochs=15, learning_rate=5e-3)
    mostpop = train_and_test(synthetic, "mostpop", {}, epochs=1)
    blind = train_and_test(synthetic, "mmgcf", hp, epochs=15, learning_rate=5e-3,
                           data=shuffled_features(synthetic.data))
    recall = trained.test["recall@20"]
    assert recall > 3 * random_recall_at_20(synthetic)
    assert recall > 3 * mostpop.test["recall@20"]
    assert blind.test["recall@20"] < recall - 0.2
    assert again.test == trained.test
    for (name, p), q in zip(trained.model.state_dict().items(),
                            again.model.state_dict().values()):
        assert torch.equal(p, q), name
