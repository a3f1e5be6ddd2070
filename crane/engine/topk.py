"""Exact top-k per row of a float32 score matrix on CPU, ties broken by the lower column.

The order is (score descending, column ascending); NaN ranks above +inf, as in `torch.topk`.
On CPU `torch.topk` costs about as much as the scoring GEMM; this finds the same items in a
few vectorised numpy passes, none of them a sort of a row:

1. Split the columns into `n_blocks` strided blocks (block j holds columns j, j + n_blocks,
   ...) and take each block's maximum: one elementwise pass, no sort.
2. Per row, the k-th largest block maximum `c` (a partition of the maxima). The k blocks
   with maxima >= c hold k distinct scores >= c, so the row's k-th best score is >= c: every
   score of the top k (and every score tied with the k-th) is >= c.
3. Take every score >= c of the whole row (one compare pass and one flat nonzero; typically
   about k + 5 per row; ties at c are all included, so no row needs special handling) and sort
   the candidates by (row, score descending, column). Rows holding NaN take the reference
   path.

`reference_top_k` sorts every score of a row by the same key;
tests/engine/test_engine_topk.py holds the fast path to it.
"""

from __future__ import annotations

import math

import numpy as np

# Below this many columns per chosen block the blocked path has nothing to save.
MIN_COLUMNS_PER_K = 8


def top_k_rows(scores: np.ndarray, k: int) -> np.ndarray:
    """(n_rows, min(k, n_cols)) int64 column ids, best first, of a 2-d float32 array."""
    n_rows, n_cols, k = _checked_shape(scores, k)
    if k == 0 or n_rows == 0:
        return np.empty((n_rows, k), np.int64)
    if n_cols < MIN_COLUMNS_PER_K * k:
        return reference_top_k(scores, k)
    block = _block_size(n_cols, k)
    n_blocks = n_cols // block
    body = n_blocks * block
    # Strided blocks: a reduction over the middle axis is an elementwise max of contiguous rows.
    block_max = scores[:, :body].reshape(n_rows, block, n_blocks).max(axis=1)
    cut = np.partition(block_max, n_blocks - k, axis=1)[:, n_blocks - k]
    has_nan = np.isnan(block_max).any(axis=1)
    if body < n_cols:  # the columns past the last whole block
        has_nan |= np.isnan(scores[:, body:]).any(axis=1)
    cut[has_nan] = np.nan  # no candidates (NaN compares false): the reference path ranks them
    # one flat nonzero: several times cheaper than np.nonzero's (row, column) pairs
    flat = np.flatnonzero(scores >= cut[:, None])
    rows = flat // n_cols
    top = _sorted_first_k(rows, flat - rows * n_cols, scores.reshape(-1)[flat], n_rows,
                          n_cols, k)
    if has_nan.any():
        top[has_nan] = reference_top_k(scores[has_nan], k)
    return top


def _block_size(n_cols: int, k: int) -> int:
    """Columns per block: fewer, larger blocks make the partition of the maxima cheaper but
    lower the cut (more candidates); twice sqrt(n_cols / k) balances the two.
    At most n_cols // k, so there are always at least k blocks."""
    return max(1, min(round(2 * math.sqrt(n_cols / k)), n_cols // k))


def reference_top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """The same result by ordering every score of each row (the exact slow path)."""
    n_rows, n_cols, k = _checked_shape(scores, k)
    if k == 0 or n_rows == 0:
        return np.empty((n_rows, k), np.int64)
    column_bits = max(1, int(n_cols - 1).bit_length())
    if column_bits > 31:
        raise ValueError(f"top-k supports at most 2^31 columns, got {n_cols}")
    keys = (_descending_keys(scores) << np.int64(column_bits)) | np.arange(n_cols, dtype=np.int64)
    part = np.argpartition(keys, k - 1, axis=1)[:, :k] if k < n_cols else \
        np.broadcast_to(np.arange(n_cols), (n_rows, n_cols))
    best = np.take_along_axis(keys, part, axis=1)
    best.sort(axis=1)
    return best & np.int64((1 << column_bits) - 1)


def _sorted_first_k(rows: np.ndarray, columns: np.ndarray, values: np.ndarray, n_rows: int,
                    n_cols: int, k: int) -> np.ndarray:
    """The first k candidates of every row in (row, score descending, column) order."""
    top = np.zeros((n_rows, k), np.int64)
    if len(rows) == 0:
        return top
    column_bits = max(1, int(n_cols - 1).bit_length())
    row_bits = max(1, int(n_rows - 1).bit_length())
    descending = _descending_keys(values)
    if row_bits + 32 + column_bits <= 63:  # one int64 key per candidate: sort, read columns
        ordered = np.sort((rows.astype(np.int64) << np.int64(32 + column_bits))
                          | (descending << np.int64(column_bits)) | columns)
        ordered &= np.int64((1 << column_bits) - 1)
    else:
        ordered = columns[np.lexsort((columns, descending, rows))]
    counts = np.bincount(rows, minlength=n_rows)
    starts = np.cumsum(counts) - counts
    present = counts >= k  # rows left to the reference path (NaN) have no candidates
    top[present] = ordered[starts[present, None] + np.arange(k)]
    return top


def _descending_keys(values: np.ndarray) -> np.ndarray:
    """int64 in [0, 2^32) that sorts ascending as the float32 values sort descending.

    The float's bits made order-preserving as unsigned integers (negatives: all bits flipped,
    others: sign bit set), then reversed; -0.0 is made +0.0 first so the two tie, and every
    NaN is made the positive quiet NaN, which sorts above +inf.
    """
    values = values + np.float32(0.0)
    nan = np.isnan(values)
    if nan.any():
        values[nan] = np.float32(np.nan)
    bits = values.view(np.uint32).astype(np.int64)
    ordered = np.where(bits >= 1 << 31, bits ^ 0xFFFFFFFF, bits | (1 << 31))
    return np.int64(0xFFFFFFFF) - ordered


def _checked_shape(scores: np.ndarray, k: int) -> tuple[int, int, int]:
    """(rows, columns, k capped at the columns) of a valid score array; else a ValueError."""
    if scores.ndim != 2 or scores.dtype != np.float32:
        raise ValueError(f"top-k needs a 2-d float32 score array, got {scores.dtype} with shape "
                         f"{scores.shape}")
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    n_rows, n_cols = scores.shape
    return n_rows, n_cols, min(k, n_cols)
