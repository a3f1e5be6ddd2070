"""The MMRec fidelity script on a tiny MMRec-format folder: reading, grid mode, summary."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))

import fidelity_mmrec  # noqa: E402
from crane import files  # noqa: E402


def write_folder(folder: Path, labels: list[int] | None = None, name: str = "baby") -> Path:
    """40 users x 8 items each out of 30: six training, one validation, one test item."""
    rng = np.random.default_rng(0)
    rows = []
    for user in range(40):
        for rank, item in enumerate(rng.choice(30, size=8, replace=False)):
            rows.append((user, int(item), 5, 0, 0 if rank < 6 else rank - 5))
    frame = pd.DataFrame(rows, columns=["userID", "itemID", "rating", "timestamp", "x_label"])
    if labels is not None:
        frame.loc[:len(labels) - 1, "x_label"] = labels
    folder.mkdir(parents=True, exist_ok=True)
    frame.to_csv(folder / f"{name}.inter", sep="\t", index=False)
    return folder


def test_bad_split_label_is_named_with_its_line(tmp_path):
    folder = write_folder(tmp_path / "bad", labels=[0, 0, 3])
    with pytest.raises(ValueError, match=r"baby.inter: line 4: x_label"):
        fidelity_mmrec.read_mmrec_folder(folder)


def test_grid_selects_on_validation_and_reuses_mmrecs_point(tmp_path, capsys):
    folder, out = write_folder(tmp_path / "tiny"), tmp_path / "out"
    fidelity_mmrec.main(["--folder", str(folder), "--models", "bpr", "--seeds", "1", "2",
                         "--max-epochs", "2", "--threads", "1", "--grid", "--out", str(out)])
    entry = files.read_json(out / "summary.json")["bpr_grid"]
    table = entry["selection"]["table"]
    assert len(table) == 7                               # bpr.yaml's grid
    best_valid = max(row["valid"] for row in table)
    first_best = next(row for row in table if row["valid"] == best_valid)
    assert entry["hparams"] == first_best["hparams"]     # validation, ties to grid order
    # MMRec's own point (reg_weight 1e-4) lives in the plain layout, the 6 others under grid/
    assert (out / "bpr" / "seed1" / "metrics.json").exists()
    assert len(list((out / "bpr" / "grid").iterdir())) == 6
    recall = entry["metrics"]["recall@20"]
    assert recall["mmrec"] == fidelity_mmrec.PUBLISHED["bpr"][0]
    assert len(recall["values"]) == 2
    assert recall["within"] == (abs(recall["mean"] - recall["mmrec"]) <= recall["tolerance"])
    assert "selected on validation" in capsys.readouterr().out


def test_parallel_jobs_give_the_runs_one_process_gives(tmp_path):
    folder = write_folder(tmp_path / "tiny")
    summaries = {}
    for jobs in (1, 2):
        out = tmp_path / f"jobs{jobs}"
        fidelity_mmrec.main(["--folder", str(folder), "--models", "lightgcn", "--seeds", "1", "2",
                             "3", "--max-epochs", "3", "--threads", "1", "--jobs", str(jobs),
                             "--out", str(out)])
        summaries[jobs] = files.read_json(out / "summary.json")["lightgcn"]["metrics"]
        assert sorted(p.name for p in (out / "lightgcn").iterdir()) == ["seed1", "seed2", "seed3"]
    assert summaries[2] == summaries[1]


def test_any_folder_and_inter_file_name(tmp_path, capsys):
    folder = write_folder(tmp_path / "downloads", name="sports")
    inter = folder / "sports.inter"
    assert fidelity_mmrec.inter_file(folder, None) == inter        # the folder's only .inter
    assert fidelity_mmrec.inter_file(inter, None) == inter         # the file itself
    assert fidelity_mmrec.inter_file(folder, "sports") == inter
    assert fidelity_mmrec.read_mmrec_folder(folder, "sports").n_users == 40
    with pytest.raises(FileNotFoundError, match=r"downloads/clothing\.inter: MMRec interaction "
                                                r"file not found; the folder has "
                                                r"\['sports\.inter'\]"):
        fidelity_mmrec.inter_file(folder, "clothing")
    write_folder(folder, name="clothing")
    with pytest.raises(ValueError, match=r"2 \.inter files \(\['clothing\.inter', "
                                         r"'sports\.inter'\]\): choose one with --name"):
        fidelity_mmrec.inter_file(folder, None)
    fidelity_mmrec.main(["--folder", str(inter), "--models", "bpr", "--timing", "1",
                         "--threads", "1"])
    assert f"{inter}: 40 users, 30 items" in capsys.readouterr().out
