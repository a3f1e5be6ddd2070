"""Training batches: shuffled positives, one uniform negative each, never a training item.

Negatives are drawn for a whole epoch at once. A draw is rejected when (user, item) is a
training pair; only the shrinking set of rejected draws is redrawn. The check reads one bit
of a users x items bitmap, far cheaper than a binary search in the sorted keys
`user * n_items + item`; past `BITMAP_MAX_BYTES` it falls back to the binary search. Both
give the same answers, so the same draws (tests/engine/test_engine_sampling.py). All
randomness comes from one `torch.Generator`, so a seed (and a saved generator state)
reproduces every batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch

BITMAP_MAX_BYTES = 256 << 20


@dataclass
class Batch:
    users: torch.Tensor
    pos_items: torch.Tensor
    neg_items: torch.Tensor | None


class NegativeSampler:
    """Epochs of (user, positive, negative) batches over the training interactions."""

    def __init__(self, train_user: np.ndarray, train_item: np.ndarray, n_items: int,
                 batch_size: int, generator: torch.Generator, use_negatives: bool = True,
                 device: torch.device | str = "cpu"):
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if len(train_user) == 0:
            raise ValueError("no training interactions to sample from")
        self.n_items = int(n_items)
        self.batch_size = int(batch_size)
        self.generator = generator
        self.use_negatives = use_negatives
        self.device = torch.device(device)
        self.users = torch.as_tensor(np.asarray(train_user, dtype=np.int64))
        self.items = torch.as_tensor(np.asarray(train_item, dtype=np.int64))
        self.keys = torch.unique(self.users * self.n_items + self.items)  # sorted, no duplicates
        # only negative draws read it (is_training_pair falls back to the sorted keys)
        self.bitmap = (training_pair_bitmap(self.keys.numpy(), int(self.users.max()) + 1,
                                            self.n_items) if use_negatives else None)
        if use_negatives:
            per_user = torch.bincount(self.keys // self.n_items)
            full = torch.nonzero(per_user >= self.n_items).flatten()
            if len(full):
                raise ValueError(f"user {int(full[0])} interacted with every item: "
                                 "no negative item can be drawn for it")

    def __len__(self) -> int:
        return -(-len(self.users) // self.batch_size)

    def is_training_pair(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Boolean mask: which (user, item) pairs are training interactions."""
        query = users * self.n_items + items
        if self.bitmap is not None:
            bits = query.numpy()
            if len(bits) and bits.max() >= len(self.bitmap) * 8:  # users past the last one
                found = np.zeros(len(bits), dtype=bool)         # with training pairs
                inside = bits < len(self.bitmap) * 8
                found[inside] = _read_bits(self.bitmap, bits[inside])
                return torch.from_numpy(found)
            return torch.from_numpy(_read_bits(self.bitmap, bits))
        where = torch.searchsorted(self.keys, query).clamp_(max=len(self.keys) - 1)
        return self.keys[where] == query

    def sample_negatives(self, users: torch.Tensor) -> torch.Tensor:
        """One uniform item per entry of `users`, none of them a training item of that user."""
        negatives = torch.randint(self.n_items, (len(users),), generator=self.generator)
        rejected = torch.nonzero(self.is_training_pair(users, negatives)).flatten()
        while len(rejected):
            redraw = torch.randint(self.n_items, (len(rejected),), generator=self.generator)
            negatives[rejected] = redraw
            still = self.is_training_pair(users[rejected], redraw)
            rejected = rejected[still]
        return negatives

    def epoch(self) -> Iterator[Batch]:
        """Batches of one epoch, positives in a fresh random order."""
        order = torch.randperm(len(self.users), generator=self.generator)
        users, items = self.users[order], self.items[order]
        negatives = self.sample_negatives(users) if self.use_negatives else None
        users, items = users.to(self.device), items.to(self.device)
        if negatives is not None:
            negatives = negatives.to(self.device)
        for start in range(0, len(users), self.batch_size):
            stop = start + self.batch_size
            yield Batch(users[start:stop], items[start:stop],
                        None if negatives is None else negatives[start:stop])


def training_pair_bitmap(keys: np.ndarray, n_users: int, n_items: int) -> np.ndarray | None:
    """Bit `user * n_items + item` set for every training pair (`keys`), packed 8 to a byte;
    None when it would take more than BITMAP_MAX_BYTES."""
    n_bytes = -(-n_users * n_items // 8)
    if n_bytes > BITMAP_MAX_BYTES:
        return None
    bitmap = np.zeros(n_bytes, dtype=np.uint8)
    np.bitwise_or.at(bitmap, keys >> 3, np.left_shift(1, keys & 7).astype(np.uint8))
    return bitmap


def _read_bits(bitmap: np.ndarray, bits: np.ndarray) -> np.ndarray:
    return ((bitmap[bits >> 3] >> (bits & 7).astype(np.uint8)) & 1).astype(bool)
