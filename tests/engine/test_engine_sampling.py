"""The negative sampler: never a training item, deterministic under a seed."""

import numpy as np
import pytest
import torch

from crane.engine.sampling import NegativeSampler


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_negatives_are_never_training_items_of_their_user(seed):
    rng = np.random.default_rng(seed)
    n_users, n_items = 50, 30
    # dense users (up to 29 of 30 items) make rejection frequent
    degrees = rng.integers(1, n_items, size=n_users)
    users = np.repeat(np.arange(n_users), degrees)
    items = np.concatenate([rng.choice(n_items, d, replace=False) for d in degrees])
    sampler = NegativeSampler(users, items, n_items, batch_size=64,
                              generator=torch.Generator().manual_seed(seed))
    train = {(int(u), int(i)) for u, i in zip(users, items)}
    seen_positives = []
    for _ in range(3):
        for batch in sampler.epoch():
            assert batch.neg_items is not None
            assert all((int(u), int(j)) not in train
                       for u, j in zip(batch.users, batch.neg_items))
            assert ((batch.neg_items >= 0) & (batch.neg_items < n_items)).all()
            seen_positives.extend(zip(batch.users.tolist(), batch.pos_items.tolist()))
    # every epoch covers every training pair exactly once
    assert sorted(seen_positives) == sorted(list(zip(users.tolist(), items.tolist())) * 3)


def test_same_generator_seed_same_batches_and_shuffled_order():
    users = np.repeat(np.arange(20), 5)
    items = np.tile(np.arange(5), 20)
    def draw(seed):
        sampler = NegativeSampler(users, items, 40, 16, torch.Generator().manual_seed(seed))
        return [torch.stack([b.users, b.pos_items, b.neg_items]) for b in sampler.epoch()]
    a, b, c = draw(3), draw(3), draw(4)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not all(torch.equal(x, y) for x, y in zip(a, c))
    assert not torch.equal(torch.cat(a, dim=1)[0], torch.as_tensor(users))  # shuffled


def test_negatives_uniform_over_allowed_items():
    users = np.zeros(4000, dtype=np.int64)
    items = np.zeros(4000, dtype=np.int64)           # user 0 knows item 0 (repeated rows)
    sampler = NegativeSampler(users, items, 5, 4000, torch.Generator().manual_seed(0))
    counts = np.bincount(sampler.sample_negatives(torch.zeros(40000, dtype=torch.long)),
                         minlength=5)
    assert counts[0] == 0
    assert np.allclose(counts[1:] / 40000, 0.25, atol=0.02)


def test_no_negatives_when_model_does_not_use_them():
    sampler = NegativeSampler(np.array([0, 1]), np.array([1, 0]), 3, 8,
                              torch.Generator().manual_seed(0), use_negatives=False)
    assert all(b.neg_items is None for b in sampler.epoch())


def test_user_with_every_item_is_an_error():
    with pytest.raises(ValueError, match="user 0 interacted with every item"):
        NegativeSampler(np.array([0, 0]), np.array([0, 1]), 2, 8, torch.Generator())


def test_bitmap_and_binary_search_checks_agree(monkeypatch):
    """The bitmap (small tables) and the sorted-key search (large ones) answer alike,
    including for users past the last one with training pairs."""
    from crane.engine import sampling

    rng = np.random.default_rng(5)
    users = rng.integers(0, 40, 600)
    items = rng.integers(0, 13, 600)
    with_bitmap = NegativeSampler(users, items, 13, 64, torch.Generator().manual_seed(1))
    monkeypatch.setattr(sampling, "BITMAP_MAX_BYTES", 0)
    with_search = NegativeSampler(users, items, 13, 64, torch.Generator().manual_seed(1))
    assert with_bitmap.bitmap is not None and with_search.bitmap is None
    query_users = torch.as_tensor(rng.integers(0, 45, 5000))  # users 40-44 have no pairs
    query_items = torch.as_tensor(rng.integers(0, 13, 5000))
    expected = torch.as_tensor([(int(u), int(i)) in set(zip(users.tolist(), items.tolist()))
                                for u, i in zip(query_users, query_items)])
    assert expected.any() and not expected.all()
    assert torch.equal(with_bitmap.is_training_pair(query_users, query_items), expected)
    assert torch.equal(with_search.is_training_pair(query_users, query_items), expected)
    # the same draws, so the same batches
    for a, b in zip(with_bitmap.epoch(), with_search.epoch()):
        assert torch.equal(a.neg_items, b.neg_items)
