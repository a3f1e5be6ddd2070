"""Checks every model test makes, on data from crane.synthetic: gradients reach every
parameter, scores agree however the users are chunked, the loss falls, and the real engine
trains and tests a model."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from crane.synthetic import SyntheticDataset, shuffled_features
from crane.engine.runner import RunResult, fit_and_evaluate
from crane.engine.sampling import NegativeSampler
from crane.engine.settings import TrainingConfig
from crane.models.base import Recommender, TrainData
from crane.tuning import load_model_config


def model_defaults(model: str) -> dict[str, Any]:
    """The `defaults` block of the model's packaged YAML (without its training block)."""
    return load_model_config(model)["defaults"]


def a_batch(data: TrainData, size: int = 64, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """One (users, positives, negatives) batch drawn by the real sampler."""
    generator = torch.Generator().manual_seed(seed)
    sampler = NegativeSampler(data.train_user, data.train_item, data.n_items, size, generator)
    batch = next(iter(sampler.epoch()))
    return batch.users, batch.pos_items, batch.neg_items


def parameters_without_gradient(model: Recommender, users: torch.Tensor, pos: torch.Tensor,
                                neg: torch.Tensor | None) -> list[str]:
    """Names of trainable parameters that one backward pass of the loss leaves at zero."""
    model.train()
    model.zero_grad(set_to_none=True)
    sum(model.loss(users, pos, neg).values()).backward()
    return [name for name, p in model.named_parameters()
            if p.requires_grad and (p.grad is None or not torch.any(p.grad != 0))]


def mean_epoch_losses(model: Recommender, data: TrainData, epochs: int, learning_rate: float,
                      batch_size: int = 256, seed: int = 0) -> list[float]:
    """A plain Adam loop with the trainer's life cycle (start_epoch, the real sampler); the
    mean total loss of every epoch."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    sampler = NegativeSampler(data.train_user, data.train_item, data.n_items, batch_size,
                              generator, use_negatives=model.uses_negatives)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad],
                                 lr=learning_rate)
    means = []
    for epoch in range(epochs):
        model.train()
        model.start_epoch(epoch, generator)
        total, batches = 0.0, 0
        for batch in sampler.epoch():
            optimizer.zero_grad(set_to_none=True)
            loss = sum(model.loss(batch.users, batch.pos_items, batch.neg_items).values())
            loss.backward()
            optimizer.step()
            total, batches = total + loss.item(), batches + 1
        means.append(total / batches)
    return means


def assert_scores_agree_across_chunks(model: Recommender) -> torch.Tensor:
    """All users at once == one by one == uneven chunks == a permutation (after one
    prepare_scoring); returns the scores of all users."""
    n_users = model.n_users
    model.eval()
    with torch.no_grad():
        model.prepare_scoring()
        everyone = model.score(torch.arange(n_users))
        singles = torch.cat([model.score(torch.tensor([u])) for u in range(n_users)])
        bounds = [b for b in (0, 1, 3, 4, 7, 17, 64, 65) if b < n_users] + [n_users]
        chunks = torch.cat([model.score(torch.arange(a, b)) for a, b in zip(bounds, bounds[1:])])
        order = torch.randperm(n_users, generator=torch.Generator().manual_seed(0))
        permuted = model.score(order)
    assert everyone.shape == (n_users, model.n_items)
    assert torch.isfinite(everyone).all()
    torch.testing.assert_close(singles, everyone, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(chunks, everyone, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(permuted, everyone[order], rtol=1e-5, atol=1e-6)
    return everyone


def assert_same_loss_and_gradients(model: Recommender, ours: torch.Tensor,
                                   expected: torch.Tensor, rtol: float = 1e-5,
                                   atol: float = 1e-6) -> None:
    """Equal loss values and equal gradients for every trainable parameter."""
    torch.testing.assert_close(ours, expected, rtol=rtol, atol=atol)
    names, params = zip(*[(n, p) for n, p in model.named_parameters() if p.requires_grad])
    grads = torch.autograd.grad(ours, params, allow_unused=True)
    expected_grads = torch.autograd.grad(expected, params, allow_unused=True)
    for name, grad, want in zip(names, grads, expected_grads):
        if want is None:
            assert grad is None or not torch.any(grad != 0), name
            continue
        assert grad is not None, f"{name}: no gradient"
        torch.testing.assert_close(grad, want, rtol=1e-4, atol=1e-6, msg=lambda m: f"{name}: {m}")


def train_and_test(dataset: SyntheticDataset, model: str, hparams: dict, epochs: int = 40,
                   learning_rate: float = 5e-3, seed: int = 0,
                   data: TrainData | None = None) -> RunResult:
    """The real trainer on `dataset` (or on `data`, e.g. with shuffled features)."""
    config = TrainingConfig(epochs=epochs, patience=epochs, batch_size=256,
                            learning_rate=learning_rate, eval_batch_size=128)
    return fit_and_evaluate(data or dataset.data, dataset.interactions, model, hparams,
                            seed, config, log=lambda _: None)


def untimed_history(history: list[dict]) -> list[dict]:
    """A run's history without its timings: what a reproduced run must repeat exactly."""
    return [{k: v for k, v in row.items() if "seconds" not in k} for row in history]


def assert_same_run(first: RunResult, second: RunResult) -> None:
    """Two runs of one seed: the same test metrics and the same history, timings aside."""
    assert first.test == second.test
    assert untimed_history(first.history) == untimed_history(second.history)


def assert_learns_from_features_and_reproduces(
        dataset: SyntheticDataset, model: str, epochs: int, learning_rate: float,
        blind_margin: float) -> tuple[RunResult, RunResult]:
    """`model` at its defaults on styled data: test Recall@20 above 3x MostPop's, more than
    `blind_margin` above the same model on shuffled feature rows, and a second run of the
    seed the same run. Returns both runs."""
    hparams = model_defaults(model)
    trained = train_and_test(dataset, model, hparams, epochs=epochs, learning_rate=learning_rate)
    again = train_and_test(dataset, model, hparams, epochs=epochs, learning_rate=learning_rate)
    mostpop = train_and_test(dataset, "mostpop", {}, epochs=1)
    blind = train_and_test(dataset, model, hparams, epochs=epochs, learning_rate=learning_rate,
                           data=shuffled_features(dataset.data))
    recall = trained.test["recall@20"]
    assert recall > 3 * mostpop.test["recall@20"], (recall, mostpop.test)
    assert blind.test["recall@20"] < recall - blind_margin, (recall, blind.test)
    assert_same_run(trained, again)
    return trained, again


def random_recall_at_20(dataset: SyntheticDataset) -> float:
    """Expected Recall@20 of a random ranking (training items masked)."""
    n_train = np.bincount(dataset.data.train_user, minlength=dataset.data.n_users)
    return float(np.mean(20.0 / (dataset.data.n_items - n_train)))
