"""Leakage, graph construction, feature loading and batch-independent scoring."""

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from crane.data.processed import TEST, TRAIN, VALID
from crane.models import available
from crane.engine.inputs import build_model, load_train_data
from crane.tuning import default_hparams as defaults


def test_models_are_registered():
    assert {"mostpop", "bpr", "lightgcn"} <= set(available())


def test_train_data_holds_only_training_pairs(processed_dir, clustered):
    data, inter = load_train_data(processed_dir, {}, "cpu", None)
    assert (data.n_users, data.n_items) == (clustered.n_users, clustered.n_items)
    seen = set(zip(data.train_user.tolist(), data.train_item.tolist()))
    for which in (VALID, TEST):
        held_out = set(zip(*(part.tolist() for part in inter.part(which))))
        assert held_out and not (seen & held_out)
    assert seen == set(zip(*(part.tolist() for part in inter.part(TRAIN))))


def test_lightgcn_graph_is_the_training_matrix(processed_dir):
    data, inter = load_train_data(processed_dir, {}, "cpu", None)
    model = build_model("lightgcn", data, defaults("lightgcn", n_layers=2))
    adjacency = sp.bmat([[None, model.propagation.user_item],
                         [model.propagation.item_user, None]], format="csr")
    train = inter.csr(TRAIN)
    n_users = inter.n_users
    pattern = (adjacency != 0).astype(np.int8)
    assert (pattern[:n_users, n_users:] != (train != 0).astype(np.int8)).nnz == 0
    assert pattern[:n_users, :n_users].nnz == 0 and pattern[n_users:, n_users:].nnz == 0
    # symmetric normalisation: entry (u, i) = 1 / sqrt(deg u * deg i)
    u, i = train.nonzero()
    deg_u = np.asarray(train.sum(1)).ravel()
    deg_i = np.asarray(train.sum(0)).ravel()
    assert np.allclose(np.asarray(adjacency[u, n_users + i]).ravel(),
                       1 / np.sqrt(deg_u[u] * deg_i[i]))


def test_lightgcn_gradient_matches_dense_autograd(processed_dir):
    data, _ = load_train_data(processed_dir, {}, "cpu", None)
    model = build_model("lightgcn", data, defaults("lightgcn", n_layers=2, reg_weight=0.0))
    users, pos, neg = torch.tensor([0, 1, 2]), torch.tensor([3, 4, 5]), torch.tensor([6, 7, 8])
    model.loss(users, pos, neg)["bpr"].backward()
    fast = model.user_embedding.weight.grad.clone()
    dense = torch.as_tensor(sp.bmat([[None, model.propagation.user_item],
                                     [model.propagation.item_user, None]]).toarray())
    ego = torch.cat([model.user_embedding.weight, model.item_embedding.weight]).detach()
    ego.requires_grad_(True)
    layers = [ego, dense @ ego, dense @ (dense @ ego)]
    final = torch.stack(layers).mean(0)
    ue, ie = final[:data.n_users], final[data.n_users:]
    s_pos = (ue[users] * ie[pos]).sum(1)
    s_neg = (ue[users] * ie[neg]).sum(1)
    (-torch.log(1e-10 + torch.sigmoid(s_pos - s_neg)).mean()).backward()
    assert torch.allclose(fast, ego.grad[:data.n_users], atol=1e-6)


@pytest.mark.parametrize("n_layers", [0, 1, 3])
def test_lightgcn_batch_rows_last_layer_equals_full_propagation(processed_dir, n_layers):
    """The loss's last layer at the batch's rows only: same values, same gradients."""
    data, _ = load_train_data(processed_dir, {}, "cpu", None)
    model = build_model("lightgcn", data, defaults("lightgcn", n_layers=n_layers))
    generator = torch.Generator().manual_seed(4)
    users = torch.randint(data.n_users, (64,), generator=generator)   # with repeats
    items = torch.randint(data.n_items, (128,), generator=generator)
    fast_users, fast_items = model.batch_layer_sums(users, items)
    (fast_users.square().sum() + fast_items.sin().sum()).backward()
    fast_grads = [p.grad.clone() for p in (model.user_embedding.weight,
                                           model.item_embedding.weight)]
    model.zero_grad()
    user_sum, item_sum = model.layer_sums()
    assert torch.equal(fast_users, user_sum[users]) and torch.equal(fast_items, item_sum[items])
    (user_sum[users].square().sum() + item_sum[items].sin().sum()).backward()
    for fast, full in zip(fast_grads, (model.user_embedding.weight.grad,
                                       model.item_embedding.weight.grad)):
        torch.testing.assert_close(fast, full, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("threads", [1, 2])
def test_lightgcn_torch_backend_equals_scipy_backend(processed_dir, threads):
    """The GPU path (torch CSR) checked on CPU against the scipy path, values and gradients."""
    from crane.graphs.user_item import symmetric_bipartite_adjacency
    from crane.models.lightgcn import BipartitePropagation

    data, _ = load_train_data(processed_dir, {}, "cpu", None)
    adjacency = symmetric_bipartite_adjacency(data.train_matrix())
    torch.set_num_threads(threads)   # 2 threads: the two blocks run concurrently
    results = []
    for backend in ("scipy", "torch"):
        propagation = BipartitePropagation(adjacency, data.n_users, "cpu", backend=backend)
        users, items = _seeded_tables(data.n_users, data.n_items)
        out_users, out_items = propagation.step(*propagation.step(users, items))
        (out_users.square().sum() + out_items.sin().sum()).backward()
        results.append((out_users, out_items, users.grad, items.grad))
    for a, b in zip(*results):
        assert torch.allclose(a, b, atol=1e-5)


def _seeded_tables(n_users: int, n_items: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The same 8-column user and item tables for each backend, with gradients."""
    users = torch.randn(n_users, 8, generator=torch.Generator().manual_seed(0), requires_grad=True)
    items = torch.randn(n_items, 8, generator=torch.Generator().manual_seed(1), requires_grad=True)
    return users, items


def test_lightgcn_rows_step_backends_agree(processed_dir):
    """rows_step on the GPU path (torch CSR, full step then rows) equals the scipy row blocks."""
    from crane.graphs.user_item import symmetric_bipartite_adjacency
    from crane.models.lightgcn import BipartitePropagation

    data, _ = load_train_data(processed_dir, {}, "cpu", None)
    adjacency = symmetric_bipartite_adjacency(data.train_matrix())
    user_rows, item_rows = torch.tensor([0, 3, 5]), torch.tensor([1, 2, 7, 9])
    results = []
    for backend in ("scipy", "torch"):
        propagation = BipartitePropagation(adjacency, data.n_users, "cpu", backend=backend)
        users, items = _seeded_tables(data.n_users, data.n_items)
        out_users, out_items = propagation.rows_step(users, items, user_rows, item_rows)
        (out_users.square().sum() + out_items.sin().sum()).backward()
        results.append((out_users, out_items, users.grad, items.grad))
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["mostpop", "bpr", "lightgcn"])
def test_scoring_all_users_at_once_equals_one_by_one(processed_dir, name):
    data, _ = load_train_data(processed_dir, {}, "cpu", None)
    model = build_model(name, data, defaults(name))
    model.fit()
    model.eval()
    with torch.no_grad():
        model.prepare_scoring()
        users = torch.arange(data.n_users)
        together = model.score(users)
        apart = torch.cat([model.score(users[u:u + 1]) for u in range(data.n_users)])
    assert together.shape == (data.n_users, data.n_items)
    assert torch.allclose(together, apart, atol=1e-6)


def test_bpr_loss_terms_follow_mmrec(processed_dir):
    data, _ = load_train_data(processed_dir, {}, "cpu", None)
    model = build_model("bpr", data, defaults("bpr", reg_weight=0.5))
    users, pos, neg = torch.tensor([0, 1]), torch.tensor([2, 3]), torch.tensor([4, 5])
    terms = model.loss(users, pos, neg)
    u, p, n = (model.user_embedding.weight[users], model.item_embedding.weight[pos],
               model.item_embedding.weight[neg])
    expected_reg = 0.5 * (u.norm() + p.norm() + n.norm()) / 2
    expected_bpr = -torch.log(1e-10 + torch.sigmoid((u * p).sum(1) - (u * n).sum(1))).mean()
    assert torch.allclose(terms["reg"], expected_reg) and torch.allclose(terms["bpr"], expected_bpr)


@pytest.mark.parametrize("zero_users", [False, True], ids=["plain", "zero-user-rows"])
def test_bpr_one_node_loss_equals_the_separate_functions_bit_for_bit(processed_dir, zero_users):
    """BPR-MF's one-node loss against gather_rows + dot_bpr_loss + reg * emb_loss: the same
    loss values and table gradients, bitwise, with repeated users and items and (second
    case) a batch whose user rows are all zero (EmbLoss's norm-0 branch)."""
    from crane.models.base import dot_bpr_loss, emb_loss
    from crane.models.layers import gather_rows
    data, _ = load_train_data(processed_dir, {}, "cpu", None)
    model = build_model("bpr", data, defaults("bpr", reg_weight=0.3))
    generator = torch.Generator().manual_seed(3)
    users = torch.randint(data.n_users, (64,), generator=generator)
    pos, neg = (torch.randint(data.n_items, (64,), generator=generator) for _ in range(2))
    if zero_users:
        with torch.no_grad():
            model.user_embedding.weight[users] = 0.0
    terms = model.loss(users, pos, neg)
    (terms["bpr"] + terms["reg"]).backward()
    fused = [terms["bpr"], terms["reg"], model.user_embedding.weight.grad,
             model.item_embedding.weight.grad]

    model.zero_grad()
    user_e = gather_rows(model.user_embedding.weight, users)
    pos_e, neg_e = gather_rows(model.item_embedding.weight, torch.cat([pos, neg])).split(64)
    bpr = dot_bpr_loss(user_e, pos_e, neg_e)
    reg = model.reg_weight * emb_loss(user_e, pos_e, neg_e)
    (bpr + reg).backward()
    separate = [bpr, reg, model.user_embedding.weight.grad, model.item_embedding.weight.grad]
    for got, want in zip(fused, separate):
        assert torch.equal(got, want)
    assert fused[2].abs().sum() > 0 and fused[3].abs().sum() > 0


@pytest.mark.parametrize("model, hparams, named", [
    ("mostpop", {"no_such_hparam": 1}, r"mostpop: unknown hyper-parameter\(s\) \['no_such_hparam'\]"),
    ("bpr", {"embedding_size": 8}, r"bpr: missing hyper-parameter\(s\) \['reg_weight'\]"),
])
def test_every_model_rejects_unknown_and_missing_hyper_parameters(processed_dir, model, hparams, named):
    data, _ = load_train_data(processed_dir, None, "cpu", None)
    with pytest.raises(ValueError, match=named):
        build_model(model, data, hparams)
