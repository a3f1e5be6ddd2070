"""LightGCN as in MMRec: propagate ID embeddings over the normalised user-item graph.

Final embeddings are the mean of layers 0..L, where layer l+1 = A_hat @ layer l and A_hat is
the symmetric D^-1/2 A D^-1/2 bipartite adjacency of the training interactions. Every batch
propagates the whole graph (as MMRec does) except for the last layer, which is computed only
at the batch's rows, the only ones the loss reads (same values); the loss is BPR on the final
embeddings plus reg_weight * EmbLoss of the layer-0 (ego) embeddings of the batch's users and
items.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from crane.graphs.user_item import symmetric_bipartite_adjacency, to_torch_sparse
from crane.models import register
from crane.models.base import Recommender, TrainData, dot_bpr_loss, emb_loss
from crane.models.layers import dot_scores, gather_rows, transposed_csr
from crane.ops.threads import run_pair


class BipartitePropagation:
    """One propagation step over A_hat = [[0, R], [R^T, 0]] kept as its two blocks.

    `step(users, items)` returns (R @ items, R^T @ users), which is A_hat @ [users; items]
    without stacking the (U+N) x D matrix. On CPU the products go through scipy (several
    times faster than torch's CPU sparse kernels here), on GPU through torch's CSR kernels.
    The backward pass uses the same two blocks (A_hat is symmetric), so it is exact.
    """

    def __init__(self, adjacency: sp.spmatrix, n_users: int, device: torch.device,
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
        return _BipartiteStep.apply(users, items, self)

    def rows_step(self, users: torch.Tensor, items: torch.Tensor, user_rows: torch.Tensor,
                  item_rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`step(users, items)` at the given rows only: (R[user_rows] @ items,
        R^T[item_rows] @ users). Each row is the same product as in `step`, so the values
        are identical; the cost is that of the rows' nonzeros."""
        if self.backend == "torch":
            to_users, to_items = self.step(users, items)
            return to_users[user_rows], to_items[item_rows]
        user_block = self.user_item[user_rows.numpy()]
        item_block = self.item_user[item_rows.numpy()]
        return _RowsStep.apply(users, items, user_block, item_block)


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


class _BatchLayerSums(torch.autograd.Function):
    """LightGCN's layer sums 0..L at the batch's distinct rows, on the scipy backend, as one
    function: the same values as `layer_sums()[rows]` (additions in the same order), and a
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


@register("lightgcn")
class LightGCN(Recommender):
    hparam_names = ("embedding_size", "n_layers", "reg_weight")
    def __init__(self, data: TrainData, hparams: dict[str, Any]):
        super().__init__(data, hparams)
        size = int(hparams["embedding_size"])
        self.n_layers = int(hparams["n_layers"])
        if self.n_layers < 0:
            raise ValueError(f"lightgcn: n_layers must be >= 0, got {self.n_layers}")
        self.reg_weight = float(hparams["reg_weight"])
        self.user_embedding = nn.Embedding(self.n_users, size)
        self.item_embedding = nn.Embedding(self.n_items, size)
        # MMRec's LightGCN draws its tables with xavier_uniform_ (its BPR uses xavier_normal_)
        nn.init.xavier_uniform_(self.user_embedding.weight)
        nn.init.xavier_uniform_(self.item_embedding.weight)
        self.propagation = BipartitePropagation(
            symmetric_bipartite_adjacency(data.train_matrix()), self.n_users, data.device)
        self._scoring: tuple[torch.Tensor, torch.Tensor] | None = None

    def layer_sums(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Sum over layers 0..n_layers of the user and item embeddings."""
        users, items = self.user_embedding.weight, self.item_embedding.weight
        user_sum, item_sum = users, items
        for _ in range(self.n_layers):
            users, items = self.propagation.step(users, items)
            user_sum, item_sum = user_sum + users, item_sum + items
        return user_sum, item_sum

    def propagate(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Final user and item embeddings: the mean over layers 0..n_layers."""
        user_sum, item_sum = self.layer_sums()
        return user_sum / (self.n_layers + 1), item_sum / (self.n_layers + 1)

    def batch_layer_sums(self, users: torch.Tensor, items: torch.Tensor
                         ) -> tuple[torch.Tensor, torch.Tensor]:
        """`layer_sums()` at the rows `users` and `items` only.

        Layers 0..L-1 are propagated over the whole graph (layer L reads all of layer L-1),
        layer L only at the distinct rows the batch reads: the same values (every row is the
        same product), the last layer's cost cut to the batch's share of the graph.
        """
        user_emb, item_emb = self.user_embedding.weight, self.item_embedding.weight
        if self.n_layers == 0:
            return user_emb[users], item_emb[items]
        user_rows, user_at = torch.unique(users, return_inverse=True)
        item_rows, item_at = torch.unique(items, return_inverse=True)
        if self.propagation.backend == "scipy":
            user_sum, item_sum = _BatchLayerSums.apply(user_emb, item_emb, self.propagation,
                                                       self.n_layers, user_rows, item_rows)
            return user_sum[user_at], item_sum[item_at]
        layer_users, layer_items = user_emb, item_emb
        user_sum, item_sum = user_emb, item_emb
        for _ in range(self.n_layers - 1):
            layer_users, layer_items = self.propagation.step(layer_users, layer_items)
            user_sum, item_sum = user_sum + layer_users, item_sum + layer_items
        last_users, last_items = self.propagation.rows_step(layer_users, layer_items,
                                                            user_rows, item_rows)
        # one gather per side (its backward scatters into a full table); the additions run
        # in the same order as layer_sums', so the values are bitwise the same
        user_sum, item_sum = user_sum[user_rows] + last_users, item_sum[item_rows] + last_items
        return user_sum[user_at], item_sum[item_at]

    def loss(self, users: torch.Tensor, pos_items: torch.Tensor,
             neg_items: torch.Tensor | None) -> dict[str, torch.Tensor]:
        self._scoring = None
        items = torch.cat([pos_items, neg_items])
        user_sum, item_sum = self.batch_layer_sums(users, items)
        # the mean over layers, taken on the batch's rows only (same values, less work)
        layers = self.n_layers + 1
        user_e = user_sum / layers
        pos_e, neg_e = (item_sum / layers).split(len(users))
        pos_ego, neg_ego = gather_rows(self.item_embedding.weight, items).split(len(users))
        reg = emb_loss(gather_rows(self.user_embedding.weight, users), pos_ego, neg_ego)
        return {"bpr": dot_bpr_loss(user_e, pos_e, neg_e), "reg": self.reg_weight * reg}

    def prepare_scoring(self) -> None:
        self._scoring = self.propagate()

    def score(self, users: torch.Tensor) -> torch.Tensor:
        if self._scoring is None:
            self.prepare_scoring()
        user_all, item_all = self._scoring
        return dot_scores(user_all[users], item_all)

    def train(self, mode: bool = True) -> "LightGCN":
        if mode:
            self._scoring = None  # parameters will change: drop the cached propagation
        return super().train(mode)
