"""The user-user co-occurrence graph of DualGNN and DRAGON, built from training interactions.

MMRec builds it once per dataset with `preprocessing/dualgnn-gen-u-u-matrix.py`: a dense
U x U matrix whose (u, v) entry is the number of training items u and v share (the diagonal
left at 0), then, per user, `torch.topk` of its row, at most 200 entries, saved as
`user_graph_dict.npy` ({user: [neighbour ids, counts]}). The models read the first 40 of each
list (`topk_sample`), which are the top 40 of the row.

Here the graph is sparse from the start: `user_co_interaction_graph` multiplies R R^T one
block of users at a time (R the binary U x N training matrix) and keeps the top k of every
row, so memory is that of one block's products plus U x k entries, never U x U.
Ranking: most shared items first; a tie is won by the smaller user id (torch.topk leaves the
order of ties unspecified). A user who shares no item with anyone has an empty row.

`softmax_neighbour_lists` is MMRec's `topk_sample` on that graph, run before every epoch:
- a user with k neighbours: the k neighbours, weights softmax(counts);
- a user with 0 < n < k neighbours: the list is padded to k by appending, k - n times, a
  uniform draw from the list as it stands (copies appended earlier included, as MMRec's
  `np.random.randint(0, len(user_graph_sample))` on the growing list); weights softmax over
  the padded counts, so a neighbour drawn twice weighs twice;
- a user without neighbours: k entries of user 0 with weight 0 (MMRec's row of zeros).
The draws come from the given torch generator, column by column for all users at once (MMRec
draws user by user from numpy's global generator): the same distribution, other numbers.
`neighbour_lists_matrix` turns the lists into the U x U row-stochastic CSR matrix W with
W @ X == (weights[:, :, None] * X[indices]).sum(1), MMRec's `User_Graph_sample`.

tests/graphs/test_user_user.py checks the graph against a dense computation.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

DEFAULT_BLOCK_USERS = 2048


def user_co_interaction_graph(train: sp.spmatrix, k: int,
                              block_users: int = DEFAULT_BLOCK_USERS) -> sp.csr_matrix:
    """U x U float32 CSR: row u holds the (at most) k other users with the most training
    items in common with u, each with that count; most shared first, ties to the smaller id.

    `train` is the U x N training matrix (any nonzero is one interaction; repeats count
    once, as MMRec's item sets).
    """
    if k < 1:
        raise ValueError(f"user_co_interaction_graph: k={k} must be >= 1")
    if block_users < 1:
        raise ValueError(f"user_co_interaction_graph: block_users={block_users} must be >= 1")
    binary = sp.csr_matrix(train, dtype=np.float32, copy=True)
    binary.sum_duplicates()
    binary.eliminate_zeros()
    binary.data[:] = 1.0
    by_item = sp.csr_matrix(binary.T)
    n_users = binary.shape[0]
    rows, cols, counts = [], [], []
    for start in range(0, n_users, block_users):
        stop = min(start + block_users, n_users)
        block = (binary[start:stop] @ by_item).tocoo()  # (block, U): shared-item counts
        kept = _top_k_per_row(block.row + start, block.col, block.data, k)
        rows.append(block.row[kept] + start)
        cols.append(block.col[kept])
        counts.append(block.data[kept])
    graph = sp.csr_matrix((np.concatenate(counts).astype(np.float32),
                           (np.concatenate(rows), np.concatenate(cols))),
                          shape=(n_users, n_users))
    graph.sort_indices()
    return graph


def _top_k_per_row(rows: np.ndarray, cols: np.ndarray, counts: np.ndarray,
                   k: int) -> np.ndarray:
    """Positions of each row's k best entries, the diagonal left out: highest count first,
    then smaller column."""
    candidates = np.flatnonzero((rows != cols) & (counts > 0))
    order = candidates[np.lexsort((cols[candidates], -counts[candidates], rows[candidates]))]
    sorted_rows = rows[order]
    first_of_row = np.searchsorted(sorted_rows, sorted_rows, side="left")
    rank = np.arange(len(order)) - first_of_row
    return order[rank < k]


def softmax_neighbour_lists(neighbours: sp.csr_matrix, k: int, generator: torch.Generator
                            ) -> tuple[np.ndarray, np.ndarray]:
    """MMRec's `topk_sample(k)` with softmax weights: (indices, weights), each (U, k).

    `neighbours` is `user_co_interaction_graph(train, k)` (at most k entries a row).
    """
    neighbours = sp.csr_matrix(neighbours)
    n_users = neighbours.shape[0]
    lengths = np.diff(neighbours.indptr)
    if lengths.size and lengths.max() > k:
        raise ValueError(f"softmax_neighbour_lists: a row holds {lengths.max()} neighbours, "
                         f"more than k={k}; build the graph with the same k")
    # slot[u, t]: which of u's entries fills u's position t (its own position while t < n)
    slots = np.tile(np.arange(k, dtype=np.int64), (n_users, 1))
    short = np.flatnonzero((lengths > 0) & (lengths < k))
    if short.size:
        short_lengths = lengths[short]
        for t in range(int(short_lengths.min()), k):
            growing = short[short_lengths <= t]  # their lists hold t entries: append one
            draws = torch.rand(len(growing), generator=generator, dtype=torch.float64).numpy()
            picks = np.minimum((draws * t).astype(np.int64), t - 1)
            slots[growing, t] = slots[growing, picks]
    has_any = lengths > 0
    entries = neighbours.indptr[:-1, None] + slots
    entries[~has_any] = 0
    indices = np.zeros((n_users, k), dtype=np.int64)
    weights = np.zeros((n_users, k), dtype=np.float32)
    if neighbours.nnz:
        indices[has_any] = neighbours.indices[entries[has_any]]
        counts = torch.from_numpy(neighbours.data[entries[has_any]].astype(np.float32))
        weights[has_any] = torch.softmax(counts, dim=1).numpy()
    return indices, weights


def neighbour_lists_matrix(indices: np.ndarray, weights: np.ndarray,
                           n_users: int) -> sp.csr_matrix:
    """The U x U float32 CSR matrix W with W[u, v] = the sum of u's weights at entries v (a
    neighbour padded in twice adds up), zero weights left out."""
    rows = np.repeat(np.arange(indices.shape[0]), indices.shape[1])
    values = weights.ravel()
    keep = values != 0
    matrix = sp.csr_matrix((values[keep], (rows[keep], indices.ravel()[keep])),
                           shape=(n_users, n_users), dtype=np.float32)
    matrix.sum_duplicates()
    return matrix
