"""Amazon review data, 2014 release (McAuley et al., SNAP "productGraph").

Files per category: `reviews_<Cat>_5.json.gz` (5-core reviews, JSON lines) or
`ratings_<Cat>.csv` (no header: user,item,rating,time), `meta_<Cat>.json.gz` (one Python
dict literal per line) and, with `image_features: true` (the literature's 4096-d image
vectors, several GB for large categories), `image_features_<Cat>.b`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from crane.data import parse
from crane.data.sources._common import (
    DOWNLOAD_OPTIONS, as_path, check_options, fetch, items_table, join_url,
    normalise_interactions, raw_file, require_option, validate_category)

NAME = "amazon2014"
URL_BASE = "http://snap.stanford.edu/data/amazon/productGraph/categoryFiles/"
IMAGE_URL_BASE = "http://snap.stanford.edu/data/amazon/productGraph/image_features/categoryFiles/"
CATEGORIES = (
    "Amazon_Instant_Video", "Apps_for_Android", "Automotive", "Baby", "Beauty", "Books",
    "CDs_and_Vinyl", "Cell_Phones_and_Accessories", "Clothing_Shoes_and_Jewelry",
    "Digital_Music", "Electronics", "Grocery_and_Gourmet_Food", "Health_and_Personal_Care",
    "Home_and_Kitchen", "Kindle_Store", "Movies_and_TV", "Musical_Instruments",
    "Office_Products", "Patio_Lawn_and_Garden", "Pet_Supplies", "Sports_and_Outdoors",
    "Tools_and_Home_Improvement", "Toys_and_Games", "Video_Games",
)
REVIEW_KINDS = ("5core", "ratings")
OPTIONS = {"category", "reviews", "meta", "image_features", "image_url_base"} | DOWNLOAD_OPTIONS


def file_names(category: str, reviews: str = "5core") -> dict[str, str]:
    if reviews not in REVIEW_KINDS:
        raise ValueError(f"source {NAME}: reviews must be one of {REVIEW_KINDS}, got {reviews!r}")
    return {
        "reviews": f"reviews_{category}_5.json.gz" if reviews == "5core"
        else f"ratings_{category}.csv",
        "meta": f"meta_{category}.json.gz",
        "image_features": f"image_features_{category}.b",
    }


def _category(spec: dict[str, Any]) -> str:
    return validate_category(require_option(spec, "category", NAME), CATEGORIES, "Amazon 2014")


def acquire(spec: dict[str, Any], raw_dir: Path, progress: bool = True) -> dict[str, dict]:
    check_options(spec, OPTIONS, NAME)
    names = file_names(_category(spec), spec.get("reviews", "5core"))
    base = spec.get("url_base", URL_BASE)
    records = {names["reviews"]: fetch(join_url(base, names["reviews"]), raw_dir, spec, progress)}
    if spec.get("meta", True):
        records[names["meta"]] = fetch(join_url(base, names["meta"]), raw_dir, spec, progress)
    if spec.get("image_features", False):
        url = join_url(spec.get("image_url_base", IMAGE_URL_BASE), names["image_features"])
        records[names["image_features"]] = fetch(url, raw_dir, spec, progress)
    return records


def load_interactions(spec: dict[str, Any], raw_dir: Path, max_malformed_share: float,
                      category: str | None = None) -> pd.DataFrame:
    """user, item, rating, timestamp of the reviews (5-core JSON) or ratings (CSV) file."""
    reviews = spec.get("reviews", "5core")
    names = file_names(category or _category(spec), reviews)
    path = raw_file(raw_dir, names["reviews"])
    if reviews == "5core":
        frame = parse.read_json_lines(
            path, ["reviewerID", "asin", "overall", "unixReviewTime"],
            required=["reviewerID", "asin"], numeric=["overall", "unixReviewTime"],
            max_malformed_share=max_malformed_share)
        frame.columns = ["user", "item", "rating", "timestamp"]
    else:
        frame = parse.read_csv_table(
            path, {"user": "user", "item": "item", "rating": "rating", "time": "timestamp"},
            header=False, names=["user", "item", "rating", "time"],
            numeric=["rating", "timestamp"], max_malformed_share=max_malformed_share)
    return normalise_interactions(frame)


def load_items(spec: dict[str, Any], raw_dir: Path, asins: np.ndarray,
               max_malformed_share: float, category: str | None = None) -> pd.DataFrame:
    if not spec.get("meta", True):
        return items_table(asins, None)
    path = raw_file(raw_dir, file_names(category or _category(spec))["meta"])
    meta = parse.read_literal_lines(
        path, ["asin", "title", "brand", "categories", "description", "imUrl"],
        required=["asin"], keep=("asin", set(asins)), max_malformed_share=max_malformed_share)
    # `categories` is a list of paths; the features use the first one.
    meta["categories"] = meta["categories"].map(
        lambda paths: as_path(paths[0]) if isinstance(paths, list) and paths else [])
    meta = meta.rename(columns={"imUrl": "image_url"})
    return items_table(asins, meta)

