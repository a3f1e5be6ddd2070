"""The `table` source: user-provided interaction and item tables (issue 25)."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from crane.config import load_schema
from crane.data.parse import ParseError
from crane.data.prepare import prepare_dataset
from crane.data.processed import TEST, VALID, load_interactions
from crane.data.sources import acquire

# sentence-transformers must never reach the network in tests
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

# Three users with four items each, in file order; `order` puts each user's rows out of file
# order, so leave_last_out must follow it: by order, the last items are i2, i1, i4 (test)
# and the second last i3, i3, i5 (validation).
INTERACTIONS = [
    ("u1", "i2", 9, 5), ("u1", "i1", 1, 4), ("u1", "i3", 3, 3), ("u1", "i4", 2, 5),
    ("u2", "i1", 7, 2), ("u2", "i2", 1, 1), ("u2", "i3", 5, 4), ("u2", "i5", 2, 3),
    ("u3", "i4", 8, 5), ("u3", "i3", 2, 2), ("u3", "i1", 4, 1), ("u3", "i5", 6, 4),
]
INTER_COLUMNS = ["uid", "product", "position", "stars"]
ITEMS = [("i1", "Red kettle", "Acme"), ("i2", "Blue mug", ""), ("i3", "", "Zeta"),
         ("i4", "Green pan", "Acme"), ("i5", "", "")]
ITEM_COLUMNS = ["product", "title", "brand"]


def write_table(path: Path, rows: list[tuple], columns: list[str]) -> Path:
    """rows as a CSV, TSV or parquet file (by suffix), gzipped when the name ends in .gz."""
    frame = pd.DataFrame(rows, columns=columns)
    path.parent.mkdir(parents=True, exist_ok=True)
    stem = path.name[:-3] if path.name.endswith(".gz") else path.name
    if stem.endswith(".parquet"):
        data = frame.to_parquet(index=False)
    else:
        sep = "\t" if stem.endswith((".tsv", ".tab")) else ","
        data = frame.to_csv(sep=sep, index=False).encode()
    path.write_bytes(gzip.compress(data) if path.name.endswith(".gz") else data)
    return path


def table_spec(inter: Path, items: Path | None = None, **extra) -> dict:
    source = {"type": "table",
              "interactions": {"path": str(inter), "user": "uid", "item": "product",
                               "order": "position", "rating": "stars"}}
    if items is not None:
        source["items"] = {"path": str(items), "item": "product", "text": ["title", "brand"]}
    source.update(extra)
    return {"source": source, "kcore": 1, "split": {"method": "leave_last_out"}}


def prepare(spec: dict, tmp_path: Path, name: str = "toy") -> tuple[dict, Path]:
    raw, out = tmp_path / "raw", tmp_path / "data"
    acquire(name, spec, raw, progress=False)
    return prepare_dataset(name, spec, raw, out), out


def split_of(out: Path) -> dict[tuple[str, str], int]:
    data = load_interactions(out)
    users = pd.read_csv(out / "u_id_mapping.csv", sep="\t")["user_id"].to_numpy()
    items = pd.read_parquet(out / "items.parquet")["asin"].to_numpy()
    return {(users[u], items[i]): int(s) for u, i, s in zip(data.user, data.item, data.split)}


def test_csv_with_template_and_order_feeding_leave_last_out(tmp_path):
    inter = write_table(tmp_path / "in" / "inter.csv", INTERACTIONS, INTER_COLUMNS)
    items = write_table(tmp_path / "in" / "items.csv", ITEMS, ITEM_COLUMNS)
    spec = table_spec(inter, items)
    spec["source"]["items"]["template"] = "{title}. Brand: {brand}"
    stats, out = prepare(spec, tmp_path)
    # the raw folder alone reproduces the dataset
    assert (tmp_path / "raw" / "inter.csv").read_bytes() == inter.read_bytes()
    assert (tmp_path / "raw" / "items.csv").read_bytes() == items.read_bytes()
    assert (stats["users"], stats["items"], stats["interactions"]) == (3, 5, 12)
    split = split_of(out)
    assert [pair for pair, part in split.items() if part == TEST] == \
        [("u1", "i2"), ("u2", "i1"), ("u3", "i4")]
    assert sorted(pair for pair, part in split.items() if part == VALID) == \
        [("u1", "i3"), ("u2", "i3"), ("u3", "i5")]
    frame = pd.read_parquet(out / "items.parquet")
    assert frame["text"].tolist() == ["Red kettle. Brand: Acme", "Blue mug. Brand:",
                                      ". Brand: Zeta", "Green pan. Brand: Acme", ""]
    assert (frame["title"] == "").all()  # the table's columns feed `text` only
    ratings = load_interactions(out).rating
    assert sorted(ratings.tolist()) == sorted(float(r[3]) for r in INTERACTIONS)
    assert stats["items_without_text"] == 1 and stats["items_not_in_item_table"] == 0
    on_disk = json.loads((out / "stats.json").read_text())
    assert on_disk["items_without_text"] == 1


@pytest.mark.parametrize("suffix", [".tsv", ".tsv.gz", ".csv.gz", ".parquet", ".parquet.gz"])
def test_other_formats_give_the_same_dataset(tmp_path, suffix):
    base = tmp_path / "csv"
    _, expected = prepare(table_spec(write_table(base / "in" / "inter.csv", INTERACTIONS,
                                                 INTER_COLUMNS),
                                     write_table(base / "in" / "items.csv", ITEMS,
                                                 ITEM_COLUMNS)), base)
    other = tmp_path / "other"
    spec = table_spec(write_table(other / "in" / f"inter{suffix}", INTERACTIONS, INTER_COLUMNS),
                      write_table(other / "in" / f"items{suffix}", ITEMS, ITEM_COLUMNS))
    _, out = prepare(spec, other)
    assert split_of(out) == split_of(expected)
    pd.testing.assert_frame_equal(pd.read_parquet(out / "items.parquet"),
                                  pd.read_parquet(expected / "items.parquet"))
    assert pd.read_parquet(out / "items.parquet")["text"].tolist()[:2] == \
        ["Red kettle Acme", "Blue mug"]  # default: the non-empty text columns joined


def test_sep_overrides_the_delimiter_and_the_same_file_names_do_not_clash(tmp_path):
    inter = tmp_path / "a" / "data.txt"
    inter.parent.mkdir()
    inter.write_text("uid;product;position;stars\n"
                     + "".join(";".join(map(str, row)) + "\n" for row in INTERACTIONS))
    items = tmp_path / "b" / "data.txt"
    items.parent.mkdir()
    items.write_text("product|title|brand\n" + "".join("|".join(row) + "\n" for row in ITEMS))
    spec = table_spec(inter, items)
    spec["source"]["interactions"]["sep"] = ";"
    spec["source"]["items"]["sep"] = "|"
    stats, out = prepare(spec, tmp_path)
    assert sorted(p.name for p in (tmp_path / "raw").iterdir()) == \
        ["acquired.json", "data.txt", "items-data.txt"]
    assert stats["interactions"] == 12
    assert pd.read_parquet(out / "items.parquet")["text"].iloc[0] == "Red kettle Acme"


def test_a_missing_column_is_named_with_the_columns_present(tmp_path):
    inter = write_table(tmp_path / "in" / "inter.csv", INTERACTIONS, INTER_COLUMNS)
    spec = table_spec(inter)
    spec["source"]["interactions"]["user"] = "reviewerID"
    with pytest.raises(ValueError, match=r"inter\.csv: column\(s\) not found \(source\."
                                         r"interactions\.user: 'reviewerID'\); the file has "
                                         r"columns \['uid', 'product', 'position', 'stars'\]"):
        acquire("toy", spec, tmp_path / "raw", progress=False)
    assert not (tmp_path / "raw").exists() or not any((tmp_path / "raw").iterdir())

    items = write_table(tmp_path / "in" / "items.tsv", ITEMS, ITEM_COLUMNS)
    spec = table_spec(inter, items)
    spec["source"]["items"]["text"] = ["title", "description"]
    with pytest.raises(ValueError, match=r"items\.tsv: column\(s\) not found \(source\.items"
                                         r"\.text: 'description'\); the file has columns "
                                         r"\['product', 'title', 'brand'\]"):
        acquire("toy", spec, tmp_path / "raw", progress=False)


def test_a_wrong_delimiter_is_hinted(tmp_path):
    inter = write_table(tmp_path / "in" / "inter.csv", INTERACTIONS, INTER_COLUMNS)
    inter.write_text(inter.read_text().replace(",", "\t"))  # a TSV named .csv
    with pytest.raises(ValueError, match=r"one column only: is the delimiter right\? set `sep`"):
        acquire("toy", table_spec(inter), tmp_path / "raw", progress=False)


def test_unknown_and_unreadable_formats(tmp_path):
    inter = write_table(tmp_path / "in" / "inter.csv", INTERACTIONS, INTER_COLUMNS)
    odd = tmp_path / "in" / "inter.xlsx"
    odd.write_bytes(inter.read_bytes())
    with pytest.raises(ValueError, match=r"inter\.xlsx: unknown table format \.xlsx \(source\."
                                         r"interactions\.path\): name the file \.csv, \.tsv, "
                                         r"\.tab or \.parquet .* or set source\.interactions\.sep"):
        acquire("toy", table_spec(odd), tmp_path / "raw", progress=False)
    broken = tmp_path / "in" / "inter.parquet"
    broken.write_bytes(b"not a parquet file at all")
    with pytest.raises(ParseError, match=r"inter\.parquet: not a readable parquet table"):
        acquire("toy", table_spec(broken), tmp_path / "raw", progress=False)
    with pytest.raises(FileNotFoundError, match=r"absent\.csv: file not found \(source\."
                                                r"interactions\.path\)"):
        acquire("toy", table_spec(tmp_path / "absent.csv"), tmp_path / "raw", progress=False)


def test_rows_without_user_or_item_are_malformed(tmp_path):
    rows = INTERACTIONS + [("", "i1", 3, 1), ("u1", " ", 10, 1)]
    inter = write_table(tmp_path / "in" / "inter.csv", rows, INTER_COLUMNS)
    spec = {**table_spec(inter), "max_malformed_share": 0.2}
    stats, _ = prepare(spec, tmp_path / "lenient")
    assert stats["interactions"] == 12
    strict = {**spec, "max_malformed_share": 0.1}
    with pytest.raises(ParseError, match=r"inter\.csv: 2 of 14 lines are malformed .* "
                                         r"line 14: user is empty; line 15: item is empty"):
        prepare(strict, tmp_path / "strict")


@pytest.mark.parametrize("policy, by_order, kept_rating", [
    ("keep_first", True, 1.0), ("keep_last", True, 5.0), ("keep_first", False, 5.0),
    ("keep_last", False, 1.0)])
def test_duplicate_pairs_keep_first_or_last(tmp_path, policy, by_order, kept_rating):
    # (u1, i2) is on line 2 (order 9, rating 5) and again on line 14 (order 2, rating 1)
    rows = INTERACTIONS + [("u1", "i2", 2, 1)]
    inter = write_table(tmp_path / "in" / "inter.csv", rows, INTER_COLUMNS)
    spec = table_spec(inter, duplicates=policy)
    if not by_order:
        del spec["source"]["interactions"]["order"]
        spec["split"] = {"method": "mmrec_random", "seed": 1}
    stats, out = prepare(spec, tmp_path)
    assert stats["interactions"] == 12 and stats["repeated_pairs_dropped"] == 1
    data = load_interactions(out)
    users = pd.read_csv(out / "u_id_mapping.csv", sep="\t")["user_id"].tolist()
    items = pd.read_parquet(out / "items.parquet")["asin"].tolist()
    kept = data.rating[(data.user == users.index("u1")) & (data.item == items.index("i2"))]
    assert kept.tolist() == [kept_rating]


def test_duplicate_pairs_error_names_the_first_repeat(tmp_path):
    rows = INTERACTIONS[:5] + [("u1", "i1", 6, 2)] + INTERACTIONS[5:] + [("u3", "i4", 1, 1)]
    inter = write_table(tmp_path / "in" / "inter.csv", rows, INTER_COLUMNS)
    with pytest.raises(ValueError, match=r"inter\.csv: line 7 repeats the \(user, item\) pair "
                                         r"of line 3 \(user 'u1', item 'i1'\); 2 repeated "
                                         r"row\(s\) in all, and source\.duplicates is `error`"):
        prepare(table_spec(inter, duplicates="error"), tmp_path)


def test_template_naming_a_column_outside_text_fails_at_acquire(tmp_path):
    inter = write_table(tmp_path / "in" / "inter.csv", INTERACTIONS, INTER_COLUMNS)
    items = write_table(tmp_path / "in" / "items.csv", ITEMS, ITEM_COLUMNS)
    spec = table_spec(inter, items)
    spec["source"]["items"]["template"] = "{title} by {maker}"
    with pytest.raises(ValueError, match=r"source\.items\.template '\{title\} by \{maker\}' "
                                         r"names \['maker'\], which are not among source\.items"
                                         r"\.text \['title', 'brand'\]"):
        acquire("toy", spec, tmp_path / "raw", progress=False)
    assert not (tmp_path / "raw" / "inter.csv").exists()


def test_item_table_with_a_repeated_id_is_refused(tmp_path):
    inter = write_table(tmp_path / "in" / "inter.csv", INTERACTIONS, INTER_COLUMNS)
    items = write_table(tmp_path / "in" / "items.csv", ITEMS + [("i2", "Mug again", "")],
                        ITEM_COLUMNS)
    with pytest.raises(ValueError, match=r"items\.csv: line 7 repeats item 'i2' of line 3 "
                                         r"\(column 'product'; 1 repeated id\(s\) in all\)"):
        prepare(table_spec(inter, items), tmp_path)


def test_unknown_items_and_empty_texts_are_counted_and_logged(tmp_path, caplog):
    inter = write_table(tmp_path / "in" / "inter.csv", INTERACTIONS, INTER_COLUMNS)
    items = write_table(tmp_path / "in" / "items.csv",
                        [row for row in ITEMS if row[0] != "i4"], ITEM_COLUMNS)
    stats, out = prepare(table_spec(inter, items), tmp_path)
    assert stats["items_without_text"] == 2  # i4 (not in the table) and i5 (empty text)
    assert stats["items_not_in_item_table"] == 1
    texts = pd.read_parquet(out / "items.parquet").set_index("asin")["text"]
    assert texts["i4"] == "" and texts["i5"] == "" and texts["i3"] == "Zeta"
    assert "1 of 5 items are not in the item table" in caplog.text and "e.g. i4" in caplog.text
    assert "1 of 5 items have empty text" in caplog.text and "e.g. i5" in caplog.text


def test_interactions_only_gives_items_without_text(tmp_path):
    inter = write_table(tmp_path / "in" / "inter.parquet", INTERACTIONS, INTER_COLUMNS)
    stats, out = prepare(table_spec(inter), tmp_path)
    assert stats["interactions"] == 12
    assert (pd.read_parquet(out / "items.parquet")["text"] == "").all()


def test_text_features_fail_above_the_missing_share(tmp_path):
    from crane.features.extract import extract_features

    inter = write_table(tmp_path / "in" / "inter.csv", INTERACTIONS, INTER_COLUMNS)
    items = write_table(tmp_path / "in" / "items.csv", ITEMS, ITEM_COLUMNS)
    _, out = prepare(table_spec(inter, items), tmp_path)
    encoder = {"type": "sentence_transformers", "model": "all-MiniLM-L6-v2", "fields": ["text"]}
    # i5 has no text: 1 of 5 items (20%) is above the default 5%
    with pytest.raises(ValueError, match=r"1 of 5 items \(20\.0%\)"):
        extract_features(out, tmp_path / "raw", "text", "minilm", encoder, tmp_path / "f1")
    result = extract_features(out, tmp_path / "raw", "text", "minilm",
                              {**encoder, "max_missing_share": 0.25}, tmp_path / "f2")
    assert result.manifest["imputed"]["count"] == 1
    assert result.manifest["imputed"]["items"][0]["item_id"] == 4


def test_local_images_are_copied_and_urls_kept(tmp_path):
    inter = write_table(tmp_path / "in" / "inter.csv", INTERACTIONS, INTER_COLUMNS)
    (tmp_path / "in" / "pics").mkdir(parents=True)
    Image.new("RGB", (4, 4), "red").save(tmp_path / "in" / "pics" / "one.png")
    rows = [row + (image,) for row, image in zip(
        ITEMS, ["pics/one.png", "http://example.org/2.jpg", "", "pics/absent.jpg", ""])]
    items = write_table(tmp_path / "in" / "items.csv", rows, ITEM_COLUMNS + ["picture"])
    spec = table_spec(inter, items)
    spec["source"]["items"]["image"] = "picture"
    _, out = prepare(spec, tmp_path)
    raw = tmp_path / "raw"
    assert sorted(p.name for p in (raw / "images").iterdir()) == ["i1.png"]
    assert (raw / "images" / "i1.png").read_bytes() == \
        (tmp_path / "in" / "pics" / "one.png").read_bytes()
    manifest = json.loads((raw / "acquired.json").read_text())
    assert "images/i1.png" in manifest["files"]
    frame = pd.read_parquet(out / "items.parquet")
    assert frame["image_url"].tolist() == ["", "http://example.org/2.jpg", "", "", ""]
    # the image fetch step finds the local copy in its cache (the URL row left out: no network)
    from crane.features.image_fetch import fetch_images

    report = fetch_images(frame[frame["image_url"] == ""], raw / "images", progress=False)
    assert report.cached == ["i1"] and sorted(report.no_url) == ["i3", "i4", "i5"]


def test_option_errors(tmp_path):
    inter = write_table(tmp_path / "in" / "inter.csv", INTERACTIONS, INTER_COLUMNS)
    spec = table_spec(inter)
    with pytest.raises(ValueError, match=r"source\.duplicates: 'drop' is not one of"):
        acquire("toy", table_spec(inter, duplicates="drop"), tmp_path / "raw")
    bad = json.loads(json.dumps(spec))
    del bad["source"]["interactions"]["item"]
    with pytest.raises(ValueError, match=r"source\.interactions: option\(s\) \['item'\] "
                                         r"required"):
        acquire("toy", bad, tmp_path / "raw")
    with pytest.raises(ValueError, match=r"source table: `interactions` is required"):
        acquire("toy", {"source": {"type": "table"}}, tmp_path / "raw")


def test_schema_accepts_the_documented_options():
    import jsonschema

    schema = load_schema()
    source_schema = {**schema["$defs"]["source"], "$defs": schema["$defs"]}
    good = {"type": "table",
            "interactions": {"path": "data/interactions.csv.gz", "user": "reviewerID",
                             "item": "asin", "order": "order", "rating": None, "sep": None},
            "items": {"path": "data/items.tsv.gz", "item": "asin", "text": ["text"],
                      "template": None, "image": None, "sep": None},
            "duplicates": "keep_first"}
    jsonschema.validate(good, source_schema)
    for bad in ({**good, "duplicates": "drop"}, {**good, "items": {**good["items"], "text": []}},
                {**good, "interactions": {"path": "x.csv", "user": "u"}}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, source_schema)


SCIENTIFIC = Path(__file__).resolve().parents[2].parent / "shared" / "data" / \
    "amazon2018-scientific"


@pytest.mark.realdata
@pytest.mark.skipif(not (SCIENTIFIC / "interactions.csv.gz").exists(),
                    reason=f"real data not available at {SCIENTIFIC}")
def test_real_scientific_through_the_table_source(tmp_path):
    spec = {"source": {"type": "table",
                       "interactions": {"path": str(SCIENTIFIC / "interactions.csv.gz"),
                                        "user": "reviewerID", "item": "asin", "order": "order"},
                       "items": {"path": str(SCIENTIFIC / "items.tsv.gz"), "item": "asin",
                                 "text": ["text"]}},
            "kcore": 5, "split": {"method": "leave_last_out"}}
    stats, out = prepare(spec, tmp_path, "scientific")
    # below the README's raw counts: 8,442 users, 4,385 items, 59,095 distinct pairs
    assert 0 < stats["users"] < 8442 and 0 < stats["items"] < 4385
    assert 0 < stats["interactions"] < 59095
    assert stats["min_user_degree"] >= 5 and stats["min_item_degree"] >= 5
    assert stats["valid"] == stats["test"] == stats["users"]  # one each per user
    assert stats["repeated_pairs_dropped"] == 289
    assert stats["items_without_text"] == 0 and stats["items_not_in_item_table"] == 0
    texts = pd.read_parquet(out / "items.parquet")["text"]
    assert (texts.str.strip() != "").all()
    assert texts.nunique() >= 4000
    data = load_interactions(out)
    assert np.unique(data.user[data.split == TEST]).size == stats["users"]
    # the real MiniLM over the real text: distinct items get distinct vectors
    from crane.features.extract import extract_features

    extract_features(out, tmp_path / "raw", "text", "minilm_text",
                     {"type": "sentence_transformers", "model": "all-MiniLM-L6-v2",
                      "fields": ["text"]}, tmp_path / "features")
    features = np.load(tmp_path / "features" / "features.npy")
    assert features.shape == (stats["items"], 384)
    assert np.unique(features.round(5), axis=0).shape[0] >= 4000
