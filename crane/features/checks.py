"""The checks a feature matrix passes before it is written: no silent wrong numbers.

- Missing inputs: an item whose encoder had nothing to read (no text in any field, no image,
  no vector) is imputed with the mean and counted; when more than the encoder's
  `max_missing_share` of the items has no input, the job stops instead of writing a matrix
  that is mostly the mean vector.
- Degenerate matrices: fewer than 2 distinct rows, or rows that vary in fewer directions
  than the criterion below asks, stop the job: every item looking alike (empty metadata
  encoded as the empty string, a broken encoder returning one vector) would otherwise train
  and evaluate without any error.
"""

from __future__ import annotations

from typing import Any

import numpy as np

DEFAULT_MAX_MISSING_SHARE = 0.05

# The rank criterion. The effective rank is the number of singular values of the mean-centred
# distinct rows above RANK_TOLERANCE x the largest singular value of the uncentred rows, i.e.
# the directions in which items differ by more than 0.1% of the features' own scale (float32
# rounding is ~1e-7, so rows that differ only by noise count for nothing). It must reach
# min(distinct rows - 1, dim, MIN_EFFECTIVE_RANK): a handful of real directions is what
# any encoder gives on any real catalogue (MiniLM and the colour histogram reach hundreds on
# the demo), while rows that are one vector plus noise, or one vector scaled, reach 0 or 1.
# Comparing with the distinct rows (not the items) lets a tiny catalogue whose items come in
# a few exact groups pass; the missing-share check covers a matrix that is mostly imputed.
# Imputed rows are the mean of the others and add no direction, so the rank is taken over
# the rows the encoder described.
MIN_DISTINCT_ROWS = 2
MIN_EFFECTIVE_RANK = 8
RANK_TOLERANCE = 1e-3
RANK_SAMPLE_ROWS = 512  # evenly spaced distinct rows: enough to see 8 directions, cheap


class FeatureCheckError(ValueError):
    """A feature matrix that must not be written (too many items without input, degenerate)."""


def max_missing_share(cfg: dict[str, Any], encoder_name: str) -> float:
    """The encoder's `max_missing_share` (default 0.05), checked to be a number in [0, 1]."""
    value = cfg.get("max_missing_share", DEFAULT_MAX_MISSING_SHARE)
    if value is None:
        return DEFAULT_MAX_MISSING_SHARE
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise ValueError(f"encoders.{encoder_name}.max_missing_share: must be a number in "
                         f"[0, 1] (the largest share of items allowed to have no input), got "
                         f"{value!r}")
    return float(value)


def check_missing_share(present: np.ndarray, problems: dict[int, str], asins: np.ndarray,
                        limit: float, data_dir: str, modality: str, encoder_name: str) -> None:
    """Stop when more than `limit` of the items has no input for the encoder."""
    missing = np.flatnonzero(~present)
    share = len(missing) / len(present)
    if share <= limit:
        return
    examples = "; ".join(f"item {i} ({asins[i]}): {problems.get(int(i), 'no vector')}"
                         for i in missing[:3])
    raise FeatureCheckError(
        f"{data_dir}: {len(missing)} of {len(present)} items ({share:.1%}) have no {modality} "
        f"input for encoder {encoder_name}, more than encoders.{encoder_name}.max_missing_share"
        f" = {limit:g} allows (e.g. {examples}). Fix the inputs (item metadata, image cache, "
        f"feature file), or raise encoders.{encoder_name}.max_missing_share to impute those "
        "items with the mean vector")


def distinct_rows(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(first row index, count) of each group of byte-identical rows, in row order."""
    rows = np.ascontiguousarray(features)
    as_bytes = rows.view(np.dtype((np.void, rows.dtype.itemsize * rows.shape[1]))).ravel()
    _, first, counts = np.unique(as_bytes, return_index=True, return_counts=True)
    order = np.argsort(first)
    return first[order], counts[order]


def effective_rank(rows: np.ndarray) -> int:
    """Singular values of the mean-centred rows above RANK_TOLERANCE x the uncentred largest.

    Computed from the (rows x rows) Gram matrix in float64: one product, cheap for the
    sample sizes used here whatever the dimension.
    """
    sample = rows.astype(np.float64)
    gram = sample @ sample.T
    largest = np.linalg.eigvalsh(gram)[-1]
    if largest <= 0:
        return 0
    # the Gram matrix of the centred rows, from the uncentred one
    centred = (gram - gram.mean(axis=0, keepdims=True) - gram.mean(axis=1, keepdims=True)
               + gram.mean())
    eigenvalues = np.linalg.eigvalsh(centred)
    return int((eigenvalues > RANK_TOLERANCE ** 2 * largest).sum())


def check_not_degenerate(features: np.ndarray, present: np.ndarray, what: str) -> dict[str, Any]:
    """The diversity of the final matrix, or FeatureCheckError when it is degenerate.

    `features` is the imputed matrix, `present` marks the rows the encoder described.
    Returns the numbers and settings for the manifest.
    """
    first, counts = distinct_rows(features)
    n_items, dim = features.shape
    stats: dict[str, Any] = {
        "distinct_rows": int(len(first)),
        "largest_identical_rows": int(counts.max()),
        "min_distinct_rows": MIN_DISTINCT_ROWS,
        "rank_tolerance": RANK_TOLERANCE,
    }
    if len(first) < MIN_DISTINCT_ROWS:
        raise FeatureCheckError(
            f"{what} are degenerate: {len(first)} distinct row among {n_items} items (every "
            "item has the same vector, so no model or kNN graph can tell items apart). Check "
            "the encoder's inputs: item metadata (is the raw metadata file there?), images, "
            "feature file")
    described = features[present]
    present_first, _ = distinct_rows(described)
    sample_rows = present_first[np.unique(np.linspace(
        0, len(present_first) - 1, min(len(present_first), RANK_SAMPLE_ROWS)).astype(int))]
    rank = effective_rank(described[sample_rows])
    required = min(len(present_first) - 1, dim, MIN_EFFECTIVE_RANK)
    stats.update(effective_rank=rank, min_effective_rank=required,
                 rank_sample_rows=int(len(sample_rows)))
    if rank < required:
        raise FeatureCheckError(
            f"{what} are degenerate: effective rank {rank} where at least {required} is "
            f"expected (singular values of the mean-centred rows above {RANK_TOLERANCE:g} x "
            f"the largest uncentred one, over {len(sample_rows)} of the "
            f"{len(present_first)} distinct rows): the items differ only by noise or along "
            "one or two directions. Check the encoder's inputs and output")
    return stats
