"""The processed folder of the demo (the contract), its signal, and the data CLI."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from crane.cli import main
from crane.data import demo
from crane.data.processed import INTERACTION_COLUMNS, load_interactions


def test_processed_demo_follows_the_contract(demo_processed, demo_raw):
    out, stats = demo_processed
    _, summary = demo_raw
    # The demo is already 5-core: the filter keeps (nearly) everything.
    assert stats["interactions"] >= 0.98 * len(summary.interactions)
    assert stats["users"] >= 0.98 * 1500 and stats["items"] >= 0.98 * 800

    frame = pd.read_parquet(out / "interactions.parquet")
    assert list(frame.columns) == INTERACTION_COLUMNS
    assert [str(t) for t in frame.dtypes] == ["int64", "int64", "float32", "int64", "int8"]
    assert frame.equals(frame.sort_values(["user_id", "split", "item_id"], kind="stable"))
    assert (frame["timestamp"] > 1_200_000_000).all()

    schema = pq.read_schema(out / "items.parquet")
    assert schema.names == ["item_id", "asin", "title", "brand", "categories", "description",
                            "image_url", "text"]
    categories = schema.field("categories").type
    assert pa.types.is_list(categories) and pa.types.is_string(categories.value_type)
    items = pd.read_parquet(out / "items.parquet")
    assert items["item_id"].tolist() == list(range(stats["items"]))
    assert items["asin"].tolist() == sorted(items["asin"])
    assert items["categories"].map(lambda c: list(c[:1]) == ["Demo"] and len(c) == 3).all()
    assert (items["title"] != "").all() and (items["brand"] == "").any()
    assert (items["text"] == "").all()  # the `table` source's column, empty for the demo

    inter = pd.read_csv(out / "demo.inter", sep="\t")
    assert list(inter.columns) == ["userID", "itemID", "rating", "timestamp", "x_label"]
    assert len(inter) == stats["interactions"]
    users = pd.read_csv(out / "u_id_mapping.csv", sep="\t")
    assert list(users.columns) == ["user_id", "userID"] and len(users) == stats["users"]

    on_disk = json.loads((out / "stats.json").read_text())
    assert on_disk["split"] == {"method": "mmrec_random", "seed": 2024}
    assert on_disk["kcore"] == {"user": 5, "item": 5} and on_disk["source"] == {"type": "demo"}
    assert on_disk["train"] + on_disk["valid"] + on_disk["test"] == on_disk["interactions"]
    loaded = load_interactions(out)
    assert (loaded.n_users, loaded.n_items) == (stats["users"], stats["items"])


def _recall_at_20(scores, train, test):
    scores = np.where(train > 0, -np.inf, scores)
    top = np.argpartition(-scores, 20, axis=1)[:, :20]
    users = np.flatnonzero(test.sum(1))
    hits = np.take_along_axis(test, top, axis=1).sum(1)
    return float((hits[users] / test.sum(1)[users]).mean())


def _zscore(x):
    return (x - x.mean(1, keepdims=True)) / (x.std(1, keepdims=True) + 1e-9)


def test_both_interactions_and_content_carry_signal(demo_processed):
    """Content and interactions each beat popularity, and together beat either alone."""
    out, _ = demo_processed
    data = load_interactions(out)
    train = data.csr(0).toarray()
    test = data.csr(2).toarray()
    popularity = np.tile(train.sum(0), (len(train), 1))
    gram = train.T @ train  # EASE: a strong ID-only linear model, closed form
    inverse = np.linalg.inv(gram + 200.0 * np.eye(len(gram)))
    weights = -inverse / np.diag(inverse)
    np.fill_diagonal(weights, 0.0)
    cf = train @ weights
    # Content: the fine style (colour family x theme) named by each title's words, the text
    # a feature extractor reads.
    titles = pd.read_parquet(out / "items.parquet")["title"].str.lower().str.split()
    colour_of = {w: c for c, colour in enumerate(demo.COLOURS)
                 for w in colour.words + colour.materials}
    theme_of = {w: t for t, theme in enumerate(demo.THEMES) for w in theme.words}
    colour = np.zeros((len(titles), len(demo.COLOURS)))
    theme = np.zeros((len(titles), len(demo.THEMES)))
    for item, title in enumerate(titles):
        for word in title:
            if word in colour_of:
                colour[item, colour_of[word]] += 1
            if word in theme_of:
                theme[item, theme_of[word]] += 1
    colour /= np.maximum(colour.sum(1, keepdims=True), 1)
    theme /= np.maximum(theme.sum(1, keepdims=True), 1)
    style = (colour[:, :, None] * theme[:, None, :]).reshape(len(titles), -1)
    profile = train @ style / np.maximum(train.sum(1, keepdims=True), 1)
    content = np.log(profile @ style.T + 0.02) + 0.5 * np.log1p(popularity)

    recall = {name: _recall_at_20(scores, train, test) for name, scores in
              {"pop": popularity, "content": content, "cf": cf,
               "cf+content": _zscore(cf) + _zscore(content)}.items()}
    assert recall["content"] > 1.15 * recall["pop"], recall
    assert recall["cf"] > 1.15 * recall["pop"], recall
    assert recall["cf+content"] > 1.02 * max(recall["cf"], recall["content"]), recall


def test_cli_acquire_preprocess_stats(tmp_path, capsys):
    spec = json.dumps({"source": {"type": "demo", "users": 80, "items": 60, "seed": 3},
                       "kcore": 5, "split": {"method": "mmrec_random", "seed": 1},
                       "max_malformed_share": 0.001, "features": {"text": "minilm"}})
    raw, data = tmp_path / "raw", tmp_path / "data"
    assert main(["acquire", "--dataset", "tiny", "--spec", spec, "--out", str(raw),
                 "--no-progress"]) == 0
    manifest = json.loads((raw / "acquired.json").read_text())
    assert manifest["dataset"] == "tiny" and "meta_Demo.json.gz" in manifest["files"]
    assert main(["preprocess", "--dataset", "tiny", "--spec", spec, "--raw", str(raw),
                 "--out", str(data)]) == 0
    assert (data / "tiny.inter").exists()
    capsys.readouterr()
    assert main(["stats", "--data", str(data), "--out", str(tmp_path / "stats.json")]) == 0
    table = capsys.readouterr().out
    assert table.startswith("| dataset | users | items | interactions | sparsity |")
    assert "| tiny |" in table
    written = json.loads((tmp_path / "stats.json").read_text())
    assert written["tiny"]["interactions"] == json.loads(
        (data / "stats.json").read_text())["interactions"]
    assert main(["stats", "--data", str(data), "--out", str(tmp_path / "stats.md")]) == 0
    assert (tmp_path / "stats.md").read_text() == table


def test_cli_reports_an_empty_k_core_in_one_line(tmp_path, capsys):
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("reviewerID,asin\n" + "".join(f"A{u},B{(u + d) % 9}\n" for u in range(9)
                                                  for d in range(3)))
    spec = json.dumps({"source": {"type": "pairs_csv", "path": str(pairs)}, "kcore": 4})
    assert main(["acquire", "--dataset", "tiny", "--spec", spec, "--out",
                 str(tmp_path / "raw")]) == 0
    code = main(["preprocess", "--dataset", "tiny", "--spec", spec, "--raw",
                 str(tmp_path / "raw"), "--out", str(tmp_path / "data")])
    assert code == 2
    assert "empty after filtering: 4-core of tiny leaves 0 users" in capsys.readouterr().err
    assert not (tmp_path / "data").exists()


def test_missing_raw_files_name_the_file_and_the_fix(tmp_path, capsys):
    spec = json.dumps({"source": {"type": "amazon2014", "category": "Baby"}})
    code = main(["preprocess", "--dataset", "baby", "--spec", spec, "--raw",
                 str(tmp_path / "raw"), "--out", str(tmp_path / "data")])
    assert code == 2
    error = capsys.readouterr().err
    assert "raw file not found" in error and "reviews_Baby_5.json.gz" in error
    assert "run `crane acquire` first" in error
