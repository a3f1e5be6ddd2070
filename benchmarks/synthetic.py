"""Benchmark datasets: the real Baby pairs when present, else generated data of a given scale.

A scale fixes users, items, interactions and the feature dimensions. Generated data comes from
crane.synthetic: `power_law_interactions` (heavy-tailed user and item degrees, at least
`min_degree` each, no repeated pair, MMRec's per-user split rule) and
`random_image_text_features` (`image = |N(0, 1)|`, n_items x 4096, then `text = N(0, 1)`,
n_items x 384, float32, from one numpy generator).

Real Baby (`../shared/data/amazon2014-baby/mmrec-split`, MMRec's own split) gets the features
exactly as that folder's README prescribes (numpy `default_rng(7)`, image first), so timings
compare with the MMRec figures recorded there. The data's `source` names that folder relative
to the checkout, so that result tables hold no machine's absolute path.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from crane import files  # noqa: E402
from crane.data.processed import TEST, TRAIN, VALID, Interactions  # noqa: E402
from crane.synthetic import (power_law_interactions,  # noqa: E402
                                  random_image_text_features)

CHECKOUT = Path(__file__).resolve().parents[1]
REAL_BABY_DIR = CHECKOUT.parent / "shared" / "data" / "amazon2014-baby"
# Bump when the generated numbers change (tests/test_synthetic.py pins them).
GENERATOR_VERSION = "crane-bench-synthetic-1"


@dataclass(frozen=True)
class Scale:
    name: str
    users: int
    items: int
    interactions: int
    image_dim: int = 4096
    text_dim: int = 384
    min_degree: int = 5


SCALES: dict[str, Scale] = {
    # A few seconds end to end: the harness test.
    "tiny": Scale("tiny", users=400, items=150, interactions=4000, image_dim=64, text_dim=32),
    # Amazon 5-core sizes as the multimodal literature (MMRec) reports them.
    "baby": Scale("baby", users=19_445, items=7_050, interactions=160_792),
    "clothing": Scale("clothing", users=39_387, items=23_033, interactions=278_677),
    "electronics": Scale("electronics", users=192_403, items=63_001, interactions=1_689_188),
}


@dataclass
class BenchmarkData:
    """Split interactions + item features of one scale, and where they came from."""

    scale: str
    source: str  # "real: <folder>" or "generated (...)"
    interactions: Interactions
    features: dict[str, np.ndarray]
    feature_hashes: dict[str, str] = field(default_factory=dict)

    def summary(self) -> dict:
        counts = np.bincount(self.interactions.split, minlength=3)
        return {"scale": self.scale, "source": self.source,
                "users": self.interactions.n_users, "items": self.interactions.n_items,
                "interactions": int(len(self.interactions.user)),
                "train": int(counts[TRAIN]), "valid": int(counts[VALID]),
                "test": int(counts[TEST]),
                "features": {m: list(f.shape) for m, f in self.features.items()}}


def load_scale(scale: str, seed: int = 7, with_features: bool = True,
               real_baby_dir: Path | None = REAL_BABY_DIR) -> BenchmarkData:
    """The benchmark data of `scale`: real Baby when `scale == "baby"` and its folder exists."""
    if scale not in SCALES:
        raise ValueError(f"unknown scale {scale!r}; known: {', '.join(SCALES)}")
    spec = SCALES[scale]
    real_dir = Path(real_baby_dir) / "mmrec-split" if real_baby_dir is not None else None
    if scale == "baby" and real_dir is not None and (real_dir / "baby.inter").exists():
        interactions = real_baby_interactions(real_dir)
        source = f"real: {relative_to_checkout(real_dir)} (MMRec's split)"
        # The README's recipe: rng = default_rng(7); image first, then text.
        feature_seed = 7
    else:
        interactions = generate_interactions(spec, seed)
        source = (f"generated ({GENERATOR_VERSION}, seed {seed}, power-law degrees, "
                  f"min degree {spec.min_degree})")
        feature_seed = seed + 1
    features, hashes = {}, {}
    if with_features:
        features = random_image_text_features(interactions.n_items, spec.image_dim,
                                              spec.text_dim, feature_seed)
        # The generator's parameters fix the content: a cheap, exact cache key for kNN graphs.
        hashes = {m: files.sha256_json({"generator": GENERATOR_VERSION, "seed": feature_seed,
                                        "modality": m, "shape": list(f.shape)})
                  for m, f in features.items()}
    return BenchmarkData(scale, source, interactions, features, hashes)


def real_baby_interactions(folder: Path) -> Interactions:
    from crane.data.mmrec_format import read_mmrec

    mmrec = read_mmrec(folder, "baby")
    return Interactions.from_frame(mmrec.interactions, n_users=len(mmrec.users),
                                   n_items=len(mmrec.items))


def generate_interactions(spec: Scale, seed: int = 7) -> Interactions:
    """`spec.interactions` distinct pairs with power-law degrees, split as MMRec splits."""
    return power_law_interactions(spec.users, spec.items, spec.interactions, spec.min_degree,
                                  seed)


def relative_to_checkout(folder: Path) -> str:
    """`folder` as a path relative to this checkout (e.g. `../shared/data/...`)."""
    return Path(os.path.relpath(os.path.abspath(folder), CHECKOUT)).as_posix()
