"""What the sources share: option checks, fetching with the checksum registry, local copies,
and turning a release's metadata into the items table's columns."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd

from crane import files
from crane.data.checksums import DEFAULT_REGISTRY, ChecksumRegistry
from crane.data.download import RetryPolicy, download

log = logging.getLogger(__name__)

# `text`: an item's whole text as one string (the `table` source renders it; '' elsewhere).
ITEM_COLUMNS = ["item_id", "asin", "title", "brand", "categories", "description", "image_url",
                "text"]
COMMON_OPTIONS = {"type"}
# A loaded frame's `attrs` key for counts a source adds to the dataset's stats.json.
SOURCE_STATS = "source_stats"
DOWNLOAD_OPTIONS = {"url_base", "checksums", "download"}


def check_options(spec: dict[str, Any], allowed: Iterable[str], source: str) -> None:
    unknown = set(spec) - set(allowed) - COMMON_OPTIONS
    if unknown:
        raise ValueError(f"source {source}: unknown option(s) {sorted(unknown)}; allowed: "
                         f"{sorted(set(allowed) | COMMON_OPTIONS)}")


def require_option(spec: dict[str, Any], key: str, source: str) -> Any:
    if spec.get(key) in (None, ""):
        raise ValueError(f"source {source}: option '{key}' is required")
    return spec[key]


def validate_category(category: str, valid: Iterable[str], release: str) -> str:
    valid = list(valid)
    if category not in valid:
        raise ValueError(f"unknown {release} category {category!r}; valid categories: "
                         f"{', '.join(valid)}")
    return category


def join_url(base: str, name: str) -> str:
    return base.rstrip("/") + "/" + name


def fetch(url: str, raw_dir: Path, spec: dict[str, Any], progress: bool) -> dict:
    """Download `url` into raw_dir under its published name; return its {sha256, size}."""
    registry_path = spec.get("checksums", str(DEFAULT_REGISTRY))
    registry = ChecksumRegistry(registry_path) if registry_path else None
    record = download(url, raw_dir / url.rsplit("/", 1)[-1], registry=registry,
                      policy=RetryPolicy.from_spec(spec.get("download")), progress=progress)
    return record.as_json()


def copy_local(path: str | Path, raw_dir: Path, name: str | None = None) -> dict:
    """Copy a local file into raw_dir (atomically); return its {sha256, size}."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"local source file not found: {path}")
    dest = raw_dir / (name or path.name)
    if not (dest.exists() and dest.stat().st_size == path.stat().st_size
            and files.sha256_file(dest) == files.sha256_file(path)):
        with files.atomic_path(dest) as tmp:
            shutil.copyfile(path, tmp)
    return {"sha256": files.sha256_file(dest), "size": dest.stat().st_size}


def raw_file(raw_dir: Path, name: str) -> Path:
    path = Path(raw_dir) / name
    if not path.exists():
        raise FileNotFoundError(f"raw file not found: {path} (run `crane acquire` first)")
    return path


def as_text(value: Any) -> str:
    """A metadata string field: lists join with spaces, anything missing becomes ''."""
    if isinstance(value, str):
        return value.replace("\n", " ").strip()
    if isinstance(value, (list, tuple)):
        return " ".join(part for part in (as_text(v) for v in value) if part)
    return ""


def as_path(value: Any) -> list[str]:
    """A category path as a list of strings (non-strings dropped)."""
    if isinstance(value, (list, tuple)):
        return [v.strip() for v in value if isinstance(v, str) and v.strip()]
    return []


def items_table(asins: np.ndarray, meta: pd.DataFrame | None) -> pd.DataFrame:
    """Items in dense-id order with their metadata; items without metadata keep ''/[].

    meta: one row per ASIN with columns asin, title, brand, categories, description,
    image_url (already in normalised form); duplicate ASINs keep their first row.
    """
    table = pd.DataFrame({"item_id": np.arange(len(asins), dtype=np.int64),
                          "asin": pd.Series(asins, dtype=object)})
    if meta is None or meta.empty:
        found = 0
        for column in ("title", "brand", "description", "image_url"):
            table[column] = ""
        table["categories"] = [[] for _ in range(len(table))]
    else:
        meta = meta.drop_duplicates("asin", keep="first")
        table = table.merge(meta, on="asin", how="left")
        found = int(table["asin"].isin(meta["asin"]).sum())
        for column in ("title", "brand", "description", "image_url"):
            table[column] = table[column].map(as_text)
        table["categories"] = table["categories"].map(as_path)
    table["text"] = ""
    log.info("metadata found for %d of %d items", found, len(table))
    return table[ITEM_COLUMNS]



def normalise_interactions(frame: pd.DataFrame) -> pd.DataFrame:
    """Typed columns: user/item strings (missing stay missing, dropped later), rating
    float32 (1 when unknown), timestamp int64 seconds (0 when unknown)."""
    result = pd.DataFrame(index=frame.index)
    for column in ("user", "item"):
        values = frame[column].astype(object)
        result[column] = values.where(values.isna(), values.astype(str))
    for column, dtype, default in (("rating", np.float32, 1.0), ("timestamp", np.int64, 0)):
        if column in frame:
            values = pd.to_numeric(frame[column], errors="coerce").fillna(default)
            result[column] = values.astype(dtype)
        else:
            result[column] = np.full(len(frame), default, dtype=dtype)
    return result.reset_index(drop=True)
