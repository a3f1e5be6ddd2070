"""Amazon review data, 2018 release (Ni, Li and McAuley).

Files per category: `<Cat>_5.json.gz` (5-core reviews, JSON lines: reviewerID, asin,
overall, unixReviewTime) or `<Cat>.csv` (ratings only, no header: item,user,rating,timestamp)
and `meta_<Cat>.json.gz` (JSON lines: asin, title, brand, category (one path), description
(list), imageURLHighRes / imageURL (lists)). The 2018 release has no Baby category.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from crane.data import parse
from crane.data.sources._common import (
    DOWNLOAD_OPTIONS, check_options, fetch, items_table, join_url, normalise_interactions,
    raw_file, require_option, validate_category)

NAME = "amazon2018"
URL_BASE = "https://datarepo.eng.ucsd.edu/mcauley_group/data/amazon_v2/"
CATEGORIES = (
    "AMAZON_FASHION", "All_Beauty", "Appliances", "Arts_Crafts_and_Sewing", "Automotive",
    "Books", "CDs_and_Vinyl", "Cell_Phones_and_Accessories", "Clothing_Shoes_and_Jewelry",
    "Digital_Music", "Electronics", "Gift_Cards", "Grocery_and_Gourmet_Food",
    "Home_and_Kitchen", "Industrial_and_Scientific", "Kindle_Store", "Luxury_Beauty",
    "Magazine_Subscriptions", "Movies_and_TV", "Musical_Instruments", "Office_Products",
    "Patio_Lawn_and_Garden", "Pet_Supplies", "Prime_Pantry", "Software",
    "Sports_and_Outdoors", "Tools_and_Home_Improvement", "Toys_and_Games", "Video_Games",
)
REVIEW_KINDS = ("5core", "ratings")
OPTIONS = {"category", "reviews", "meta"} | DOWNLOAD_OPTIONS


def file_paths(category: str, reviews: str = "5core") -> dict[str, str]:
    """Paths below the release's base URL; the local file name is the last part."""
    if reviews not in REVIEW_KINDS:
        raise ValueError(f"source {NAME}: reviews must be one of {REVIEW_KINDS}, got {reviews!r}")
    return {
        "reviews": f"categoryFilesSmall/{category}_5.json.gz" if reviews == "5core"
        else f"categoryFilesSmall/{category}.csv",
        "meta": f"metaFiles2/meta_{category}.json.gz",
    }


def _category(spec: dict[str, Any]) -> str:
    return validate_category(require_option(spec, "category", NAME), CATEGORIES, "Amazon 2018")


def _local(path: str) -> str:
    return path.rsplit("/", 1)[-1]


def acquire(spec: dict[str, Any], raw_dir: Path, progress: bool = True) -> dict[str, dict]:
    check_options(spec, OPTIONS, NAME)
    paths = file_paths(_category(spec), spec.get("reviews", "5core"))
    base = spec.get("url_base", URL_BASE)
    wanted = ["reviews"] + (["meta"] if spec.get("meta", True) else [])
    return {_local(paths[kind]): fetch(join_url(base, paths[kind]), raw_dir, spec, progress)
            for kind in wanted}


def load_interactions(spec: dict[str, Any], raw_dir: Path,
                      max_malformed_share: float) -> pd.DataFrame:
    reviews = spec.get("reviews", "5core")
    path = raw_file(raw_dir, _local(file_paths(_category(spec), reviews)["reviews"]))
    if reviews == "5core":
        frame = parse.read_json_lines(
            path, ["reviewerID", "asin", "overall", "unixReviewTime"],
            required=["reviewerID", "asin"], numeric=["overall", "unixReviewTime"],
            max_malformed_share=max_malformed_share)
        frame.columns = ["user", "item", "rating", "timestamp"]
    else:
        frame = parse.read_csv_table(
            path, {"item": "item", "user": "user", "rating": "rating", "time": "timestamp"},
            header=False, names=["item", "user", "rating", "time"],
            numeric=["rating", "timestamp"], max_malformed_share=max_malformed_share)
    return normalise_interactions(frame)


def load_items(spec: dict[str, Any], raw_dir: Path, asins: np.ndarray,
               max_malformed_share: float) -> pd.DataFrame:
    if not spec.get("meta", True):
        return items_table(asins, None)
    path = raw_file(raw_dir, _local(file_paths(_category(spec))["meta"]))
    meta = parse.read_json_lines(
        path, ["asin", "title", "brand", "category", "description", "imageURLHighRes",
               "imageURL"],
        required=["asin"], keep=("asin", set(asins)), max_malformed_share=max_malformed_share)
    meta["image_url"] = [_first_url(high, low) for high, low in
                         zip(meta["imageURLHighRes"], meta["imageURL"])]
    meta = meta.rename(columns={"category": "categories"})
    return items_table(asins, meta[["asin", "title", "brand", "categories", "description",
                                    "image_url"]])


def _first_url(high_res: Any, low_res: Any) -> str:
    for urls in (high_res, low_res):
        if isinstance(urls, list):
            for url in urls:
                if isinstance(url, str) and url:
                    return url
    return ""
