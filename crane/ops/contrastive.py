"""InfoNCE losses, named by what they compute.

- `symmetric_info_nce(a, b, tau)`: paired rows (a_j, b_j), cosine / tau, the mean of both
  directions (a -> b over the rows, b -> a over the columns); CRANE's contrastive term.
  When 2 / tau <= 80 one shared exponential serves both directions and the backward is
  written by hand.
- `one_way_info_nce(anchor, positive, tau)`: row j of `anchor` against row j of `positive`,
  the other rows of `positive` as negatives, one direction only; MGCN's.
- `log_sum_exp_of_product(a, b)`: log sum_j exp(a_i . b_j) per row of a, keeping one
  (rows(a) x rows(b)) buffer; LGMRec's hypergraph contrast over all users or items.

Plain-autograd references: `reference_symmetric_info_nce`, `reference_one_way_info_nce`,
`reference_log_sum_exp_of_product`; tests/ops/test_contrastive.py checks values and gradients.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from crane.ops.precision import apply_in_float32
from crane.ops.scores import dot_scores

# Cosine logits lie in [-1/tau, 1/tau]: exp(logit - 1/tau) >= exp(-2/tau) stays a normal
# float32 (> 1.2e-38) while 2/tau <= 80, so one shifted exponential serves the row and the
# column log-sum-exps alike (smaller tau falls back to torch.logsumexp).
_MAX_SHIFTED_EXPONENT = 80.0


def symmetric_info_nce(a: torch.Tensor, b: torch.Tensor, tau: float) -> torch.Tensor:
    """Mean of the a -> b and b -> a InfoNCE of paired rows; logits len(a) x len(a)."""
    a, b = F.normalize(a, dim=1), F.normalize(b, dim=1)
    if 2.0 / tau <= _MAX_SHIFTED_EXPONENT:
        return apply_in_float32(_SharedExpInfoNCE, a, b, tau)
    logits = a @ b.T / tau
    positive = logits.diagonal()
    a_to_b = (torch.logsumexp(logits, dim=1) - positive).mean()
    b_to_a = (torch.logsumexp(logits, dim=0) - positive).mean()
    return 0.5 * (a_to_b + b_to_a)


def one_way_info_nce(anchor: torch.Tensor, positive: torch.Tensor,
                     temperature: float) -> torch.Tensor:
    """Mean InfoNCE of row i of `anchor` against row i of `positive`, the other rows of
    `positive` as negatives (anchor -> positive only)."""
    anchor, positive = F.normalize(anchor, dim=1) / temperature, F.normalize(positive, dim=1)
    logits = anchor @ positive.T  # temperature folded into one side: one (B x B) pass less
    return (torch.logsumexp(logits, dim=1) - (anchor * positive).sum(dim=1)).mean()


def log_sum_exp_of_product(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """log(sum_j exp(a_i . b_j)) per row i of a. No max shift: callers keep a_i . b_j
    bounded (LGMRec: cosines / 0.2, in [-5, 5])."""
    return apply_in_float32(_LogSumExpOfProduct, a, b)


# --------------------------------------------------------------------------- references


def reference_symmetric_info_nce(a: torch.Tensor, b: torch.Tensor, tau: float) -> torch.Tensor:
    logits = F.normalize(a, dim=1) @ F.normalize(b, dim=1).T / tau
    labels = torch.arange(len(a), device=a.device)
    return 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels))


def reference_one_way_info_nce(anchor: torch.Tensor, positive: torch.Tensor,
                               temperature: float) -> torch.Tensor:
    """MMRec MGCN's InfoNCE, as written there."""
    anchor, positive = F.normalize(anchor, dim=1), F.normalize(positive, dim=1)
    score = torch.exp((anchor * positive).sum(dim=-1) / temperature)
    total = torch.exp(anchor @ positive.T / temperature).sum(dim=1)
    return torch.mean(-torch.log(score / total))


def reference_log_sum_exp_of_product(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.logsumexp(a @ b.T, dim=1)


# --------------------------------------------------------------------------- kernels


class _SharedExpInfoNCE(torch.autograd.Function):
    """Symmetric InfoNCE of unit rows with one n x n exponential shared by both directions
    and a hand-written backward."""

    @staticmethod
    def forward(ctx, a: torch.Tensor, b: torch.Tensor, tau: float) -> torch.Tensor:
        n = a.shape[0]
        shift = 1.0 / tau
        exp = dot_scores(a, b).mul_(shift).sub_(shift).exp_()  # exp(logits - 1/tau)
        row_sum, col_sum = exp.sum(dim=1), exp.sum(dim=0)
        positive = (a * b).sum(dim=1) * shift - shift
        loss = 0.5 * ((row_sum.log() - positive).sum() + (col_sum.log() - positive).sum()) / n
        ctx.save_for_backward(a, b, exp, row_sum, col_sum)
        ctx.tau = tau
        return loss

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        a, b, exp, row_sum, col_sum = ctx.saved_tensors
        scale = grad_output / (2.0 * a.shape[0] * ctx.tau)
        # d loss / d logits = (softmax_rows + softmax_cols) / 2n - I / n (exp stays intact
        # for a backward with retain_graph)
        grad = exp * row_sum.reciprocal().unsqueeze(1)
        grad.addcmul_(exp, col_sum.reciprocal().unsqueeze(0))
        grad.diagonal().sub_(2.0)
        grad.mul_(scale)
        # dot_scores(x, y) = x @ y.T
        return dot_scores(grad, b.T), dot_scores(grad.T, a.T), None


class _LogSumExpOfProduct(torch.autograd.Function):
    """Autograd would keep the products, their exponentials and their gradient as three
    matrices of that size; this keeps one and reuses it in the backward pass."""

    @staticmethod
    def forward(ctx, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        exponentials = (a @ b.T).exp_()
        sums = exponentials.sum(dim=1)
        ctx.save_for_backward(a, b, exponentials, sums)
        return sums.log()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a, b, exponentials, sums = ctx.saved_tensors
        weights = exponentials.mul_((grad / sums)[:, None])  # softmax * grad, in place
        return weights @ b, weights.T @ a
