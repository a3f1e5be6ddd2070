"""PGL (Yu, Tan, Lu, Bao, AAAI 2025): message passing on a principal subgraph of the user-item
graph.

Paper: *Mind Individual Information! Principal Graph Learning for Multimedia Recommendation*.
Reference: enoche/MMRec `src/models/pgl.py` (the same code as the authors' demonph10/PGL
`src/models/pgl.py`) with its `src/configs/model/PGL.yaml`.

As the reference:

- users: one free table per modality (xavier uniform), concatenated; items: per modality the
  raw feature table (trainable, MMRec's `from_pretrained(freeze=False)`) through a Linear to
  `feat_embed_dim`, each row L2-normalised, the modalities concatenated (image, text).
- item graph, frozen before training: FREEDOM's, the binary top-`knn_k` cosine graph of each
  modality's raw features (entries 1/k), mixed `mm_image_weight * image + (1 -
  mm_image_weight) * text`; the item ego embeddings are propagated `n_mm_layers` times over it
  and added to the items' user-item output.
- user-item: LightGCN's mean over layers 0..`n_ui_layers`, in training over the principal
  subgraph, at evaluation over the full normalised graph A_hat.
- principal subgraph (`mode`):
  `local`: before every epoch, int(0.3 E) of the E training edges sampled without replacement
  with probability proportional to 1/sqrt(deg u deg i), D^-1/2 A D^-1/2 renormalised on the
  kept edges (MMRec's +1e-7 on degrees kept);
  `global`: once, from the top d = `embedding_size` singular triplets (s descending) of A_hat
  and m = int(d / 4): sum_{j<m} s_j s_{d-m+j} u_j v_j^T, entries below 1e-3 in absolute value
  dropped, used without renormalisation.
- loss: -mean logsigmoid BPR of the batch + reg_weight * (InfoNCE(drop(u), drop(u)) +
  InfoNCE(drop(p), drop(p))) / 2 over the batch's user and positive-item rows (temperature 0.2,
  the other rows of the batch as negatives, repeated rows included), each `drop` an
  independent dropout of rate `dropout`.

Deliberate differences:

- The global subgraph is computed from the user-item block R of A_hat = [[0, R], [R^T, 0]]:
  A_hat's singular values are R's, each twice, and the pair of triplets of R's triplet
  (s, a, b) contributes s [[0, a b^T], [b a^T, 0]] whichever basis the solver picks, so the
  reference's sum is [[0, P], [P^T, 0]] with P = sum_{j<m/2} s_j s_{d/2-m/2+j} a_j b_j^T over
  R's top d/2 triplets (zeros past R's rank). P is formed in blocks of users and thresholded
  block by block: no dense (U+N) x (U+N) product. The SVD is scipy's (`svds`, ARPACK with a
  fixed start; numpy's dense SVD for small R) instead of `sparsesvd`. The pairing is only
  well defined when d and m are even (otherwise the reference splits a pair of equal
  singular values, and its result depends on the solver): `global` needs embedding_size =
  8q or 8q + 2, q >= 1. tests/models/test_pgl.py checks the block form against the
  reference's dense SVD of A_hat. Where R itself repeats a singular value across the paired
  window (every connected component of the graph has singular value 1), the reference's
  product depends on its solver's basis, and so does ours.
- One modality is supported (the reference normalises both and fails with one): the user and
  item vectors then hold that modality's part only.
- Dropout masks are drawn by `FastDropout` (torch.rand; nn.Dropout draws Bernoulli): the same
  distribution, other draws. With reg_weight == 0 the contrastive term is not computed (MMRec
  computes it and multiplies by 0).
- LightGCN's layer mean is a sum divided by L + 1 (MMRec: torch.stack(...).mean(), equal up
  to float rounding), and the loss computes the last user-item layer at the batch's rows only
  (the same values).
- A_hat gives isolated nodes a zero row (MMRec adds 1e-7 to every degree).
- MMRec's unused keys (lambda_coeff, weight_size) are not accepted. `train_features: true`
  keeps MMRec's trainable feature tables; `false` freezes them (a named deviation).
- MMRec's trainer evaluates the test split every epoch and its quick_start reports the grid
  point with the best test score; here the point and the epoch are selected on validation and
  the test split is scored once (docs/training.md).

Memory: the item graph holds N k entries, the user-item graphs O(E); the global subgraph
holds the kept entries of P, built from (U + N) x d/2 factors in blocks of `BLOCK_USERS` x N.
No N x N or U x U object.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from scipy.sparse.linalg import svds
from torch import nn

from crane.graphs.user_item import symmetric_bipartite_adjacency
from crane.models import register
from crane.models.base import Recommender, TrainData
from crane.models.hyperparameters import HyperParameters, hparam
from crane.models.layers import multimodal_knn_graph
from crane.ops.contrastive import one_way_info_nce
from crane.ops.dropout import BipartiteEdges, FastDropout, edge_norm
from crane.ops.losses import logsigmoid_bpr_loss
from crane.ops.propagation import SquareGraph, lightgcn_layer_mean, lightgcn_layer_sum_at
from crane.ops.scores import dot_scores
from crane.ops.sparse import to_torch_sparse

LOCAL_KEEP_SHARE = 0.3      # the reference's degree_len = int(E * 0.3)
GLOBAL_SHARE = 0.25         # the reference's num_top_bottom = int(0.25 * embedding_size)
GLOBAL_THRESHOLD = 1e-3     # entries of the global product below this are dropped
TEMPERATURE = 0.2           # the reference's InfoNCE temperature
DENSE_SVD_MAX_CELLS = 4_000_000  # a smaller R is decomposed densely by numpy
BLOCK_USERS = 2048          # users per block of the global product (BLOCK_USERS x N float64)


@dataclass(frozen=True)
class PGLConfig(HyperParameters):
    embedding_size: int = hparam(at_least=1)
    feat_embed_dim: int = hparam(at_least=1)
    knn_k: int = hparam(at_least=1)
    mm_image_weight: float = hparam(at_least=0, at_most=1)
    n_mm_layers: int = hparam(at_least=0)
    n_ui_layers: int = hparam(at_least=0)
    dropout: float = hparam(at_least=0, below=1)
    reg_weight: float = hparam(at_least=0)
    mode: str = hparam(one_of=("local", "global"))
    train_features: bool = hparam()

    def check(self, model: str) -> None:
        if self.feat_embed_dim != self.embedding_size:
            raise ValueError(f"{model}: feat_embed_dim ({self.feat_embed_dim}) must equal "
                             f"embedding_size ({self.embedding_size}): user and item rows "
                             "share the user-item graph")
        d = self.embedding_size
        if self.mode == "global" and not (d >= 8 and d % 2 == 0 and (d // 4) % 2 == 0):
            raise ValueError(f"{model}: mode 'global' needs embedding_size = 8q or 8q + 2 "
                             f"(q >= 1), got {d}: the reference pairs int(d / 4) top with as "
                             "many bottom singular values of the user-item graph, whose "
                             "singular values come in equal pairs")


def local_principal_subgraph(edges: BipartiteEdges, generator: torch.Generator
                             ) -> sp.csr_matrix:
    """The reference's degree-sensitive sampling: int(0.3 E) edges drawn without replacement
    with probability proportional to 1/sqrt(deg u deg i), D^-1/2 A D^-1/2 on the kept edges;
    the U x N block (float32 CSR)."""
    n_keep = int(len(edges.weight) * LOCAL_KEEP_SHARE)
    kept = torch.multinomial(edges.weight, n_keep, replacement=False, generator=generator)
    user, item = edges.user[kept], edges.item[kept]
    values = edge_norm(user, item, edges.n_users, edges.n_items).numpy()
    return sp.csr_matrix((values, (user.numpy(), item.numpy())),
                         shape=(edges.n_users, edges.n_items), dtype=np.float32)


def top_singular_triplets(matrix: sp.spmatrix, k: int,
                          dense_max_cells: int = DENSE_SVD_MAX_CELLS
                          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(left (rows, k), values (k,) descending, right (cols, k)) of `matrix` in float64;
    zero columns and values past the matrix's smaller side."""
    matrix = sp.csr_matrix(matrix, dtype=np.float64)
    n_rows, n_cols = matrix.shape
    if k < min(n_rows, n_cols) and n_rows * n_cols > dense_max_cells:
        left, values, right_t = svds(matrix, k=k, rng=np.random.default_rng(0))
    else:
        left, values, right_t = np.linalg.svd(matrix.toarray(), full_matrices=False)
    order = np.argsort(-values, kind="stable")[:k]
    left, values, right = left[:, order], values[order], right_t[order].T
    missing = k - len(values)
    if missing > 0:
        left = np.pad(left, ((0, 0), (0, missing)))
        right = np.pad(right, ((0, 0), (0, missing)))
        values = np.pad(values, (0, missing))
    return left, values, right


def global_principal_subgraph(user_item: sp.spmatrix, embedding_size: int,
                              dense_max_cells: int = DENSE_SVD_MAX_CELLS,
                              block_users: int = BLOCK_USERS) -> sp.csr_matrix:
    """The user-item block P of the reference's global principal subgraph (float32 CSR)."""
    n_top = int(GLOBAL_SHARE * embedding_size)  # counted on A_hat: n_top / 2 pairs of R
    half, pairs = embedding_size // 2, n_top // 2
    left, values, right = top_singular_triplets(user_item, half, dense_max_cells)
    weights = values[:pairs] * values[half - pairs:]
    left, right = left[:, :pairs] * weights, right[:, :pairs]
    blocks = []
    for start in range(0, left.shape[0], block_users):
        block = left[start:start + block_users] @ right.T
        block[np.abs(block) < GLOBAL_THRESHOLD] = 0.0
        blocks.append(sp.csr_matrix(block))
    return sp.vstack(blocks, format="csr").astype(np.float32)


def bipartite_square_graph(user_item: sp.spmatrix, device: torch.device) -> SquareGraph:
    """[[0, B], [B^T, 0]] of a U x N block B as a symmetric square propagation step."""
    square = sp.bmat([[None, user_item], [user_item.T, None]], format="csr", dtype=np.float32)
    return SquareGraph(to_torch_sparse(square, device))


@register("pgl")
class PGL(Recommender):
    config_class = PGLConfig
    uses_content = True

    def __init__(self, data: TrainData, hparams: dict[str, Any]):
        super().__init__(data, hparams)
        cfg = self.config
        self.modalities = self.feature_modalities(data)
        self.user_preference = nn.ParameterDict({
            m: nn.Parameter(nn.init.xavier_uniform_(
                torch.empty(self.n_users, cfg.embedding_size, device=self.device)))
            for m in self.modalities})
        # Trainable feature tables are model state (checkpointed); frozen ones are inputs.
        self.trainable_features = nn.ParameterDict()
        self.projections = nn.ModuleDict()
        for modality in self.modalities:
            table = data.feature_tensor(modality)
            if cfg.train_features:
                self.trainable_features[modality] = nn.Parameter(table.clone())
            else:
                self.register_buffer(f"frozen_{modality}", table, persistent=False)
            self.projections[modality] = nn.Linear(table.shape[1], cfg.feat_embed_dim,
                                                   device=self.device)
        self.dropout = FastDropout(cfg.dropout)

        item_graph = multimodal_knn_graph(data, self.modalities, cfg.knn_k, cfg.mm_image_weight)
        self.item_graph = SquareGraph(to_torch_sparse(item_graph, self.device),
                                      to_torch_sparse(item_graph.T, self.device))
        train = data.train_matrix()
        full = symmetric_bipartite_adjacency(train)
        self.full_graph = SquareGraph(to_torch_sparse(full, self.device))
        self.edges = BipartiteEdges.from_matrix(train)  # sampled on the CPU generator
        self.train_graph: SquareGraph | None = None
        if cfg.mode == "global":
            user_item = full[:self.n_users, self.n_users:]
            self.train_graph = bipartite_square_graph(
                global_principal_subgraph(user_item, cfg.embedding_size), self.device)

    # ----------------------------------------------------------------- graphs

    def start_epoch(self, epoch: int, generator: torch.Generator) -> None:
        """Local mode: a freshly sampled principal subgraph for this epoch (the global one is
        fixed at construction)."""
        if self.config.mode == "local":
            self.train_graph = bipartite_square_graph(
                local_principal_subgraph(self.edges, generator), self.device)

    # ----------------------------------------------------------------- forward

    def features(self, modality: str) -> torch.Tensor:
        if modality in self.trainable_features:
            return self.trainable_features[modality]
        return getattr(self, f"frozen_{modality}")

    def user_ego(self) -> torch.Tensor:
        return torch.cat([self.user_preference[m] for m in self.modalities], dim=1)

    def item_ego(self) -> torch.Tensor:
        return torch.cat([F.normalize(self.projections[m](self.features(m)))
                          for m in self.modalities], dim=1)

    def item_graph_embeddings(self, items: torch.Tensor) -> torch.Tensor:
        for _ in range(self.config.n_mm_layers):
            items = self.item_graph(items)
        return items

    def propagate(self, graph: SquareGraph) -> tuple[torch.Tensor, torch.Tensor]:
        """(user, item) embeddings after the user-item `graph` and the item graph."""
        items = self.item_ego()
        h = self.item_graph_embeddings(items)
        ego = torch.cat([self.user_ego(), items])
        mean = lightgcn_layer_mean(graph, ego, self.config.n_ui_layers)
        users, item_out = torch.split(mean, [self.n_users, self.n_items])
        return users, item_out + h

    def batch_embeddings(self, graph: SquareGraph, users: torch.Tensor,
                         items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`propagate(graph)` read at `users` and `items`, the last user-item layer computed
        at those rows only: the same values, the additions in the same order."""
        item_ego = self.item_ego()
        h = self.item_graph_embeddings(item_ego)
        ego = torch.cat([self.user_ego(), item_ego])
        rows, at = torch.unique(torch.cat([users, items + self.n_users]), return_inverse=True)
        n_layers = self.config.n_ui_layers
        mean = (lightgcn_layer_sum_at(graph, ego, n_layers, rows) / (n_layers + 1))[at]
        return mean[:len(users)], mean[len(users):] + h[items]

    # ----------------------------------------------------------------- loss

    def loss(self, users: torch.Tensor, pos_items: torch.Tensor,
             neg_items: torch.Tensor | None) -> dict[str, torch.Tensor]:
        if neg_items is None:
            raise ValueError("pgl trains on (user, positive, negative) triples; got no "
                             "negatives")
        if self.train_graph is None:
            raise RuntimeError("pgl: start_epoch() must run before loss() "
                               "(it samples the epoch's principal subgraph)")
        user_e, item_e = self.batch_embeddings(self.train_graph, users,
                                               torch.cat([pos_items, neg_items]))
        pos_e, neg_e = item_e.split(len(pos_items))
        terms = {"bpr": logsigmoid_bpr_loss(user_e, pos_e, neg_e)}
        if self.config.reg_weight != 0:
            cl = (one_way_info_nce(self.dropout(user_e), self.dropout(user_e), TEMPERATURE)
                  + one_way_info_nce(self.dropout(pos_e), self.dropout(pos_e), TEMPERATURE))
            terms["cl"] = self.config.reg_weight * (cl / 2)
        return terms

    # ----------------------------------------------------------------- scoring

    def scoring_tables(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.propagate(self.full_graph)

    def score(self, users: torch.Tensor) -> torch.Tensor:
        all_users, all_items = self.scoring_state()
        return dot_scores(all_users[users], all_items)
