"""Raw record readers: JSON lines, Python literals, CSV; gzip; malformed-line accounting."""

from __future__ import annotations

import gzip
import json
import logging

import numpy as np
import pytest

from crane.data.parse import ParseError, read_csv_table, read_json_lines, read_literal_lines


def _write(path, lines, compress=False):
    text = "\n".join(lines) + "\n"
    if compress:
        with gzip.open(path, "wt", encoding="utf-8") as fh:
            fh.write(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("compress", [False, True])
def test_json_lines_fields_and_missing_values(tmp_path, compress):
    lines = [json.dumps({"reviewerID": "A1", "asin": "B1", "overall": 5.0, "extra": 1}),
             "",  # blank lines are not records
             json.dumps({"reviewerID": "A2", "asin": "B2"})]
    # A gzip file named like plain text is still read as gzip (magic bytes decide).
    path = _write(tmp_path / "reviews.json", lines, compress)
    frame = read_json_lines(path, ["reviewerID", "asin", "overall"])
    assert frame["reviewerID"].tolist() == ["A1", "A2"]
    assert frame["overall"].iloc[0] == 5.0 and np.isnan(frame["overall"].iloc[1])


def _lines_with_bad(n_good, bad_at):
    lines = [json.dumps({"u": f"A{i}", "i": "B"}) for i in range(n_good)]
    lines.insert(bad_at - 1, '{"u": "broken", ')
    return lines


def test_malformed_line_is_skipped_and_reported_with_its_line_number(tmp_path, caplog):
    path = _write(tmp_path / "r.json", _lines_with_bad(999, bad_at=500))
    with caplog.at_level(logging.WARNING):
        frame = read_json_lines(path, ["u", "i"], max_malformed_share=0.002)
    assert len(frame) == 999
    assert f"{path}:500: malformed line skipped" in caplog.text
    assert "1 of 1000 lines malformed" in caplog.text


def test_malformed_share_above_the_limit_stops(tmp_path):
    path = _write(tmp_path / "r.json", _lines_with_bad(999, bad_at=500))
    with pytest.raises(ParseError, match=r"r\.json: 1 of 1000 lines are malformed.*line 500"):
        read_json_lines(path, ["u", "i"], max_malformed_share=0.0005)


def test_non_mapping_json_line_is_malformed(tmp_path):
    path = _write(tmp_path / "r.json", [json.dumps({"u": "A"}), "[1, 2]"])
    with pytest.raises(ParseError, match="line 2: expected a mapping, got list"):
        read_json_lines(path, ["u"])


def test_literal_lines_parse_python_dicts_without_executing_code(tmp_path):
    marker = tmp_path / "executed"
    lines = [repr({"asin": "B1", "categories": [["Baby", "Nursery"]], "price": 3.5}),
             f"__import__('pathlib').Path({str(marker)!r}).touch()",
             "{['unhashable']: 1}",
             repr({"asin": "B2", "title": "it's \"quoted\""})]
    path = _write(tmp_path / "meta.json.gz", lines, compress=True)
    frame = read_literal_lines(path, ["asin", "categories", "title"], max_malformed_share=0.5)
    assert len(frame) == 2
    assert frame["asin"].tolist() == ["B1", "B2"]
    assert frame["categories"].iloc[0] == [["Baby", "Nursery"]]
    assert frame["title"].iloc[1] == 'it\'s "quoted"'
    assert not marker.exists()


def test_keep_filter_and_required_field(tmp_path):
    path = _write(tmp_path / "meta.json", [repr({"asin": a, "title": a.lower()})
                                          for a in ("B1", "B2", "B3")])
    frame = read_literal_lines(path, ["asin", "title"], keep=("asin", {"B1", "B3"}))
    assert frame["asin"].tolist() == ["B1", "B3"]
    nothing = read_literal_lines(path, ["asin", "title"], required=["asin"], keep=("asin", {"Z"}))
    assert nothing.empty and list(nothing.columns) == ["asin", "title"]
    with pytest.raises(ParseError, match=r"meta\.json: column\(s\) \['imUrl'\] missing"):
        read_literal_lines(path, ["asin", "imUrl"], required=["asin", "imUrl"])


def test_truncated_gzip_names_the_file(tmp_path):
    path = _write(tmp_path / "reviews_Baby_5.json.gz",
                  [json.dumps({"u": f"A{i}", "i": "B" * 50}) for i in range(5000)],
                  compress=True)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ParseError, match=r"reviews_Baby_5\.json\.gz: corrupt or truncated gzip"):
        read_json_lines(path, ["u", "i"])


def test_garbage_after_gzip_magic_names_the_file(tmp_path):
    path = tmp_path / "meta_Baby.json.gz"
    path.write_bytes(b"\x1f\x8b" + np.random.default_rng(0).bytes(500))
    with pytest.raises(ParseError, match=r"meta_Baby\.json\.gz: corrupt"):
        read_literal_lines(path, ["asin"])


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.json"):
        read_json_lines(tmp_path / "nothing.json", ["u"])


def test_csv_with_header_renames_and_checks_columns(tmp_path):
    path = _write(tmp_path / "pairs.csv.gz", ["reviewerID,asin", "A1,B1", "A2,B2"],
                  compress=True)
    frame = read_csv_table(path, {"reviewerID": "user", "asin": "item"})
    assert frame.to_dict("list") == {"user": ["A1", "A2"], "item": ["B1", "B2"]}
    with pytest.raises(ParseError, match=r"pairs\.csv\.gz: column\(s\) \['user_id'\] not found"):
        read_csv_table(path, {"user_id": "user", "asin": "item"})


def test_csv_malformed_rows_are_reported_with_physical_line_numbers(tmp_path, caplog):
    lines = ["A1,B1,5.0,100", "A2,B2,4.0,200,extra", "", "A3,B3,five,300", "A4,B4,3,400"]
    path = _write(tmp_path / "ratings_Baby.csv", lines)
    spec = dict(header=False, names=["user", "item", "rating", "time"],
                numeric=["rating", "timestamp"])
    columns = {"user": "user", "item": "item", "rating": "rating", "time": "timestamp"}
    with caplog.at_level(logging.WARNING):
        frame = read_csv_table(path, columns, max_malformed_share=0.5, **spec)
    assert frame["user"].tolist() == ["A1", "A4"]
    assert frame["rating"].tolist() == [5.0, 3.0]
    assert "ratings_Baby.csv:2: malformed line skipped" in caplog.text
    assert "ratings_Baby.csv:4: malformed line skipped: rating is not a number: 'five'" \
        in caplog.text
    with pytest.raises(ParseError, match=r"2 of 4 lines are malformed"):
        read_csv_table(path, columns, max_malformed_share=0.001, **spec)


def test_corrupt_gzip_csv_names_the_file(tmp_path):
    path = _write(tmp_path / "pairs.csv.gz", ["reviewerID,asin"] +
                  [f"A{i},B{i}" for i in range(20000)], compress=True)
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(ParseError, match=r"pairs\.csv\.gz: corrupt or truncated gzip"):
        read_csv_table(path, {"reviewerID": "user", "asin": "item"})
