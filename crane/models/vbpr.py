"""VBPR (He & McAuley, AAAI'16) as MMRec implements it.

An item is [its ID embedding ; a linear projection of its content features] (2 x d), a user
is one 2d vector [theta_u ; gamma_u], the score is their dot product. The content vector
is the concatenation of the modalities the dataset provides, text before image (MMRec's
order). Loss: BPR + reg_weight * EmbLoss(user, positive, negative), where the item vectors
are the full concatenated ones (MMRec regularises the projected content part too).

Initialisation as MMRec: user and ID tables xavier-uniform, the projection xavier-normal
with a zero bias. MMRec's forward has a dropout argument that it always calls with 0: left out.

Batch-only projection: MMRec projects the content of every item at every batch and then
keeps the batch's positives and negatives; here only the batch's distinct items are
projected. The numbers are the same (the projection is row-wise); tests/models/test_vbpr.py
compares with MMRec's all-item computation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from crane.models import register
from crane.models.base import Recommender, TrainData
from crane.models.hyperparameters import HyperParameters, hparam
from crane.ops.gather import ReusedRowGather
from crane.ops.losses import dot_bpr_loss, emb_loss

CONTENT_ORDER = ("text", "image")  # MMRec concatenates text before image


@dataclass(frozen=True)
class VBPRConfig(HyperParameters):
    embedding_size: int = hparam(at_least=1)
    reg_weight: float = hparam(at_least=0)


@register("vbpr")
class VBPR(Recommender):
    config_class = VBPRConfig
    uses_content = True

    def __init__(self, data: TrainData, hparams: dict[str, Any]):
        super().__init__(data, hparams)
        size = self.config.embedding_size
        self.modalities = self.feature_modalities(data, CONTENT_ORDER)
        content = torch.cat([data.feature_tensor(m) for m in self.modalities], dim=1)
        # Not persistent: the features come from the dataset, not from the checkpoint.
        self.register_buffer("content", content, persistent=False)

        self.user_embedding = nn.Parameter(nn.init.xavier_uniform_(
            torch.empty(self.n_users, 2 * size, device=self.device)))
        self.item_id_embedding = nn.Parameter(nn.init.xavier_uniform_(
            torch.empty(self.n_items, size, device=self.device)))
        self.item_linear = nn.Linear(content.shape[1], size, device=self.device)
        nn.init.xavier_normal_(self.item_linear.weight)
        nn.init.zeros_(self.item_linear.bias)
        self._gather = ReusedRowGather()

    def item_vectors(self, items: torch.Tensor) -> torch.Tensor:
        """[ID embedding ; projected content] of `items` (any order, repeats allowed)."""
        distinct, inverse = torch.unique(items, return_inverse=True)
        projected = self.item_linear(self._gather(self.content, distinct))
        return torch.cat([self.item_id_embedding[distinct], projected], dim=1)[inverse]

    def loss(self, users: torch.Tensor, pos_items: torch.Tensor,
             neg_items: torch.Tensor | None) -> dict[str, torch.Tensor]:
        user_e = self.user_embedding[users]
        items = self.item_vectors(torch.cat([pos_items, neg_items]))
        pos_e, neg_e = items[:len(pos_items)], items[len(pos_items):]
        terms = {"bpr": dot_bpr_loss(user_e, pos_e, neg_e)}
        if self.config.reg_weight != 0:
            terms["reg"] = self.config.reg_weight * emb_loss(user_e, pos_e, neg_e)
        return terms

    def scoring_tables(self) -> torch.Tensor:
        return torch.cat([self.item_id_embedding, self.item_linear(self.content)], dim=1)

    def score(self, users: torch.Tensor) -> torch.Tensor:
        return self.user_embedding[users] @ self.scoring_state().T
