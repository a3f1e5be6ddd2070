"""User-provided tables: an interactions file and, optionally, an item table with text.

Options (config/README.md has an example):

- `interactions` (required): `path`, the columns `user` and `item`, optional `order` (a
  number, unix time or a position, that orders each user's history; it becomes the
  timestamp the `leave_last_out` and `time_cut` splits read) and `rating`, optional `sep`.
- `items` (optional; without it items have no text and no image): `path`, the column `item`,
  `text` (one or more columns), `template` (e.g. "{title}. Brand: {brand}", naming only
  `text` columns; default: the text columns joined with a space), `image` (a column holding
  an image URL, or a file path relative to the item table's folder), `sep`.
- `duplicates`: a repeated (user, item) pair keeps its first row (`keep_first`, the default)
  or its last (`keep_last`), by `order` and else by file line, or stops with an error
  (`error`).

Formats by suffix: `.csv` (comma), `.tsv` / `.tab` (tab), `.parquet`, each optionally `.gz`;
`sep` sets a text file's delimiter (then any suffix is read as delimited text).

`crane acquire` checks the options, the formats and the columns, then copies both files
into the raw folder, and each local image file to `raw/images/<item><suffix>` (the image
cache the image encoders read; URLs are left to the image fetch step), so the raw folder
alone reproduces the dataset. An interactions row with an empty user or item is malformed
(counted against `max_malformed_share`). The rendered text of an item goes to the `text`
column of items.parquet; an item whose text columns are all empty, or that is missing from
the item table, gets '' (the features job imputes it and fails above the encoder's
`max_missing_share`); both are counted in stats.json (`items_without_text`, of which
`items_not_in_item_table`) and logged with examples.
"""

from __future__ import annotations

import gzip
import io
import logging
import re
import string
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from crane.data import parse
from crane.data.raw_images import IMAGES_SUBDIR, images_dir
from crane.data.sources._common import (
    ITEM_COLUMNS, SOURCE_STATS, check_options, copy_local, normalise_interactions, raw_file)

log = logging.getLogger(__name__)

NAME = "table"
OPTIONS = {"interactions", "items", "duplicates"}
INTERACTION_OPTIONS = {"path", "user", "item", "order", "rating", "sep"}
ITEM_OPTIONS = {"path", "item", "text", "template", "image", "sep"}
DUPLICATE_POLICIES = ("keep_first", "keep_last", "error")
DELIMITERS = {".csv": ",", ".tsv": "\t", ".tab": "\t"}
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp", ".tif", ".tiff"}
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")  # an item id usable as a file name
_EXAMPLES = 5
_LINE = "_line"  # each row's line in its file (row number for parquet)
_ITEM, _IMAGE = "_item", "_image"


# ---- options ----------------------------------------------------------------------------

def _block(spec: dict[str, Any], key: str, allowed: set[str],
           required: tuple[str, ...]) -> dict[str, Any] | None:
    block = spec.get(key)
    if block is None:
        return None
    where = f"source.{key}"
    if not isinstance(block, dict):
        raise ValueError(f"{where}: expected a mapping with {', '.join(required)}, got "
                         f"{block!r}")
    unknown = sorted(set(block) - allowed)
    if unknown:
        raise ValueError(f"{where}: unknown option(s) {unknown}; allowed: {sorted(allowed)}")
    missing = [name for name in required if block.get(name) in (None, "", [])]
    if missing:
        raise ValueError(f"{where}: option(s) {missing} required (the file, and the column "
                         f"names that hold each)")
    return block


def interactions_spec(spec: dict[str, Any]) -> dict[str, Any]:
    block = _block(spec, "interactions", INTERACTION_OPTIONS, ("path", "user", "item"))
    if block is None:
        raise ValueError("source table: `interactions` is required: a mapping with path, "
                         "user, item (and optional order, rating, sep)")
    return block


def items_spec(spec: dict[str, Any]) -> dict[str, Any] | None:
    """The `items` block, checked (text columns, template fields), or None."""
    block = _block(spec, "items", ITEM_OPTIONS, ("path", "item", "text"))
    if block is None:
        return None
    text = block["text"]
    if not isinstance(text, list) or not all(isinstance(c, str) and c for c in text):
        raise ValueError(f"source.items.text: expected a list of column names, got {text!r}")
    if block.get("template") is not None:
        template_fields(block["template"], text)
    return block


def template_fields(template: str, text_columns: list[str]) -> list[str]:
    """The columns `template` names; each must be one of the `text` columns."""
    try:
        names = [field for _, field, _, _ in string.Formatter().parse(template)
                 if field is not None]
    except ValueError as error:
        raise ValueError(f"source.items.template {template!r}: {error} (write a column as "
                         f"{{name}}, a literal brace as {{{{ or }}}})") from None
    columns = [re.split(r"[.\[]", name, maxsplit=1)[0] for name in names]
    unknown = [name for name in columns if name not in text_columns]
    if unknown:
        raise ValueError(f"source.items.template {template!r} names {unknown}, which are not "
                         f"among source.items.text {text_columns}: add them to `text` or "
                         f"change the template")
    return columns


def duplicates_policy(spec: dict[str, Any]) -> str:
    policy = spec.get("duplicates") or "keep_first"
    if policy not in DUPLICATE_POLICIES:
        raise ValueError(f"source.duplicates: {policy!r} is not one of "
                         f"{list(DUPLICATE_POLICIES)}")
    return policy


def _raw_names(spec: dict[str, Any]) -> tuple[str, str | None]:
    """The names of the copies in the raw folder (the item table's renamed on a clash)."""
    inter_name = Path(interactions_spec(spec)["path"]).name
    items = items_spec(spec)
    if items is None:
        return inter_name, None
    items_name = Path(items["path"]).name
    return inter_name, ("items-" + items_name if items_name == inter_name else items_name)


# ---- files ------------------------------------------------------------------------------

def table_format(path: Path, sep: str | None, where: str) -> tuple[str, str | None]:
    """("parquet", None) or ("text", delimiter), from the suffix (a `.gz` after it allowed)."""
    suffixes = [suffix.lower() for suffix in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    kind = suffixes[-1] if suffixes else ""
    if kind == ".parquet":
        return "parquet", None
    if sep:
        return "text", sep
    if kind in DELIMITERS:
        return "text", DELIMITERS[kind]
    raise ValueError(f"{path}: unknown table format {''.join(path.suffixes) or '(no suffix)'} "
                     f"({where}.path): name the file .csv, .tsv, .tab or .parquet (optionally "
                     f"followed by .gz), or set {where}.sep to its delimiter")


def _parquet_input(path: Path) -> Any:
    if parse.is_gzip(path):
        with gzip.open(path, "rb") as fh:
            return io.BytesIO(fh.read())
    return path


def _file_columns(path: Path, fmt: str, sep: str | None) -> list[str]:
    try:
        if fmt == "parquet":
            return list(pq.read_schema(_parquet_input(path)).names)
        compression = "gzip" if parse.is_gzip(path) else None
        return list(pd.read_csv(path, sep=sep, nrows=0, compression=compression).columns)
    except (pa.ArrowException, OSError, EOFError, ValueError, UnicodeDecodeError,
            pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        kind = "parquet" if fmt == "parquet" else "delimited text"
        raise parse.ParseError(f"{path}: not a readable {kind} table ({type(error).__name__}: "
                               f"{error}); check the file and its format") from None


def _check_columns(path: Path, present: list[str], wanted: list[tuple[str, str]],
                   where: str) -> None:
    """wanted: (option, column) pairs; each column must be in the file."""
    missing = [(option, column) for option, column in wanted if column not in present]
    if not missing:
        return
    named = ", ".join(f"{where}.{option}: {column!r}" for option, column in missing)
    hint = (" (one column only: is the delimiter right? set `sep`)" if len(present) == 1
            else "")
    raise ValueError(f"{path}: column(s) not found ({named}); the file has columns "
                     f"{present}{hint}: set the option(s) to columns of the file")


def _checked_file(path: Path, block: dict[str, Any], wanted: list[tuple[str, str]],
                  where: str) -> tuple[str, str | None]:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found ({where}.path)")
    fmt, sep = table_format(path, block.get("sep"), where)
    _check_columns(path, _file_columns(path, fmt, sep), wanted, where)
    return fmt, sep


def _interaction_columns(block: dict[str, Any]) -> list[tuple[str, str]]:
    return [(option, block[option]) for option in ("user", "item", "order", "rating")
            if block.get(option)]


def _item_columns(block: dict[str, Any]) -> list[tuple[str, str]]:
    wanted = [("item", block["item"])] + [("text", column) for column in block["text"]]
    return wanted + ([("image", block["image"])] if block.get("image") else [])


def read_table(path: Path, block: dict[str, Any], columns: dict[str, str], where: str, *,
               numeric: list[str] = (), required: list[str] = (),
               max_malformed_share: float) -> pd.DataFrame:
    """The columns (file name -> output name) of a table file, checked row by row
    (crane.data.parse.check_rows), with each row's line number in `_line`."""
    fmt, sep = table_format(path, block.get("sep"), where)
    if fmt == "text":
        return parse.read_csv_table(path, columns, sep=sep, numeric=numeric, required=required,
                                    line_column=_LINE, max_malformed_share=max_malformed_share)
    try:
        table = pq.read_table(_parquet_input(path), columns=list(columns)).to_pandas()
    except (pa.ArrowException, OSError, EOFError) as error:
        raise parse.ParseError(f"{path}: not a readable parquet table ({error})") from None
    frame = pd.DataFrame({name: (table[column] if name in numeric
                                 else table[column].map(_as_string))
                          for column, name in columns.items()})
    return parse.check_rows(path, frame, np.arange(1, len(frame) + 1), numeric=numeric,
                            required=required, line_column=_LINE,
                            max_malformed_share=max_malformed_share)


def _as_string(value: Any) -> Any:
    """A parquet cell as text; missing stays missing (NaN), like the CSV reader's."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return np.nan
    return str(value)


def _position(fmt_path: Path) -> str:
    return "row" if table_format(fmt_path, ",", "")[0] == "parquet" else "line"


# ---- acquire ----------------------------------------------------------------------------

def acquire(spec: dict[str, Any], raw_dir: Path, progress: bool = True) -> dict[str, dict]:
    """Check options, formats and columns of both files, then copy them (and local images)."""
    check_options(spec, OPTIONS, NAME)
    inter, items = interactions_spec(spec), items_spec(spec)
    duplicates_policy(spec)
    _checked_file(Path(inter["path"]), inter, _interaction_columns(inter), "source.interactions")
    if items is not None:
        _checked_file(Path(items["path"]), items, _item_columns(items), "source.items")
    inter_name, items_name = _raw_names(spec)
    records = {inter_name: copy_local(inter["path"], raw_dir, inter_name)}
    if items is not None:
        records[items_name] = copy_local(items["path"], raw_dir, items_name)
        if items.get("image"):
            records.update(_copy_local_images(items, raw_dir))
    return records


def is_url(value: str) -> bool:
    return "://" in value


def _copy_local_images(items: dict[str, Any], raw_dir: Path) -> dict[str, dict]:
    """Copy each item's local image file into the raw image cache; count what is missing."""
    path = Path(items["path"])
    # Malformed rows are counted by preprocessing, against the dataset's limit.
    frame = read_table(path, items, {items["item"]: _ITEM, items["image"]: _IMAGE},
                       "source.items", required=[_ITEM], max_malformed_share=1.0)
    frame = frame.drop_duplicates(_ITEM)
    records: dict[str, dict] = {}
    problems: list[str] = []
    for item, value in zip(frame[_ITEM], frame[_IMAGE].fillna("").astype(str).str.strip()):
        if not value or is_url(value):
            continue
        source = path.parent / value
        if not _SAFE_NAME.match(item):
            problems.append(f"item {item!r}: the id is not usable as a file name")
            continue
        if not source.is_file():
            problems.append(f"item {item!r}: {source} not found")
            continue
        suffix = source.suffix.lower() if source.suffix.lower() in IMAGE_SUFFIXES else ".img"
        name = f"{IMAGES_SUBDIR}/{item}{suffix}"
        images_dir(raw_dir).mkdir(parents=True, exist_ok=True)
        records[name] = copy_local(source, raw_dir, name)
    if problems:
        log.warning("%s: %d local image(s) not copied (those items have no image and are "
                    "imputed by the image encoder), e.g. %s", path, len(problems),
                    "; ".join(problems[:_EXAMPLES]))
    log.info("%s: %d local image file(s) copied into %s", path, len(records),
             images_dir(raw_dir))
    return records


# ---- interactions -----------------------------------------------------------------------

def load_interactions(spec: dict[str, Any], raw_dir: Path,
                      max_malformed_share: float) -> pd.DataFrame:
    block = interactions_spec(spec)
    path = raw_file(raw_dir, _raw_names(spec)[0])
    _checked_file(path, block, _interaction_columns(block), "source.interactions")
    columns = {block["user"]: "user", block["item"]: "item"}
    numeric = []
    for option, name in (("order", "timestamp"), ("rating", "rating")):
        if block.get(option):
            columns[block[option]] = name
            numeric.append(name)
    frame = read_table(path, block, columns, "source.interactions", numeric=numeric,
                       required=["user", "item"], max_malformed_share=max_malformed_share)
    frame, dropped = apply_duplicates(frame, duplicates_policy(spec), path,
                                      by_order=bool(block.get("order")))
    result = normalise_interactions(frame)
    result.attrs[SOURCE_STATS] = {"repeated_pairs_dropped": dropped}
    return result


def apply_duplicates(frame: pd.DataFrame, policy: str, path: Path,
                     by_order: bool) -> tuple[pd.DataFrame, int]:
    """One row per (user, item) by `policy`; the rows kept and the number dropped."""
    key = ["user", "item"]
    later = frame.duplicated(key, keep="first").to_numpy()
    if not later.any():
        return frame, 0
    row = frame.loc[later].iloc[0]
    first = frame.loc[(frame["user"] == row["user"]) & (frame["item"] == row["item"])].iloc[0]
    where = f"{_position(path)} {row[_LINE]} repeats the (user, item) pair of " \
            f"{_position(path)} {first[_LINE]} (user {row['user']!r}, item {row['item']!r})"
    if policy == "error":
        raise ValueError(f"{path}: {where}; {int(later.sum())} repeated row(s) in all, and "
                         f"source.duplicates is `error`: remove the repeats, or set "
                         f"source.duplicates to keep_first or keep_last")
    order = ["timestamp", _LINE] if by_order else [_LINE]
    ordered = frame.sort_values(order, kind="stable")
    kept = ordered.drop_duplicates(key, keep="first" if policy == "keep_first" else "last")
    kept = kept.sort_values(_LINE, kind="stable").reset_index(drop=True)
    dropped = len(frame) - len(kept)
    log.warning("%s: %d row(s) repeat a (user, item) pair and are dropped (%s, by %s; first: "
                "%s)", path, dropped, policy, "order" if by_order else "file line", where)
    return kept, dropped


# ---- items ------------------------------------------------------------------------------

def load_items(spec: dict[str, Any], raw_dir: Path, asins: np.ndarray,
               max_malformed_share: float) -> pd.DataFrame:
    """Items in dense-id order; `text` rendered from the item table, image URLs kept."""
    block = items_spec(spec)
    table = _empty_items(asins)
    if block is None:
        log.info("source table: no item table, so no item text or image")
        return table
    path = raw_file(raw_dir, _raw_names(spec)[1])
    _checked_file(path, block, _item_columns(block), "source.items")
    text_columns = list(dict.fromkeys(block["text"]))
    columns = {block["item"]: _ITEM, **{column: column for column in text_columns}}
    if block.get("image"):
        columns[block["image"]] = _IMAGE
    frame = read_table(path, block, columns, "source.items", required=[_ITEM],
                       max_malformed_share=max_malformed_share)
    _check_unique_items(frame, path, block["item"])
    texts = dict(zip(frame[_ITEM], render_texts(frame, text_columns, block.get("template"))))
    table["text"] = [texts.get(asin, "") for asin in table["asin"]]
    if _IMAGE in frame:
        urls = frame[_IMAGE].fillna("").astype(str).str.strip()
        urls = dict(zip(frame[_ITEM], urls.where(urls.map(is_url), "")))
        table["image_url"] = [urls.get(asin, "") for asin in table["asin"]]
    table.attrs[SOURCE_STATS] = _count_missing_text(table, set(texts), path)
    return table


def _empty_items(asins: np.ndarray) -> pd.DataFrame:
    n = len(asins)
    table = pd.DataFrame({"item_id": np.arange(n, dtype=np.int64),
                          "asin": pd.Series(asins, dtype=object).astype(str)})
    for column in ("title", "brand", "description", "image_url", "text"):
        table[column] = ""
    table["categories"] = [[] for _ in range(n)]
    return table[ITEM_COLUMNS]


def _check_unique_items(frame: pd.DataFrame, path: Path, column: str) -> None:
    repeated = frame.duplicated(_ITEM, keep="first").to_numpy()
    if not repeated.any():
        return
    row = frame.loc[repeated].iloc[0]
    first = frame.loc[frame[_ITEM] == row[_ITEM]].iloc[0]
    position = _position(path)
    raise ValueError(f"{path}: {position} {row[_LINE]} repeats item {row[_ITEM]!r} of "
                     f"{position} {first[_LINE]} (column {column!r}; {int(repeated.sum())} "
                     f"repeated id(s) in all): an item table needs one row per item; merge "
                     f"or remove the repeats")


def render_texts(frame: pd.DataFrame, text_columns: list[str],
                 template: str | None) -> list[str]:
    """Each row's text: the template filled with its text columns (default: the non-empty
    ones joined with a space), whitespace runs collapsed; '' when every column is empty."""
    cells = {column: frame[column].fillna("").astype(str).str.strip().tolist()
             for column in text_columns}
    texts = []
    for row in range(len(frame)):
        values = {column: cells[column][row] for column in text_columns}
        if not any(values.values()):
            texts.append("")
            continue
        text = (template.format_map(values) if template
                else " ".join(value for value in values.values() if value))
        texts.append(" ".join(text.split()))
    return texts


def _count_missing_text(table: pd.DataFrame, in_table: set[str], path: Path) -> dict[str, int]:
    asins = table["asin"]
    absent = ~asins.isin(in_table)
    empty = (table["text"] == "") & ~absent
    for mask, what in ((absent, "are not in the item table"),
                       (empty, "have empty text in every text column")):
        if mask.any():
            log.warning("%s: %d of %d items %s (they get no text; the text encoder imputes "
                        "them and fails above its max_missing_share), e.g. %s", path,
                        int(mask.sum()), len(table), what,
                        ", ".join(asins[mask].head(_EXAMPLES)))
    return {"items_without_text": int((absent | empty).sum()),
            "items_not_in_item_table": int(absent.sum())}
