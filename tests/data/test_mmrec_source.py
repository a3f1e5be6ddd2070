"""The `mmrec` source on folders as MMRec users have them (issue 25): a bare `<name>.inter`
without mapping files, `path` naming the `.inter` file, and clear errors for what is missing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from crane.data.mmrec_format import read_mmrec, write_mmrec
from crane.data.prepare import prepare_dataset
from crane.data.processed import load_interactions
from crane.data.sources import acquire
from crane.data.split import split_interactions


def write_folder(folder: Path, name: str, mappings: bool = True) -> pd.DataFrame:
    """A small MMRec folder: 30 users x 8 of 40 items, split by MMRec's rule."""
    rng = np.random.default_rng(1)
    pairs = {(u, int(i)) for u in range(30) for i in rng.choice(40, 8, replace=False)}
    frame = pd.DataFrame(sorted(pairs), columns=["user_id", "item_id"])
    frame["rating"] = 5.0
    frame["timestamp"] = 0
    split = split_interactions(frame, {"method": "mmrec_random", "seed": 5})
    write_mmrec(folder, name, split,
                np.array([f"U{n}" for n in range(30)], dtype=object),
                np.array([f"I{n}" for n in range(40)], dtype=object))
    if not mappings:
        (folder / "u_id_mapping.csv").unlink()
        (folder / "i_id_mapping.csv").unlink()
    return split


def spec_of(path: Path, **extra) -> dict:
    return {"source": {"type": "mmrec", "path": str(path), **extra}}


def test_a_bare_inter_file_is_enough(tmp_path):
    folder = tmp_path / "sports"
    split = write_folder(folder, "sports", mappings=False)
    raw, out = tmp_path / "raw", tmp_path / "data"
    manifest = acquire("sports", spec_of(folder), raw, progress=False)
    assert set(manifest["files"]) == {"sports.inter"}
    stats = prepare_dataset("sports", spec_of(folder), raw, out)
    assert (stats["users"], stats["items"], stats["interactions"]) == (30, 40, len(split))
    # without mappings the ids are their own names, as in MMRec
    assert pd.read_parquet(out / "items.parquet")["asin"].tolist()[:3] == ["0", "1", "2"]
    users = pd.read_csv(out / "u_id_mapping.csv", sep="\t", dtype=str)
    assert users["user_id"].tolist() == [str(n) for n in range(30)]
    assert (out / "sports.inter").read_bytes() == (folder / "sports.inter").read_bytes()
    data = load_interactions(out)
    assert np.array_equal(np.bincount(data.split, minlength=3),
                          np.bincount(split["split"], minlength=3))


def test_one_mapping_file_is_used_and_the_other_side_named_by_id(tmp_path):
    folder = tmp_path / "clothing"
    write_folder(folder, "clothing")
    (folder / "u_id_mapping.csv").unlink()
    loaded = read_mmrec(folder, "clothing")
    assert loaded.users[3] == "3" and loaded.items[3] == "I3"


def test_path_may_name_the_inter_file(tmp_path):
    folder = tmp_path / "downloads"  # not the dataset's name
    write_folder(folder, "sports", mappings=False)
    raw = tmp_path / "raw"
    manifest = acquire("sports", spec_of(folder / "sports.inter"), raw, progress=False)
    assert set(manifest["files"]) == {"sports.inter"}
    stats = prepare_dataset("sports", spec_of(folder / "sports.inter"), raw, tmp_path / "data")
    assert stats["users"] == 30
    with pytest.raises(ValueError, match=r"source\.name 'baby' does not match .*sports\.inter"):
        acquire("sports", spec_of(folder / "sports.inter", name="baby"), tmp_path / "raw2")


def test_a_missing_inter_file_names_what_was_looked_for(tmp_path):
    folder = tmp_path / "data" / "sports"
    write_folder(folder, "Sports_and_Outdoors", mappings=False)
    raw = tmp_path / "raw"
    with pytest.raises(FileNotFoundError) as error:
        acquire("sports", spec_of(folder), raw, progress=False)
    message = str(error.value)
    for words in (str(folder / "sports.inter"), "the folder's name",
                  "['Sports_and_Outdoors.inter']", "u_id_mapping.csv", "optional"):
        assert words in message, (words, message)
    assert not raw.exists() or not any(raw.iterdir())  # nothing copied before the check
    with pytest.raises(FileNotFoundError, match=r"nowhere: not found \(source\.path: the "
                                                r"folder holding <name>\.inter"):
        acquire("sports", spec_of(tmp_path / "nowhere"), raw, progress=False)


def test_mapping_files_left_from_an_earlier_acquire_are_removed(tmp_path):
    with_maps, bare = tmp_path / "a" / "toy", tmp_path / "b" / "toy"
    write_folder(with_maps, "toy")
    write_folder(bare, "toy", mappings=False)
    raw = tmp_path / "raw"
    acquire("toy", spec_of(with_maps), raw, progress=False)
    assert (raw / "u_id_mapping.csv").exists()
    acquire("toy", spec_of(bare), raw, progress=False)
    assert not (raw / "u_id_mapping.csv").exists() and not (raw / "i_id_mapping.csv").exists()
    stats = prepare_dataset("toy", spec_of(bare), raw, tmp_path / "data")
    assert pd.read_parquet(tmp_path / "data" / "items.parquet")["asin"].iloc[5] == "5"
    assert stats["items"] == 40
