"""The raw sources: Amazon 2014 (downloaded from a local server), 2018, 2023, pairs CSV."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pandas as pd
import pytest

from crane.data.image_features_b import read_image_features_b, write_image_features_b
from crane.data.prepare import prepare_dataset
from crane.data.sources import acquire, amazon2018, amazon2023, source_module

FAST_DOWNLOAD = {"retries": 2, "backoff": 0.01, "timeout": 5}


def _gzip_lines(lines):
    return gzip.compress(("\n".join(lines) + "\n").encode())


def _reviews_2014(pairs):
    return [json.dumps({"reviewerID": u, "asin": i, "overall": 4.0, "unixReviewTime": t,
                        "reviewText": "fine"}) for u, i, t in pairs]


# A 2-core toy: users u1..u3 over items B1..B3, plus u4 with one item (pruned).
TOY = [("u1", "B1", 30), ("u1", "B2", 10), ("u2", "B1", 20), ("u2", "B2", 40),
       ("u2", "B3", 50), ("u3", "B3", 60), ("u3", "B1", 70), ("u4", "B9", 80)]
META_2014 = [
    {"asin": "B1", "title": "Red Blanket", "brand": "Cozy",
     "categories": [["Baby", "Nursery", "Bedding"], ["Baby", "Gifts"]],
     "description": "Soft\nand warm", "imUrl": "http://ecx.images-amazon.com/images/I/1.jpg"},
    {"asin": "B2", "title": "Blue Bib", "categories": [["Baby", "Feeding"]]},
    {"asin": "B9", "title": "pruned by the k-core"},
]


def test_amazon2014_acquire_download_resume_and_prepare(http_server, tmp_path):
    features = np.arange(3 * 4096, dtype=np.float32).reshape(3, 4096)
    b_path = tmp_path / "image_features_Baby.b"
    write_image_features_b(b_path, ["B1xxxxxxxx", "B2xxxxxxxx", "B3xxxxxxxx"], features)
    http_server.routes.update({
        "/cat/reviews_Baby_5.json.gz": ("drop_once", _gzip_lines(_reviews_2014(TOY))),
        "/cat/meta_Baby.json.gz": ("file", _gzip_lines([repr(m) for m in META_2014])),
        "/img/image_features_Baby.b": ("file", b_path.read_bytes()),
    })
    source = {"type": "amazon2014", "category": "Baby", "reviews": "5core",
              "image_features": True, "url_base": http_server.url("/cat/"),
              "image_url_base": http_server.url("/img"),
              "checksums": str(tmp_path / "checksums.json"), "download": FAST_DOWNLOAD}
    spec = {"source": source, "kcore": 2, "split": {"method": "leave_last_out"}}
    raw = tmp_path / "raw"
    manifest = acquire("baby", spec, raw, progress=False)
    assert sorted(manifest["files"]) == ["image_features_Baby.b", "meta_Baby.json.gz",
                                         "reviews_Baby_5.json.gz"]
    entry = manifest["files"]["image_features_Baby.b"]
    assert entry["size"] == b_path.stat().st_size and len(entry["sha256"]) == 64
    assert json.loads((raw / "acquired.json").read_text())["source"] == source
    assert len(json.loads((tmp_path / "checksums.json").read_text())) == 3
    hits = sum(http_server.hits.values())
    acquire("baby", spec, raw, progress=False)  # complete: nothing fetched again
    assert sum(http_server.hits.values()) == hits
    asins, vectors = read_image_features_b(raw / "image_features_Baby.b", ["B2xxxxxxxx"])
    assert asins.tolist() == ["B2xxxxxxxx"] and np.array_equal(vectors[0], features[1])

    out = tmp_path / "data"
    stats = prepare_dataset("baby", spec, raw, out)
    assert (stats["users"], stats["items"], stats["interactions"]) == (3, 3, 7)
    items = pd.read_parquet(out / "items.parquet")
    assert items["asin"].tolist() == ["B1", "B2", "B3"]
    first = items.iloc[0]
    assert (first["title"], first["brand"], first["description"]) == \
        ("Red Blanket", "Cozy", "Soft and warm")
    assert list(first["categories"]) == ["Baby", "Nursery", "Bedding"]  # first path only
    assert first["image_url"].endswith("/1.jpg")
    assert (items.iloc[1]["brand"], items.iloc[2]["title"]) == ("", "")  # no brand, no meta
    assert list(items.iloc[2]["categories"]) == []
    inter = pd.read_parquet(out / "interactions.parquet")
    # leave_last_out by unixReviewTime: u2's last item (B3 at 50) is its test item.
    u2 = inter[inter["user_id"] == 1]
    assert u2.loc[u2["split"] == 2, "item_id"].tolist() == [2]


def test_amazon2014_ratings_csv(tmp_path):
    (tmp_path / "ratings_Baby.csv").write_text(
        "".join(f"{u},{i},5.0,{t}\n" for u, i, t in TOY))
    source = {"type": "amazon2014", "category": "Baby", "reviews": "ratings", "meta": False}
    frame = source_module(source).load_interactions(source, tmp_path, 0.001)
    assert frame["user"].tolist()[:2] == ["u1", "u1"]
    assert frame["timestamp"].tolist()[:2] == [30, 10]
    assert frame["rating"].dtype == np.float32


@pytest.mark.parametrize("source,message", [
    ({"type": "amazon2014", "category": "Babyy"}, r"unknown Amazon 2014 category 'Babyy'; "
                                                  r"valid categories: .*\bBaby\b"),
    ({"type": "amazon2018", "category": "Baby"}, r"unknown Amazon 2018 category 'Baby'.*"
                                                 r"Clothing_Shoes_and_Jewelry"),
    ({"type": "amazon2023", "category": "Baby"}, r"unknown Amazon 2023 category.*"
                                                 r"Baby_Products"),
    ({"type": "amazon2014", "category": "Baby", "reviews": "full"}, r"reviews must be one"),
    ({"type": "amazon2014", "category": "Baby", "catgory": "x"}, r"unknown option\(s\) "
                                                                 r"\['catgory'\]"),
    ({"type": "amazon2014"}, r"option 'category' is required"),
    ({"type": "amazon2015"}, r"source.type: unknown 'amazon2015'"),
])
def test_source_spec_errors(tmp_path, source, message):
    with pytest.raises(ValueError, match=message):
        acquire("x", {"source": source}, tmp_path / "raw", progress=False)


def test_amazon2018_reviews_meta_and_ratings(tmp_path):
    reviews = [json.dumps({"reviewerID": u, "asin": i, "overall": 5.0, "unixReviewTime": t,
                           "verified": True}) for u, i, t in TOY]
    (tmp_path / "Sports_and_Outdoors_5.json.gz").write_bytes(_gzip_lines(reviews))
    meta = [json.dumps({"asin": "B1", "title": "Tent", "brand": "Camp",
                        "category": ["Sports_and_Outdoors", "Camping"],
                        "description": ["Two person.", "Light."],
                        "imageURL": ["http://x/small.jpg"],
                        "imageURLHighRes": ["http://x/large.jpg"]}),
            json.dumps({"asin": "B2", "title": "Rope", "imageURL": ["http://x/rope.jpg"]})]
    (tmp_path / "meta_Sports_and_Outdoors.json.gz").write_bytes(_gzip_lines(meta))
    source = {"type": "amazon2018", "category": "Sports_and_Outdoors"}
    frame = amazon2018.load_interactions(source, tmp_path, 0.001)
    assert frame[["user", "item"]].values.tolist()[0] == ["u1", "B1"]
    items = amazon2018.load_items(source, tmp_path, np.array(["B1", "B2", "B3"], dtype=object),
                                  0.001)
    assert items.iloc[0]["description"] == "Two person. Light."
    assert list(items.iloc[0]["categories"]) == ["Sports_and_Outdoors", "Camping"]
    assert items["image_url"].tolist() == ["http://x/large.jpg", "http://x/rope.jpg", ""]

    (tmp_path / "Sports_and_Outdoors.csv").write_text("B7,u9,4.0,1234\nB8,u9,2.0,1300\n")
    ratings = amazon2018.load_interactions({**source, "reviews": "ratings"}, tmp_path, 0.001)
    assert ratings[["user", "item", "timestamp"]].values.tolist() == \
        [["u9", "B7", 1234], ["u9", "B8", 1300]]  # the 2018 CSVs are item,user,rating,time


def test_amazon2023_parent_asin_milliseconds_and_images(tmp_path):
    reviews = [json.dumps({"user_id": "AG1", "asin": "V1", "parent_asin": "P1", "rating": 5.0,
                           "timestamp": 1588615855070}),
               json.dumps({"user_id": "AG1", "asin": "V2", "parent_asin": "P2", "rating": 3.0,
                           "timestamp": 1588615900000})]
    (tmp_path / "Baby_Products.jsonl.gz").write_bytes(_gzip_lines(reviews))
    images = [{"thumb": "t1", "large": "l1", "hi_res": None, "variant": "PT01"},
              {"thumb": "t0", "large": "l0", "hi_res": "h0", "variant": "MAIN"}]
    meta = [json.dumps({"parent_asin": "P1", "title": "Crib", "store": "Nest",
                        "categories": ["Baby Products", "Nursery"],
                        "description": ["Sturdy."], "images": images}),
            json.dumps({"parent_asin": "P2", "title": "Cup", "images": [
                {"large": "l2", "hi_res": None, "variant": "MAIN"}]})]
    (tmp_path / "meta_Baby_Products.jsonl.gz").write_bytes(_gzip_lines(meta))
    source = {"type": "amazon2023", "category": "Baby_Products"}
    frame = amazon2023.load_interactions(source, tmp_path, 0.001)
    assert frame["item"].tolist() == ["P1", "P2"]
    assert frame["timestamp"].tolist() == [1588615855, 1588615900]
    items = amazon2023.load_items(source, tmp_path, np.array(["P1", "P2"], dtype=object), 0.001)
    assert items[["brand", "image_url"]].values.tolist() == [["Nest", "h0"], ["", "l2"]]
    assert list(items.iloc[0]["categories"]) == ["Baby Products", "Nursery"]
    variant = amazon2023.load_interactions({**source, "item_field": "asin"}, tmp_path, 0.001)
    assert variant["item"].tolist() == ["V1", "V2"]


def test_pairs_csv_columns_and_missing_column(tmp_path):
    csv = tmp_path / "pairs.csv"
    csv.write_text("user,product,stars\n" + "".join(f"{u},{i},3\n" for u, i, _ in TOY))
    spec = {"source": {"type": "pairs_csv", "path": str(csv), "user_column": "user",
                       "item_column": "product", "rating_column": "stars"},
            "kcore": 2, "split": {"method": "mmrec_random", "seed": 1}}
    raw = tmp_path / "raw"
    acquire("toy", spec, raw, progress=False)
    assert (raw / "pairs.csv").read_bytes() == csv.read_bytes()
    stats = prepare_dataset("toy", spec, raw, tmp_path / "data")
    # 2-core keeps u1..u3; MMRec's rule leaves u1 and u3 (2 interactions each) without a
    # training row, so they are dropped and the ids renumbered.
    assert (stats["users"], stats["items"], stats["interactions"]) == (1, 3, 3)
    assert (tmp_path / "data" / "u_id_mapping.csv").read_text() == "user_id\tuserID\nu2\t0\n"
    bad = {**spec, "source": {**spec["source"], "item_column": "asin"}}
    with pytest.raises(ValueError, match=r"pairs\.csv: column\(s\) \['asin'\] not found; "
                                         r"the file has \['user', 'product', 'stars'\]"):
        prepare_dataset("toy", bad, raw, tmp_path / "data2")
    assert not (tmp_path / "data2").exists()
