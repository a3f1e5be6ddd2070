"""Hand-written backward passes and the step's thread policy, against their references."""

import threading

import numpy as np
import pytest
import torch
from torch import nn

from crane.models.base import Recommender, dot_bpr_loss, emb_loss
from crane.models.layers import gather_rows
from crane.ops.threads import batch_ops_on_one_thread, run_pair, sparse_product_threads
from crane.engine.runner import fit_and_evaluate
from crane.engine.runtime import deterministic_cpu_ops
from crane.engine.settings import TrainingConfig
from tests.models._threads import one_torch_thread


def tables(*shapes, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(*shape, generator=generator, requires_grad=True) for shape in shapes]


def reference_bpr(u, p, n):
    return -torch.log(1e-10 + torch.sigmoid((u * p).sum(1) - (u * n).sum(1))).mean()


def reference_emb(*embeddings):
    return sum(torch.norm(e, p=2) for e in embeddings) / embeddings[-1].shape[0]


@pytest.mark.parametrize("loss, reference", [(dot_bpr_loss, reference_bpr),
                                             (emb_loss, reference_emb)])
def test_hand_written_backward_equals_autograd(loss, reference):
    ours, theirs = tables((64, 8), (64, 8), (64, 8)), tables((64, 8), (64, 8), (64, 8))
    value, expected = loss(*ours), reference(*theirs)
    assert torch.equal(value, expected)          # the forward is the reference's own ops
    (3.0 * value).backward()
    (3.0 * expected).backward()
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-5, atol=1e-7)


def test_bpr_backward_with_saturated_scores_stays_finite():
    u, p, n = tables((4, 3), (4, 3), (4, 3))
    with torch.no_grad():
        p.mul_(100.0), n.mul_(-100.0)   # sigmoid -> 1 and -> 0 across the rows
    dot_bpr_loss(u, p, -p).backward()
    assert all(torch.isfinite(t.grad).all() for t in (u, p))


def test_emb_loss_of_a_zero_table_has_zero_gradient():
    zero, other = torch.zeros(5, 4, requires_grad=True), tables((5, 4))[0]
    emb_loss(zero, other).backward()
    assert torch.equal(zero.grad, torch.zeros(5, 4))
    torch.testing.assert_close(other.grad, other.detach() / other.detach().norm() / 5)


def test_gather_rows_gradient_is_the_embedding_gradient():
    index = torch.tensor([3, 0, 3, 7, 7, 7, 1])
    table = tables((10, 6))[0]
    embedding = nn.Embedding(10, 6)
    with torch.no_grad():
        embedding.weight.copy_(table)
    grad = torch.randn(len(index), 6, generator=torch.Generator().manual_seed(1))
    with one_torch_thread():
        rows = gather_rows(table, index)
        assert torch.equal(rows, embedding(index))
        rows.backward(grad)
        embedding(index).backward(grad)
    assert torch.equal(table.grad, embedding.weight.grad)


def test_one_thread_block_keeps_the_budget_for_products():
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with batch_ops_on_one_thread():
            assert torch.get_num_threads() == 1
            assert sparse_product_threads() == 2
            names = run_pair(lambda: threading.current_thread().name,
                             lambda: threading.current_thread().name)
            assert names[0] != names[1]          # the pair really ran on two threads
        assert torch.get_num_threads() == 2 and sparse_product_threads() == 2
        torch.set_num_threads(1)
        names = run_pair(lambda: threading.current_thread().name,
                         lambda: threading.current_thread().name)
        assert names[0] == names[1] == threading.current_thread().name
    finally:
        torch.set_num_threads(threads)


def test_run_pair_returns_results_in_order_and_raises_errors():
    torch_threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        assert run_pair(lambda: "first", lambda: "second") == ("first", "second")
        with pytest.raises(ZeroDivisionError):
            run_pair(lambda: 1 / 0, lambda: 2)
    finally:
        torch.set_num_threads(torch_threads)


class ThreadProbe(Recommender):
    """Records the torch threads and the product budget its loss runs under."""

    seen: list = []
    deterministic: list = []

    def __init__(self, data, hparams):
        super().__init__(data, hparams)
        self.weight = nn.Parameter(torch.zeros(data.n_items))

    def loss(self, users, pos_items, neg_items):
        ThreadProbe.seen.append((torch.get_num_threads(), sparse_product_threads()))
        ThreadProbe.deterministic.append(torch.are_deterministic_algorithms_enabled())
        return {"bpr": -(self.weight[pos_items] - self.weight[neg_items]).sigmoid().log().mean()}

    def score(self, users):
        return self.weight.expand(len(users), -1)


@pytest.mark.parametrize("single", [True, False])
def test_trainer_runs_opted_in_steps_on_one_thread(clustered, train_data_of, single,
                                                   monkeypatch):
    from crane import models
    from crane.ops import threads as thread_policy

    probe = type("Probe", (ThreadProbe,), {"name": "test_thread_probe"})
    monkeypatch.setitem(models._REGISTRY, "test_thread_probe", probe)
    if single:
        monkeypatch.setattr(thread_policy, "ONE_THREAD_STEP_MODELS",
                            thread_policy.ONE_THREAD_STEP_MODELS | {"test_thread_probe"})
    ThreadProbe.seen = []
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        fit_and_evaluate(train_data_of(clustered), clustered, "test_thread_probe", {}, seed=0,
                         training=TrainingConfig(epochs=1), log=lambda _: None)
        assert torch.get_num_threads() == 2      # restored after the epoch
    finally:
        torch.set_num_threads(threads)
    assert ThreadProbe.seen and set(ThreadProbe.seen) == {(1, 2) if single else (2, 2)}


def test_repeated_index_backward_is_deterministic_inside_the_block():
    """On two threads the backward of table[index] with repeated indices adds rows in thread
    order; inside deterministic_cpu_ops it equals index_add_ (index order) every time."""
    generator = torch.Generator().manual_seed(0)
    grad = torch.randn(6144, 64, generator=generator)
    index = torch.randint(0, 500, (6144,), generator=generator)
    expected = torch.zeros(500, 64).index_add_(0, index, grad)

    def index_backward():
        table = torch.zeros(500, 64, requires_grad=True)
        table[index].backward(grad)
        return table.grad

    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with deterministic_cpu_ops(torch.device("cpu")):
            assert torch.are_deterministic_algorithms_enabled()
            assert all(torch.equal(index_backward(), expected) for _ in range(10))
    finally:
        torch.set_num_threads(threads)
    assert not torch.are_deterministic_algorithms_enabled()   # restored


def test_trainer_trains_with_deterministic_cpu_ops(clustered, train_data_of, monkeypatch):
    from crane import models

    monkeypatch.setitem(models._REGISTRY, "test_thread_probe", ThreadProbe)
    ThreadProbe.deterministic = []
    fit_and_evaluate(train_data_of(clustered), clustered, "test_thread_probe", {}, seed=0,
                     training=TrainingConfig(epochs=1), log=lambda _: None)
    assert ThreadProbe.deterministic and all(ThreadProbe.deterministic)
    assert not torch.are_deterministic_algorithms_enabled()
