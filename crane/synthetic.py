"""Generated interactions and item features with planted structure, for tests and benchmarks.

Every generator draws from one seeded `numpy.random.Generator`, so a seed fixes every array
bit for bit; the model tests' thresholds were set on exactly these draws, so a change to the
order of the draws is a change of test data (tests/test_synthetic.py pins a digest of
each generator's output). The planted structure:

- styles: every item has one style, visible (with noise) in every modality's features, see
  `style_features`; every user likes one style. A model that reads the features can learn it.
- cold items: as likely as any other item in validation and test, but absent from training
  (or there once, so that they have a graph node). Only a model that reads the features can
  rank them, so shuffling the feature rows (`shuffled_features`) must hurt it.
- groups (`styled_and_grouped` only): every user and item also belong to a collaborative
  group that no feature shows; only the interaction graph reveals it.
- clusters (`clustered_interactions`): users see only items of their cluster; no features.

The styled generators differ in how they pick cold items and draw interactions, and each
keeps its own sequence of draws:

- `styled_alternate_cold`: item i has style i % n_styles, and every other item of a style is
  cold and never in training (content models: VBPR, LATTICE, FREEDOM, ItemKNN-CBF);
- `styled_random_cold`: a random share of the items is cold, each optionally in training once
  (graph models with features: BM3, MGCN, LGMRec);
- `styled_and_grouped`: styles and groups through per-user Gumbel top-k draws (CRANE,
  LightGCN, BPR).

`random_train_data` has no structure: it is for shape, gradient and scoring checks.
`power_law_interactions`, `mmrec_rule_split` and `random_image_text_features` give benchmark
data at real dataset sizes (heavy-tailed degrees, MMRec's split rule, MMRec-sized features)
without Python loops over users or interactions.

The embedded demo (crane/data/demo.py) does not use this module: it writes the 2014 raw
files with its own sequence of draws, on which the demo tables' bytes depend, and as a
workflow input its code closure would make any edit here rerun the whole demo study.
It returns `TrainData`, so it imports crane.models.base and sits beside the layers rather than
in crane/data (docs/architecture.md); no workflow job imports it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from crane.data.processed import TEST, TRAIN, VALID, Interactions
from crane.models.base import TrainData

FEATURE_SIZES = {"image": 32, "text": 16}  # feature width per modality
WIDE_FEATURE_SIZES = {"image": 48, "text": 24}
_MMREC_SMALL_USER = 10  # MMRec's split: users below this hold out one valid + one test row


@dataclass(frozen=True)
class SyntheticDataset:
    """A generated dataset and the structure planted in it."""

    data: TrainData  # training split + features: what a model sees
    interactions: Interactions  # every split: what the evaluator sees
    item_style: np.ndarray
    user_style: np.ndarray
    cold: np.ndarray  # bool per item: absent from training, or there once
    item_group: np.ndarray | None = None  # styled_and_grouped only
    user_group: np.ndarray | None = None


# -- building blocks -------------------------------------------------------------------------

def train_data(interactions: Interactions,
               features: dict[str, np.ndarray] | None = None) -> TrainData:
    """What a model sees of `interactions`: the training split, plus item features."""
    train_user, train_item = interactions.part(TRAIN)
    return TrainData(interactions.n_users, interactions.n_items, train_user, train_item,
                     features if features is not None else {})


def with_held_out(n_users: int, n_items: int, train_user: np.ndarray, train_item: np.ndarray,
                  held_out: np.ndarray, n_valid: int) -> Interactions:
    """Training rows, then every user's row of `held_out` (n_users x (n_valid + n_test)): its
    first `n_valid` items validation, the rest test."""
    n_held = held_out.shape[1]
    user = np.concatenate([train_user, np.repeat(np.arange(n_users), n_held)])
    item = np.concatenate([train_item, held_out.ravel()])
    split = np.concatenate([np.full(len(train_user), TRAIN),
                            np.tile([VALID] * n_valid + [TEST] * (n_held - n_valid), n_users)])
    return Interactions(n_users, n_items, user.astype(np.int64), item.astype(np.int64),
                        split.astype(np.int8))


def style_features(rng: np.random.Generator, item_style: np.ndarray, n_styles: int,
                   modalities: tuple[str, ...], noise: float,
                   sizes: dict[str, int] = FEATURE_SIZES,
                   unit_norm: bool = False) -> dict[str, np.ndarray]:
    """Per modality (in the given order): a random centre per style, each item's row its
    style's centre plus `noise` times standard normal noise; L2-normalised rows with
    `unit_norm`, like sentence-embedding text features. float32."""
    n_items = len(item_style)
    features = {}
    for modality in modalities:
        centres = rng.normal(size=(n_styles, sizes[modality]))
        rows = centres[item_style] + noise * rng.normal(size=(n_items, sizes[modality]))
        if unit_norm:
            rows /= np.linalg.norm(rows, axis=1, keepdims=True)
        features[modality] = rows.astype(np.float32)
    return features


def gumbel_top_k(keys: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k distinct columns per row, best first, drawn without replacement with probability
    proportional to exp(keys) (the Gumbel-max trick)."""
    perturbed = keys + rng.gumbel(size=keys.shape)
    return np.argsort(-perturbed, axis=1, kind="stable")[:, :k]


def shuffled_features(data: TrainData, seed: int = 1) -> TrainData:
    """The same data with the item rows of every feature matrix permuted: the content is
    destroyed, the feature statistics are kept."""
    order = np.random.default_rng(seed).permutation(data.n_items)
    return replace(data, features={m: f[order] for m, f in data.features.items()},
                   feature_hashes={})


def only_modalities(data: TrainData, *modalities: str) -> TrainData:
    """The same data with the features of `modalities` only."""
    return replace(data, features={m: data.features[m] for m in modalities},
                   feature_hashes={m: h for m, h in data.feature_hashes.items()
                                   if m in modalities})


# -- small datasets for tests ----------------------------------------------------------------

def random_train_data(n_users: int = 40, n_items: int = 30, per_user: int = 5, seed: int = 0,
                      modalities: tuple[str, ...] = ("image", "text"),
                      sizes: dict[str, int] = WIDE_FEATURE_SIZES) -> TrainData:
    """`per_user` distinct random items per user and standard normal features; no held-out
    split and no structure."""
    rng = np.random.default_rng(seed)
    users = np.repeat(np.arange(n_users), per_user)
    items = np.concatenate([rng.choice(n_items, per_user, replace=False)
                            for _ in range(n_users)])
    features = {m: rng.normal(size=(n_items, sizes[m])).astype(np.float32) for m in modalities}
    return TrainData(n_users, n_items, users.astype(np.int64), items.astype(np.int64), features)


def clustered_interactions(n_users: int = 240, n_items: int = 120, n_clusters: int = 4,
                           per_user: int = 12, seed: int = 0) -> Interactions:
    """Users of cluster c interact only with items of cluster c (item i is in i % n_clusters);
    rows by user, each user's last four split 2 validation, 2 test. A model that learns the
    clusters finds held-out items far better than popularity."""
    if not 4 < per_user <= n_items // n_clusters:
        raise ValueError(f"{per_user} items per user: need more than the 4 held out and at "
                         f"most the {n_items // n_clusters} of the smallest cluster")
    rng = np.random.default_rng(seed)
    user_cluster = rng.integers(n_clusters, size=n_users)
    item_cluster = np.arange(n_items) % n_clusters
    users, items = [], []
    for cluster in range(n_clusters):
        members = np.flatnonzero(user_cluster == cluster)
        pool = np.flatnonzero(item_cluster == cluster)
        # argsort of random keys: each member draws `per_user` distinct items of its cluster
        picks = np.argsort(rng.random((len(members), len(pool))), axis=1)[:, :per_user]
        users.append(np.repeat(members, per_user))
        items.append(pool[picks].reshape(-1))
    user = np.concatenate(users)
    item = np.concatenate(items)
    order = np.lexsort((np.arange(len(user)), user))
    user, item = user[order], item[order]
    pattern = np.r_[np.zeros(per_user - 4), np.ones(2), np.full(2, 2)].astype(np.int8)
    split = np.tile(pattern, n_users)
    return Interactions(n_users, n_items, user.astype(np.int64), item.astype(np.int64), split)


def styled_alternate_cold(n_users: int = 300, n_styles: int = 8, items_per_style: int = 24,
                          n_train: int = 6, n_test: int = 3, noise: float = 0.6, seed: int = 0,
                          modalities: tuple[str, ...] = ("image", "text")) -> SyntheticDataset:
    """Item i has style i % n_styles; the item of style s at position p is s + n_styles * p,
    warm at even positions and cold (never in training) at odd ones. Each user trains on
    `n_train` warm items of its style and holds out one validation and `n_test` test items
    drawn from its style's other warm and all its cold items."""
    rng = np.random.default_rng(seed)
    n_items = n_styles * items_per_style
    user_style = rng.integers(n_styles, size=n_users)
    positions = np.arange(items_per_style)
    warm, cold = positions[::2], positions[1::2]
    if n_train > len(warm) or n_test + 1 > len(warm) - n_train + len(cold):
        raise ValueError("not enough items per style for the requested split")
    warm_order = rng.permuted(np.tile(warm, (n_users, 1)), axis=1)
    train_pos = warm_order[:, :n_train]
    rest = rng.permuted(np.concatenate([warm_order[:, n_train:], np.tile(cold, (n_users, 1))],
                                       axis=1), axis=1)
    held_pos = rest[:, :1 + n_test]  # one validation item, then the test items
    train_items = user_style[:, None] + n_styles * train_pos
    held_items = user_style[:, None] + n_styles * held_pos
    interactions = with_held_out(n_users, n_items, np.repeat(np.arange(n_users), n_train),
                                 train_items.ravel(), held_items, n_valid=1)

    item_style = np.arange(n_items) % n_styles
    features = style_features(rng, item_style, n_styles, modalities, noise)
    is_cold = (np.arange(n_items) // n_styles) % 2 == 1
    return SyntheticDataset(train_data(interactions, features), interactions, item_style,
                            user_style, is_cold)


def styled_random_cold(n_users: int = 400, n_items: int = 240, n_styles: int = 8,
                       n_train: int = 8, n_valid: int = 1, n_test: int = 3,
                       cold_share: float = 0.5, noise: float = 0.5, cold_in_train: bool = True,
                       seed: int = 0, modalities: tuple[str, ...] = ("image", "text"),
                       sizes: dict[str, int] = WIDE_FEATURE_SIZES) -> SyntheticDataset:
    """Item i has style i % n_styles and is cold with probability `cold_share`. Each user
    trains on `n_train` warm items of its style and holds out `n_valid + n_test` other items
    of its style, cold or warm. With `cold_in_train`, every cold item is also trained on
    once, by a random user of its style that does not hold it out, so that it has a graph
    node."""
    rng = np.random.default_rng(seed)
    item_style = np.arange(n_items) % n_styles
    cold = rng.random(n_items) < cold_share
    user_style = rng.integers(n_styles, size=n_users)

    def draw(pool_mask: np.ndarray, count: int, taken: list[set[int]]) -> np.ndarray:
        picks = np.empty((n_users, count), np.int64)
        for u in range(n_users):  # small data only: a few hundred users
            pool = np.flatnonzero(pool_mask & (item_style == user_style[u]))
            pool = np.setdiff1d(pool, list(taken[u]))
            picks[u] = rng.choice(pool, count, replace=False)
            taken[u].update(picks[u].tolist())
        return picks

    taken: list[set[int]] = [set() for _ in range(n_users)]
    train = draw(~cold, n_train, taken)
    held_out = draw(np.ones(n_items, bool), n_valid + n_test, taken)
    cold_items = np.flatnonzero(cold)
    cold_users = np.array([rng.choice(np.flatnonzero(user_style == item_style[i]))
                           for i in cold_items], np.int64)
    keep = np.array([cold_in_train and i not in taken[u]
                     for u, i in zip(cold_users, cold_items)], bool)

    train_user = np.concatenate([np.repeat(np.arange(n_users), n_train), cold_users[keep]])
    train_item = np.concatenate([train.ravel(), cold_items[keep]])
    interactions = with_held_out(n_users, n_items, train_user, train_item, held_out, n_valid)
    features = style_features(rng, item_style, n_styles, modalities, noise, sizes)
    return SyntheticDataset(train_data(interactions, features), interactions, item_style,
                            user_style, cold)


def styled_and_grouped(n_users: int = 400, n_items: int = 300, n_styles: int = 6,
                       n_groups: int = 4, n_train: int = 10, n_valid: int = 1, n_test: int = 3,
                       cold_share: float = 0.3, style_strength: float = 3.0,
                       group_strength: float = 1.5, noise: float = 0.6, seed: int = 0,
                       modalities: tuple[str, ...] = ("image", "text"),
                       unit_norm: bool = True) -> SyntheticDataset:
    """Users x items with planted styles (in the features) and groups (in the graph only).

    A user draws items with probability ~ exp(style_strength [same style] + group_strength
    [same group] + item popularity): held-out items first, from every item, then training
    items from the warm ones; then every cold item is trained on once, by a user drawn by
    the same affinities among those that do not hold it out. Feature rows are L2-normalised
    by default.
    """
    if n_train + n_valid + n_test > n_items:
        raise ValueError("more interactions per user than items")
    rng = np.random.default_rng(seed)
    item_style = rng.permutation(np.arange(n_items) % n_styles)
    item_group = rng.integers(n_groups, size=n_items)
    user_style = rng.integers(n_styles, size=n_users)
    user_group = rng.integers(n_groups, size=n_users)
    cold = rng.random(n_items) < cold_share
    popularity = rng.normal(0.0, 0.5, size=n_items)
    affinity = (style_strength * (user_style[:, None] == item_style[None, :])
                + group_strength * (user_group[:, None] == item_group[None, :])
                + popularity[None, :])

    held = gumbel_top_k(affinity, n_valid + n_test, rng)
    blocked = np.zeros_like(affinity, dtype=bool)
    np.put_along_axis(blocked, held, True, axis=1)
    train = gumbel_top_k(np.where(blocked | cold[None, :], -np.inf, affinity), n_train, rng)
    cold_items = np.flatnonzero(cold)
    cold_keys = np.where(blocked[:, cold_items], -np.inf, affinity[:, cold_items])
    cold_users = np.argmax(cold_keys + rng.gumbel(size=cold_keys.shape), axis=0)

    train_user = np.concatenate([np.repeat(np.arange(n_users), n_train), cold_users])
    train_item = np.concatenate([train.ravel(), cold_items])
    interactions = with_held_out(n_users, n_items, train_user, train_item, held, n_valid)
    features = style_features(rng, item_style, n_styles, modalities, noise,
                              unit_norm=unit_norm)
    return SyntheticDataset(train_data(interactions, features), interactions, item_style,
                            user_style, cold, item_group, user_group)


# -- benchmark-sized data --------------------------------------------------------------------

def power_law_interactions(n_users: int, n_items: int, n_interactions: int,
                           min_degree: int = 5, seed: int = 7, user_tail: float = 2.0,
                           item_tail: float = 2.0, max_rounds: int = 100) -> Interactions:
    """`n_interactions` distinct (user, item) pairs with heavy-tailed degrees, split by
    `mmrec_rule_split`; rows grouped by user.

    - user degrees: at least `min_degree`, the rest spread by a Lomax weight per user, capped
      at a tenth of the items so that every user keeps plenty of negatives;
    - item degrees: `min_degree` slots per item (as a k-core would have), the rest drawn from a
      Lomax popularity;
    - no repeated pair: repeats are redrawn from the popularity until none is left.
    """
    if n_interactions < min_degree * max(n_users, n_items):
        raise ValueError(f"{n_interactions} interactions cannot give each of {n_users} users "
                         f"and {n_items} items {min_degree}")
    if n_interactions > n_users * n_items // 4:
        raise ValueError(f"{n_interactions} interactions is too dense for "
                         f"{n_users} x {n_items}")
    rng = np.random.default_rng(seed)
    degree = user_degrees(rng, n_users, n_interactions, min_degree,
                          cap=max(min_degree, n_items // 10), tail=user_tail)
    user = np.repeat(np.arange(n_users, dtype=np.int64), degree)

    popularity = _heavy_tailed_weights(rng, n_items, item_tail)
    popularity /= popularity.sum()
    item = np.concatenate([
        np.repeat(np.arange(n_items, dtype=np.int64), min_degree),
        rng.choice(n_items, size=n_interactions - min_degree * n_items, p=popularity),
    ])
    rng.shuffle(item)
    item = _redraw_repeated_pairs(rng, user, item, n_items, popularity, max_rounds)
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


def _redraw_repeated_pairs(rng: np.random.Generator, user: np.ndarray, item: np.ndarray,
                           n_items: int, popularity: np.ndarray,
                           max_rounds: int) -> np.ndarray:
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
    one test row; others int(0.2 n), floor(half) of it validation. (crane.data.split's
    `mmrec_random` reproduces MMRec's own draws row for row, one permutation per user; this
    one draws the order for all users at once.)
    """
    if len(user) > 1 and bool((np.diff(user) < 0).any()):
        raise ValueError("mmrec_rule_split needs rows grouped by user (sorted user ids)")
    counts = np.bincount(user)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    # A random position within the user: sort (user, random key).
    order = np.lexsort((rng.random(len(user)), user))
    position = np.empty(len(user), dtype=np.int64)
    position[order] = np.arange(len(user)) - np.repeat(starts, counts)
    n_holdout = np.where(counts < _MMREC_SMALL_USER, np.minimum(2, counts),
                         (0.2 * counts).astype(np.int64))
    n_train = np.repeat(counts - n_holdout, counts)
    n_valid = np.repeat(n_holdout // 2, counts)
    labels = np.where(position < n_train, TRAIN,
                      np.where(position < n_train + n_valid, VALID, TEST))
    return labels.astype(np.int8)


def random_image_text_features(n_items: int, image_dim: int, text_dim: int,
                               seed: int) -> dict[str, np.ndarray]:
    """MMRec-sized random features from one generator: image = |N(0, 1)| (non-negative like
    CNN activations), then text = N(0, 1); float32."""
    rng = np.random.default_rng(seed)
    image = rng.standard_normal((n_items, image_dim), dtype=np.float32)
    np.abs(image, out=image)
    text = rng.standard_normal((n_items, text_dim), dtype=np.float32)
    return {"image": image, "text": text}
