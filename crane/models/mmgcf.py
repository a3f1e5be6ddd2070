"""MMGCF (UMAP 2026): LightGCN ID embeddings late-fused with projected item features.

Paper: *Multimodal Graph Collaborative Filtering for Recommendation with Graph Convolutional
Networks*, UMAP'26 (doi 10.1145/3774935.3806158). Reference: enoche/MMRec
`src/models/mmgcf.py` with its `src/configs/model/MMGCF.yaml`.

As the reference:

- user and item ID tables (xavier uniform) propagated by LightGCN: the mean of layers
  0..`n_ui_layers` over the normalised user-item graph. In training the graph is resampled
  before every epoch by FREEDOM's degree-sensitive edge dropout (`crane.ops.dropout`): int(E
  (1 - dropout)) of the E training edges drawn without replacement with probability
  proportional to 1/sqrt(deg u deg i), D^-1/2 A D^-1/2 renormalised on the kept edges (+1e-7
  on degrees, as the reference); dropout 0 trains on the full graph; evaluation always uses
  the full graph.
- every present modality's raw features (frozen) through a Linear to `feat_embed_dim`,
  modalities in the order image, text.
- the propagated item ID embedding is fused with the projected features (`fusion_mode`:
  element-wise mean, sum, or concatenation followed by a Linear) under a `weighting`:
  `equal` fuses the modalities first, then the result with the ID embedding; `alpha` scales
  the ID embedding by sigmoid(a) and each modality by 1 - sigmoid(a) (a learned, starting at
  0) and fuses all at once; `normalized` L2-normalises every row, multiplies the ID embedding
  by the number of modalities and fuses all at once. Users are the LightGCN output alone.
  As in the reference, a bias that moves every item's fused vector alike (the last fusion
  step's, and the projections' unless `normalized`) leaves BPR unchanged and gets no gradient.
- loss: -mean logsigmoid BPR of the fused embeddings + reg_weight * (||u||^2 + ||p||^2 +
  ||n||^2) / (2 B) over the batch's un-propagated ID rows.

Deliberate differences (tests/models/test_mmgcf.py compares loss, gradients and scores with a
transcription of the reference):

- Only the Linear layers the chosen weighting uses are created (the reference makes, for
  `concat`, all three and leaves the unused ones without gradient); `mm_alpha` only for
  `alpha`, as the reference.
- The loss propagates the last user-item layer at the batch's rows only and projects the
  features of the batch's distinct items only (the reference projects every item at every
  batch): the same values, every step being row-wise.
- LightGCN's layer mean is a sum divided by L + 1 (the reference: torch.stack(...).mean(),
  equal up to float rounding); the full graph gives isolated nodes a zero row (the reference
  adds 1e-7 to every degree); edges are sampled in CSR order (user, then item) on the run's
  generator, the reference in its dataset's order on torch's global one: the same
  distribution, other draws.
- MMRec's trainer evaluates the test split every epoch and its quick_start reports the grid
  point with the best test score; here the point and the epoch are selected on validation
  and the test split is scored once (docs/training.md).

Memory: O(E) for the user-item graphs, the feature tables (N x D per modality), O(N d) for the
projected features; no N x N or U x U object.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from crane.graphs.user_item import symmetric_bipartite_adjacency
from crane.models import register
from crane.models.base import Recommender, TrainData
from crane.models.hyperparameters import HyperParameters, hparam
from crane.ops.dropout import BipartiteEdges, degree_sensitive_edge_dropout
from crane.ops.gather import ReusedRowGather
from crane.ops.losses import logsigmoid_bpr_loss
from crane.ops.propagation import SquareGraph, lightgcn_layer_mean, lightgcn_layer_sum_at
from crane.ops.scores import dot_scores
from crane.ops.sparse import to_torch_sparse

FUSION_MODES = ("mean", "sum", "concat")
WEIGHTINGS = ("equal", "alpha", "normalized")


@dataclass(frozen=True)
class MMGCFConfig(HyperParameters):
    embedding_size: int = hparam(at_least=1)
    feat_embed_dim: int = hparam(at_least=1)
    n_ui_layers: int = hparam(at_least=0)
    reg_weight: float = hparam(at_least=0)
    fusion_mode: str = hparam(one_of=FUSION_MODES)
    weighting: str = hparam(one_of=WEIGHTINGS)
    dropout: float = hparam(at_least=0, below=1)

    def check(self, model: str) -> None:
        if self.fusion_mode != "concat" and self.feat_embed_dim != self.embedding_size:
            raise ValueError(f"{model}: fusion_mode {self.fusion_mode!r} adds the projected "
                             f"features to the ID embedding element-wise, so feat_embed_dim "
                             f"({self.feat_embed_dim}) must equal embedding_size "
                             f"({self.embedding_size}); use fusion_mode concat for other sizes")


@register("mmgcf")
class MMGCF(Recommender):
    config_class = MMGCFConfig
    uses_content = True

    def __init__(self, data: TrainData, hparams: dict[str, Any]):
        super().__init__(data, hparams)
        cfg = self.config
        self.modalities = self.feature_modalities(data)
        size, feat_size = cfg.embedding_size, cfg.feat_embed_dim
        self.user_embedding = nn.Embedding(self.n_users, size, device=self.device)
        self.item_id_embedding = nn.Embedding(self.n_items, size, device=self.device)
        nn.init.xavier_uniform_(self.user_embedding.weight)
        nn.init.xavier_uniform_(self.item_id_embedding.weight)

        self.projections = nn.ModuleDict()
        for modality in self.modalities:
            table = data.feature_tensor(modality)
            self.register_buffer(f"frozen_{modality}", table, persistent=False)
            self.projections[modality] = nn.Linear(table.shape[1], feat_size,
                                                   device=self.device)
        if cfg.weighting == "alpha":
            self.mm_alpha = nn.Parameter(torch.tensor(0.0, device=self.device))
        self.concat_layers = nn.ModuleDict(self._concat_layers())

        train = data.train_matrix()
        self.full_graph = SquareGraph(
            to_torch_sparse(symmetric_bipartite_adjacency(train), self.device))
        self.edges = BipartiteEdges.from_matrix(train)  # sampled on the CPU generator
        self.train_graph: SquareGraph | None = None
        self._gathers = {modality: ReusedRowGather() for modality in self.modalities}

    def _concat_layers(self) -> dict[str, nn.Linear]:
        """The reference's concat projections that this weighting uses: `all` maps [id, mm_1,
        ..., mm_M] (alpha, normalized); `mm` maps [mm_1, ..., mm_M] and `id_mm` maps [id, mm]
        (equal; `mm` only with more than one modality)."""
        cfg = self.config
        if cfg.fusion_mode != "concat":
            return {}
        size, feat_size, n_modalities = cfg.embedding_size, cfg.feat_embed_dim, len(
            self.modalities)
        if cfg.weighting != "equal":
            return {"all": nn.Linear(size + n_modalities * feat_size, size, device=self.device)}
        layers = {"id_mm": nn.Linear(size + feat_size, size, device=self.device)}
        if n_modalities > 1:
            layers["mm"] = nn.Linear(n_modalities * feat_size, feat_size, device=self.device)
        return layers

    # ----------------------------------------------------------------- graphs

    def start_epoch(self, epoch: int, generator: torch.Generator) -> None:
        """Degree-sensitive edge dropout: a fresh user-item subgraph for this epoch."""
        if self.config.dropout <= 0.0:
            self.train_graph = self.full_graph
            return
        self.train_graph = SquareGraph(to_torch_sparse(
            degree_sensitive_edge_dropout(self.edges, self.config.dropout, generator),
            self.device))

    # ----------------------------------------------------------------- forward

    def ego_embeddings(self) -> torch.Tensor:
        return torch.cat([self.user_embedding.weight, self.item_id_embedding.weight])

    def projected_features(self, items: torch.Tensor | None = None) -> list[torch.Tensor]:
        """Each modality's projected features, of every item or of the distinct `items`."""
        projected = []
        for modality in self.modalities:
            table = getattr(self, f"frozen_{modality}")
            rows = table if items is None else self._gathers[modality](table, items)
            projected.append(self.projections[modality](rows))
        return projected

    def apply_fusion(self, tensors: list[torch.Tensor], layer: str) -> torch.Tensor:
        mode = self.config.fusion_mode
        if mode == "mean":
            return torch.stack(tensors).mean(dim=0)
        if mode == "sum":
            return torch.stack(tensors).sum(dim=0)
        return self.concat_layers[layer](torch.cat(tensors, dim=-1))

    def fuse(self, item_emb: torch.Tensor, features: list[torch.Tensor]) -> torch.Tensor:
        """The reference's fuse_item_embeddings on matching rows of ID and feature tables."""
        weighting = self.config.weighting
        if weighting == "alpha":
            alpha = torch.sigmoid(self.mm_alpha)
            return self.apply_fusion([item_emb * alpha] + [f * (1.0 - alpha) for f in features],
                                     "all")
        if weighting == "normalized":
            return self.apply_fusion([F.normalize(item_emb) * len(features)]
                                     + [F.normalize(f) for f in features], "all")
        fused = self.apply_fusion(features, "mm") if len(features) > 1 else features[0]
        return self.apply_fusion([item_emb, fused], "id_mm")

    def propagate(self, graph: SquareGraph) -> tuple[torch.Tensor, torch.Tensor]:
        """(user, fused item) embeddings of everyone over `graph`."""
        mean = lightgcn_layer_mean(graph, self.ego_embeddings(), self.config.n_ui_layers)
        users, items = torch.split(mean, [self.n_users, self.n_items])
        return users, self.fuse(items, self.projected_features())

    def batch_embeddings(self, graph: SquareGraph, users: torch.Tensor,
                         items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`propagate(graph)` read at `users` and `items`: the last user-item layer at those
        rows only, the features of the distinct items only."""
        rows, at = torch.unique(torch.cat([users, items + self.n_users]), return_inverse=True)
        n_layers = self.config.n_ui_layers
        total = lightgcn_layer_sum_at(graph, self.ego_embeddings(), n_layers, rows)
        mean = (total / (n_layers + 1))[at]
        distinct, inverse = torch.unique(items, return_inverse=True)
        features = [f[inverse] for f in self.projected_features(distinct)]
        return mean[:len(users)], self.fuse(mean[len(users):], features)

    # ----------------------------------------------------------------- loss

    def loss(self, users: torch.Tensor, pos_items: torch.Tensor,
             neg_items: torch.Tensor | None) -> dict[str, torch.Tensor]:
        if neg_items is None:
            raise ValueError("mmgcf trains on (user, positive, negative) triples; got no "
                             "negatives")
        if self.train_graph is None:
            raise RuntimeError("mmgcf: start_epoch() must run before loss() "
                               "(it samples the epoch's user-item graph)")
        user_e, item_e = self.batch_embeddings(self.train_graph, users,
                                               torch.cat([pos_items, neg_items]))
        pos_e, neg_e = item_e.split(len(pos_items))
        # squared L2 of the un-propagated ID rows, / (2 B), as the reference
        reg = (self.user_embedding.weight[users].square().sum()
               + self.item_id_embedding.weight[pos_items].square().sum()
               + self.item_id_embedding.weight[neg_items].square().sum()) / (2 * len(users))
        return {"bpr": logsigmoid_bpr_loss(user_e, pos_e, neg_e),
                "reg": self.config.reg_weight * reg}

    # ----------------------------------------------------------------- scoring

    def scoring_tables(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.propagate(self.full_graph)

    def score(self, users: torch.Tensor) -> torch.Tensor:
        all_users, all_items = self.scoring_state()
        return dot_scores(all_users[users], all_items)
