"""Trainer settings of one run, and which of them a model's hyper-parameter point may set.

`TrainingConfig` is the workflow config's `training:` section (`crane train --training`),
checked on construction: an unknown key or a bad value is an error naming it.

A model file may declare trainer settings in its `training:` block (crane.tuning), and only
the keys in MODEL_TRAINING_KEYS. The declared keys belong to the model's hyper-parameter
point (they are searched by its grid and named by its hp_hash), and `split_point` hands them
to the trainer over the run's `training:` values. The precedence is written out in
config/README.md and tested in tests/engine/test_engine_settings.py.

No torch import here: the workflow's planning code reads this module.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Iterable

# Optimisation settings a model file may set for itself (LATTICE's learning rate, MGCN's
# schedule); every other trainer key is the study's protocol and the same for all models.
MODEL_TRAINING_KEYS = ("learning_rate", "lr_scheduler", "batch_size", "weight_decay",
                       "mirror_gradient", "mirror_alpha1", "mirror_alpha2", "mirror_beta",
                       "precision")
PRECISIONS = ("fp32", "bf16")


@dataclass
class TrainingConfig:
    epochs: int = 1000
    patience: int = 20
    batch_size: int = 2048
    learning_rate: float = 1e-3
    eval_every: int = 1
    valid_metric: str = "recall@20"
    eval_batch_size: int = 4096
    mask_valid_in_test: bool = False
    # MMRec's learning_rate_scheduler [gamma, step]: lr * gamma ** (epoch / step)
    lr_scheduler: tuple[float, float] | None = None
    weight_decay: float = 0.0
    topk_export: int = 0
    # How often the resume state (last.pt) is written; 0 = after every epoch.
    checkpoint_every_s: float = 60.0
    # Mirror Gradient (Zhong et al., WWW 2024; MMRec's `mg` option): every `mirror_beta`-th
    # batch steps along alpha1 * loss, then against alpha2 * the loss recomputed on the same
    # batch (crane.engine.loop). MMRec's grid: alpha1 [1.0], alpha2 [0.1, 0.2, 0.3], beta [3].
    mirror_gradient: bool = False
    mirror_alpha1: float = 1.0
    mirror_alpha2: float = 0.1
    mirror_beta: int = 3
    # bf16: each training step's forward runs under torch.autocast (bf16 dense products, the
    # kernels of crane.ops in float32); evaluation is always float32.
    precision: str = "fp32"

    def __post_init__(self) -> None:
        from crane.engine.metrics import metric_columns

        if self.lr_scheduler is not None:
            if len(self.lr_scheduler) != 2:
                raise ValueError(f"training.lr_scheduler must be [gamma, step], "
                                 f"got {self.lr_scheduler!r}")
            self.lr_scheduler = (float(self.lr_scheduler[0]), float(self.lr_scheduler[1]))
        for name in ("epochs", "patience", "batch_size", "eval_every", "eval_batch_size",
                     "mirror_beta"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"training.{name} must be >= 1, got {getattr(self, name)!r}")
            setattr(self, name, int(getattr(self, name)))
        self.learning_rate = float(self.learning_rate)
        self.weight_decay = float(self.weight_decay)
        self.topk_export = int(self.topk_export)
        self.checkpoint_every_s = float(self.checkpoint_every_s)
        self.mask_valid_in_test = bool(self.mask_valid_in_test)
        if not isinstance(self.mirror_gradient, bool):
            raise ValueError(f"training.mirror_gradient must be true or false, got "
                             f"{self.mirror_gradient!r}")
        self.mirror_alpha1, self.mirror_alpha2 = float(self.mirror_alpha1), float(self.mirror_alpha2)
        for name in ("mirror_alpha1", "mirror_alpha2"):
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) >= 0):
                raise ValueError(f"training.{name} must be a finite number >= 0, got "
                                 f"{getattr(self, name)!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"training.precision must be one of {', '.join(PRECISIONS)}, got "
                             f"{self.precision!r}")
        if self.valid_metric not in metric_columns():
            raise ValueError(f"training.valid_metric {self.valid_metric!r}: expected one of "
                             f"{', '.join(metric_columns())}")

    @classmethod
    def keys(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> "TrainingConfig":
        d = dict(d or {})
        unknown = sorted(set(d) - set(cls.keys()))
        if unknown:
            raise ValueError(f"unknown training key(s) {unknown}; known: {sorted(cls.keys())}")
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["lr_scheduler"] = list(self.lr_scheduler) if self.lr_scheduler else None
        return out

    def updated(self, values: dict[str, Any]) -> "TrainingConfig":
        """This config with `values` (training keys) applied; unknown keys are an error."""
        if not values:
            return self
        unknown = sorted(set(values) - set(self.keys()))
        if unknown:
            raise ValueError(f"unknown training key(s) {unknown}; known: {sorted(self.keys())}")
        return dataclasses.replace(self, **values)


def split_point(model: str, point: dict[str, Any], declared: Iterable[str]
                ) -> tuple[dict[str, Any], dict[str, Any]]:
    """(model hyper-parameters, trainer settings) of a run's point.

    `declared` are the trainer keys of the model file's `training:` block: they go to the
    trainer; every other key goes to the model. A trainer key the model file does not declare
    is an error: it would otherwise reach the model as an unknown hyper-parameter, or silently
    replace the config's `training:` value.
    """
    declared = tuple(declared)
    stray = sorted(k for k in point if k in TrainingConfig.keys() and k not in declared)
    if stray:
        raise ValueError(f"{model}: {stray} are trainer settings that the model file's "
                         f"`training:` block does not declare (declared: {list(declared)}); "
                         f"set them in the config's `training:` section (crane train --set "
                         f"training.KEY=VALUE)")
    model_hp = {k: v for k, v in point.items() if k not in declared}
    trainer = {k: v for k, v in point.items() if k in declared}
    return model_hp, trainer
