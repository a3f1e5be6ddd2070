"""The evaluator's CPU chunk cap (a speed and memory measure) never changes the metrics."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from crane.engine.evaluate import CPU_SCORE_ENTRIES, MIN_CHUNK_USERS, FullRankingEvaluator, chunk_users


def test_chunk_users_caps_cpu_blocks_only():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert chunk_users(4096, 7050, cpu) == CPU_SCORE_ENTRIES // 7050  # Baby: 1189
    assert chunk_users(4096, 63001, cpu) == MIN_CHUNK_USERS  # Electronics: the floor
    assert chunk_users(7, 7050, cpu) == 7  # a small configured batch is kept
    assert chunk_users(4096, 100, cpu) == 4096
    assert chunk_users(4096, 63001, cuda) == 4096  # GPUs keep the configured batch


class _Factors(torch.nn.Module):
    def __init__(self, users: torch.Tensor, items: torch.Tensor):
        super().__init__()
        self.users, self.items = users, items

    def prepare_scoring(self) -> None:
        pass

    def score(self, users: torch.Tensor) -> torch.Tensor:
        return self.users[users] @ self.items.T


def test_capped_chunks_give_the_same_metrics():
    rng = np.random.default_rng(0)
    n_users, n_items = 3000, 5000  # cap: 1677 users per chunk, so two chunks
    def pairs(n):
        return sp.csr_matrix((np.ones(n, np.float32), (rng.integers(0, n_users, n),
                                                        rng.integers(0, n_items, n))),
                             shape=(n_users, n_items))
    truth, train = pairs(6000), pairs(20000)
    truth.data[:] = 1
    train.data[:] = 1
    model = _Factors(torch.randn(n_users, 16), torch.randn(n_items, 16))
    capped = FullRankingEvaluator(truth, train, batch_size=4096)
    assert capped.chunk_size == CPU_SCORE_ENTRIES // n_items < len(capped.users)
    whole = capped.evaluate(model, topk=20)
    single = FullRankingEvaluator(truth, train, batch_size=len(capped.users))
    single.chunk_size = len(single.users)  # one block, as without the cap
    reference = single.evaluate(model, topk=20)
    np.testing.assert_array_equal(whole.topk, reference.topk)
    assert whole.metrics == reference.metrics
