"""Input reduction: item features projected on their leading principal components.

A model reads its features once per run; a 4096-d image matrix makes every projection of an
item cost 4096 x d multiply-adds, and most of that width carries little variance. The PCA is
scikit-learn's, fitted on the item features alone (no interactions, so no split can leak into
it) with its exact covariance solver, whose component signs are fixed (svd_flip): the reduced
matrix is a function of the features alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.decomposition import PCA


@dataclass(frozen=True)
class Reduced:
    features: np.ndarray       # (n_items, dim) float32: centred features on the components
    retained_variance: float   # share of the total variance the components keep, in (0, 1]


def principal_components(features: np.ndarray, dim: int) -> Reduced:
    """The (n, D) `features` on their `dim` leading principal components (dim < D)."""
    n, width = np.shape(features)
    if not 0 < dim < min(n, width):
        raise ValueError(f"principal_components: dim={dim} must be at least 1 and below both "
                         f"the feature width {width} and the number of items {n}")
    if not np.any(np.ptp(features, axis=0) > 0):
        raise ValueError("principal_components: the features are constant (no variance to "
                         "keep); check the feature matrix")
    pca = PCA(n_components=dim, svd_solver="covariance_eigh")
    reduced = pca.fit_transform(np.asarray(features, dtype=np.float32))
    return Reduced(reduced.astype(np.float32), float(pca.explained_variance_ratio_.sum()))
