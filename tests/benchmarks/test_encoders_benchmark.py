"""benchmarks/encoders.py: text encoders timed in fresh, alternating processes on real items."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))

import encoders  # noqa: E402
from crane.data.prepare import write_items  # noqa: E402
from crane.data.sources._common import ITEM_COLUMNS  # noqa: E402


def tiny_items(folder: Path) -> Path:
    texts = ["digital caliper 150 mm", "nitrile gloves, box of 100", "", "lab notebook"]
    items = pd.DataFrame({"item_id": range(4), "asin": [f"A{i}" for i in range(4)],
                          "title": "", "brand": "", "categories": [[] for _ in range(4)],
                          "description": "", "image_url": "", "text": texts})[ITEM_COLUMNS]
    folder.mkdir(parents=True)
    write_items(folder / "items.parquet", items)
    return folder / "items.parquet"


def test_each_encoder_runs_in_fresh_processes_with_median_and_spread(tmp_path, capsys):
    items = tiny_items(tmp_path / "data")
    assert encoders.main(["--items", str(items), "--encoders", "all-MiniLM-L6-v2",
                          "--repeats", "2",
                          "--json", str(tmp_path / "rows.json")]) == 0
    table = capsys.readouterr().out
    assert "| all-MiniLM-L6-v2 | 384 | 3 |" in table      # the empty text is not encoded
    rows = pd.read_json(tmp_path / "rows.json")
    assert list(rows["runs"]) == [2]
    assert (rows["min"] <= rows["items_per_s"]).all() and (rows["items_per_s"] <= rows["max"]).all()
