"""Dropout of activations and of graph edges.

- `FastDropout`: inverted dropout (nn.Dropout's semantics) with the mask drawn by
  `torch.rand`, cheaper on CPU than the `bernoulli_` behind nn.Dropout.
- `degree_sensitive_edge_dropout`: FREEDOM's per-epoch pruning of the user-item graph, used
  by FREEDOM and CRANE.

tests/ops/test_dropout.py checks both against their definitions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn


class FastDropout(nn.Module):
    """Zero with probability p, scale the rest by 1/(1-p); identity in eval mode."""

    def __init__(self, p: float):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = torch.rand(x.shape, device=x.device) >= self.p
        return x * keep * (1.0 / (1.0 - self.p))


@dataclass(frozen=True)
class BipartiteEdges:
    """Training edges (u, i) of the user-item graph and their 1/sqrt(deg u deg i) weights."""

    user: torch.Tensor  # (E,) int64, CPU
    item: torch.Tensor
    weight: torch.Tensor  # (E,) float32: sampling weights of the degree-sensitive dropout
    n_users: int
    n_items: int

    @classmethod
    def from_matrix(cls, train: sp.csr_matrix) -> "BipartiteEdges":
        coo = train.tocoo()
        user = torch.as_tensor(coo.row.astype(np.int64))
        item = torch.as_tensor(coo.col.astype(np.int64))
        return cls(user, item, edge_norm(user, item, *train.shape), *train.shape)


def edge_norm(user: torch.Tensor, item: torch.Tensor, n_users: int,
              n_items: int) -> torch.Tensor:
    """1 / sqrt(deg(u) deg(i)) of every edge (MMRec's FREEDOM adds 1e-7 to every degree)."""
    user_deg = torch.bincount(user, minlength=n_users).float() + 1e-7
    item_deg = torch.bincount(item, minlength=n_items).float() + 1e-7
    return user_deg[user].pow(-0.5) * item_deg[item].pow(-0.5)


def degree_sensitive_edge_dropout(edges: BipartiteEdges, drop_rate: float,
                                  generator: torch.Generator) -> sp.csr_matrix:
    """FREEDOM's pruned graph: keep int(E (1 - rate)) edges sampled without replacement with
    probability proportional to 1/sqrt(deg u deg i), renormalise D^-1/2 A D^-1/2 on the
    kept edges; returns the symmetric (U+N) x (U+N) adjacency (scipy CSR, float32, sorted
    indices)."""
    n_keep = int(len(edges.weight) * (1.0 - drop_rate))
    kept = torch.multinomial(edges.weight, n_keep, replacement=False, generator=generator)
    user, item = edges.user[kept], edges.item[kept]
    values = edge_norm(user, item, edges.n_users, edges.n_items).numpy()
    n_nodes = edges.n_users + edges.n_items
    rows = np.concatenate([user.numpy(), item.numpy() + edges.n_users])
    cols = np.concatenate([item.numpy() + edges.n_users, user.numpy()])
    return sp.csr_matrix((np.concatenate([values, values]), (rows, cols)),
                         shape=(n_nodes, n_nodes), dtype=np.float32)
