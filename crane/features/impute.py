"""Mean imputation of items an encoder could not describe (MMRec's rule for missing images)."""

from __future__ import annotations

import numpy as np


def impute_with_mean(features: np.ndarray, present: np.ndarray, what: str) -> np.ndarray:
    """Fill the rows where `present` is False with the mean of the others, in place.

    `what` names the features in the error raised when no row at all is present.
    """
    present = np.asarray(present, dtype=bool)
    if present.shape != (features.shape[0],):
        raise ValueError(f"{what}: mask of shape {present.shape} for {features.shape[0]} rows")
    if present.all():
        return features
    if not present.any():
        raise ValueError(f"{what}: no item has a feature vector, nothing to impute from")
    # float64 accumulation: the mean of 60k float32 rows drifts otherwise
    mean = features[present].mean(axis=0, dtype=np.float64).astype(features.dtype)
    features[~present] = mean
    return features
