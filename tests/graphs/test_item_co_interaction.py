"""The item-item co-interaction graph of DA-MRS (crane/graphs/item_co_interaction.py): equal
to the authors' dense construction (build_iib_graph.py: shared-user counts of every item pair,
kept from 2 shared users, then the top k of every row) on tiny data."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from crane.graphs.item_co_interaction import MIN_SHARED_USERS, item_co_interaction_graph


def train_matrix(n_users, n_items, per_user, seed):
    rng = np.random.default_rng(seed)
    users = np.repeat(np.arange(n_users), per_user)
    items = np.concatenate([rng.choice(n_items, per_user, replace=False)
                            for _ in range(n_users)])
    return sp.csr_matrix((np.ones(len(users), dtype=np.float32), (users, items)),
                         shape=(n_users, n_items))


def authors_dense_counts(train: sp.csr_matrix) -> torch.Tensor:
    """gen_item_matrix, transcribed: user sets per item, intersections of every pair, kept
    when at least 2."""
    coo = train.tocoo()
    edge_dict = defaultdict(set)
    for user, item in zip(coo.row, coo.col):
        edge_dict[int(item)].add(int(user))
    matrix = torch.zeros(train.shape[1], train.shape[1])
    keys = sorted(edge_dict)
    for head in range(len(keys)):
        for rear in range(head + 1, len(keys)):
            inter_len = len(edge_dict[keys[head]] & edge_dict[keys[rear]])
            if inter_len >= 2:
                matrix[keys[head]][keys[rear]] = inter_len
                matrix[keys[rear]][keys[head]] = inter_len
    return matrix


def dense_top_k(counts: torch.Tensor, k: int) -> np.ndarray:
    """The authors' per-row rule (all nonzero entries when at most k, else the k largest),
    ties to the smaller column; the rest zero."""
    counts = counts.numpy()
    kept = np.zeros_like(counts)
    for i, row in enumerate(counts):
        order = sorted(np.flatnonzero(row), key=lambda j: (-row[j], j))
        if len(order) > k:
            order = order[:k]
        kept[i, order] = row[order]
    return kept


@pytest.mark.parametrize("k", [1, 2, 5, 100])
@pytest.mark.parametrize("block_items", [1, 4, 1000])
def test_equals_the_authors_dense_construction(k, block_items):
    train = train_matrix(40, 12, 4, seed=k)
    graph = item_co_interaction_graph(train, k, block_items=block_items)
    dense = authors_dense_counts(train)
    expected = dense_top_k(dense, k)
    assert graph.dtype == np.float32 and graph.shape == (12, 12)
    np.testing.assert_array_equal(graph.toarray(), expected)
    assert graph.has_sorted_indices and graph.diagonal().sum() == 0
    # the data has pairs sharing one user only (dropped) and rows longer than k (cut)
    shared = (train.T @ train).toarray()
    np.fill_diagonal(shared, 0)
    assert (shared == 1).any() and graph.data.min() >= MIN_SHARED_USERS
    if k < 5:
        assert ((dense.numpy() > 0).sum(axis=1) > k).any()


def test_pairs_sharing_one_user_are_left_out():
    # items 0 and 1 share users 0 and 1; items 1 and 2 share user 2 only; item 3 is alone
    train = sp.csr_matrix(np.array([[1, 1, 0, 0], [1, 1, 0, 0], [0, 1, 1, 0], [0, 0, 0, 1]],
                                   dtype=np.float32))
    graph = item_co_interaction_graph(train, 2)
    np.testing.assert_array_equal(graph.toarray(), [[0, 2, 0, 0], [2, 0, 0, 0],
                                                    [0, 0, 0, 0], [0, 0, 0, 0]])


def test_repeated_interactions_count_once():
    train = sp.csr_matrix((np.ones(6, dtype=np.float32),
                           ([0, 0, 0, 1, 1, 1], [0, 1, 1, 0, 1, 0])), shape=(2, 3))
    graph = item_co_interaction_graph(train, 2)
    assert graph[0, 1] == 2 and graph[1, 0] == 2 and graph.nnz == 2


def test_bad_k_is_named():
    with pytest.raises(ValueError, match="item_co_interaction_graph: k=0"):
        item_co_interaction_graph(train_matrix(5, 4, 2, seed=0), 0)
