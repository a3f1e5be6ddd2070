"""BM3 (Zhou et al., WWW 2023, "Bootstrap Latent Representations for Multi-modal
Recommendation"), as implemented in MMRec (src/models/bm3.py).

No negatives: a LightGCN encoder (plus the item ID embedding as a residual) gives online
embeddings; a shared linear predictor maps them into the prediction space; targets are the
encoder outputs under dropout, without gradient. Losses per batch of (user, item) pairs:
- `rec`: 1 - cos(pred(u), target(i)) + 1 - cos(pred(i), target(u))      (graph reconstruction)
- `align`: cl_weight * sum_m 1 - cos(pred(proj_m(x_i)), target(i))       (inter-modality)
- `mask`: cl_weight * sum_m 1 - cos(pred(proj_m(x_i)), dropout(proj_m(x_i)))  (intra-modality)
- `reg`: reg_weight * EmbLoss over the *full* encoder output tables (MMRec: divided by n_items)
Scores: pred(u) . pred(i).

Fidelity notes:
- Item feature tables are trainable, as in MMRec (`from_pretrained(..., freeze=False)`).
- MMRec projects and predicts every item's features and every node's embedding, then keeps the
  batch rows; here only the batch's distinct users and items are projected, predicted and
  dropped out, then gathered. Same numbers, and the same dropout mask for a row repeated in a
  batch (as when MMRec drops out the full table before indexing).
- MMRec's degree epsilon (1e-7) in the adjacency normalisation is below float32 resolution for
  any node with an edge; `symmetric_bipartite_adjacency` omits it.
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
from crane.ops.losses import emb_loss
from crane.ops.propagation import SquareGraph, lightgcn_layer_mean
from crane.ops.sparse import to_torch_sparse


@dataclass(frozen=True)
class BM3Config(HyperParameters):
    embedding_size: int = hparam(at_least=1)
    n_layers: int = hparam(at_least=0)
    reg_weight: float = hparam(at_least=0)
    cl_weight: float = hparam(at_least=0)
    dropout: float = hparam(at_least=0, below=1)


@register("bm3")
class BM3(Recommender):
    config_class = BM3Config
    uses_negatives = False
    uses_content = True

    def __init__(self, data: TrainData, hparams: dict[str, Any]):
        super().__init__(data, hparams)
        size = self.config.embedding_size
        self.modalities = self.feature_modalities(data)

        self.register_buffer("adjacency", to_torch_sparse(
            symmetric_bipartite_adjacency(data.train_matrix()), data.device), persistent=False)
        self.user_embedding = nn.Embedding(self.n_users, size, device=data.device)
        self.item_embedding = nn.Embedding(self.n_items, size, device=data.device)
        nn.init.xavier_uniform_(self.user_embedding.weight)
        nn.init.xavier_uniform_(self.item_embedding.weight)
        self.predictor = nn.Linear(size, size, device=data.device)
        nn.init.xavier_normal_(self.predictor.weight)
        # Raw features are fine-tuned, as in MMRec.
        self.features = nn.ParameterDict({
            m: nn.Parameter(data.feature_tensor(m).clone()) for m in self.modalities})
        self.projections = nn.ModuleDict({
            m: nn.Linear(self.features[m].shape[1], size, device=data.device)
            for m in self.modalities})
        for projection in self.projections.values():
            nn.init.xavier_normal_(projection.weight)

    def encode(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Online encoder outputs: LightGCN users, LightGCN items + item ID embedding."""
        ego = torch.cat([self.user_embedding.weight, self.item_embedding.weight])
        users, items = lightgcn_layer_mean(SquareGraph(self.adjacency), ego, self.config.n_layers,
                                           stacked_mean=True).split([self.n_users, self.n_items])
        return users, items + self.item_embedding.weight

    def loss(self, users: torch.Tensor, pos_items: torch.Tensor,
             neg_items: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        cfg = self.config
        user_table, item_table = self.encode()
        unique_users, user_index = torch.unique(users, return_inverse=True)
        unique_items, item_index = torch.unique(pos_items, return_inverse=True)
        user_rows, item_rows = user_table[unique_users], item_table[unique_items]
        with torch.no_grad():
            user_target = F.dropout(user_rows, cfg.dropout)[user_index]
            item_target = F.dropout(item_rows, cfg.dropout)[item_index]
        user_online = self.predictor(user_rows)[user_index]
        item_online = self.predictor(item_rows)[item_index]
        terms = {"rec": (1 - F.cosine_similarity(user_online, item_target, dim=-1).mean())
                        + (1 - F.cosine_similarity(item_online, user_target, dim=-1).mean())}
        if cfg.cl_weight != 0:
            align = mask = 0.0
            for modality in self.modalities:
                projected = self.projections[modality](self.features[modality][unique_items])
                with torch.no_grad():
                    feature_target = F.dropout(projected, cfg.dropout)[item_index]
                feature_online = self.predictor(projected)[item_index]
                align = align + 1 - F.cosine_similarity(feature_online, item_target, dim=-1).mean()
                mask = mask + 1 - F.cosine_similarity(feature_online, feature_target, dim=-1).mean()
            terms["align"] = cfg.cl_weight * align
            terms["mask"] = cfg.cl_weight * mask
        if cfg.reg_weight != 0:
            terms["reg"] = cfg.reg_weight * emb_loss(user_table, item_table)
        return terms

    def scoring_tables(self) -> tuple[torch.Tensor, torch.Tensor]:
        user_table, item_table = self.encode()
        return self.predictor(user_table), self.predictor(item_table)

    def score(self, users: torch.Tensor) -> torch.Tensor:
        user_table, item_table = self.scoring_state()
        return user_table[users] @ item_table.T
