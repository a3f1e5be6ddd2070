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
projected. The numbers are the same (the projection is row-wise); the tests check it.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from crane.models import register
from crane.models.base import Recommender, TrainData, dot_bpr_loss, emb_loss

HPARAMS = ("embedding_size", "reg_weight")
# MMRec concatenates text before image.
CONTENT_ORDER = ("text", "image")


class ReusedRowGather:
    """`table[index]` for a frozen table, written into one buffer reused across batches.

    A fresh (batch x 4096) float tensor per batch is a new ~50 MB mapping whose page faults
    cost as much as the gather itself on CPU. Autograd's version counter guards the reuse:
    backpropagating through an older batch after the buffer was overwritten raises.
    """

    def __init__(self) -> None:
        self._buffer: torch.Tensor | None = None

    def __call__(self, table: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        if table.requires_grad:
            return table[index]
        n = len(index)
        buffer = self._buffer
        if (buffer is None or buffer.shape[0] < n or buffer.shape[1:] != table.shape[1:]
                or buffer.dtype != table.dtype or buffer.device != table.device):
            # Some slack: the number of distinct items varies a little from batch to batch.
            buffer = self._buffer = torch.empty((n + n // 4, *table.shape[1:]),
                                                dtype=table.dtype, device=table.device)
        return torch.index_select(table, 0, index, out=buffer[:n])



@register("vbpr")
class VBPR(Recommender):
    hparam_names = HPARAMS
    uses_content = True

    def __init__(self, data: TrainData, hparams: dict[str, Any]):
        super().__init__(data, hparams)
        hp = hparams  # checked against hparam_names by Recommender.__init__
        size = int(hp["embedding_size"])
        self.reg_weight = float(hp["reg_weight"])
        modalities = [m for m in CONTENT_ORDER if m in data.features]
        if not modalities:
            raise ValueError("vbpr needs item features (text and/or image); the dataset "
                             f"provides {sorted(data.features) or 'none'}")
        self.modalities = tuple(modalities)
        content = torch.cat([data.feature_tensor(m) for m in modalities], dim=1)
        if content.shape[0] != self.n_items:
            raise ValueError(f"vbpr: features have {content.shape[0]} rows, expected one per "
                             f"item ({self.n_items})")
        # Not persistent: the features come from the dataset, not from the checkpoint.
        self.register_buffer("content", content, persistent=False)

        self.user_embedding = nn.Parameter(nn.init.xavier_uniform_(
            torch.empty(self.n_users, 2 * size, device=self.device)))
        self.item_id_embedding = nn.Parameter(nn.init.xavier_uniform_(
            torch.empty(self.n_items, size, device=self.device)))
        self.item_linear = nn.Linear(content.shape[1], size, device=self.device)
        nn.init.xavier_normal_(self.item_linear.weight)
        nn.init.zeros_(self.item_linear.bias)
        self._item_table: torch.Tensor | None = None
        self._gather = ReusedRowGather()

    def item_vectors(self, items: torch.Tensor) -> torch.Tensor:
        """[ID embedding ; projected content] of `items` (any order, repeats allowed)."""
        distinct, inverse = torch.unique(items, return_inverse=True)
        projected = self.item_linear(self._gather(self.content, distinct))
        return torch.cat([self.item_id_embedding[distinct], projected], dim=1)[inverse]

    def loss(self, users: torch.Tensor, pos_items: torch.Tensor,
             neg_items: torch.Tensor | None) -> dict[str, torch.Tensor]:
        self._item_table = None
        user_e = self.user_embedding[users]
        items = self.item_vectors(torch.cat([pos_items, neg_items]))
        pos_e, neg_e = items[:len(pos_items)], items[len(pos_items):]
        terms = {"bpr": dot_bpr_loss(user_e, pos_e, neg_e)}
        if self.reg_weight != 0:
            terms["reg"] = self.reg_weight * emb_loss(user_e, pos_e, neg_e)
        return terms

    def prepare_scoring(self) -> None:
        self._item_table = torch.cat([self.item_id_embedding,
                                      self.item_linear(self.content)], dim=1)

    def score(self, users: torch.Tensor) -> torch.Tensor:
        if self._item_table is None:
            self.prepare_scoring()
        return self.user_embedding[users] @ self._item_table.T
