"""Amazon Reviews 2023 (McAuley Lab, Hou et al.).

Files per category: `<Cat>.jsonl.gz` (all reviews, JSON lines: user_id, asin, parent_asin,
rating, timestamp in milliseconds) and `meta_<Cat>.jsonl.gz` (JSON lines: parent_asin,
title, store, categories (one path), description (list), images (list of {thumb, large,
hi_res, variant})). Items are identified by `parent_asin` (product, not variant) unless
`item_field: asin`. The review files are not 5-core: the k-core filter makes them so.
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

NAME = "amazon2023"
URL_BASE = "https://datarepo.eng.ucsd.edu/mcauley_group/data/amazon_2023/raw/"
CATEGORIES = (
    "All_Beauty", "Amazon_Fashion", "Appliances", "Arts_Crafts_and_Sewing", "Automotive",
    "Baby_Products", "Beauty_and_Personal_Care", "Books", "CDs_and_Vinyl",
    "Cell_Phones_and_Accessories", "Clothing_Shoes_and_Jewelry", "Digital_Music",
    "Electronics", "Gift_Cards", "Grocery_and_Gourmet_Food", "Handmade_Products",
    "Health_and_Household", "Health_and_Personal_Care", "Home_and_Kitchen",
    "Industrial_and_Scientific", "Kindle_Store", "Magazine_Subscriptions", "Movies_and_TV",
    "Musical_Instruments", "Office_Products", "Patio_Lawn_and_Garden", "Pet_Supplies",
    "Software", "Sports_and_Outdoors", "Subscription_Boxes", "Tools_and_Home_Improvement",
    "Toys_and_Games", "Unknown", "Video_Games",
)
ITEM_FIELDS = ("parent_asin", "asin")
OPTIONS = {"category", "meta", "item_field"} | DOWNLOAD_OPTIONS


def file_paths(category: str) -> dict[str, str]:
    return {"reviews": f"review_categories/{category}.jsonl.gz",
            "meta": f"meta_categories/meta_{category}.jsonl.gz"}


def _category(spec: dict[str, Any]) -> str:
    return validate_category(require_option(spec, "category", NAME), CATEGORIES, "Amazon 2023")


def _item_field(spec: dict[str, Any]) -> str:
    field = spec.get("item_field", "parent_asin")
    if field not in ITEM_FIELDS:
        raise ValueError(f"source {NAME}: item_field must be one of {ITEM_FIELDS}, got {field!r}")
    return field


def _local(path: str) -> str:
    return path.rsplit("/", 1)[-1]


def acquire(spec: dict[str, Any], raw_dir: Path, progress: bool = True) -> dict[str, dict]:
    check_options(spec, OPTIONS, NAME)
    _item_field(spec)
    paths = file_paths(_category(spec))
    base = spec.get("url_base", URL_BASE)
    wanted = ["reviews"] + (["meta"] if spec.get("meta", True) else [])
    return {_local(paths[kind]): fetch(join_url(base, paths[kind]), raw_dir, spec, progress)
            for kind in wanted}


def load_interactions(spec: dict[str, Any], raw_dir: Path,
                      max_malformed_share: float) -> pd.DataFrame:
    item_field = _item_field(spec)
    path = raw_file(raw_dir, _local(file_paths(_category(spec))["reviews"]))
    frame = parse.read_json_lines(path, ["user_id", item_field, "rating", "timestamp"],
                                  required=["user_id", item_field],
                                  numeric=["rating", "timestamp"],
                                  max_malformed_share=max_malformed_share)
    frame.columns = ["user", "item", "rating", "timestamp"]
    # Milliseconds in this release; seconds everywhere else in the pipeline.
    frame["timestamp"] = pd.to_numeric(frame["timestamp"], errors="coerce") // 1000
    return normalise_interactions(frame)


def load_items(spec: dict[str, Any], raw_dir: Path, asins: np.ndarray,
               max_malformed_share: float) -> pd.DataFrame:
    if not spec.get("meta", True):
        return items_table(asins, None)
    if _item_field(spec) != "parent_asin":
        # The metadata is keyed by parent_asin only: variant ASINs have no rows of their own.
        return items_table(asins, None)
    path = raw_file(raw_dir, _local(file_paths(_category(spec))["meta"]))
    meta = parse.read_json_lines(
        path, ["parent_asin", "title", "store", "categories", "description", "images"],
        required=["parent_asin"], keep=("parent_asin", set(asins)),
        max_malformed_share=max_malformed_share)
    meta["image_url"] = meta["images"].map(_main_image_url)
    meta = meta.rename(columns={"parent_asin": "asin", "store": "brand"})
    return items_table(asins, meta[["asin", "title", "brand", "categories", "description",
                                    "image_url"]])


def _main_image_url(images: Any) -> str:
    """The MAIN image (else the first), its high-resolution URL if any, else the large one."""
    if not isinstance(images, list):
        return ""
    entries = [entry for entry in images if isinstance(entry, dict)]
    entries.sort(key=lambda entry: entry.get("variant") != "MAIN")  # stable: MAIN first
    for entry in entries:
        for key in ("hi_res", "large"):
            if isinstance(entry.get(key), str) and entry[key]:
                return entry[key]
    return ""
