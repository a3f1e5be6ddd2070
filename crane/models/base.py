"""The model interface. The trainer, sampler and evaluator know nothing model-specific.

A model is one file under `crane/models/` holding one `Recommender` subclass decorated with
`@register("name")`. It receives a `TrainData` (training interactions only: validation and
test never reach a model, which makes leakage impossible by construction) and a dict of
resolved hyper-parameters.

Life cycle, driven by `crane.train.Trainer`:

    model = Model(data, hparams)          # build parameters, graphs (from the training split)
    for epoch:
        model.train(); model.start_epoch(epoch, generator)      # e.g. resample edge dropout
        for users, pos, neg in batches:
            terms = model.loss(users, pos, neg)   # dict name -> scalar tensor; total = sum
        model.eval()
        with torch.no_grad():
            model.prepare_scoring()               # once per evaluation pass (full propagation)
            scores = model.score(user_batch)      # (len(users), n_items), any chunk of users
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn


@dataclass
class TrainData:
    """What a model may see: sizes, training interactions, item features, where to cache."""

    n_users: int
    n_items: int
    train_user: np.ndarray  # int64, one row per training interaction
    train_item: np.ndarray  # int64
    features: dict[str, np.ndarray] = field(default_factory=dict)  # modality -> (n_items, D)
    feature_hashes: dict[str, str] = field(default_factory=dict)  # modality -> content hash
    cache_dir: Path | None = None  # where derived objects (kNN graphs) are cached by hash
    device: torch.device = torch.device("cpu")

    def train_matrix(self) -> sp.csr_matrix:
        """Binary U x N CSR matrix of training interactions."""
        matrix = sp.csr_matrix(
            (np.ones(len(self.train_user), dtype=np.float32), (self.train_user, self.train_item)),
            shape=(self.n_users, self.n_items),
        )
        matrix.sum_duplicates()
        matrix.data[:] = 1.0
        return matrix

    def feature_tensor(self, modality: str) -> torch.Tensor:
        return torch.as_tensor(self.features[modality], dtype=torch.float32, device=self.device)


class Recommender(nn.Module):
    """Base class of every model. Subclasses set `name` via `@register`."""

    name: ClassVar[str] = ""
    # BM3 trains without negatives; the sampler then skips drawing them.
    uses_negatives: ClassVar[bool] = True
    # MostPop and ItemKNN-CBF have nothing to optimise: the trainer fits once and evaluates.
    trainable: ClassVar[bool] = True
    # modalities the model needs ("image", "text"); empty for ID-only models.
    required_modalities: ClassVar[tuple[str, ...]] = ()
    # True when the model uses whatever modalities the dataset provides (at least one).
    uses_content: ClassVar[bool] = False
    # Exactly the hyper-parameters the model reads (config/models/<name>.yaml `defaults`):
    # an unknown or missing key is an error naming the model, never a silent default.
    # None: the subclass checks for itself (test doubles).
    hparam_names: ClassVar[tuple[str, ...] | None] = None

    def __init__(self, data: TrainData, hparams: dict[str, Any]):
        super().__init__()
        if self.hparam_names is not None:
            check_hparams(self.name or type(self).__name__.lower(), hparams, self.hparam_names)
        self.n_users = data.n_users
        self.n_items = data.n_items
        self.hparams = dict(hparams)
        self.device = data.device

    def start_epoch(self, epoch: int, generator: torch.Generator) -> None:
        """Hook run before each training epoch (edge dropout resampling, graph refresh)."""

    def loss(self, users: torch.Tensor, pos_items: torch.Tensor,
             neg_items: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """Loss terms of one batch; the trainer minimises their sum and logs each term."""
        raise NotImplementedError

    def prepare_scoring(self) -> None:
        """Compute whatever full-graph state `score` needs; called under no_grad in eval mode."""

    def score(self, users: torch.Tensor) -> torch.Tensor:
        """Scores of `users` against every item: (len(users), n_items)."""
        raise NotImplementedError

    def fit(self) -> None:
        """For non-trainable models: compute the model from the training data once."""


MODALITIES = ("image", "text")


def content_modalities(model: str, data: TrainData,
                       order: tuple[str, ...] = MODALITIES) -> tuple[str, ...]:
    """The modalities of `data` a content model uses, in `order`; at least one, with one row
    per item (a clear error otherwise)."""
    present = tuple(m for m in order if m in data.features)
    if not present:
        raise ValueError(f"{model} needs item features (image and/or text); the dataset "
                         f"provides {sorted(data.features) or 'none'}")
    for modality in present:
        rows = data.features[modality].shape[0]
        if rows != data.n_items:
            raise ValueError(f"{model}: {modality} features have {rows} rows, "
                             f"expected one per item ({data.n_items})")
    return present


def check_hparams(model: str, hparams: dict[str, Any], names: tuple[str, ...]) -> None:
    """Trainer keys (learning_rate, ...) are split off before a model sees its hparams."""
    unknown = sorted(set(hparams) - set(names))
    missing = [name for name in names if name not in hparams]
    problems = ([f"unknown hyper-parameter(s) {unknown}"] if unknown else []) + \
               ([f"missing hyper-parameter(s) {missing}"] if missing else [])
    if problems:
        raise ValueError(f"{model}: {'; '.join(problems)}; expected exactly {list(names)} "
                         f"(config/models/{model}.yaml)")


def bpr_loss(pos_scores: torch.Tensor, neg_scores: torch.Tensor) -> torch.Tensor:
    """MMRec's BPR: -mean log(1e-10 + sigmoid(s_pos - s_neg))."""
    return bpr_of_probability(torch.sigmoid(pos_scores - neg_scores))


def dot_bpr_loss(user_e: torch.Tensor, pos_e: torch.Tensor, neg_e: torch.Tensor
                 ) -> torch.Tensor:
    """`bpr_loss` of the dot-product scores (user_e * pos_e).sum(1), (user_e * neg_e).sum(1):
    the same value, with a hand-written backward (three products, where autograd's chain
    keeps about ten batch-sized temporaries: a third of a BPR-MF step on CPU)."""
    return _DotBPR.apply(user_e, pos_e, neg_e)


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


# The pieces of the dot-product BPR loss and of EmbLoss, shared by their autograd functions
# here and by BPR-MF's one-node loss (crane/models/bpr.py), which must stay bitwise equal.

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


def emb_loss(*embeddings: torch.Tensor) -> torch.Tensor:
    """MMRec's EmbLoss: sum of the plain (unsquared) L2 norms of the tables, / batch size.
    Backward by hand: each table times one scalar (autograd's norm backward makes three
    passes over each table)."""
    return _EmbLoss.apply(*embeddings)


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
