"""The model interface. The engine, sampler and evaluator know nothing model-specific.

A model is one file under `crane/models/` holding one `Recommender` subclass decorated with
`@register("name")` and the typed config of its hyper-parameters (`config_class`, see
`crane.models.hyperparameters`). It receives a `TrainData` (training interactions only:
validation and test never reach a model, which makes leakage impossible by construction)
and a dict of resolved hyper-parameters, which `__init__` checks into `self.config`.

Life cycle, driven by the engine (crane/engine):

    model = Model(data, hparams)          # build parameters, graphs (from the training split)
    for epoch:
        model.train(); model.start_epoch(epoch, generator)      # e.g. resample edge dropout
        for users, pos, neg in batches:
            terms = model.loss(users, pos, neg)   # dict name -> scalar tensor; total = sum
        model.eval()
        with torch.no_grad():
            model.prepare_scoring()               # once per evaluation pass (full propagation)
            scores = model.score(user_batch)      # (len(users), n_items), any chunk of users

Scoring state: a model computes what `score` reads in `scoring_tables()`; `prepare_scoring`
keeps it, `scoring_state()` returns it, and `train()` drops it (the parameters are about to
change), so that no model hand-rolls the invalidation. tests/models/test_base.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from crane.modalities import MODALITIES
from crane.models.hyperparameters import HyperParameters


@dataclass
class TrainData:
    """What a model may see: sizes, training interactions, item features, where to cache."""

    n_users: int
    n_items: int
    train_user: np.ndarray  # int64, one row per training interaction
    train_item: np.ndarray  # int64
    features: dict[str, np.ndarray] = field(default_factory=dict)  # modality -> (n_items, D)
    feature_hashes: dict[str, str] = field(default_factory=dict)  # modality -> content hash
    cache_dir: Path | None = None  # kNN graphs from the graph jobs: read by hash, never written
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
    # MostPop and ItemKNN-CBF have nothing to optimise: the engine fits once and evaluates.
    trainable: ClassVar[bool] = True
    # True when the model uses whatever modalities the dataset provides (at least one).
    uses_content: ClassVar[bool] = False
    # The modalities a content model cannot do without (by construction), e.g. ("image",
    # "text") for a model built on their interplay; empty: any one of them is enough. The
    # study refuses such a model on a dataset lacking one (crane/study.py), and
    # `feature_modalities` refuses data lacking one.
    required_modalities: ClassVar[tuple[str, ...]] = ()
    # The typed config of exactly the hyper-parameters the model reads (the `defaults` of
    # its YAML). None: the subclass checks for itself (test doubles).
    config_class: ClassVar[type[HyperParameters] | None] = None

    def __init__(self, data: TrainData, hparams: dict[str, Any]):
        super().__init__()
        model = self.name or type(self).__name__.lower()
        self.config = (self.config_class.from_hparams(model, hparams)
                       if self.config_class is not None else None)
        self.n_users = data.n_users
        self.n_items = data.n_items
        self.hparams = dict(hparams)
        self.device = data.device
        self._scoring_cache: Any = None

    def run_info(self) -> dict[str, Any]:
        """Facts about the built model that the run's metrics.json records under
        `model_info` (for example the variance an input reduction kept); none by default."""
        return {}

    # ----------------------------------------------------------------- training

    def start_epoch(self, epoch: int, generator: torch.Generator) -> None:
        """Hook run before each training epoch (edge dropout resampling, graph refresh)."""

    def loss(self, users: torch.Tensor, pos_items: torch.Tensor,
             neg_items: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """Loss terms of one batch; the engine minimises their sum and logs each term."""
        raise NotImplementedError

    def fit(self) -> None:
        """For non-trainable models: compute the model from the training data once."""

    # ----------------------------------------------------------------- scoring

    def scoring_tables(self) -> Any:
        """Model hook: the full-graph state `score` reads (e.g. propagated user and item
        tables); None when `score` reads parameters directly."""
        return None

    def prepare_scoring(self) -> None:
        """Compute and keep `scoring_tables()`; called under no_grad in eval mode."""
        self._scoring_cache = self.scoring_tables()

    def scoring_state(self) -> Any:
        """What the last `prepare_scoring` kept; without one, computed now (under no_grad)
        and kept in eval mode only."""
        if self._scoring_cache is None:
            with torch.no_grad():
                tables = self.scoring_tables()
            if self.training:
                return tables
            self._scoring_cache = tables
        return self._scoring_cache

    def score(self, users: torch.Tensor) -> torch.Tensor:
        """Scores of `users` against every item: (len(users), n_items)."""
        raise NotImplementedError

    def train(self, mode: bool = True) -> "Recommender":
        if mode:
            self._scoring_cache = None  # parameters will change: drop the scoring state
        return super().train(mode)

    # ----------------------------------------------------------------- content

    def feature_modalities(self, data: TrainData,
                           order: tuple[str, ...] = MODALITIES) -> tuple[str, ...]:
        """The modalities of `data` this content model uses, in `order`: at least one, each
        an (n_items, D) matrix, none unknown (a clear error otherwise)."""
        model = self.name or type(self).__name__.lower()
        unknown = sorted(set(data.features) - set(MODALITIES))
        if unknown:
            raise ValueError(f"{model}: unknown feature modality {unknown}; expected "
                             f"{list(MODALITIES)}")
        present = tuple(m for m in order if m in data.features)
        if not present:
            raise ValueError(f"{model} needs item features ({' and/or '.join(order)}); the "
                             f"dataset provides {sorted(data.features) or 'none'}")
        missing = [m for m in self.required_modalities if m not in data.features]
        if missing:
            raise ValueError(f"{model} needs the {' and '.join(missing)} features by "
                             f"construction; the dataset provides {sorted(data.features)}: "
                             f"add them, or leave {model} out of this dataset's study")
        for modality in present:
            shape = np.shape(data.features[modality])
            if len(shape) != 2 or shape[0] != data.n_items:
                raise ValueError(f"{model}: {modality} features have shape {shape}; expected "
                                 f"({data.n_items}, D), one row per item")
        return present
