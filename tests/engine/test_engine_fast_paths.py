"""The engine's step policy: a model's training steps run in the thread context
crane.ops.threads gives them, with deterministic CPU kernels. (The kernels themselves are
checked against their references in tests/ops.)"""

import pytest
import torch
from torch import nn

from crane.engine.runner import fit_and_evaluate
from crane.engine.runtime import deterministic_cpu_ops
from crane.engine.settings import TrainingConfig
from crane.models.base import Recommender
from crane.ops.threads import sparse_product_threads


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
