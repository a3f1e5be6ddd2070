"""Small synthetic data and checks shared by the VBPR, LATTICE, FREEDOM and ItemKNN-CBF tests.

`styled` plants latent styles: item i has style i % n_styles, visible (with noise) in every
modality's features; each user likes one style. Within a style every other item is "cold":
it never occurs in training but is as likely as a warm one in validation and test. Only a
model that reads the features can rank cold items, so shuffling the feature rows must hurt
it, while MostPop and random stay low.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Iterator

import numpy as np
import torch

from crane.data.processed import TEST, TRAIN, VALID, Interactions
from crane.models.base import Recommender, TrainData
from crane.engine.runner import RunResult, fit_and_evaluate
from crane.engine.sampling import NegativeSampler
from crane.engine.settings import TrainingConfig
from tests.models._threads import one_torch_thread

FEATURE_SIZES = {"image": 32, "text": 16}


def single_thread() -> Iterator[None]:
    """Tiny models: a second intra-op thread only fights the other test processes on a
    shared 2-core machine. Use as the body of a module-scoped autouse fixture."""
    with one_torch_thread():
        yield


@dataclass
class Styled:
    data: TrainData
    interactions: Interactions


def styled(n_users: int = 300, n_styles: int = 8, items_per_style: int = 24, n_train: int = 6,
           n_test: int = 3, noise: float = 0.6, seed: int = 0,
           modalities: tuple[str, ...] = ("image", "text")) -> Styled:
    rng = np.random.default_rng(seed)
    n_items = n_styles * items_per_style
    user_style = rng.integers(n_styles, size=n_users)
    # Item of style s at position p: s + n_styles * p; even positions warm, odd ones cold.
    positions = np.arange(items_per_style)
    warm, cold = positions[::2], positions[1::2]
    if n_train > len(warm) or n_test + 1 > len(warm) - n_train + len(cold):
        raise ValueError("not enough items per style for the requested split")
    warm_order = rng.permuted(np.tile(warm, (n_users, 1)), axis=1)
    train_pos = warm_order[:, :n_train]
    rest = rng.permuted(np.concatenate([warm_order[:, n_train:], np.tile(cold, (n_users, 1))],
                                       axis=1), axis=1)
    held_pos = rest[:, :1 + n_test]  # one validation item, then the test items
    train_items = user_style[:, None] + n_styles * train_pos
    held_items = user_style[:, None] + n_styles * held_pos

    user = np.concatenate([np.repeat(np.arange(n_users), n_train),
                           np.repeat(np.arange(n_users), 1 + n_test)]).astype(np.int64)
    item = np.concatenate([train_items.ravel(), held_items.ravel()]).astype(np.int64)
    split = np.concatenate([np.full(train_items.size, TRAIN),
                            np.tile([VALID] + [TEST] * n_test, n_users)]).astype(np.int8)
    interactions = Interactions(n_users, n_items, user, item, split)

    item_style = np.arange(n_items) % n_styles
    features = {}
    for modality in modalities:
        centres = rng.normal(size=(n_styles, FEATURE_SIZES[modality]))
        features[modality] = (centres[item_style] + noise * rng.normal(
            size=(n_items, FEATURE_SIZES[modality]))).astype(np.float32)
    train_user, train_item = interactions.part(TRAIN)
    return Styled(TrainData(n_users, n_items, train_user, train_item, features), interactions)


def shuffled(data: TrainData, seed: int = 1) -> TrainData:
    """The same data with the rows of every feature matrix permuted (content made useless)."""
    order = np.random.default_rng(seed).permutation(data.n_items)
    return replace(data, features={m: f[order] for m, f in data.features.items()},
                   feature_hashes={})


def only(data: TrainData, *modalities: str) -> TrainData:
    return replace(data, features={m: data.features[m] for m in modalities},
                   feature_hashes={m: h for m, h in data.feature_hashes.items() if m in modalities})


def a_batch(data: TrainData, size: int = 64, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """One (users, positives, negatives) batch drawn by the real sampler."""
    generator = torch.Generator().manual_seed(seed)
    sampler = NegativeSampler(data.train_user, data.train_item, data.n_items, size, generator)
    batch = next(iter(sampler.epoch()))
    return batch.users, batch.pos_items, batch.neg_items


def parameters_without_gradient(model: Recommender, users: torch.Tensor, pos: torch.Tensor,
                                neg: torch.Tensor) -> list[str]:
    """Trainable parameters that one backward pass of the loss leaves without gradient."""
    model.train()
    model.zero_grad(set_to_none=True)
    sum(model.loss(users, pos, neg).values()).backward()
    return [name for name, p in model.named_parameters()
            if p.requires_grad and (p.grad is None or not torch.any(p.grad != 0))]


def epoch_losses(model: Recommender, data: TrainData, epochs: int, batch_size: int = 256,
                 learning_rate: float = 5e-3, seed: int = 0) -> list[float]:
    """Mean total loss of each epoch of a plain Adam loop (the trainer's life cycle)."""
    generator = torch.Generator().manual_seed(seed)
    sampler = NegativeSampler(data.train_user, data.train_item, data.n_items, batch_size,
                              generator)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad],
                                 lr=learning_rate)
    means = []
    for epoch in range(epochs):
        model.train()
        model.start_epoch(epoch, generator)
        total = batches = 0
        for batch in sampler.epoch():
            optimizer.zero_grad(set_to_none=True)
            loss = sum(model.loss(batch.users, batch.pos_items, batch.neg_items).values())
            loss.backward()
            optimizer.step()
            total, batches = total + float(loss.detach()), batches + 1
        means.append(total / batches)
    return means


def assert_scores_agree_across_chunks(model: Recommender) -> torch.Tensor:
    """All users at once == one by one == uneven chunks == a permutation; returns the scores."""
    n_users = model.n_users
    model.eval()
    with torch.no_grad():
        model.prepare_scoring()
        everyone = model.score(torch.arange(n_users))
        singles = torch.cat([model.score(torch.tensor([u])) for u in range(n_users)])
        bounds = [0, 1, 7, 64, 65, n_users]
        chunks = torch.cat([model.score(torch.arange(a, b)) for a, b in zip(bounds, bounds[1:])])
        order = torch.randperm(n_users, generator=torch.Generator().manual_seed(0))
        permuted = model.score(order)
    assert everyone.shape == (n_users, model.n_items)
    assert torch.isfinite(everyone).all()
    torch.testing.assert_close(singles, everyone, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(chunks, everyone, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(permuted, everyone[order], rtol=1e-5, atol=1e-5)
    return everyone


def train_and_test(styled_data: Styled, model: str, hparams: dict, epochs: int = 40,
                   learning_rate: float = 5e-3, seed: int = 0,
                   data: TrainData | None = None) -> RunResult:
    """The real trainer on `styled_data` (or on `data`, e.g. with shuffled features)."""
    config = TrainingConfig(epochs=epochs, patience=epochs, batch_size=256,
                            learning_rate=learning_rate, eval_batch_size=128)
    return fit_and_evaluate(data or styled_data.data, styled_data.interactions, model, hparams,
                            seed, config, log=lambda _: None)


def random_recall_at_20(styled_data: Styled) -> float:
    """Expected Recall@20 of a random ranking (training items masked)."""
    n_train = np.bincount(styled_data.data.train_user, minlength=styled_data.data.n_users)
    return float(np.mean(20.0 / (styled_data.data.n_items - n_train)))
