"""Benchmark datasets: the real Baby pairs when present, else generated data of a given scale.

A scale fixes users, items, interactions and the feature dimensions. Generated data has the
shape that matters for speed, built without Python loops over users or interactions:

- user degrees: at least `min_degree` each, the rest spread by a heavy-tailed (Lomax) weight
  per user, capped so that every user keeps plenty of negatives;
- item degrees: every item gets `min_degree` slots (as a 5-core would), the rest are drawn
  from a heavy-tailed popularity;
- no duplicate (user, item) pair: duplicates are redrawn until none is left;
- split: MMRec's per-user rule (fewer than 10 items: one validation and one test item;
  otherwise int(0.2 n) held out, half of them validation), over a random order per user;
- features: MMRec's sizes, `image = |N(0, 1)|` (n_items x 4096, non-negative like CNN
  activations) then `text = N(0, 1)` (n_items x 384), float32, from one numpy generator.

Real Baby (`../shared/data/amazon2014-baby/mmrec-split`, MMRec's own split) gets the features
exactly as that folder's README prescribes (numpy `default_rng(7)`, image first), so timings
compare with the MMRec figures recorded there.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from crane import files  # noqa: E402
from crane.data.processed import TEST, TRAIN, VALID, Interactions  # noqa: E402

REAL_BABY_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "amazon2014-baby"
GENERATOR_VERSION = "crane-bench-synthetic-1"  # bump when the generated numbers change
_SMALL_USER = 10  # MMRec's split: users below this hold out exactly one valid + one test


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
        source = f"real: {real_dir} (MMRec's split)"
        # The README's recipe: rng = default_rng(7); image first, then text.
        feature_seed = 7
    else:
        interactions = generate_interactions(spec, seed)
        source = (f"generated ({GENERATOR_VERSION}, seed {seed}, power-law degrees, "
                  f"min degree {spec.min_degree})")
        feature_seed = seed + 1
    features, hashes = {}, {}
    if with_features:
        features = random_features(interactions.n_items, spec.image_dim, spec.text_dim,
                                   feature_seed)
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


def random_features(n_items: int, image_dim: int, text_dim: int,
                    seed: int) -> dict[str, np.ndarray]:
    """MMRec-sized random features: |N(0,1)| image, then N(0,1) text, one generator."""
    rng = np.random.default_rng(seed)
    image = rng.standard_normal((n_items, image_dim), dtype=np.float32)
    np.abs(image, out=image)
    text = rng.standard_normal((n_items, text_dim), dtype=np.float32)
    return {"image": image, "text": text}


# -- generated interactions -------------------------------------------------------------------

def generate_interactions(spec: Scale, seed: int = 7, user_tail: float = 2.0,
                          item_tail: float = 2.0, max_rounds: int = 100) -> Interactions:
    """`spec.interactions` distinct pairs with power-law degrees, split as MMRec splits."""
    n_users, n_items, total = spec.users, spec.items, spec.interactions
    if total < spec.min_degree * max(n_users, n_items):
        raise ValueError(f"scale {spec.name}: {total} interactions cannot give every user and "
                         f"item {spec.min_degree}")
    if total > n_users * n_items // 4:
        raise ValueError(f"scale {spec.name}: {total} interactions is too dense for "
                         f"{n_users} x {n_items}")
    rng = np.random.default_rng(seed)
    degree = user_degrees(rng, n_users, total, spec.min_degree,
                          cap=max(spec.min_degree, n_items // 10), tail=user_tail)
    user = np.repeat(np.arange(n_users, dtype=np.int64), degree)

    popularity = _heavy_tailed_weights(rng, n_items, item_tail)
    popularity /= popularity.sum()
    item = np.concatenate([
        np.repeat(np.arange(n_items, dtype=np.int64), spec.min_degree),
        rng.choice(n_items, size=total - spec.min_degree * n_items, p=popularity),
    ])
    rng.shuffle(item)
    item = _redraw_duplicates(rng, user, item, n_items, popularity, max_rounds)
    split = mmrec_rule_split(rng, user)
    return Interactions(n_users=n_users, n_items=n_items, user=user, item=item, split=split)


def user_degrees(rng: np.random.Generator, n_users: int, total: int, minimum: int, cap: int,
                 tail: float) -> np.ndarray:
    """Degrees summing to `total`, each in [minimum, cap], heavy-tailed above the minimum."""
    if not minimum * n_users <= total <= cap * n_users:
        raise ValueError(f"{total} interactions do not fit {n_users} users of degree "
                         f"{minimum}..{cap}")
    degree = np.full(n_users, minimum, dtype=np.int64)
    weights = _heavy_tailed_weights(rng, n_users, tail)
    remaining = total - degree.sum()
    while remaining > 0:  # a few rounds: only what the cap cut off is spread again
        open_users = degree < cap
        share = np.where(open_users, weights, 0.0)
        degree += rng.multinomial(remaining, share / share.sum())
        degree = np.minimum(degree, cap)
        remaining = total - degree.sum()
    return degree


def _heavy_tailed_weights(rng: np.random.Generator, n: int, tail: float) -> np.ndarray:
    """Lomax(tail) + 1 weights: a power-law tail of index `tail`."""
    return rng.pareto(tail, n) + 1.0


def _redraw_duplicates(rng: np.random.Generator, user: np.ndarray, item: np.ndarray,
                       n_items: int, popularity: np.ndarray, max_rounds: int) -> np.ndarray:
    """Replace the items of repeated (user, item) pairs until every pair is distinct."""
    item = item.copy()
    for _ in range(max_rounds):
        keys = user * n_items + item
        order = np.argsort(keys, kind="stable")
        repeated = order[1:][keys[order[1:]] == keys[order[:-1]]]
        if len(repeated) == 0:
            return item
        item[repeated] = rng.choice(n_items, size=len(repeated), p=popularity)
    raise RuntimeError(f"could not make all pairs distinct in {max_rounds} rounds")


def mmrec_rule_split(rng: np.random.Generator, user: np.ndarray) -> np.ndarray:
    """Split labels by MMRec's per-user proportions over a random order within each user.

    `user` must be sorted (grouped). Users with fewer than 10 rows hold out one validation and
    one test row; others int(0.2 n), floor(half) of it validation.
    """
    if len(user) > 1 and bool((np.diff(user) < 0).any()):
        raise ValueError("mmrec_rule_split needs rows grouped by user (sorted user ids)")
    counts = np.bincount(user)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    # A random position within the user: sort (user, random key).
    order = np.lexsort((rng.random(len(user)), user))
    position = np.empty(len(user), dtype=np.int64)
    position[order] = np.arange(len(user)) - np.repeat(starts, counts)
    n_holdout = np.where(counts < _SMALL_USER, np.minimum(2, counts),
                         (0.2 * counts).astype(np.int64))
    n_train = np.repeat(counts - n_holdout, counts)
    n_valid = np.repeat(n_holdout // 2, counts)
    labels = np.where(position < n_train, TRAIN,
                      np.where(position < n_train + n_valid, VALID, TEST))
    return labels.astype(np.int8)
