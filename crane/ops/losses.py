"""The recommendation losses, some with hand-written backward passes.

- `bpr_loss(pos_scores, neg_scores)`: MMRec's BPRLoss, -mean log(1e-10 + sigmoid(s+ - s-)).
- `dot_bpr_loss(user_e, pos_e, neg_e)`: the same of dot-product scores; backward by hand
  (three products, where autograd's chain keeps about ten batch-sized temporaries).
- `logsigmoid_bpr_loss(user_e, pos_e, neg_e)`: -mean logsigmoid(s+ - s-), the form MMRec's
  FREEDOM, LATTICE, MGCN and LGMRec write (no 1e-10).
- `emb_loss(*tables)`: MMRec's EmbLoss, the sum of the plain (unsquared) L2 norms / batch
  size; backward by hand (each table times one scalar).
- `bpr_mf_loss(user_table, item_table, users, items, reg_weight)`: BPR-MF's whole loss
  (lookups, BPR, reg_weight * EmbLoss) as one autograd node.

Plain-autograd references: `reference_dot_bpr_loss`, `reference_emb_loss`,
`reference_bpr_mf_loss`. tests/ops/test_losses.py checks values (bitwise: the forwards are the
references' own operations) and gradients against them, and `bpr_mf_loss` bit for bit
against `gather_rows` + `dot_bpr_loss` + `reg_weight * emb_loss`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from crane.ops.precision import apply_in_float32


def bpr_loss(pos_scores: torch.Tensor, neg_scores: torch.Tensor) -> torch.Tensor:
    """MMRec's BPR: -mean log(1e-10 + sigmoid(s_pos - s_neg))."""
    return bpr_of_probability(torch.sigmoid(pos_scores - neg_scores))


def logsigmoid_bpr_loss(user_e: torch.Tensor, pos_e: torch.Tensor,
                        neg_e: torch.Tensor) -> torch.Tensor:
    """-mean logsigmoid(<u, p> - <u, n>)."""
    return -F.logsigmoid((user_e * pos_e).sum(1) - (user_e * neg_e).sum(1)).mean()


def dot_bpr_loss(user_e: torch.Tensor, pos_e: torch.Tensor, neg_e: torch.Tensor
                 ) -> torch.Tensor:
    """`bpr_loss` of the dot-product scores (user_e * pos_e).sum(1), (user_e * neg_e).sum(1)."""
    return apply_in_float32(_DotBPR, user_e, pos_e, neg_e)


def emb_loss(*embeddings: torch.Tensor) -> torch.Tensor:
    """MMRec's EmbLoss: sum of the plain (unsquared) L2 norms of the tables, / batch size."""
    return apply_in_float32(_EmbLoss, *embeddings)


def bpr_mf_loss(user_table: torch.Tensor, item_table: torch.Tensor, users: torch.Tensor,
                items: torch.Tensor, reg_weight: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(BPR, reg_weight * EmbLoss) of dot-product scores, items = [positives; negatives]: the
    same values and table gradients, bit for bit, as `gather_rows` + `dot_bpr_loss` +
    `reg_weight * emb_loss`, as one autograd node instead of seven."""
    return apply_in_float32(_BPRMFLoss, user_table, item_table, users, items, reg_weight)


# --------------------------------------------------------------------------- references


def reference_dot_bpr_loss(user_e: torch.Tensor, pos_e: torch.Tensor,
                           neg_e: torch.Tensor) -> torch.Tensor:
    return -torch.log(1e-10 + torch.sigmoid((user_e * pos_e).sum(1)
                                            - (user_e * neg_e).sum(1))).mean()


def reference_emb_loss(*embeddings: torch.Tensor) -> torch.Tensor:
    return sum(torch.norm(e, p=2) for e in embeddings) / embeddings[-1].shape[0]


def reference_bpr_mf_loss(user_table: torch.Tensor, item_table: torch.Tensor,
                          users: torch.Tensor, items: torch.Tensor,
                          reg_weight: float) -> tuple[torch.Tensor, torch.Tensor]:
    user_e = user_table[users]
    pos_e, neg_e = item_table[items].split(len(users))
    return (reference_dot_bpr_loss(user_e, pos_e, neg_e),
            reg_weight * reference_emb_loss(user_e, pos_e, neg_e))


# --------------------------------------------------------------------------- kernels
# The pieces below are shared by the autograd functions, which must stay bitwise equal.


def bpr_probability(user_e: torch.Tensor, pos_e: torch.Tensor,
                    neg_e: torch.Tensor) -> torch.Tensor:
    """sigmoid(s_pos - s_neg) of the dot-product scores."""
    return torch.sigmoid((user_e * pos_e).sum(1) - (user_e * neg_e).sum(1))


def bpr_of_probability(probability: torch.Tensor) -> torch.Tensor:
    return -torch.log(1e-10 + probability).mean()


def bpr_score_weight(probability: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """d loss / d (s_pos - s_neg) per row, as a column."""
    # d/dx -log(1e-10 + sigmoid(x)) = -sigmoid(x) (1 - sigmoid(x)) / (1e-10 + sigmoid(x))
    return (probability * (1 - probability) / (1e-10 + probability)
            * (-grad / len(probability)))[:, None]


def emb_loss_coefficients(norms: list[torch.Tensor] | tuple[torch.Tensor, ...],
                          scale: torch.Tensor) -> list[torch.Tensor]:
    """d (scale * ||e||) / de = e * coefficient; the coefficient is 0 at e = 0, as in
    torch's norm backward."""
    return [torch.where(norm > 0, scale / norm, 0.0) for norm in norms]


class _DotBPR(torch.autograd.Function):
    @staticmethod
    def forward(ctx, user_e, pos_e, neg_e):
        probability = bpr_probability(user_e, pos_e, neg_e)
        ctx.save_for_backward(user_e, pos_e, neg_e, probability)
        return bpr_of_probability(probability)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        user_e, pos_e, neg_e, probability = ctx.saved_tensors
        weight = bpr_score_weight(probability, grad)
        to_user = weight * (pos_e - neg_e) if ctx.needs_input_grad[0] else None
        to_pos = weight * user_e if ctx.needs_input_grad[1] or ctx.needs_input_grad[2] else None
        return to_user, to_pos, -to_pos if ctx.needs_input_grad[2] else None


class _EmbLoss(torch.autograd.Function):
    @staticmethod
    def forward(ctx, *embeddings):
        norms = [torch.linalg.vector_norm(e) for e in embeddings]
        ctx.save_for_backward(*embeddings, *norms)
        return sum(norms) / embeddings[-1].shape[0]

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        saved = ctx.saved_tensors
        embeddings, norms = saved[:len(saved) // 2], saved[len(saved) // 2:]
        coefficients = emb_loss_coefficients(norms, grad / embeddings[-1].shape[0])
        return tuple(e * coefficient if needed else None
                     for e, coefficient, needed in zip(embeddings, coefficients,
                                                      ctx.needs_input_grad))


class _BPRMFLoss(torch.autograd.Function):
    """Lookups, BPR and reg_weight * EmbLoss as one node, built from the same pieces as
    `_DotBPR` and `_EmbLoss` so that values and gradients are the same bits."""

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
