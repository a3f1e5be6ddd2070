"""The demo generator: exact 2014 raw formats (read by the real parsers) and planted signal."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from PIL import Image

from crane import files
from crane.data import demo
from crane.data.image_features_b import read_image_features_b
from crane.data.parse import read_json_lines, read_literal_lines
from crane.features.image_histogram import colour_histogram, load_resized

REVIEW_FIELDS = ["reviewerID", "asin", "reviewerName", "helpful", "reviewText", "overall",
                 "summary", "unixReviewTime", "reviewTime"]
META_FIELDS = ["asin", "title", "brand", "categories", "description", "imUrl", "price",
               "salesRank"]
COLOUR_WORDS = {word: c for c, colour in enumerate(demo.COLOURS)
                for word in colour.words + colour.materials}
THEME_WORDS = {word: t for t, theme in enumerate(demo.THEMES) for word in theme.words}
PALETTE = np.array([colour.rgb for colour in demo.COLOURS], dtype=float)
ACCENTS = np.array([theme.accent for theme in demo.THEMES], dtype=float)


@pytest.fixture(scope="module")
def parsed(demo_raw):
    raw_dir, summary = demo_raw
    reviews = read_json_lines(raw_dir / "reviews_Demo_5.json.gz", REVIEW_FIELDS,
                              required=REVIEW_FIELDS[:2], max_malformed_share=0.0)
    meta = read_literal_lines(raw_dir / "meta_Demo.json.gz", META_FIELDS, required=["asin"],
                              max_malformed_share=0.0)
    return raw_dir, summary, reviews, meta


def test_reviews_are_2014_json_lines(parsed):
    _, summary, reviews, _ = parsed
    assert len(reviews) == len(summary.interactions)
    assert reviews["reviewerID"].str.fullmatch(r"A[A-Z0-9]{13}").all()
    assert reviews["asin"].str.fullmatch(r"[A-Z0-9]{10}").all()
    assert reviews["overall"].isin([1.0, 2.0, 3.0, 4.0, 5.0]).all()
    helpful = np.array(reviews["helpful"].tolist())
    assert helpful.shape[1] == 2 and (helpful[:, 0] <= helpful[:, 1]).all()
    assert 0.8 < reviews["reviewerName"].notna().mean() < 1.0  # some reviewers are anonymous
    for unix, text in reviews[["unixReviewTime", "reviewTime"]].sample(50, random_state=0)\
            .itertuples(index=False):
        day = dt.datetime.fromtimestamp(unix, dt.timezone.utc)
        assert text == f"{day.month:02d} {day.day}, {day.year}"
    assert not reviews.duplicated(["reviewerID", "asin"]).any()


def test_metadata_is_2014_python_literals(parsed):
    _, summary, reviews, meta = parsed
    assert sorted(meta["asin"]) == sorted(summary.asins)
    assert set(reviews["asin"]) <= set(meta["asin"])
    assert meta["categories"].map(lambda c: isinstance(c, list) and c[0][0] == "Demo").all()
    assert meta["imUrl"].str.fullmatch(r"http://ecx\.images-amazon\.com/images/I/\w{10}L\.jpg")\
        .all()
    assert meta["salesRank"].map(lambda rank: set(rank) == {"Demo"}).all()
    assert meta["price"].map(lambda p: isinstance(p, float) and p > 0).all()
    # Like the real files, some items lack a brand or a description.
    assert 0 < meta["brand"].isna().sum() < len(meta) * 0.2
    assert 0 < meta["description"].isna().sum() < len(meta) * 0.2


def test_image_feature_records_and_gaps(parsed):
    raw_dir, summary, _, _ = parsed
    asins, vectors = read_image_features_b(raw_dir / "image_features_Demo.b")
    assert vectors.shape == (len(summary.asins) - len(summary.items_without_vector), 4096)
    assert len(summary.items_without_vector) >= 3
    assert set(asins) == set(summary.asins) - set(summary.items_without_vector)
    assert (vectors >= 0).all() and vectors.std() > 0


def test_image_cache_has_readable_images_and_planted_gaps(parsed):
    raw_dir, summary, _, _ = parsed
    image_dir = raw_dir / "images"
    present = {path.stem for path in image_dir.glob("*.jpg")}
    assert present == set(summary.asins) - set(summary.items_without_image)
    assert len(summary.items_without_image) == 2 and len(summary.items_with_corrupt_image) == 1
    with pytest.raises(Exception):
        Image.open(image_dir / f"{summary.items_with_corrupt_image[0]}.jpg").load()
    good = sorted(present - set(summary.items_with_corrupt_image))[:20]
    for asin in good:
        with Image.open(image_dir / f"{asin}.jpg") as image:
            assert image.format == "JPEG" and image.size == (32, 32)


def _text_style(title: str) -> int:
    """Fine style read from a title's words: its colour family x its theme."""
    words = title.lower().split()
    colours = np.bincount([COLOUR_WORDS[w] for w in words if w in COLOUR_WORDS],
                          minlength=len(demo.COLOURS))
    themes = np.bincount([THEME_WORDS[w] for w in words if w in THEME_WORDS],
                         minlength=len(demo.THEMES))
    if not (colours.any() and themes.any()):
        return -1
    return int(colours.argmax()) * len(demo.THEMES) + int(themes.argmax())


def _image_style(path) -> int:
    """Fine style read from an image: the commonest background and motif colours."""
    pixels = np.asarray(Image.open(path).convert("RGB"), dtype=float).reshape(-1, 3)
    colours = np.concatenate([PALETTE, ACCENTS])
    nearest = np.argmin(((pixels[:, None] - colours[None]) ** 2).sum(-1), axis=1)
    counts = np.bincount(nearest, minlength=len(colours))
    background = int(counts[:len(PALETTE)].argmax())
    motif = int(counts[len(PALETTE):].argmax())
    return background * len(demo.THEMES) + motif


def test_text_and_image_show_the_same_style(parsed):
    raw_dir, summary, _, meta = parsed
    corrupt = set(summary.items_with_corrupt_image) | set(summary.items_without_image)
    meta = meta[~meta["asin"].isin(corrupt)]
    text = meta["title"].map(_text_style).to_numpy()
    image = np.array([_image_style(raw_dir / "images" / f"{a}.jpg") for a in meta["asin"]])
    agreement = (text == image).mean()
    assert agreement > 0.6, agreement  # chance is 1/48; each view is wrong for ~15% of items
    assert agreement < 0.95  # and neither view is a perfect copy of the other
    index = {asin: n for n, asin in enumerate(summary.asins)}
    truth = summary.item_style[[index[a] for a in meta["asin"]]]
    assert 0.75 < (image == truth).mean() < 0.95


def test_vectors_follow_the_image_style(parsed):
    raw_dir, summary, _, _ = parsed
    asins, vectors = read_image_features_b(raw_dir / "image_features_Demo.b")
    index = {asin: n for n, asin in enumerate(summary.asins)}
    style = summary.image_style[[index[a] for a in asins]]
    centroids = np.stack([vectors[style == k].mean(axis=0) for k in range(len(demo.STYLES))])
    nearest = np.argmin(((vectors[:, None, :] - centroids[None]) ** 2).sum(-1), axis=1)
    assert (nearest == style).mean() > 0.95


def test_users_concentrate_on_their_styles_and_communities(demo_raw):
    _, summary = demo_raw
    users, items = summary.interactions[:, 0], summary.interactions[:, 1]
    top2 = np.argsort(-summary.user_preference, axis=1)[:, :2]
    in_top2 = (summary.item_style[items][:, None] == top2[users]).any(axis=1)
    style_share = np.bincount(summary.item_style, minlength=len(demo.STYLES)) \
        / len(summary.item_style)
    chance = style_share[top2].sum(axis=1)[users]
    assert in_top2.mean() > 2 * chance.mean(), (in_top2.mean(), chance.mean())
    in_favourites = summary.community_favourites[summary.user_community[users], items]
    assert in_favourites.mean() > 2 * demo.COMMUNITY_SHARE


def test_size_degrees_and_time_order(demo_raw):
    _, summary = demo_raw
    users, items = summary.interactions[:, 0], summary.interactions[:, 1]
    assert len(summary.user_ids) == 1500 and len(summary.asins) == 800
    assert 15_000 <= len(users) <= 30_000
    assert np.bincount(users).min() >= 5 and np.bincount(items).min() >= 5
    degree = np.sort(np.bincount(items))[::-1]
    assert degree[:80].sum() > 0.2 * len(items)  # long tail: top 10% of items > 20% of rows
    assert degree[0] > 5 * np.median(degree)


def test_timestamps_increase_per_user(parsed):
    _, _, reviews, _ = parsed
    steps = reviews.groupby("reviewerID", sort=False)["unixReviewTime"].diff().dropna()
    assert (steps > 0).all()


def test_same_seed_same_bytes_other_seed_other_data(tmp_path):
    first = demo.generate_demo(tmp_path / "a", users=60, items=40, seed=1)
    again = demo.generate_demo(tmp_path / "b", users=60, items=40, seed=1)
    other = demo.generate_demo(tmp_path / "c", users=60, items=40, seed=2)
    assert first.file_records() == again.file_records()
    name = "reviews_Demo_5.json.gz"
    assert files.sha256_file(tmp_path / "a" / name) != files.sha256_file(tmp_path / "c" / name)
    assert other.asins.tolist() != first.asins.tolist()


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="at least 20 users and 40 items"):
        demo.generate_demo(tmp_path, users=5)
    with pytest.raises(ValueError, match="plain name"):
        demo.generate_demo(tmp_path, category="a/b")


def test_colour_histograms_tell_the_fine_styles_apart(parsed):
    """The demo's image descriptor sees both the background (colour family) and the motif
    (theme): an item's nearest neighbours mostly share its image style (chance ~1/48)."""
    raw_dir, summary, _, _ = parsed
    broken = set(summary.items_with_corrupt_image) | set(summary.items_without_image)
    asins = [a for a in summary.asins if a not in broken]
    vectors = np.stack([colour_histogram(load_resized(raw_dir / "images" / f"{a}.jpg", 32))
                        for a in asins])
    index = {asin: n for n, asin in enumerate(summary.asins)}
    style = summary.image_style[[index[a] for a in asins]]
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    similarity = vectors @ vectors.T
    np.fill_diagonal(similarity, -np.inf)
    neighbours = np.argsort(-similarity, axis=1)[:, :10]
    purity = (style[neighbours] == style[:, None]).mean()
    assert purity > 0.5, purity
