"""ItemKNN-CBF: content-only item nearest neighbours; the check that the content signal exists.

score(u, i) = sum over the user's training items j among i's `knn_k` nearest content
neighbours of cos(i, j). Similarity is the mean over the available modalities of the
per-modality cosine, computed as the cosine of the concatenated per-modality unit vectors
(cos([a/|a|, b/|b|], [c/|c|, d/|d|]) = (cos(a, c) + cos(b, d)) / 2 exactly), so the top-k
search is one chunked pass over the items (crane.graphs.item_knn, cached by feature hash).
An item is not its own neighbour. Nothing is learned: `fit()` builds the neighbour lists.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from crane.graphs.item_knn import (cached_neighbours, mean_cosine_content_hash,
                                   mean_cosine_features)
from crane.models import register
from crane.models.base import Recommender, TrainData
from crane.models.hyperparameters import HyperParameters, hparam, reject


def drop_self(indices: np.ndarray, similarities: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """From k + 1 neighbours per row keep k: the item itself, else the least similar one."""
    n, width = indices.shape
    is_self = indices == np.arange(n)[:, None]
    # Rows where the item is not among its own neighbours (duplicate features): drop the last.
    is_self[~is_self.any(axis=1), width - 1] = True
    # At most one True per row after this (an index appears once per top-k row).
    keep = ~is_self
    return indices[keep].reshape(n, width - 1), similarities[keep].reshape(n, width - 1)


@dataclass(frozen=True)
class ItemKNNCBFConfig(HyperParameters):
    knn_k: int = hparam(at_least=1)


@register("itemknn_cbf")
class ItemKNNCBF(Recommender):
    config_class = ItemKNNCBFConfig
    trainable = False
    uses_content = True

    def __init__(self, data: TrainData, hparams: dict[str, Any]):
        super().__init__(data, hparams)
        self.knn_k = self.config.knn_k
        if self.knn_k >= self.n_items:
            reject(self.name, "knn_k", self.knn_k, f"below n_items ({self.n_items})")
        self.modalities = self.feature_modalities(data)
        self._data = data
        self._train = data.train_matrix()
        # Buffers, so that a fitted model travels in checkpoints.
        self.register_buffer("neighbour_index",
                             torch.zeros((self.n_items, self.knn_k), dtype=torch.int64))
        self.register_buffer("neighbour_similarity",
                             torch.zeros((self.n_items, self.knn_k), dtype=torch.float32))

    def _content_hash(self) -> str | None:
        # None when a hash is unknown: cached_neighbours then hashes the combined matrix
        return mean_cosine_content_hash({m: self._data.feature_hashes.get(m)
                                         for m in self.modalities})

    def fit(self) -> None:
        combined = mean_cosine_features({m: self._data.features[m] for m in self.modalities})
        neighbours = cached_neighbours(combined, self.knn_k + 1, self._data.cache_dir,
                                       self._content_hash(), device=self.device)
        indices, similarities = drop_self(neighbours.indices, neighbours.similarities)
        self.neighbour_index.copy_(torch.from_numpy(indices))
        self.neighbour_similarity.copy_(torch.from_numpy(similarities))

    def scoring_tables(self) -> sp.csr_matrix:
        indices = self.neighbour_index.cpu().numpy()
        rows = np.repeat(np.arange(self.n_items), self.knn_k)
        similarity = sp.csr_matrix(
            (self.neighbour_similarity.cpu().numpy().ravel(), (rows, indices.ravel())),
            shape=(self.n_items, self.n_items))
        # score = R S^T: column i of S^T holds i's neighbours.
        return similarity.T.tocsr()

    def score(self, users: torch.Tensor) -> torch.Tensor:
        rows = self._train[users.cpu().numpy()]
        scores = (rows @ self.scoring_state()).toarray()
        return torch.from_numpy(scores.astype(np.float32, copy=False)).to(self.device)
