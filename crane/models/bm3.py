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

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from crane.graphs.user_item import symmetric_bipartite_adjacency, to_torch_sparse
from crane.models import register
from crane.models.base import Recommender, TrainData, emb_loss, content_modalities
from crane.models.layers import lightgcn_propagate

HPARAM_KEYS = ("embedding_size", "n_layers", "reg_weight", "cl_weight", "dropout")





@register("bm3")
class BM3(Recommender):
    hparam_names = HPARAM_KEYS
    uses_negatives = False
    uses_content = True

    def __init__(self, data: TrainData, hparams: dict[str, Any]):
        super().__init__(data, hparams)
        hp = hparams  # checked against hparam_names by Recommender.__init__
        size = int(hp["embedding_size"])
        self.n_layers = int(hp["n_layers"])
        self.reg_weight = float(hp["reg_weight"])
        self.cl_weight = float(hp["cl_weight"])
        self.dropout = float(hp["dropout"])
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"bm3: dropout must be in [0, 1), got {self.dropout}")
        self.modalities = content_modalities("bm3", data)

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
        self._scoring: tuple[torch.Tensor, torch.Tensor] | None = None

    def encode(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Online encoder outputs: LightGCN users, LightGCN items + item ID embedding."""
        ego = torch.cat([self.user_embedding.weight, self.item_embedding.weight])
        users, items = lightgcn_propagate(self.adjacency, ego, self.n_layers).split(
            [self.n_users, self.n_items])
        return users, items + self.item_embedding.weight

    def loss(self, users: torch.Tensor, pos_items: torch.Tensor,
             neg_items: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        self._scoring = None
        user_table, item_table = self.encode()
        unique_users, user_index = torch.unique(users, return_inverse=True)
        unique_items, item_index = torch.unique(pos_items, return_inverse=True)
        user_rows, item_rows = user_table[unique_users], item_table[unique_items]
        with torch.no_grad():
            user_target = F.dropout(user_rows, self.dropout)[user_index]
            item_target = F.dropout(item_rows, self.dropout)[item_index]
        user_online = self.predictor(user_rows)[user_index]
        item_online = self.predictor(item_rows)[item_index]
        terms = {"rec": (1 - F.cosine_similarity(user_online, item_target, dim=-1).mean())
                        + (1 - F.cosine_similarity(item_online, user_target, dim=-1).mean())}
        if self.cl_weight != 0:
            align = mask = 0.0
            for modality in self.modalities:
                projected = self.projections[modality](self.features[modality][unique_items])
                with torch.no_grad():
                    feature_target = F.dropout(projected, self.dropout)[item_index]
                feature_online = self.predictor(projected)[item_index]
                align = align + 1 - F.cosine_similarity(feature_online, item_target, dim=-1).mean()
                mask = mask + 1 - F.cosine_similarity(feature_online, feature_target, dim=-1).mean()
            terms["align"] = self.cl_weight * align
            terms["mask"] = self.cl_weight * mask
        if self.reg_weight != 0:
            terms["reg"] = self.reg_weight * emb_loss(user_table, item_table)
        return terms

    def prepare_scoring(self) -> None:
        user_table, item_table = self.encode()
        self._scoring = (self.predictor(user_table), self.predictor(item_table))

    def score(self, users: torch.Tensor) -> torch.Tensor:
        if self._scoring is None:
            self.prepare_scoring()
        user_table, item_table = self._scoring
        return user_table[users] @ item_table.T
