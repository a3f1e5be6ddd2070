"""MMGCN (Wei et al., ACM MM'19, "MMGCN: Multi-modal Graph Convolution Network for
Personalized Recommendation of Micro-video"), as implemented in MMRec (enoche/MMRec,
src/models/mmgcn.py).

One GCN per modality over the user-item graph (edges in both directions, no self-loops).
Its input is [preference; features]: a fixed random user table next to the item features
(image features first go through a Linear to 256 dimensions, text features enter as they
are), rows L2-normalised. Three layers (MMRec's GCN always applies three; its `n_layers` key
is never read, so it is not accepted here), each

    h     = leaky_relu(mean over neighbours of (x @ W))                    (MessagePassing,
                                                                             aggr "mean")
    x_hat = leaky_relu(linear(x)) + id_embedding
    x     = leaky_relu(g(cat(h, x_hat)))

MMRec sets `concate = 'False'`, a non-empty string, so every `if self.concate` takes the
concatenation branch: `g` reads cat(h, x_hat). The representation of a node is the mean of
its modality GCNs' outputs; scores are user . item. Loss: -mean log sigmoid(s_pos - s_neg)
+ reg_weight * (mean of id_embedding^2 over the batch's (user, item) rows + mean of the
image GCN's preference^2).

What is trained, as in MMRec: the Linears and the conv weights only. `id_embedding` and each
GCN's `preference` are plain tensors there (`nn.init.xavier_normal_(torch.rand(...))`, not
`nn.Parameter`), so no optimizer ever sees them: here they are buffers, drawn once with the
same initialisation and saved with the model. The item features are plain tensors too
(frozen). The reg term therefore reads only untrained tables: it is part of the logged loss
and never of a gradient, as in MMRec.

Deliberate differences from MMRec:
- the mean aggregation is a constant sparse product with D^-1 A, A the (U+N) x (U+N)
  bipartite adjacency (torch_geometric's scatter-mean over the same edges; a node without
  edges gets zeros in both);
- the BPR term uses logsigmoid (the same value as log(sigmoid), without its underflow to -inf);
- the last layer is computed at the batch's rows only (the loss reads nothing else), the
  same values (tests/models/test_mmgcn.py);
- MMRec's `full_sort_predict` reads `self.result`, the representation of the last training
  batch's forward, i.e. of the parameters before the last optimizer step; here scores are
  computed from the current parameters (`scoring_tables`).

Memory: the graph holds 2E nonzeros; each GCN keeps (U+N) x width activations per layer
(width 256 for image, the text feature width for text, then embedding_size). No U x U or
N x N object.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import nn

from crane.models import register
from crane.models.base import Recommender, TrainData
from crane.models.hyperparameters import HyperParameters, hparam
from crane.ops.losses import logsigmoid_bpr_loss
from crane.ops.propagation import SquareGraph
from crane.ops.scores import dot_scores
from crane.ops.sparse import to_torch_sparse

# MMRec gives the image GCN `dim_latent=256` (a Linear from the features) and the text GCN
# none (the raw features are its input).
LATENT_WIDTH = {"image": 256, "text": None}
N_GCN_LAYERS = 3


@dataclass(frozen=True)
class MMGCNConfig(HyperParameters):
    embedding_size: int = hparam(at_least=1)
    reg_weight: float = hparam(at_least=0)


def mean_neighbour_graph(train: sp.csr_matrix) -> sp.csr_matrix:
    """D^-1 A of the bipartite graph A = [[0, R], [R^T, 0]]: row v averages v's neighbours
    (a row of zeros for a node without edges, as a scatter-mean gives)."""
    adjacency = sp.bmat([[None, train], [train.T, None]], format="csr", dtype=np.float32)
    degree = np.asarray(adjacency.sum(axis=1)).ravel()
    inverse = np.zeros_like(degree)
    inverse[degree > 0] = 1.0 / degree[degree > 0]
    return (sp.diags(inverse) @ adjacency).tocsr().astype(np.float32)


class ModalityGCN(nn.Module):
    """MMRec's `GCN`: three layers over [preference; features], with the ID embedding added
    at every layer."""

    def __init__(self, n_users: int, feature_width: int, latent_width: int | None,
                 embedding_size: int, device: torch.device):
        super().__init__()
        width = latent_width or feature_width
        preference = nn.init.xavier_normal_(torch.rand((n_users, width), device=device))
        self.register_buffer("preference", preference)  # not trained in MMRec
        self.mlp = (nn.Linear(feature_width, latent_width, device=device)
                    if latent_width else None)
        self.conv_weights = nn.ParameterList()
        self.linears = nn.ModuleList()
        self.gates = nn.ModuleList()
        for layer in range(N_GCN_LAYERS):
            size_in = width if layer == 0 else embedding_size
            self.conv_weights.append(nn.Parameter(
                nn.init.xavier_normal_(torch.empty(size_in, size_in, device=device))))
            linear = nn.Linear(size_in, embedding_size, device=device)
            nn.init.xavier_normal_(linear.weight)
            gate = nn.Linear(size_in + embedding_size, embedding_size, device=device)
            if layer == 0:  # MMRec re-initialises only g_layer1's weight
                nn.init.xavier_normal_(gate.weight)
            self.linears.append(linear)
            self.gates.append(gate)

    def layer_input(self, features: torch.Tensor) -> torch.Tensor:
        items = self.mlp(features) if self.mlp is not None else features
        return F.normalize(torch.cat([self.preference, items]))

    def layer(self, index: int, x: torch.Tensor, graph: SquareGraph,
              id_embedding: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
        """One layer at every node, or at `rows` only (the same values there)."""
        messages = x @ self.conv_weights[index]
        if rows is None:
            h = F.leaky_relu(graph(messages))
        else:
            h = F.leaky_relu(graph.rows_step(messages, rows))
            x, id_embedding = x[rows], id_embedding[rows]
        x_hat = F.leaky_relu(self.linears[index](x)) + id_embedding
        return F.leaky_relu(self.gates[index](torch.cat([h, x_hat], dim=1)))

    def forward(self, features: torch.Tensor, graph: SquareGraph, id_embedding: torch.Tensor,
                rows: torch.Tensor | None = None) -> torch.Tensor:
        x = self.layer_input(features)
        for index in range(N_GCN_LAYERS - 1):
            x = self.layer(index, x, graph, id_embedding)
        return self.layer(N_GCN_LAYERS - 1, x, graph, id_embedding, rows)


@register("mmgcn")
class MMGCN(Recommender):
    config_class = MMGCNConfig
    uses_content = True

    def __init__(self, data: TrainData, hparams: dict[str, Any]):
        super().__init__(data, hparams)
        size = self.config.embedding_size
        self.modalities = self.feature_modalities(data)
        self.gcns = nn.ModuleDict()
        for modality in self.modalities:
            table = data.feature_tensor(modality)
            self.register_buffer(f"features_{modality}", table, persistent=False)
            self.gcns[modality] = ModalityGCN(self.n_users, table.shape[1],
                                              LATENT_WIDTH[modality], size, self.device)
        id_embedding = nn.init.xavier_normal_(
            torch.rand((self.n_users + self.n_items, size), device=self.device))
        self.register_buffer("id_embedding", id_embedding)  # not trained in MMRec
        graph = mean_neighbour_graph(data.train_matrix())
        self.graph = SquareGraph(to_torch_sparse(graph, self.device),
                                 to_torch_sparse(graph.T, self.device))

    def features(self, modality: str) -> torch.Tensor:
        return getattr(self, f"features_{modality}")

    def representation(self, rows: torch.Tensor | None = None) -> torch.Tensor:
        """The mean of the modality GCNs' outputs, at every node or at `rows` (node ids:
        users first, then items)."""
        total = None
        for modality in self.modalities:
            out = self.gcns[modality](self.features(modality), self.graph, self.id_embedding,
                                      rows)
            total = out if total is None else total + out
        return total / len(self.modalities)

    def loss(self, users: torch.Tensor, pos_items: torch.Tensor,
             neg_items: torch.Tensor | None) -> dict[str, torch.Tensor]:
        nodes = torch.cat([users, pos_items + self.n_users, neg_items + self.n_users])
        rows, at = torch.unique(nodes, return_inverse=True)
        out = self.representation(rows)[at]
        user_e, pos_e, neg_e = out.split(len(users))
        terms = {"bpr": logsigmoid_bpr_loss(user_e, pos_e, neg_e)}
        # MMRec: (id[u]^2 + id[i]^2).mean() over the batch's (user, item) pairs, each user
        # once with its positive and once with its negative, plus the image preference^2
        # mean; both tables untrained, so this term carries no gradient.
        ids = self.id_embedding[nodes].square()
        user_sq, pos_sq, neg_sq = ids.split(len(users))
        reg = (2 * user_sq + pos_sq + neg_sq).sum() / (2 * len(users) * ids.shape[1])
        if "image" in self.gcns:
            reg = reg + self.gcns["image"].preference.square().mean()
        terms["reg"] = self.config.reg_weight * reg
        return terms

    def scoring_tables(self) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.representation()
        return out[:self.n_users], out[self.n_users:]

    def score(self, users: torch.Tensor) -> torch.Tensor:
        user_all, item_all = self.scoring_state()
        return dot_scores(user_all[users], item_all)
