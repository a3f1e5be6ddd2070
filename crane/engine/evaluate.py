"""Full-ranking evaluation: every user with held-out items against every item.

Users are scored in chunks (`model.score`; on CPU about 32 MiB of scores per chunk at most,
see `chunk_users`), their training items (and, for the test pass on request, their
validation items) are masked out, and the top max(K) items are taken: on CPU with
`crane.engine.topk.top_k_rows` (exact; ties go to the lower item id), chunks spread over
`torch.get_num_threads()` threads; on a GPU with `torch.topk`. Hits are then looked up, for
the chunk's users at once, in the sorted keys `user * n_items + item` of the held-out pairs,
and the chunk's metrics computed in one vectorised call (per user, so chunking changes no
value). The only Python loop is over user chunks. Tested against a plain per-user loop in
tests/engine/test_engine_evaluate.py; chunk sizes in tests/benchmarks/test_eval_chunking.py.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from crane.data.processed import TEST, TRAIN, VALID, Interactions
from crane.engine.metrics import DEFAULT_KS, metric_columns, ranking_metrics
from crane.engine.topk import top_k_rows
from crane.models.base import Recommender
from crane.ops.threads import single_threaded_kernels

# On CPU a chunk's (users x items) float32 scores are kept to about this many entries
# (32 MiB): blocks this small are reused from the heap instead of being freshly mapped (and
# page-faulted) for every chunk, and a pass over tens of thousands of items stays within a
# few hundred MiB.
CPU_SCORE_ENTRIES = 1 << 23
MIN_CHUNK_USERS = 256


def chunk_users(batch_size: int, n_items: int, device: torch.device) -> int:
    """Users scored at once: `batch_size`, capped on CPU by CPU_SCORE_ENTRIES."""
    if device.type != "cpu":
        return batch_size
    return min(batch_size, max(MIN_CHUNK_USERS, CPU_SCORE_ENTRIES // max(n_items, 1)))


@dataclass
class EvaluationResult:
    metrics: dict[str, float]          # mean over evaluated users
    user_metrics: pd.DataFrame         # user_id, n_train, n_test, one column per metric
    topk: np.ndarray | None = None     # (n_users evaluated, K) item ids, best first
    users: np.ndarray | None = None    # the evaluated users, in the row order of `topk`


class FullRankingEvaluator:
    """Ranks all items for the users of `truth` and scores the top-K against `truth`.

    `truth` and `mask` are binary U x N matrices: held-out items to find, and items that may
    never be recommended (the user's training items, optionally validation items too).
    """

    def __init__(self, truth: sp.csr_matrix, mask: sp.csr_matrix,
                 n_train: np.ndarray | None = None, ks: tuple[int, ...] = DEFAULT_KS,
                 batch_size: int = 4096, device: torch.device | str = "cpu"):
        if truth.shape != mask.shape:
            raise ValueError(f"truth {truth.shape} and mask {mask.shape} differ in shape")
        if batch_size < 1:
            raise ValueError(f"eval batch_size must be positive, got {batch_size}")
        self.n_users, self.n_items = truth.shape
        self.ks = tuple(sorted(ks))
        self.batch_size = int(batch_size)
        self.device = torch.device(device)
        self.chunk_size = chunk_users(self.batch_size, self.n_items, self.device)
        truth = sp.csr_matrix(truth)
        n_test = np.diff(truth.indptr)
        self.users = np.flatnonzero(n_test > 0).astype(np.int64)
        self.n_test = n_test[self.users].astype(np.int64)
        self.n_train = (np.zeros(self.n_users, np.int64) if n_train is None
                        else np.asarray(n_train, np.int64))[self.users]

        coo = truth.tocoo()
        keys = np.unique(coo.row.astype(np.int64) * self.n_items + coo.col)
        self._truth_keys = keys
        # Mask rows restricted to (and ordered like) the evaluated users, as flat offsets
        # row * n_items + item into the scores of all evaluated users.
        mask_rows = sp.csr_matrix(mask)[self.users]
        self._mask_indptr = mask_rows.indptr.astype(np.int64)
        self._mask_flat = (np.repeat(np.arange(len(self.users), dtype=np.int64),
                                     np.diff(mask_rows.indptr)) * self.n_items
                           + mask_rows.indices.astype(np.int64))

    @classmethod
    def for_split(cls, interactions: Interactions, which: int, mask_valid_in_test: bool = False,
                  ks: tuple[int, ...] = DEFAULT_KS, batch_size: int = 4096,
                  device: torch.device | str = "cpu") -> "FullRankingEvaluator":
        """Evaluator of the validation (`VALID`) or test (`TEST`) split of `interactions`."""
        if which not in (VALID, TEST):
            raise ValueError(f"can only evaluate the validation or test split, got {which}")
        train = interactions.csr(TRAIN)
        mask = train
        if which == TEST and mask_valid_in_test:
            mask = (train + interactions.csr(VALID)).tocsr()
            mask.data[:] = 1.0
        return cls(interactions.csr(which), mask, n_train=np.diff(train.indptr), ks=ks,
                   batch_size=batch_size, device=device)

    def evaluate(self, model: Recommender, topk: int = 0) -> EvaluationResult:
        """Metrics of `model` (eval mode, no gradients); `topk` > 0 also returns top-K lists."""
        n_ranks = min(max(max(self.ks), topk), self.n_items)
        ranked = np.empty((len(self.users), n_ranks), np.int64)
        per_user = {name: np.empty(len(self.users)) for name in metric_columns(self.ks)}
        starts = range(0, len(self.users), self.chunk_size)
        workers = min(torch.get_num_threads(), len(starts))
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                model.prepare_scoring()
            if self.device.type == "cpu" and workers > 1:
                # One chunk per thread, each single-threaded: no BLAS/OpenMP thread team
                # waiting on a busy core, and numpy's top-k (one thread) runs on both cores.
                with single_threaded_kernels(), ThreadPoolExecutor(workers) as pool:
                    for _ in pool.map(lambda s: self._rank_chunk(model, s, ranked, per_user),
                                      starts):
                        pass
            else:
                for start in starts:
                    self._rank_chunk(model, start, ranked, per_user)
        finally:
            model.train(was_training)
        frame = pd.DataFrame({"user_id": self.users, "n_train": self.n_train,
                              "n_test": self.n_test, **per_user})
        means = {name: float(values.mean()) if len(values) else float("nan")
                 for name, values in per_user.items()}
        top_lists = ranked[:, :min(topk, self.n_items)].copy() if topk else None
        return EvaluationResult(means, frame, top_lists, self.users)

    def _rank_chunk(self, model: Recommender, start: int, ranked: np.ndarray,
                    per_user: dict[str, np.ndarray]) -> None:
        """Writes the top items of the users in chunk `start` into their rows of `ranked`,
        and their metrics (computed row by row, so on the worker threads) into `per_user`."""
        stop = min(start + self.chunk_size, len(self.users))
        with torch.no_grad():  # grad mode is per thread
            scores = model.score(torch.as_tensor(self.users[start:stop], device=self.device))
            if scores.shape != (stop - start, self.n_items):
                raise ValueError(f"{type(model).__name__}.score returned shape "
                                 f"{tuple(scores.shape)}, expected ({stop - start}, "
                                 f"{self.n_items})")
            if scores._is_view() or not scores.is_contiguous():
                scores = scores.contiguous().clone()  # never write into a model's cached tensor
        scores = scores.float() if scores.dtype != torch.float32 else scores
        lo, hi = self._mask_indptr[start], self._mask_indptr[stop]
        flat = self._mask_flat[lo:hi] - start * self.n_items
        n_ranks = ranked.shape[1]
        if scores.device.type == "cpu":
            table = scores.numpy()
            table.reshape(-1)[flat] = -np.inf
            ranked[start:stop] = top_k_rows(table, n_ranks)
        else:
            scores.view(-1)[torch.as_tensor(flat, device=scores.device)] = -torch.inf
            ranked[start:stop] = torch.topk(scores, n_ranks, dim=1).indices.cpu().numpy()
        hits = np.zeros((stop - start, max(self.ks)), bool)  # ranks past n_items: misses
        scored = min(n_ranks, hits.shape[1])
        hits[:, :scored] = self._hits(start, stop, ranked[start:stop, :scored])
        for name, values in ranking_metrics(hits, self.n_test[start:stop], self.ks).items():
            per_user[name][start:stop] = values.numpy()

    def _hits(self, start: int, stop: int, ranked: np.ndarray) -> np.ndarray:
        """Boolean, shaped like `ranked` (the top items of users start..stop-1): is the item
        at each rank held out for that user."""
        query = self.users[start:stop, None] * self.n_items + ranked
        if query.size == 0:
            return np.zeros(query.shape, bool)
        # the chunk's users are consecutive in the sorted keys: search only their keys
        lo, hi = np.searchsorted(self._truth_keys, [query.min(), query.max()], side="left")
        keys = self._truth_keys[lo:hi + 1]
        if len(keys) == 0:
            return np.zeros(query.shape, bool)
        return keys[np.searchsorted(keys, query).clip(max=len(keys) - 1)] == query
