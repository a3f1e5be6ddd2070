"""Graph propagation and LightGCN's layer mean.

A graph here is a propagation step: called on a layer it returns the next one, and
`rows_step(layer, rows)` returns the next layer at some rows only (each row the same product,
so the same values). Two kinds:

- `BipartitePropagation`: the normalised user-item graph A_hat = [[0, R], [R^T, 0]] kept as its
  two blocks; a layer is a (users, items) pair. On CPU the products go through scipy (the two
  blocks on two threads when the run has two), elsewhere through torch's CSR kernels.
- `SquareGraph`: a constant square CSR graph (`crane.ops.sparse.constant_sparse_mm`); a layer
  is one tensor.

LightGCN's layer mean, the mean of step^l(layer 0) over l = 0..L, is `lightgcn_layer_mean`;
`lightgcn_layer_sum_at` gives the layer sum at some rows, propagating the last layer at those
rows only (a training batch reads nothing else). Plain-autograd references:
`reference_layer_mean`, `reference_layer_sum`; tests/ops/test_propagation.py checks every
path (scipy and torch backends, full and row steps, the fused backward) against them.
"""

from __future__ import annotations

from typing import Callable, Union

import numpy as np
import scipy.sparse as sp
import torch

from crane.ops.precision import apply_in_float32
from crane.ops.sparse import (constant_sparse_mm, constant_sparse_rows_mm, to_torch_sparse,
                              transposed_csr)
from crane.ops.threads import run_pair

# A layer: one (nodes, d) tensor on a square graph, a (users, items) pair on a bipartite one.
Layer = Union[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]
Graph = Callable[[Layer], Layer]


class BipartitePropagation:
    """One propagation step over A_hat = [[0, R], [R^T, 0]] kept as its two blocks.

    `step(users, items)` returns (R @ items, R^T @ users), which is A_hat @ [users; items]
    without stacking the (U+N) x D matrix. The backward pass uses the same two blocks (A_hat
    is symmetric), so it is exact.
    """

    def __init__(self, adjacency: sp.spmatrix, n_users: int, device: torch.device | str,
                 backend: str = "auto"):
        adjacency = sp.csr_matrix(adjacency, dtype=np.float32)
        if (abs(adjacency - adjacency.T) > 1e-6).nnz:
            raise ValueError("BipartitePropagation needs a symmetric adjacency")
        if backend not in ("auto", "scipy", "torch"):
            raise ValueError(f"backend must be auto, scipy or torch, got {backend!r}")
        self.device = torch.device(device)
        self.user_item = sp.csr_matrix(adjacency[:n_users, n_users:])   # R (normalised)
        self.item_user = sp.csr_matrix(adjacency[n_users:, :n_users])   # R^T
        if backend == "auto":
            backend = "scipy" if self.device.type == "cpu" else "torch"
        if backend == "scipy" and self.device.type != "cpu":
            raise ValueError("the scipy backend runs on CPU tensors only")
        self.backend = backend
        if backend == "torch":
            self._torch = (to_torch_sparse(self.user_item, self.device),
                           to_torch_sparse(self.item_user, self.device))

    def to_scipy(self) -> sp.csr_matrix:
        """A_hat as one (U+N) x (U+N) matrix."""
        return sp.bmat([[None, self.user_item], [self.item_user, None]], format="csr")

    def products(self, items: torch.Tensor, users: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """(R @ items, R^T @ users)."""
        if self.backend == "torch":
            return (torch.sparse.mm(self._torch[0], items.contiguous()),
                    torch.sparse.mm(self._torch[1], users.contiguous()))
        to_users, to_items = self.scipy_products(items.detach().contiguous().numpy(),
                                                 users.detach().contiguous().numpy())
        return torch.from_numpy(to_users), torch.from_numpy(to_items)

    def scipy_products(self, items: np.ndarray, users: np.ndarray
                       ) -> tuple[np.ndarray, np.ndarray]:
        """(R @ items, R^T @ users) on numpy arrays; the two blocks (equal nnz) on two
        threads when the run has two."""
        to_users, to_items = run_pair(lambda: self.user_item @ items,
                                      lambda: self.item_user @ users)
        return np.asarray(to_users), np.asarray(to_items)

    def step(self, users: torch.Tensor, items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return apply_in_float32(_BipartiteStep, users, items, self)

    def __call__(self, layer: tuple[torch.Tensor, torch.Tensor]
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        return self.step(*layer)

    def rows_step(self, layer: tuple[torch.Tensor, torch.Tensor],
                  rows: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """The step at rows (user_rows, item_rows) only: (R[user_rows] @ items,
        R^T[item_rows] @ users); the cost is that of the rows' nonzeros."""
        users, items = layer
        user_rows, item_rows = rows
        if self.backend == "torch":
            to_users, to_items = self.step(users, items)
            return to_users[user_rows], to_items[item_rows]
        user_block = self.user_item[user_rows.numpy()]
        item_block = self.item_user[item_rows.numpy()]
        return apply_in_float32(_RowsStep, users, items, user_block, item_block)


class _BipartiteStep(torch.autograd.Function):
    @staticmethod
    def forward(ctx, users, items, propagation: BipartitePropagation):
        ctx.propagation = propagation
        return propagation.products(items, users)

    @staticmethod
    def backward(ctx, grad_users, grad_items):
        # out_users = R @ items, out_items = R^T @ users
        grad_of_users, grad_of_items = ctx.propagation.products(grad_items, grad_users)
        return grad_of_users, grad_of_items, None


class _RowsStep(torch.autograd.Function):
    """(user_block @ items, item_block @ users) for constant scipy CSR row blocks of R and
    R^T; backward (item_block^T @ grad_items, user_block^T @ grad_users). The two products
    of each pass run concurrently when the run has two threads."""

    @staticmethod
    def forward(ctx, users, items, user_block: sp.csr_matrix, item_block: sp.csr_matrix):
        ctx.blocks = user_block, item_block
        users_np = users.detach().contiguous().numpy()
        items_np = items.detach().contiguous().numpy()
        to_users, to_items = run_pair(lambda: user_block @ items_np,
                                      lambda: item_block @ users_np)
        return torch.from_numpy(np.asarray(to_users)), torch.from_numpy(np.asarray(to_items))

    @staticmethod
    def backward(ctx, grad_users, grad_items):
        user_block, item_block = ctx.blocks
        grad_users_np = grad_users.contiguous().numpy()
        grad_items_np = grad_items.contiguous().numpy()
        grad_of_users, grad_of_items = run_pair(
            lambda: transposed_csr(item_block) @ grad_items_np,
            lambda: transposed_csr(user_block) @ grad_users_np)
        return (torch.from_numpy(np.asarray(grad_of_users)),
                torch.from_numpy(np.asarray(grad_of_items)), None, None)


class SquareGraph:
    """A constant square CSR graph as a propagation step (`transpose` None: symmetric)."""

    def __init__(self, matrix: torch.Tensor, transpose: torch.Tensor | None = None):
        self.matrix = matrix
        self.transpose = matrix if transpose is None else transpose

    def __call__(self, layer: torch.Tensor) -> torch.Tensor:
        return constant_sparse_mm(self.matrix, self.transpose, layer)

    def rows_step(self, layer: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        return constant_sparse_rows_mm(self.matrix, self.transpose, rows, layer)


# --------------------------------------------------------------------------- layer mean


def lightgcn_layer_sum(graph: Graph, layer: Layer, n_layers: int) -> Layer:
    """layer + graph(layer) + ... + graph^n_layers(layer), added one layer at a time."""
    return _sum_and_last(graph, layer, n_layers)[0]


def lightgcn_layer_mean(graph: Graph, layer: Layer, n_layers: int,
                        stacked_mean: bool = False) -> Layer:
    """LightGCN's mean over layers 0..n_layers of graph^l(layer).

    Two float orders, each the one its models' MMRec code uses, so that every model keeps its
    numbers bit for bit: by default the layers are added one at a time and the sum divided
    (LightGCN, FREEDOM, LATTICE, CRANE); `stacked_mean` takes torch.stack(layers).mean()
    (BM3, MGCN, LGMRec; a tensor layer only).
    """
    if stacked_mean:
        layers = [layer]
        for _ in range(n_layers):
            layers.append(graph(layers[-1]))
        return torch.stack(layers, dim=1).mean(dim=1)
    total = lightgcn_layer_sum(graph, layer, n_layers)
    return _apply(lambda t: t / (n_layers + 1), total)


def lightgcn_layer_sum_at(graph: Graph, layer: Layer, n_layers: int, rows: Layer,
                          fused_backward: bool = False) -> Layer:
    """`lightgcn_layer_sum(...)` at distinct `rows` (a tensor, or a (user_rows, item_rows)
    pair): layers 0..L-1 over the whole graph (layer L reads all of layer L-1), layer L at the
    rows only. The same values, the additions in the same order.

    `fused_backward` (a `BipartitePropagation` on scipy): LightGCN's one-function kernel,
    whose backward carries each layer's gradient as one table per side; its gradients equal
    autograd's up to float order (tests/ops/test_propagation.py).
    """
    if n_layers == 0:
        return _gather(layer, rows)
    if fused_backward and isinstance(graph, BipartitePropagation) and graph.backend == "scipy":
        return apply_in_float32(_BatchLayerSums, *layer, graph, n_layers, *rows)
    total, last = _sum_and_last(graph, layer, n_layers - 1)
    return _add(_gather(total, rows), graph.rows_step(last, rows))


def _sum_and_last(graph: Graph, layer: Layer, n_layers: int) -> tuple[Layer, Layer]:
    total = layer
    for _ in range(n_layers):
        layer = graph(layer)
        total = _add(total, layer)
    return total, layer


def _add(a: Layer, b: Layer) -> Layer:
    if isinstance(a, torch.Tensor):
        return a + b
    return tuple(x + y for x, y in zip(a, b))


def _gather(layer: Layer, rows: Layer) -> Layer:
    if isinstance(layer, torch.Tensor):
        return layer[rows]
    return tuple(x[r] for x, r in zip(layer, rows))


def _apply(function: Callable[[torch.Tensor], torch.Tensor], layer: Layer) -> Layer:
    if isinstance(layer, torch.Tensor):
        return function(layer)
    return tuple(function(x) for x in layer)


class _BatchLayerSums(torch.autograd.Function):
    """LightGCN's layer sums 0..L at distinct rows, on the scipy backend, as one function: the
    same values as `lightgcn_layer_sum(...)[rows]` (additions in the same order), and a
    backward that carries each layer's gradient as one full table per side.

    Propagation is linear, so the backward needs no activation: with g the gradient at the
    rows, the gradient reaching layer L-1 is (item_block^T g_items, user_block^T g_users)
    plus g at the rows (layer L-1 is itself in the sum); each step down applies A_hat (it is
    symmetric) and adds g at the rows again. Autograd through the same graph allocates a
    zeroed table, a scatter and an addition per layer and side instead.
    """

    @staticmethod
    def forward(ctx, user_emb, item_emb, propagation: BipartitePropagation, n_layers: int,
                user_rows, item_rows):
        rows_u, rows_i = user_rows.numpy(), item_rows.numpy()
        user_block = propagation.user_item[rows_u]
        item_block = propagation.item_user[rows_i]
        ctx.state = propagation, n_layers, rows_u, rows_i, user_block, item_block
        users = user_emb.detach().contiguous().numpy()
        items = item_emb.detach().contiguous().numpy()
        user_sum, item_sum = users[rows_u], items[rows_i]
        for _ in range(n_layers - 1):
            users, items = propagation.scipy_products(items, users)
            user_sum, item_sum = user_sum + users[rows_u], item_sum + items[rows_i]
        last_users, last_items = run_pair(lambda: user_block @ items,
                                          lambda: item_block @ users)
        return (torch.from_numpy(np.asarray(user_sum + last_users)),
                torch.from_numpy(np.asarray(item_sum + last_items)))

    @staticmethod
    def backward(ctx, grad_users, grad_items):
        propagation, n_layers, rows_u, rows_i, user_block, item_block = ctx.state
        g_users = grad_users.contiguous().numpy()
        g_items = grad_items.contiguous().numpy()
        # last layer: out_users = user_block @ items_{L-1}, out_items = item_block @ users_{L-1}
        to_users, to_items = run_pair(lambda: transposed_csr(item_block) @ g_items,
                                      lambda: transposed_csr(user_block) @ g_users)
        to_users, to_items = np.asarray(to_users), np.asarray(to_items)
        for _ in range(n_layers - 1):
            to_users[rows_u] += g_users   # the rows are distinct: += is a scatter-add
            to_items[rows_i] += g_items
            to_users, to_items = propagation.scipy_products(to_items, to_users)
        to_users[rows_u] += g_users       # layer 0 is in the sum too
        to_items[rows_i] += g_items
        return torch.from_numpy(to_users), torch.from_numpy(to_items), None, None, None, None


# --------------------------------------------------------------------------- references


def reference_layer_sum(adjacency: torch.Tensor, ego: torch.Tensor, n_layers: int
                        ) -> torch.Tensor:
    """sum over l = 0..n_layers of A^l ego, with a dense A, in plain autograd."""
    layers = [ego]
    for _ in range(n_layers):
        layers.append(adjacency @ layers[-1])
    return torch.stack(layers).sum(0)


def reference_layer_mean(adjacency: torch.Tensor, ego: torch.Tensor, n_layers: int
                         ) -> torch.Tensor:
    """mean over l = 0..n_layers of A^l ego, with a dense A, in plain autograd."""
    return reference_layer_sum(adjacency, ego, n_layers) / (n_layers + 1)
