"""MMRec folders: write, import through the `mmrec` source, and get the same files back."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from crane.data.mmrec_format import read_mmrec, write_mmrec
from crane.data.prepare import prepare_dataset
from crane.data.processed import load_interactions
from crane.data.sources import acquire
from crane.data.split import split_interactions


@pytest.fixture
def mmrec_folder(tmp_path):
    """A small MMRec dataset folder (split by our mmrec_random) with feature files."""
    rng = np.random.default_rng(0)
    users = np.array([f"A{n:013d}" for n in range(40)], dtype=object)
    items = np.array([f"B{n:09d}" for n in range(60)], dtype=object)
    pairs = {(u, i) for u in range(40) for i in rng.choice(60, 12, replace=False)}
    frame = pd.DataFrame(sorted(pairs), columns=["user_id", "item_id"])
    frame["rating"] = rng.integers(1, 6, len(frame)).astype(float)
    frame["timestamp"] = rng.integers(10**9, 2 * 10**9, len(frame))
    split = split_interactions(frame, {"method": "mmrec_random", "seed": 3})
    folder = tmp_path / "mmrec" / "toy"
    write_mmrec(folder, "toy", split, users, items)
    np.save(folder / "image_feat.npy", rng.random((60, 16), dtype=np.float32))
    np.save(folder / "text_feat.npy", rng.random((60, 8), dtype=np.float32))
    return folder, split


def test_write_then_read_is_identical(mmrec_folder):
    folder, split = mmrec_folder
    assert (folder / "toy.inter").read_text().splitlines()[0] == \
        "userID\titemID\trating\ttimestamp\tx_label"
    assert (folder / "u_id_mapping.csv").read_text().splitlines()[:2] == \
        ["user_id\tuserID", "A0000000000000\t0"]
    assert (folder / "i_id_mapping.csv").read_text().splitlines()[:2] == \
        ["asin\titemID", "B000000000\t0"]
    loaded = read_mmrec(folder, "toy")
    expected = split[["user_id", "item_id", "rating", "timestamp", "split"]]
    pd.testing.assert_frame_equal(loaded.interactions, expected, check_dtype=False)
    assert loaded.users[7] == "A0000000000007" and loaded.items[59] == "B000000059"


def test_import_through_the_mmrec_source_round_trips(mmrec_folder, tmp_path):
    folder, split = mmrec_folder
    # `name` defaults to the folder's name (MMRec's data/<name>/<name>.inter layout).
    spec = {"source": {"type": "mmrec", "path": str(folder)},
            "kcore": 5, "split": {"method": "mmrec_random", "seed": 99}}  # both ignored
    raw, out = tmp_path / "raw", tmp_path / "data"
    manifest = acquire("toy", spec, raw)
    assert set(manifest["files"]) == {"toy.inter", "u_id_mapping.csv", "i_id_mapping.csv",
                                      "image_feat.npy", "text_feat.npy"}
    assert (raw / "image_feat.npy").read_bytes() == (folder / "image_feat.npy").read_bytes()
    stats = prepare_dataset("toy", spec, raw, out)
    for name in ("toy.inter", "u_id_mapping.csv", "i_id_mapping.csv"):
        assert (out / name).read_bytes() == (folder / name).read_bytes(), name
    interactions = load_interactions(out)
    assert (interactions.n_users, interactions.n_items) == (40, 60)
    assert np.array_equal(np.bincount(interactions.split, minlength=3),
                          np.bincount(split["split"], minlength=3))
    assert stats["split"] == {"method": "given (mmrec folder)"} and stats["kcore"] is None
    items = pd.read_parquet(out / "items.parquet")
    assert items["asin"].tolist()[:2] == ["B000000000", "B000000001"]
    assert (items["title"] == "").all()


def _rewrite(path, old, new):
    path.write_text(path.read_text().replace(old, new, 1))


def test_bad_mmrec_files_are_clear_errors(mmrec_folder):
    folder, _ = mmrec_folder
    inter = folder / "toy.inter"
    text = inter.read_text()
    lines = text.splitlines()
    lines[3] = "\t".join(lines[3].split("\t")[:4] + ["7"])
    inter.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"toy\.inter: line 4: x_label must be 0, 1 or 2"):
        read_mmrec(folder, "toy")
    inter.write_text(text.replace("\n0\t", "\n400\t", 1))
    with pytest.raises(ValueError, match=r"toy\.inter: user_id outside 0\.\.39"):
        read_mmrec(folder, "toy")
    inter.write_text(text.replace("itemID", "item", 1))
    with pytest.raises(ValueError, match=r"toy\.inter: column\(s\) \['itemID'\] missing"):
        read_mmrec(folder, "toy")
    inter.write_text(text)
    _rewrite(folder / "i_id_mapping.csv", "\t5\n", "\t6\n")
    with pytest.raises(ValueError, match=r"i_id_mapping\.csv: itemID must be the dense ids"):
        read_mmrec(folder, "toy")
