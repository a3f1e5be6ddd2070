"""The user-user co-occurrence graph (crane/graphs/user_user.py): equal to MMRec's dense
construction (preprocessing/dualgnn-gen-u-u-matrix.py) on tiny data, and MMRec's per-epoch
padded softmax lists (topk_sample) with their distribution."""

from __future__ import annotations

from collections import Counter, defaultdict

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from crane.graphs.user_user import (neighbour_lists_matrix, softmax_neighbour_lists,
                                    user_co_interaction_graph)


def train_matrix(n_users, n_items, per_user, seed):
    rng = np.random.default_rng(seed)
    users = np.repeat(np.arange(n_users), per_user)
    items = np.concatenate([rng.choice(n_items, per_user, replace=False)
                            for _ in range(n_users)])
    return sp.csr_matrix((np.ones(len(users), dtype=np.float32), (users, items)),
                         shape=(n_users, n_items))


def without_user(train: sp.csr_matrix, user: int) -> sp.csr_matrix:
    """The same matrix with `user`'s interactions removed (an empty row)."""
    keep = np.ones(train.shape[0], dtype=np.float32)
    keep[user] = 0.0
    result = sp.csr_matrix(sp.diags(keep) @ train)
    result.eliminate_zeros()
    return result


def mmrec_dense_counts(train: sp.csr_matrix) -> torch.Tensor:
    """gen_user_matrix, transcribed: item sets per user, intersections of every pair."""
    coo = train.tocoo()
    edge_dict = defaultdict(set)
    for user, item in zip(coo.row, coo.col):
        edge_dict[int(user)].add(int(item))
    matrix = torch.zeros(train.shape[0], train.shape[0])
    keys = sorted(edge_dict)
    for head in range(len(keys)):
        for rear in range(head + 1, len(keys)):
            inter_len = len(edge_dict[keys[head]] & edge_dict[keys[rear]])
            if inter_len > 0:
                matrix[keys[head]][keys[rear]] = inter_len
                matrix[keys[rear]][keys[head]] = inter_len
    return matrix


def dense_top_k(counts: torch.Tensor, k: int) -> np.ndarray:
    """Each row's k largest nonzero counts, ties to the smaller column; the rest zero."""
    counts = counts.numpy()
    kept = np.zeros_like(counts)
    for u, row in enumerate(counts):
        order = sorted(np.flatnonzero(row), key=lambda v: (-row[v], v))[:k]
        kept[u, order] = row[order]
    return kept


@pytest.mark.parametrize("k", [1, 3, 40])
@pytest.mark.parametrize("block_users", [1, 7, 1000])
def test_equals_the_dense_reference(k, block_users):
    train = without_user(train_matrix(25, 15, 4, seed=k), 3)  # user 3: an empty row
    graph = user_co_interaction_graph(train, k, block_users=block_users)
    dense = mmrec_dense_counts(train)
    assert graph.dtype == np.float32 and graph.shape == (25, 25)
    np.testing.assert_array_equal(graph.toarray(), dense_top_k(dense, k))
    assert graph.has_sorted_indices
    assert graph[3].nnz == 0 and graph.diagonal().sum() == 0


def test_top_k_keeps_the_counts_mmrec_keeps():
    """Per user, the kept counts are the k largest of MMRec's row (torch.topk), whatever
    the order of ties."""
    train = train_matrix(30, 12, 5, seed=3)
    dense = mmrec_dense_counts(train)
    graph = user_co_interaction_graph(train, 6)
    for u in range(30):
        n = int((dense[u] > 0).sum())
        expected = torch.topk(dense[u], min(n, 6)).values.numpy()
        got = np.sort(graph[u].data)[::-1]
        np.testing.assert_array_equal(got, expected)


def test_repeated_interactions_count_once():
    train = sp.csr_matrix(np.array([[2.0, 1.0, 0.0], [1.0, 3.0, 1.0], [0.0, 0.0, 1.0]]))
    graph = user_co_interaction_graph(train, 5)
    np.testing.assert_array_equal(graph.toarray(), [[0, 2, 0], [2, 0, 1], [0, 1, 0]])


def test_bad_arguments_are_named():
    train = train_matrix(5, 5, 2, seed=0)
    with pytest.raises(ValueError, match="k=0"):
        user_co_interaction_graph(train, 0)
    with pytest.raises(ValueError, match="more than k=1"):
        softmax_neighbour_lists(user_co_interaction_graph(train, 3), 1,
                                torch.Generator().manual_seed(0))


def test_lists_follow_mmrecs_topk_sample():
    train = without_user(train_matrix(30, 60, 3, seed=1), 0)
    k = 5
    graph = user_co_interaction_graph(train, k)
    indices, weights = softmax_neighbour_lists(graph, k, torch.Generator().manual_seed(0))
    assert indices.shape == weights.shape == (30, k)
    lengths = np.diff(graph.indptr)
    assert lengths[0] == 0 and (lengths == k).any() and ((lengths > 0) & (lengths < k)).any()
    for u in range(30):
        row = graph[u]
        count_of = dict(zip(row.indices, row.data))
        if not count_of:       # MMRec: k times user 0, weight row of zeros
            assert (indices[u] == 0).all() and (weights[u] == 0).all()
            continue
        # every neighbour at least once, nothing else; weights softmax of the padded counts
        assert set(indices[u]) == set(count_of)
        counts = torch.tensor([count_of[v] for v in indices[u]])
        torch.testing.assert_close(torch.from_numpy(weights[u]), torch.softmax(counts, 0))
        if len(count_of) == k:
            assert sorted(indices[u]) == sorted(count_of)


def test_padding_draws_from_the_growing_list():
    """Two neighbours padded to four: MMRec appends a draw from the list as it grows, so
    the multiplicities (3,1), (2,2), (1,3) each come with probability 1/3 (a draw from the
    original two would give (2,2) half the time)."""
    train = sp.csr_matrix(np.array([[1.0, 1.0], [1.0, 0.0], [0.0, 1.0]]))
    graph = user_co_interaction_graph(train, 4)
    generator = torch.Generator().manual_seed(0)
    seen = Counter()
    for _ in range(2000):
        indices, _ = softmax_neighbour_lists(graph, 4, generator)
        seen[int((indices[0] == 1).sum())] += 1
    shares = {n: seen[n] / 2000 for n in (1, 2, 3)}
    assert set(seen) == {1, 2, 3}
    for share in shares.values():
        assert abs(share - 1 / 3) < 0.04, shares


def test_matrix_is_mmrecs_user_graph_aggregation():
    train = train_matrix(30, 20, 4, seed=2)
    graph = user_co_interaction_graph(train, 6)
    indices, weights = softmax_neighbour_lists(graph, 6, torch.Generator().manual_seed(1))
    matrix = neighbour_lists_matrix(indices, weights, 30)
    features = torch.randn(30, 8)
    # User_Graph_sample.forward: (weights.unsqueeze(1) @ features[indices]).squeeze()
    expected = torch.matmul(torch.from_numpy(weights).unsqueeze(1),
                            features[torch.from_numpy(indices)]).squeeze()
    got = torch.from_numpy(matrix @ features.numpy())
    torch.testing.assert_close(got, expected)
    sums = np.asarray(matrix.sum(axis=1)).ravel()
    has_neighbours = np.diff(graph.indptr) > 0
    np.testing.assert_allclose(sums[has_neighbours], 1.0, rtol=1e-6)
    assert (sums[~has_neighbours] == 0).all()


def test_same_generator_state_same_lists():
    graph = user_co_interaction_graph(train_matrix(30, 20, 4, seed=4), 8)
    first = softmax_neighbour_lists(graph, 8, torch.Generator().manual_seed(5))
    second = softmax_neighbour_lists(graph, 8, torch.Generator().manual_seed(5))
    assert all(np.array_equal(a, b) for a, b in zip(first, second))
