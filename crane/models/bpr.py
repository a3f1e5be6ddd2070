"""BPR-MF as in MMRec: user and item embeddings, dot-product score, BPR + reg * EmbLoss."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from crane.models import register
from crane.models.base import (Recommender, TrainData, bpr_of_probability, bpr_probability,
                               bpr_score_weight, emb_loss_coefficients)
from crane.models.layers import dot_scores


@register("bpr")
class BPR(Recommender):
    hparam_names = ("embedding_size", "reg_weight")
    def __init__(self, data: TrainData, hparams: dict[str, Any]):
        super().__init__(data, hparams)
        size = int(hparams["embedding_size"])
        self.reg_weight = float(hparams["reg_weight"])
        self.user_embedding = nn.Embedding(self.n_users, size)
        self.item_embedding = nn.Embedding(self.n_items, size)
        nn.init.xavier_normal_(self.user_embedding.weight)
        nn.init.xavier_normal_(self.item_embedding.weight)

    def loss(self, users: torch.Tensor, pos_items: torch.Tensor,
             neg_items: torch.Tensor | None) -> dict[str, torch.Tensor]:
        # one lookup for positives and negatives: one dense gradient table instead of two
        bpr, reg = _BPRMFLoss.apply(self.user_embedding.weight, self.item_embedding.weight,
                                    users, torch.cat([pos_items, neg_items]), self.reg_weight)
        return {"bpr": bpr, "reg": reg}

    def score(self, users: torch.Tensor) -> torch.Tensor:
        return dot_scores(self.user_embedding(users), self.item_embedding.weight)


class _BPRMFLoss(torch.autograd.Function):
    """The whole BPR-MF loss as one autograd node: the same values and table gradients, bit
    for bit, as `gather_rows` + `dot_bpr_loss` + `reg_weight * emb_loss` (tested), without
    the seven nodes (lookups, split, sums) autograd would run between them: about 0.13 of a
    Baby step's 3 ms on CPU."""

    @staticmethod
    def forward(ctx, user_table, item_table, users, items, reg_weight):
        size = len(users)
        user_e = user_table.index_select(0, users)
        item_e = item_table.index_select(0, items)
        pos_e, neg_e = item_e.split(size)
        probability = bpr_probability(user_e, pos_e, neg_e)
        bpr = bpr_of_probability(probability)
        norms = [torch.linalg.vector_norm(e) for e in (user_e, pos_e, neg_e)]
        reg = reg_weight * (sum(norms) / size)
        ctx.save_for_backward(users, items, user_e, item_e, probability, *norms)
        ctx.reg_weight = reg_weight
        ctx.table_shapes = (user_table.shape, item_table.shape)
        return bpr, reg

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_bpr, grad_reg):
        users, items, user_e, item_e, probability, *norms = ctx.saved_tensors
        size = len(users)
        pos_e, neg_e = item_e.split(size)
        # the same pieces as the separate functions' backward, so the sums are the same bits
        # (two addends per element: the order cannot matter)
        weight = bpr_score_weight(probability, grad_bpr)
        # grad_reg * reg_weight: the backward of the product `reg_weight * emb_loss`
        user_c, pos_c, neg_c = emb_loss_coefficients(norms, grad_reg * ctx.reg_weight / size)
        to_user = weight * (pos_e - neg_e)
        to_user += user_e * user_c
        to_pos = weight * user_e
        to_items = torch.empty_like(item_e)
        torch.add(to_pos, pos_e * pos_c, out=to_items[:size])
        torch.add(-to_pos, neg_e * neg_c, out=to_items[size:])
        user_shape, item_shape = ctx.table_shapes
        return (to_user.new_zeros(user_shape).index_add_(0, users, to_user),
                to_items.new_zeros(item_shape).index_add_(0, items, to_items), None, None, None)
