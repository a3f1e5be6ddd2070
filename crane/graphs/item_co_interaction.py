"""The item-item co-interaction graph of DA-MRS ("item-item behaviour graph"), built from
training interactions.

The authors (XMUDM/DA-MRS, build_iib_graph.py) build it once per dataset: a dense N x N
matrix whose (i, j) entry is the number of training users items i and j share, kept only when
at least 2 (`MIN_SHARED_USERS`; diagonal 0), then per item `torch.topk` of its row: every
nonzero entry when there are at most `topk`, else the `topk` largest, saved as
`item_graph_dict_<topk>.npy` ({item: [neighbour ids, counts]}). DA-MRS reads
`item_graph_dict_2.npy` (topk 2, the README's command).

Here the graph is sparse from the start: `user_co_interaction_graph` (crane/graphs/user_user.py)
on the transposed training matrix multiplies R^T R one block of items at a time and keeps the
top k of every row, then the counts below 2 are dropped. Dropping after the top k gives the
same graph as dropping before: a count below 2 ranks after every count of 2 or more. Memory is
that of one block's products plus N x k entries, never N x N. Ranking: most shared users first,
a tie won by the smaller item id (torch.topk leaves the order of ties unspecified).

DA-MRS's "session" view and MSCA's "item-item structural view" both read its binary pattern
plus every item's self loop, normalised by row counts (`self_looped_co_interaction_graph`).

tests/graphs/test_item_co_interaction.py checks it against the authors' dense construction.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from crane.graphs.user_user import DEFAULT_BLOCK_USERS, user_co_interaction_graph

MIN_SHARED_USERS = 2  # build_iib_graph.py: `if inter_len >= 2`


def item_co_interaction_graph(train: sp.spmatrix, k: int,
                              block_items: int = DEFAULT_BLOCK_USERS) -> sp.csr_matrix:
    """N x N float32 CSR: row i holds the (at most) k other items sharing the most training
    users with i, each with that count, counts below `MIN_SHARED_USERS` left out.

    `train` is the U x N training matrix (any nonzero is one interaction; repeats count once).
    """
    if k < 1:
        raise ValueError(f"item_co_interaction_graph: k={k} must be >= 1")
    graph = user_co_interaction_graph(sp.csr_matrix(train).T.tocsr(), k,
                                      block_users=block_items)
    graph.data[graph.data < MIN_SHARED_USERS] = 0.0
    graph.eliminate_zeros()
    graph.sort_indices()
    return graph.astype(np.float32)


def self_looped_co_interaction_graph(co_interaction: sp.spmatrix) -> sp.csr_matrix:
    """Every item's self loop and its co-interaction neighbours, binary (the counts are not
    read), normalised by row counts: DA-MRS's get_session_adj, MSCA's get_struct_adj_mat."""
    n_items = co_interaction.shape[0]
    coo = sp.coo_matrix(co_interaction)
    rows = np.concatenate([np.arange(n_items), coo.row])
    cols = np.concatenate([np.arange(n_items), coo.col])
    return row_count_normalised(rows, cols, n_items)


def row_count_normalised(rows: np.ndarray, cols: np.ndarray, n_items: int) -> sp.csr_matrix:
    """MMRec's compute_normalized_laplacian of a binary pattern: entry (i, j) =
    (r_i + 1e-7)^-1/2 (r_j + 1e-7)^-1/2, r the row's entry count (in float32, as torch)."""
    counts = torch.from_numpy(np.bincount(rows, minlength=n_items)).to(torch.float32)
    inv_sqrt = torch.pow(1e-7 + counts, -0.5).numpy()
    values = inv_sqrt[rows] * inv_sqrt[cols]
    graph = sp.csr_matrix((values.astype(np.float32), (rows, cols)), shape=(n_items, n_items))
    graph.sort_indices()
    return graph
