"""Issue 18, preprocessing: bad splits and bad raw or MMRec files stop `crane preprocess` with
an error naming the dataset or file (and line, key or value), never a dataset that fails
only at training time."""

from __future__ import annotations

import gzip
import json
import logging
from pathlib import Path

import pytest

from crane.data.mmrec_format import read_mmrec
from crane.data.parse import ParseError
from crane.data.prepare import prepare_dataset
from crane.data.sources import acquire, amazon2014, amazon2023

# --- a timestamped pairs file: user j rates item Bi at time 100 + 10 i + j ------------------
# Items B0 (times 100..103), B1 (110..113), B2 (120..123): a cut at 110 / 120 puts B0 in
# train, B1 in validation, B2 in test for every user.
TIMED_PAIRS = [(f"u{j}", f"B{i}", 100 + 10 * i + j) for j in range(4) for i in range(3)]


def prepare_timed(tmp_path: Path, split: dict) -> dict:
    path = tmp_path / "pairs.csv"
    path.write_text("reviewerID,asin,time\n"
                    + "".join(f"{u},{i},{t}\n" for u, i, t in TIMED_PAIRS))
    spec = {"source": {"type": "pairs_csv", "path": str(path), "timestamp_column": "time"},
            "kcore": 0, "split": split}
    acquire("timed", spec, tmp_path / "raw", progress=False)
    return prepare_dataset("timed", spec, tmp_path / "raw", tmp_path / "data")


def test_time_cut_without_bounds_names_the_missing_split_keys(tmp_path):
    """Probe: `split: {method: time_cut}` without valid_from/test_from gave a bare TypeError."""
    with pytest.raises(ValueError, match=r"split time_cut: missing option\(s\) "
                                         r"\['test_from', 'valid_from'\].*split\.valid_from"):
        prepare_timed(tmp_path, {"method": "time_cut"})
    with pytest.raises(ValueError, match=r"split time_cut: missing option\(s\) \['test_from'\]"):
        prepare_timed(tmp_path, {"method": "time_cut", "valid_from": 110})
    stats = prepare_timed(tmp_path, {"method": "time_cut", "valid_from": 110, "test_from": 120})
    assert (stats["train"], stats["valid"], stats["test"]) == (4, 4, 4)


@pytest.mark.parametrize("split,empty,advice", [
    ({"valid_from": 120, "test_from": 120}, "the validation split is empty",
     r"move split\.valid_from earlier"),
    ({"valid_from": 110, "test_from": 500}, "the test split is empty",
     r"move split\.test_from earlier"),
    ({"valid_from": 50, "test_from": 120}, "the train, validation and test splits are empty",
     r"move split\.valid_from later"),
])
def test_time_cut_leaving_a_split_empty_fails_preprocessing(tmp_path, split, empty, advice):
    """Probe: a time cut that left validation (or test) empty passed preprocessing."""
    with pytest.raises(ValueError, match=rf"dataset timed: {empty} \(.*\); .*{advice}"):
        prepare_timed(tmp_path, {"method": "time_cut", **split})
    assert not (tmp_path / "data").exists()


# --- a hand-written MMRec folder: 3 users, 3 items, each user one row per split -------------
HEADER = "userID\titemID\trating\ttimestamp\tx_label"
ROWS = [  # file lines 2..10
    "0\t0\t1\t100\t0", "0\t1\t1\t110\t1", "0\t2\t1\t120\t2",
    "1\t1\t1\t100\t0", "1\t2\t1\t110\t1", "1\t0\t1\t120\t2",
    "2\t2\t1\t100\t0", "2\t0\t1\t110\t1", "2\t1\t1\t120\t2",
]


def mmrec_folder(tmp_path: Path, rows: list[str], n_users: int = 3, n_items: int = 3) -> Path:
    folder = tmp_path / "mmrec" / "toy"
    folder.mkdir(parents=True)
    (folder / "toy.inter").write_text("\n".join([HEADER, *rows]) + "\n")
    (folder / "u_id_mapping.csv").write_text(
        "user_id\tuserID\n" + "".join(f"U{n}\t{n}\n" for n in range(n_users)))
    (folder / "i_id_mapping.csv").write_text(
        "asin\titemID\n" + "".join(f"I{n}\t{n}\n" for n in range(n_items)))
    return folder


def prepare_mmrec(tmp_path: Path, folder: Path) -> dict:
    spec = {"source": {"type": "mmrec", "path": str(folder)}}
    acquire("toy", spec, tmp_path / "raw", progress=False)
    return prepare_dataset("toy", spec, tmp_path / "raw", tmp_path / "data")


def test_header_only_inter_fails_preprocessing(tmp_path):
    """Probe: a header-only `.inter` (mmrec source) passed preprocessing."""
    folder = mmrec_folder(tmp_path, [])
    with pytest.raises(ValueError, match=r"dataset toy: the train, validation and test splits "
                                         r"are empty .*toy\.inter has no interaction rows"):
        prepare_mmrec(tmp_path, folder)
    assert not (tmp_path / "data").exists()


def test_inter_without_validation_rows_fails_preprocessing(tmp_path):
    """Probe: an MMRec split with no validation rows passed preprocessing."""
    rows = [row[:-1] + "0" if row.endswith("\t1") else row for row in ROWS]
    with pytest.raises(ValueError, match=r"dataset toy: the validation split is empty .*"
                                         r"toy\.inter has no row with x_label 1"):
        prepare_mmrec(tmp_path, mmrec_folder(tmp_path, rows))


def test_zero_byte_inter_names_the_file(tmp_path):
    """Probe: a 0-byte `.inter` said pandas' `No columns to parse from file`."""
    folder = mmrec_folder(tmp_path, ROWS)
    (folder / "toy.inter").write_bytes(b"")
    with pytest.raises(ValueError, match=r"toy\.inter: the file is empty \(0 bytes\)"):
        read_mmrec(folder, "toy")
    (folder / "toy.inter").write_text(HEADER + "\n")  # header only: read, then refused later
    assert len(read_mmrec(folder, "toy").interactions) == 0
    (folder / "u_id_mapping.csv").write_bytes(b"")
    with pytest.raises(ValueError, match=r"u_id_mapping\.csv: the file is empty \(0 bytes\)"):
        read_mmrec(folder, "toy")


def test_inter_with_unused_ids_is_an_error(tmp_path):
    """Probe: an `.inter` whose ids are not dense (an id of the mapping never used) was taken."""
    folder = mmrec_folder(tmp_path, ROWS, n_users=4)
    with pytest.raises(ValueError, match=r"toy\.inter: userID is not dense: 1 of the ids "
                                         r"0\.\.3 .* never occur.*e\.g\. 3"):
        read_mmrec(folder, "toy")
    rows = [row for row in ROWS if row.split("\t")[1] != "1"]  # item 1 in no row
    folder = mmrec_folder(tmp_path / "second", rows)
    with pytest.raises(ValueError, match=r"toy\.inter: itemID is not dense: .*e\.g\. 1"):
        read_mmrec(folder, "toy")


def test_inter_pair_in_two_splits_is_an_error(tmp_path):
    """Probe: the same (user, item) pair in two splits was taken silently."""
    rows = list(ROWS)
    rows[2] = "0\t0\t1\t120\t2"  # user 0's test item is its training item (line 2)
    with pytest.raises(ValueError, match=r"toy\.inter: lines 2 and 4: userID 0, itemID 0 is "
                                         r"in both the train and the test split"):
        read_mmrec(mmrec_folder(tmp_path, rows), "toy")


def test_inter_duplicate_rows_are_an_error_or_counted(tmp_path, caplog):
    """Probe: duplicate rows in an `.inter` were taken silently."""
    folder = mmrec_folder(tmp_path, ROWS + [ROWS[3]])  # line 11 copies line 5
    with pytest.raises(ValueError, match=r"toy\.inter: line 11 repeats line 5"):
        read_mmrec(folder, "toy")
    # The same pair again in its split at another time: MMRec's own recipe keeps such rows.
    folder = mmrec_folder(tmp_path / "second", ROWS + ["1\t1\t1\t105\t0"])
    with caplog.at_level(logging.WARNING):
        stats = prepare_mmrec(tmp_path / "second", folder)
    assert stats["repeated_pairs_dropped"] == 1 and stats["interactions"] == 9
    assert "toy.inter" in caplog.text and "line 11" in caplog.text


# --- Amazon raw review files ----------------------------------------------------------------
def review_lines(n: int, **bad: object) -> list[str]:
    """n 2014-style review lines; line 3 gets the fields in `bad`."""
    lines = []
    for row in range(n):
        record = {"reviewerID": f"u{row % 7}", "asin": f"B{row % 5}", "overall": 4.0,
                  "unixReviewTime": 1_300_000_000 + row}
        if row == 2:
            record.update(bad)
        lines.append(json.dumps(record))
    return lines


@pytest.mark.parametrize("bad", [
    {"overall": "abc"}, {"overall": ""}, {"overall": -1.0}, {"overall": True},
    {"unixReviewTime": "abc"}, {"unixReviewTime": ""}, {"unixReviewTime": -5},
])
def test_bad_rating_or_time_in_amazon_reviews_is_malformed(tmp_path, bad):
    """Probe: a bad `overall`/`unixReviewTime` became 1.0/0 instead of a malformed line."""
    path = tmp_path / "reviews_Baby_5.json.gz"
    path.write_bytes(gzip.compress(("\n".join(review_lines(20, **bad)) + "\n").encode()))
    source = {"type": "amazon2014", "category": "Baby", "meta": False}
    (field, value), = bad.items()
    with pytest.raises(ParseError, match=rf"reviews_Baby_5\.json\.gz: 1 of 20 lines are "
                                         rf"malformed.*line 3: {field}"):
        amazon2014.load_interactions(source, tmp_path, 0.01)
    frame = amazon2014.load_interactions(source, tmp_path, 0.1)  # tolerated: skipped, not 1.0/0
    assert len(frame) == 19 and 1_300_000_002 not in frame["timestamp"].tolist()


def test_bad_rating_in_amazon2023_and_ratings_csv_is_malformed(tmp_path):
    """Probe: the same for the 2023 `rating`/`timestamp` fields and the ratings CSV files."""
    lines = [json.dumps({"user_id": f"u{n}", "parent_asin": "P1", "rating": 5.0,
                         "timestamp": 1_600_000_000_000}) for n in range(9)]
    lines.append(json.dumps({"user_id": "u9", "parent_asin": "P1", "rating": "five",
                             "timestamp": 1_600_000_000_000}))
    (tmp_path / "Baby_Products.jsonl.gz").write_bytes(gzip.compress("\n".join(lines).encode()))
    with pytest.raises(ParseError, match=r"line 10: rating .*'five'"):
        amazon2023.load_interactions({"type": "amazon2023", "category": "Baby_Products"},
                                     tmp_path, 0.05)
    (tmp_path / "ratings_Baby.csv").write_text("u1,B1,5.0,100\nu2,B1,-3,100\nu3,B1,4.0,100\n")
    with pytest.raises(ParseError, match=r"line 2: rating is negative: '-3'"):
        amazon2014.load_interactions({"type": "amazon2014", "category": "Baby",
                                      "reviews": "ratings"}, tmp_path, 0.1)
