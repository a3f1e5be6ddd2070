"""Normalised user-item adjacency, built from training interactions only."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def symmetric_bipartite_adjacency(train: sp.csr_matrix) -> sp.csr_matrix:
    """D^-1/2 A D^-1/2 of the (U+N) x (U+N) bipartite graph A = [[0, R], [R^T, 0]].

    Nodes without edges keep a zero row (no division by zero), as LightGCN in MMRec does.
    """
    n_users, n_items = train.shape
    adjacency = sp.bmat([[None, train], [train.T, None]], format="csr", dtype=np.float32)
    degree = np.asarray(adjacency.sum(axis=1)).ravel()
    inv_sqrt = np.zeros_like(degree)
    nonzero = degree > 0
    inv_sqrt[nonzero] = degree[nonzero] ** -0.5
    scale = sp.diags(inv_sqrt)
    return (scale @ adjacency @ scale).tocsr().astype(np.float32)


