"""Top-K ranking metrics per user, as docs/protocol.md defines them (and MMRec computes them).

Input is a hit matrix: `hits[u, r]` is True when the item ranked r+1 for user u is one of the
user's held-out items T_u, and `n_relevant[u] = |T_u|`. Everything is vectorised over users.

- Recall@K    = h_K / |T_u|
- Precision@K = h_K / K
- NDCG@K      = DCG@K / IDCG@K, binary gains 1 / log2(rank + 1), IDCG over min(|T_u|, K) ranks
- MAP@K       = (sum of Precision@r over hit ranks r <= K) / min(|T_u|, K)

Checked against hand-computed values in tests/engine/test_engine_metrics.py.
"""

from __future__ import annotations

import numpy as np
import torch

DEFAULT_KS = (5, 10, 20, 50)
METRIC_NAMES = ("recall", "ndcg", "precision", "map")


def metric_columns(ks: tuple[int, ...] = DEFAULT_KS) -> list[str]:
    """Column order used everywhere: recall@5, recall@10, ..., map@50."""
    return [f"{name}@{k}" for name in METRIC_NAMES for k in ks]


def ranking_metrics(hits: torch.Tensor | np.ndarray, n_relevant: torch.Tensor | np.ndarray,
                    ks: tuple[int, ...] = DEFAULT_KS) -> dict[str, torch.Tensor]:
    """Per-user metric values (float64 CPU tensors of shape (n_users,)) for every K in `ks`.

    `hits` is (n_users, R) boolean with R >= max(ks); users must have n_relevant >= 1.
    """
    hits = hits.numpy(force=True) if isinstance(hits, torch.Tensor) else np.asarray(hits)
    n_relevant = (n_relevant.numpy(force=True) if isinstance(n_relevant, torch.Tensor)
                  else np.asarray(n_relevant))
    if hits.ndim != 2:
        raise ValueError(f"hits must be 2-d (users x ranks), got shape {tuple(hits.shape)}")
    if max(ks) > hits.shape[1]:
        raise ValueError(f"hits has {hits.shape[1]} ranks but metrics ask for K={max(ks)}")
    if bool((n_relevant < 1).any()):
        raise ValueError("every evaluated user needs at least one held-out item")
    # numpy: torch's float64 cumsum along short rows is slower on CPU
    hit = hits.astype(np.float64)
    n_rel = n_relevant.astype(np.float64)
    ranks = np.arange(1, hits.shape[1] + 1, dtype=np.float64)
    discount = _discounts(hits.shape[1])
    hits_at = hit.cumsum(axis=1)                      # h_r for every rank r
    dcg_at = (hit * discount).cumsum(axis=1)
    ideal_at = discount.cumsum()                      # IDCG with r relevant items
    precision_at = hits_at / ranks
    ap_sum_at = (precision_at * hit).cumsum(axis=1)   # sum of Precision@r at hit ranks

    out: dict[str, torch.Tensor] = {}
    for name in METRIC_NAMES:
        for k in ks:
            h_k = hits_at[:, k - 1]
            capped = np.minimum(n_rel, float(k))
            if name == "recall":
                value = h_k / n_rel
            elif name == "precision":
                value = h_k / k
            elif name == "ndcg":
                value = dcg_at[:, k - 1] / ideal_at[capped.astype(np.int64) - 1]
            else:
                value = ap_sum_at[:, k - 1] / capped
            out[f"{name}@{k}"] = torch.from_numpy(np.ascontiguousarray(value))
    return out


def _discounts(n_ranks: int) -> np.ndarray:
    """1 / log2(rank + 1) for ranks 1..n_ranks (float64)."""
    ranks = torch.arange(1, n_ranks + 1, dtype=torch.float64)
    return (1.0 / torch.log2(ranks + 1.0)).numpy()
