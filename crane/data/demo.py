"""The embedded demo dataset: a small synthetic Amazon category with planted structure,
written in exactly the raw formats of the 2014 release so that it runs through the same
parsers, k-core, split and feature extractors as a real category.

Files written into `raw_dir` (category "Demo" by default):
- `reviews_Demo_5.json.gz`: JSON lines (reviewerID, asin, reviewerName, helpful, reviewText,
  overall, summary, unixReviewTime, reviewTime);
- `meta_Demo.json.gz`: one Python dict literal per line (asin, title, brand, categories,
  description, imUrl, price, salesRank);
- `images/<asin>.jpg`: 32x32 product images, straight into the image cache;
- `image_features_Demo.b`: 10-byte ASIN + 4096 little-endian float32 per item.

Planted structure (all from one seeded generator):
- 48 fine styles, a colour family (8) x a print theme (6). Each item has one; it shows in
  the title/description words (colour, material, motif, theme), in the image (background
  in the colour family's colour, stripes in the theme's accent colour) and in the 4096-d
  vector. Each view is independently wrong for a share of the items (`view_noise`), and
  every text carries generic words and a stray word of another style, so content helps
  but is not an oracle. Each style is a product line sold mostly as one kind of product:
  a sentence encoder groups texts by product kind before anything else.
- Users prefer one to a few fine styles (sparse Dirichlet) and belong to a community; each
  community favours its own random subset of every style's items. With about 17 items
  per style and about 8 training interactions per user, IDs learn the styles only
  roughly, so content is worth more than IDs; content cannot see communities, so an
  ID-only model still beats popularity and a content model needs the interactions too.
- Long-tailed item popularity; every user has at least 5 interactions and items are
  topped up to 5, so the data is already (nearly) 5-core. Timestamps increase per user.
- Imputation paths: a few items have no 4096-d vector, two have no image file and one
  image file is corrupt.
"""

from __future__ import annotations

import datetime as dt
import gzip
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from crane import files
from crane.data.image_features_b import FEATURE_DIM, write_image_features_b
from crane.data.raw_images import images_dir


@dataclass(frozen=True)
class Colour:
    """A colour family: its words in the text and the background of its images."""

    name: str
    rgb: tuple[int, int, int]
    words: tuple[str, ...]
    materials: tuple[str, ...]


@dataclass(frozen=True)
class Theme:
    """A print theme: its words in the text and the colour of the motif in its images."""

    name: str
    accent: tuple[int, int, int]
    words: tuple[str, ...]


@dataclass(frozen=True)
class Style:
    """A fine style, a colour family x a theme: what users actually choose by."""

    colour: Colour
    theme: Theme

    @property
    def name(self) -> str:
        return f"{self.colour.name}-{self.theme.name}"

    @property
    def words(self) -> tuple[str, ...]:
        return self.colour.words + self.colour.materials + self.theme.words


COLOURS = (
    Colour("crimson", (200, 30, 45), ("crimson", "scarlet", "ruby", "cherry"),
           ("velvet", "corduroy")),
    Colour("navy", (25, 55, 155), ("navy", "cobalt", "azure", "sapphire"),
           ("denim", "chambray")),
    Colour("emerald", (30, 140, 60), ("emerald", "olive", "sage", "mint"),
           ("bamboo", "hemp")),
    Colour("golden", (230, 190, 30), ("golden", "amber", "mustard", "honey"),
           ("wicker", "jute")),
    Colour("lavender", (150, 90, 200), ("lavender", "violet", "lilac", "plum"),
           ("silk", "satin")),
    Colour("charcoal", (45, 45, 50), ("charcoal", "black", "graphite", "slate"),
           ("leather", "neoprene")),
    Colour("ivory", (240, 235, 215), ("ivory", "cream", "pearl", "vanilla"),
           ("linen", "muslin")),
    Colour("tangerine", (245, 120, 30), ("tangerine", "coral", "orange", "peach"),
           ("fleece", "terry")),
)
# Motif colours sit apart from every background in an 8-level-per-channel colour histogram.
THEMES = (
    Theme("floral", (255, 160, 210), ("rose", "tulip", "daisy")),
    Theme("nautical", (0, 200, 220), ("anchor", "sailboat", "whale")),
    Theme("woodland", (110, 60, 10), ("fox", "owl", "acorn")),
    Theme("safari", (170, 240, 0), ("lion", "giraffe", "zebra")),
    Theme("space", (255, 255, 90), ("rocket", "planet", "astronaut")),
    Theme("dinosaur", (0, 100, 100), ("dinosaur", "volcano", "fossil")),
)
STYLES = tuple(Style(colour, theme) for colour in COLOURS for theme in THEMES)


def style_colour(style: np.ndarray) -> np.ndarray:
    """Index into COLOURS of each fine style index."""
    return np.asarray(style) // len(THEMES)


def style_theme(style: np.ndarray) -> np.ndarray:
    """Index into THEMES of each fine style index."""
    return np.asarray(style) % len(THEMES)


KINDS = (
    ("Blanket", ("Nursery", "Bedding")), ("Crib Sheet", ("Nursery", "Bedding")),
    ("Swaddle", ("Nursery", "Swaddling")), ("Night Light", ("Nursery", "Lighting")),
    ("Bib", ("Feeding", "Bibs & Burp Cloths")), ("Bottle", ("Feeding", "Bottle-Feeding")),
    ("Teether", ("Gear", "Teethers")), ("Diaper Bag", ("Gear", "Diaper Bags")),
    ("Stroller Organizer", ("Gear", "Strollers")), ("Rattle", ("Toys", "Rattles")),
    ("Plush Toy", ("Toys", "Stuffed Animals")), ("Play Mat", ("Toys", "Activity Mats")),
    ("Onesie", ("Apparel", "Bodysuits")), ("Hat", ("Apparel", "Accessories")),
    ("Socks", ("Apparel", "Socks")), ("Bath Towel", ("Bath", "Towels")),
)
BRANDS = ("Little Lark", "Cozy Cub", "Nestling", "Bright Sprout", "Moonbeam Baby",
          "Pebble & Co", "Tiny Harbor", "Wrenwood", "Puddle Jump", "Honeybee Nursery",
          "Oak & Otter", "Sprig", "Bundle Bear", "Maple Kids", "Twinkle Toes", "Lullabloom")
ADJECTIVES = ("soft", "premium", "organic", "cute", "durable", "lightweight", "adorable",
              "classic", "gentle", "washable", "cozy", "breathable")
SELLING_POINTS = ("Machine washable.", "Perfect gift for newborns.", "BPA free.",
                  "Easy to clean.", "Fits most cribs.", "Great for travel.",
                  "Tested for safety.", "Grows with your baby.")
REVIEW_OPENERS = ("Great", "Nice", "Okay", "Lovely", "Decent", "Wonderful", "Solid")
REVIEW_PHRASES = ("my daughter loves it", "my son uses it every day", "good value",
                  "arrived quickly", "a bit smaller than expected", "washes well",
                  "would buy again", "quality is fine", "exactly as pictured",
                  "the grandparents approved")
SUMMARIES = ("Five Stars", "Love it", "Cute", "Works well", "As described", "Nice gift",
             "Four Stars", "Good but small", "Recommended", "Not bad")
FIRST_NAMES = ("Anna", "Ben", "Carla", "Dev", "Emma", "Femi", "Grace", "Hiro", "Ines",
               "Jon", "Kara", "Liam", "Mia", "Noor", "Omar", "Priya", "Quinn", "Rosa",
               "Sam", "Tara", "Uma", "Victor", "Wen", "Yara", "Zoe")

_ID_CHARS = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"))
_URL_CHARS = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"))
# Strength of the planted signals, tuned on the default demo so that content is worth more
# than what IDs learn from sparse interactions, ID-only models still beat popularity, and
# content plus interactions beat either (test Recall@20 about 0.13 popularity, 0.18 EASE,
# 0.20 title-word content, 0.22 both; tests/data/test_prepare.py).
STYLE_CONCENTRATION = 0.08  # Dirichlet alpha of user style preferences: small = few styles
STYLE_FLOOR = 0.01  # taste for any style: draws that follow no preference
COMMUNITY_BOOST = 8.0  # how much more a community draws its favourite items
COMMUNITY_SHARE = 0.25  # share of each style's items a community favours
LINE_KIND_SHARE = 0.75  # share of a style's items of its product line's kind
POPULARITY_SIGMA = 0.9  # log-normal spread of item popularity
EXTRA_INTERACTIONS = 6.0  # mean interactions per user beyond the minimum of 5
_DAY = 86400
_FIRST_DAY = int(dt.datetime(2010, 1, 1, tzinfo=dt.timezone.utc).timestamp()) // _DAY
_LAST_DAY = int(dt.datetime(2014, 7, 20, tzinfo=dt.timezone.utc).timestamp()) // _DAY


@dataclass
class DemoSummary:
    """What was generated, with the planted truth (for tests and for inspecting signal)."""

    raw_dir: Path
    category: str
    files: list[str]
    asins: np.ndarray  # item index -> ASIN
    user_ids: np.ndarray  # user index -> reviewerID
    item_style: np.ndarray  # the latent style of each item
    text_style: np.ndarray  # the style its text shows (differs for view_noise of items)
    image_style: np.ndarray  # the style its image and vector show
    user_preference: np.ndarray  # (users, K) Dirichlet style preferences
    user_community: np.ndarray  # community of each user
    community_favourites: np.ndarray  # (communities, items) bool
    popularity: np.ndarray  # item popularity weights (long-tailed)
    interactions: np.ndarray  # (n, 2) user index, item index, in file order
    items_without_vector: list[str] = field(default_factory=list)
    items_without_image: list[str] = field(default_factory=list)
    items_with_corrupt_image: list[str] = field(default_factory=list)

    def file_records(self) -> dict[str, dict]:
        return {name: {"sha256": files.sha256_file(self.raw_dir / name),
                       "size": (self.raw_dir / name).stat().st_size} for name in self.files}


def generate_demo(raw_dir: str | Path, users: int = 1500, items: int = 800, seed: int = 7,
                  category: str = "Demo", communities: int = 12, view_noise: float = 0.15
                  ) -> DemoSummary:
    """Write the demo category's raw files into raw_dir (same seed, same bytes)."""
    if users < 20 or items < 40:
        raise ValueError(f"demo: needs at least 20 users and 40 items, got {users}, {items}")
    if not category or "/" in category:
        raise ValueError(f"demo: category must be a plain name, got {category!r}")
    raw_dir = Path(raw_dir)
    rng = np.random.default_rng(seed)
    n_styles = len(STYLES)

    asins = _unique_ids(rng, items, _asin)
    user_ids = _unique_ids(rng, users, lambda r: "A" + "".join(r.choice(_ID_CHARS, 13)))
    item_style = rng.integers(0, n_styles, items)
    # Each style is a product line sold mostly as one kind of product (a sentence encoder
    # groups texts by product kind first, so independent kinds would hide the style).
    home_kind = np.arange(n_styles) % len(KINDS)
    item_kind = np.where(rng.random(items) < LINE_KIND_SHARE, home_kind[item_style],
                         rng.integers(0, len(KINDS), items))
    text_style = _noisy_view(rng, item_style, view_noise, n_styles)
    image_style = _noisy_view(rng, item_style, view_noise, n_styles)

    preference = rng.dirichlet(np.full(n_styles, STYLE_CONCENTRATION), users)
    community = rng.integers(0, communities, users)
    favourites = rng.random((communities, items)) < COMMUNITY_SHARE
    popularity = rng.lognormal(0.0, POPULARITY_SIGMA, items)
    pairs = _sample_interactions(rng, preference, community, favourites, popularity,
                                 item_style)

    raw_dir.mkdir(parents=True, exist_ok=True)
    names = {"reviews": f"reviews_{category}_5.json.gz", "meta": f"meta_{category}.json.gz",
             "features": f"image_features_{category}.b"}
    _write_gzip_lines(raw_dir / names["reviews"],
                      _review_lines(rng, pairs, user_ids, asins, item_style, item_kind,
                                    preference))
    _write_gzip_lines(raw_dir / names["meta"],
                      _meta_lines(rng, asins, text_style, item_kind, category, pairs[:, 1]))

    vector_missing = rng.choice(items, size=max(3, items // 160), replace=False)
    has_vector = np.ones(items, dtype=bool)
    has_vector[vector_missing] = False
    vectors = _image_vectors(rng, image_style)
    write_image_features_b(raw_dir / names["features"], list(asins[has_vector]),
                           vectors[has_vector])

    image_files, no_image, corrupt = _write_images(rng, images_dir(raw_dir), asins,
                                                   image_style)
    return DemoSummary(
        raw_dir=raw_dir, category=category,
        files=[names["reviews"], names["meta"], names["features"]] + image_files,
        asins=asins, user_ids=user_ids, item_style=item_style, text_style=text_style,
        image_style=image_style, user_preference=preference, user_community=community,
        community_favourites=favourites, popularity=popularity, interactions=pairs,
        items_without_vector=sorted(asins[~has_vector].tolist()),
        items_without_image=no_image, items_with_corrupt_image=corrupt)


def _asin(rng: np.random.Generator) -> str:
    # Mostly B00-style product ASINs, some 10-digit ISBN-like ones (sort before 'B').
    if rng.random() < 0.04:
        return "".join(rng.choice(_ID_CHARS[26:], 10))
    return "B00" + "".join(rng.choice(_ID_CHARS, 7))


def _unique_ids(rng: np.random.Generator, n: int, make) -> np.ndarray:
    ids: dict[str, None] = {}
    while len(ids) < n:
        ids.setdefault(make(rng))
    return np.array(list(ids), dtype=object)


def _noisy_view(rng: np.random.Generator, truth: np.ndarray, noise: float,
                n_styles: int) -> np.ndarray:
    """The style a modality shows: the truth, except a `noise` share shows another one."""
    wrong = rng.random(len(truth)) < noise
    shift = rng.integers(1, n_styles, len(truth))
    return np.where(wrong, (truth + shift) % n_styles, truth)


def _sample_interactions(rng, preference, community, favourites, popularity, item_style):
    """Each user draws distinct items with probability ~ style taste x popularity x
    community boost (Gumbel top-k: one vectorised draw without replacement per user)."""
    n_users, n_items = len(preference), len(item_style)
    log_weight = (np.log(preference[:, item_style] + STYLE_FLOOR) + np.log(popularity)[None, :]
                  + np.log(COMMUNITY_BOOST) * favourites[community])
    counts = np.minimum(5 + rng.negative_binomial(2, 2 / (2 + EXTRA_INTERACTIONS), n_users),
                        n_items // 4)
    scores = log_weight + rng.gumbel(size=log_weight.shape)
    ranks = np.argsort(np.argsort(-scores, axis=1), axis=1)
    taken = ranks < counts[:, None]

    # Top up items below 5 interactions from the users most drawn to them, so the data is
    # (nearly) 5-core as published category files are.
    degree = taken.sum(axis=0)
    for item in np.flatnonzero(degree < 5):
        candidates = np.flatnonzero(~taken[:, item])
        need = 5 - degree[item]
        best = candidates[np.argsort(-scores[candidates, item])[:need]]
        taken[best, item] = True

    user_index, item_index = np.nonzero(taken)
    order = rng.permutation(len(user_index))  # file order: not grouped by user
    return np.stack([user_index[order], item_index[order]], axis=1)


def _review_lines(rng, pairs, user_ids, asins, item_style, item_kind,
                  preference) -> list[str]:
    n = len(pairs)
    users, items = pairs[:, 0], pairs[:, 1]
    days = _increasing_days(rng, users)
    liked = preference[users, item_style[items]] > 0.25
    overall = np.where(liked, rng.choice([5, 4, 3], n, p=[0.7, 0.22, 0.08]),
                       rng.choice([5, 4, 3, 2, 1], n, p=[0.4, 0.25, 0.15, 0.1, 0.1]))
    total_votes = rng.poisson(1.5, n)
    helpful_votes = rng.binomial(total_votes, 0.7)
    named = rng.random(len(user_ids)) < 0.9
    names = np.array([f"{rng.choice(FIRST_NAMES)} {rng.choice(_ID_CHARS[:26])}."
                      for _ in range(len(user_ids))], dtype=object)
    openers = rng.choice(REVIEW_OPENERS, n)
    phrases = rng.choice(REVIEW_PHRASES, (n, 2))
    summaries = rng.choice(SUMMARIES, n)
    lines = []
    for row in range(n):
        user, item = int(users[row]), int(items[row])
        day = dt.datetime.fromtimestamp(int(days[row]) * _DAY, dt.timezone.utc)
        record = {"reviewerID": user_ids[user], "asin": asins[item]}
        if named[user]:
            record["reviewerName"] = names[user]
        record.update({
            "helpful": [int(helpful_votes[row]), int(total_votes[row])],
            "reviewText": f"{openers[row]} {KINDS[item_kind[item]][0].lower()}, "
                          f"{phrases[row, 0]}. Also {phrases[row, 1]}.",
            "overall": float(overall[row]),
            "summary": str(summaries[row]),
            "unixReviewTime": int(days[row]) * _DAY,
            "reviewTime": f"{day.month:02d} {day.day}, {day.year}",
        })
        lines.append(json.dumps(record))
    return lines


def _increasing_days(rng, users: np.ndarray) -> np.ndarray:
    """A review day per row, strictly increasing along each user's rows in file order."""
    n_users = int(users.max()) + 1
    gaps = 1 + rng.geometric(1 / 12, len(users))  # days between a user's reviews
    span = np.bincount(users, weights=gaps, minlength=n_users).astype(np.int64)
    room = np.maximum(_LAST_DAY - _FIRST_DAY - span, 0)
    start = _FIRST_DAY + (rng.random(n_users) * room).astype(np.int64)
    order = np.argsort(users, kind="stable")
    sorted_users, sorted_gaps = users[order], gaps[order]
    cumulative = np.cumsum(sorted_gaps)
    first = np.flatnonzero(np.r_[True, sorted_users[1:] != sorted_users[:-1]])
    before_user = np.repeat(cumulative[first] - sorted_gaps[first],
                            np.diff(np.r_[first, len(users)]))
    days = np.empty(len(users), dtype=np.int64)
    days[order] = start[sorted_users] + cumulative - before_user
    return days


def _meta_lines(rng, asins, text_style, item_kind, category,
                interaction_items) -> list[str]:
    n = len(asins)
    sales = np.bincount(interaction_items, minlength=n)
    sales_rank = np.argsort(np.argsort(-sales - rng.random(n))) * 37 + rng.integers(1, 37, n)
    lines = []
    for item in range(n):
        style = STYLES[text_style[item]]
        stray = STYLES[(text_style[item] + rng.integers(1, len(STYLES))) % len(STYLES)]
        kind, path = KINDS[item_kind[item]]
        colour = rng.choice(style.colour.words)
        motif = rng.choice(style.theme.words)
        title_parts = [rng.choice(ADJECTIVES).title(), colour.title()]
        if rng.random() < 0.6:
            title_parts.append(rng.choice(style.colour.materials).title())
        title_parts += [motif.title(), kind]
        brand = BRANDS[rng.integers(0, len(BRANDS))]
        record = {"asin": asins[item]}
        if rng.random() < 0.92:
            shades = rng.choice(style.colour.words, 2, replace=False)
            motifs = rng.choice(style.theme.words, 2, replace=False)
            record["description"] = " ".join([
                f"{shades[0].title()} and {shades[1]} {rng.choice(style.colour.materials)}"
                f" with {motifs[0]} and {motifs[1]} prints from our {style.theme.name} line.",
                f"This {rng.choice(ADJECTIVES)} {kind.lower()} has "
                f"{rng.choice(stray.words)} trim.",
                *rng.choice(SELLING_POINTS, 2, replace=False)])
        record["title"] = f"{brand} " + " ".join(title_parts)
        record["price"] = round(float(rng.lognormal(2.8, 0.5)), 2)
        record["salesRank"] = {category: int(sales_rank[item])}
        record["imUrl"] = ("http://ecx.images-amazon.com/images/I/"
                           f"{rng.integers(31, 52)}{''.join(rng.choice(_URL_CHARS, 8))}L.jpg")
        categories = [[category, *path]]
        if rng.random() < 0.15:
            categories.append([category, "Gifts"])
        record["categories"] = categories
        if rng.random() < 0.9:
            record["brand"] = brand
        lines.append(repr(record))
    return lines


def _image_vectors(rng, image_style: np.ndarray) -> np.ndarray:
    """4096-d non-negative, sparse-ish vectors like CNN fc7 features: style centroid + noise."""
    colour = np.maximum(rng.normal(0.0, 1.0, (len(COLOURS), FEATURE_DIM)), 0.0)
    theme = np.maximum(rng.normal(0.0, 1.0, (len(THEMES), FEATURE_DIM)), 0.0)
    noise = rng.normal(0.0, 1.0, (len(image_style), FEATURE_DIM))
    centre = colour[style_colour(image_style)] + theme[style_theme(image_style)]
    return np.maximum(0.4 * centre + noise - 0.3, 0.0).astype(np.float32)


def _write_images(rng, image_dir: Path, asins: np.ndarray, image_style: np.ndarray
                  ) -> tuple[list[str], list[str], list[str]]:
    """A 32x32 JPEG per item: the colour family's background, stripes in the theme's accent
    colour, pixel noise. Two items get no file and one a corrupt file (the feature step must
    impute them). The folder is written whole (atomic)."""
    n = len(asins)
    skipped = rng.choice(n, size=3, replace=False)
    no_image, corrupt = sorted(asins[skipped[:2]].tolist()), [str(asins[skipped[2]])]
    palette = np.array([colour.rgb for colour in COLOURS], dtype=np.float64)
    accents = np.array([theme.accent for theme in THEMES], dtype=np.float64)
    pixels = np.empty((n, 32, 32, 3))
    pixels[:] = (palette[style_colour(image_style)]
                 + rng.normal(0, 12, (n, 3)))[:, None, None, :]
    yy, xx = np.mgrid[0:32, 0:32]
    # Stripes cover about half the picture, so the motif weighs as much as the background
    # in a colour histogram.
    vertical = rng.random(n) < 0.5
    position = np.where(vertical[:, None, None], xx[None], yy[None])
    phase, width = rng.integers(0, 8, n), rng.integers(3, 6, n)
    shape = (position + phase[:, None, None]) % 8 < width[:, None, None]
    shape_colour = accents[style_theme(image_style)] + rng.normal(0, 10, (n, 3))
    pixels = np.where(shape[..., None], shape_colour[:, None, None, :], pixels)
    pixels = np.clip(pixels + rng.normal(0, 8, pixels.shape), 0, 255).astype(np.uint8)
    garbage = rng.bytes(200)

    written = []
    with files.atomic_dir(image_dir) as tmp:
        for item, asin in enumerate(asins.tolist()):
            if asin in no_image:
                continue
            if asin in corrupt:
                (tmp / f"{asin}.jpg").write_bytes(b"\xff\xd8\xff\xe0" + garbage)
            else:
                Image.fromarray(pixels[item]).save(tmp / f"{asin}.jpg", "JPEG", quality=90)
            written.append(f"{image_dir.name}/{asin}.jpg")
    return written, no_image, corrupt


def _write_gzip_lines(path: Path, lines: list[str]) -> None:
    # mtime=0 and no file name in the header: the same seed gives the same bytes.
    buffer = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buffer, mtime=0,
                       compresslevel=6) as gz:
        gz.write(("\n".join(lines) + "\n").encode("utf-8"))
    files.write_bytes(path, buffer.getvalue())
