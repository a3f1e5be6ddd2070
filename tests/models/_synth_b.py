"""Small synthetic datasets and checks shared by the BM3, MGCN and LGMRec tests.

`styled_dataset` plants latent styles: every item has one style, visible (with noise) in its
image and text features; every user likes one style. Half the items are "cold": rare in
training but as likely as the others in validation and test, so that only a model that reads
the features can rank them, and shuffling the feature rows must hurt it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from crane.data.processed import TEST, TRAIN, VALID, Interactions
from crane.models.base import Recommender, TrainData
from crane.engine.sampling import NegativeSampler
from tests.models._threads import one_torch_thread  # noqa: F401 (re-exported)

FEATURE_SIZES = {"image": 48, "text": 24}


@dataclass
class Synthetic:
    data: TrainData
    interactions: Interactions


def random_data(n_users: int = 40, n_items: int = 30, per_user: int = 5, seed: int = 0,
                modalities: tuple[str, ...] = ("image", "text")) -> TrainData:
    """Unstructured training data for shape, gradient and scoring checks."""
    rng = np.random.default_rng(seed)
    users = np.repeat(np.arange(n_users), per_user)
    items = np.concatenate([rng.choice(n_items, per_user, replace=False) for _ in range(n_users)])
    features = {m: rng.normal(size=(n_items, FEATURE_SIZES[m])).astype(np.float32)
                for m in modalities}
    return TrainData(n_users, n_items, users.astype(np.int64), items.astype(np.int64), features)


def styled_dataset(n_users: int = 400, n_items: int = 240, n_styles: int = 8,
                   n_train: int = 8, n_valid: int = 1, n_test: int = 3, cold_share: float = 0.5,
                   noise: float = 0.5, cold_in_train: bool = True, seed: int = 0,
                   modalities: tuple[str, ...] = ("image", "text")) -> Synthetic:
    """Styled users and items; training draws warm items only (plus, with `cold_in_train`,
    one interaction per cold item, so that it has a graph node)."""
    rng = np.random.default_rng(seed)
    item_style = np.arange(n_items) % n_styles
    cold = rng.random(n_items) < cold_share
    user_style = rng.integers(n_styles, size=n_users)

    def draw(pool_mask: np.ndarray, count: int, taken: list[set[int]]) -> np.ndarray:
        picks = np.empty((n_users, count), np.int64)
        for u in range(n_users):  # test data only: a few hundred users
            pool = np.flatnonzero(pool_mask & (item_style == user_style[u]))
            pool = np.setdiff1d(pool, list(taken[u]))
            picks[u] = rng.choice(pool, count, replace=False)
            taken[u].update(picks[u].tolist())
        return picks

    taken: list[set[int]] = [set() for _ in range(n_users)]
    train = draw(~cold, n_train, taken)
    held_out = draw(np.ones(n_items, bool), n_valid + n_test, taken)
    # Every cold item once in training, by a user of its style, so it has a graph node.
    cold_items = np.flatnonzero(cold)
    cold_users = np.array([rng.choice(np.flatnonzero(user_style == item_style[i]))
                           for i in cold_items], np.int64)
    keep = np.array([cold_in_train and i not in taken[u]
                     for u, i in zip(cold_users, cold_items)], bool)

    user = np.concatenate([np.repeat(np.arange(n_users), n_train), cold_users[keep],
                           np.repeat(np.arange(n_users), n_valid + n_test)])
    item = np.concatenate([train.ravel(), cold_items[keep], held_out.ravel()])
    split = np.concatenate([np.full(train.size + keep.sum(), TRAIN),
                            np.tile([VALID] * n_valid + [TEST] * n_test, n_users)]).astype(np.int8)
    interactions = Interactions(n_users, n_items, user.astype(np.int64), item, split)

    features = {}
    for modality in modalities:
        centres = rng.normal(size=(n_styles, FEATURE_SIZES[modality]))
        features[modality] = (centres[item_style] + noise * rng.normal(
            size=(n_items, FEATURE_SIZES[modality]))).astype(np.float32)
    train_user, train_item = interactions.part(TRAIN)
    data = TrainData(n_users, n_items, train_user, train_item, features)
    return Synthetic(data, interactions)


def with_shuffled_features(data: TrainData, seed: int = 1) -> TrainData:
    """The same data with the item rows of every feature matrix permuted."""
    order = np.random.default_rng(seed).permutation(data.n_items)
    return replace(data, features={m: f[order] for m, f in data.features.items()},
                   feature_hashes={})


def train_epochs(model: Recommender, data: TrainData, epochs: int, batch_size: int = 256,
                 learning_rate: float = 1e-3, seed: int = 0) -> list[float]:
    """A plain Adam loop; returns the mean total loss of every epoch."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    sampler = NegativeSampler(data.train_user, data.train_item, data.n_items, batch_size,
                              generator, use_negatives=model.uses_negatives)
    optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate)
    means = []
    for epoch in range(epochs):
        model.train()
        model.start_epoch(epoch, generator)
        total, batches = 0.0, 0
        for batch in sampler.epoch():
            loss = sum(model.loss(batch.users, batch.pos_items, batch.neg_items).values())
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total, batches = total + loss.item(), batches + 1
        means.append(total / batches)
    return means


def parameters_without_gradient(model: Recommender, users: torch.Tensor, pos: torch.Tensor,
                                neg: torch.Tensor | None) -> list[str]:
    """Names of trainable parameters that one backward pass of the loss leaves at zero."""
    model.train()
    model.zero_grad()
    sum(model.loss(users, pos, neg).values()).backward()
    return [name for name, p in model.named_parameters()
            if p.requires_grad and (p.grad is None or not torch.any(p.grad != 0))]


def scores_agree_across_chunks(model: Recommender, n_users: int) -> None:
    """All users at once == one by one == uneven chunks (after one prepare_scoring)."""
    model.eval()
    with torch.no_grad():
        model.prepare_scoring()
        everyone = model.score(torch.arange(n_users))
        singles = torch.cat([model.score(torch.tensor([u])) for u in range(n_users)])
        bounds = [0, 3, 4, 17, n_users]
        chunks = torch.cat([model.score(torch.arange(a, b)) for a, b in zip(bounds, bounds[1:])])
        shuffled = torch.randperm(n_users)
        permuted = model.score(shuffled)
    assert everyone.shape == (n_users, model.n_items)
    torch.testing.assert_close(singles, everyone, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(chunks, everyone, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(permuted, everyone[shuffled], rtol=1e-5, atol=1e-6)


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
