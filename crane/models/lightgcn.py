"""LightGCN as in MMRec: propagate ID embeddings over the normalised user-item graph.

Final embeddings are the mean of layers 0..L, where layer l+1 = A_hat @ layer l and A_hat is
the symmetric D^-1/2 A D^-1/2 bipartite adjacency of the training interactions. Every batch
propagates the whole graph (as MMRec does) except for the last layer, which is computed only
at the batch's rows, the only ones the loss reads (same values); the loss is BPR on the final
embeddings plus reg_weight * EmbLoss of the layer-0 (ego) embeddings of the batch's users and
items.
"""

from __future__ import annotations

import functools
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from crane.graphs.user_item import symmetric_bipartite_adjacency, to_torch_sparse
from crane.models import register
from crane.models.base import Recommender, TrainData, bpr_loss, emb_loss
from crane.models.layers import dot_scores


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
        items_np = items.detach().contiguous().numpy()
        users_np = users.detach().contiguous().numpy()
        if torch.get_num_threads() > 1:
            # scipy releases the GIL: the two blocks (equal nnz) run on two cores
            future = _executor().submit(self.item_user.__matmul__, users_np)
            to_users = self.user_item @ items_np
            to_items = future.result()
        else:
            to_users, to_items = self.user_item @ items_np, self.item_user @ users_np
        return torch.from_numpy(np.asarray(to_users)), torch.from_numpy(np.asarray(to_items))

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
        return (_RowsProduct.apply(items, user_block), _RowsProduct.apply(users, item_block))


@functools.cache
def _executor() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="lightgcn-spmm")


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


class _RowsProduct(torch.autograd.Function):
    """block @ dense for a constant scipy CSR block of rows; backward block^T @ grad."""

    @staticmethod
    def forward(ctx, dense, block: sp.csr_matrix):
        ctx.block = block
        return torch.from_numpy(np.asarray(block @ dense.detach().contiguous().numpy()))

    @staticmethod
    def backward(ctx, grad):
        return torch.from_numpy(np.asarray(ctx.block.T @ grad.contiguous().numpy())), None


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
        pos_scores = (user_e * pos_e).sum(dim=1)
        neg_scores = (user_e * neg_e).sum(dim=1)
        pos_ego, neg_ego = self.item_embedding(items).split(len(users))
        reg = emb_loss(self.user_embedding(users), pos_ego, neg_ego)
        return {"bpr": bpr_loss(pos_scores, neg_scores), "reg": self.reg_weight * reg}

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
