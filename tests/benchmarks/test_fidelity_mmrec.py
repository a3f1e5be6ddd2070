"""The MMRec fidelity script on a tiny MMRec-format folder (reading, reference file, features,
grid mode, summary, verdict), and for two epochs on the real Baby folder when it is present."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
BABY = REPO.parent / "shared" / "data" / "amazon2014-baby"
sys.path.insert(0, str(REPO / "benchmarks"))

import fidelity_mmrec  # noqa: E402
from crane import files  # noqa: E402
from tests.git_ignore import ignored_by_git  # noqa: E402


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
    published = fidelity_mmrec.load_reference(fidelity_mmrec.REFERENCE_FILE)["published"]
    assert recall["mmrec"] == published["bpr"]["recall@20"]
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


def test_git_keeps_each_finished_runs_record_and_no_checkpoint(tmp_path):
    """results/fidelity_mmrec/ is tracked for the metrics.json docs/fidelity.md's table is
    recomputed from (and each run's history), never for checkpoints or per-user metrics."""
    folder, out = write_folder(tmp_path / "tiny"), tmp_path / "out"
    fidelity_mmrec.main(["--folder", str(folder), "--models", "bpr", "--seeds", "1",
                         "--max-epochs", "2", "--threads", "1", "--out", str(out)])
    written = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert {"bpr/seed1/metrics.json", "bpr/seed1/history.csv"} <= written
    names = sorted(written | {"bpr/seed1/checkpoint.pt"})
    as_in_repo = [f"results/fidelity_mmrec/{name}" for name in names]
    ignored = ignored_by_git(as_in_repo)
    kept = [name for name, path in zip(names, as_in_repo) if path not in ignored]
    assert kept == ["bpr/seed1/history.csv", "bpr/seed1/metrics.json"]


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


def write_features(folder: Path, n_items: int = 30, constant: bool = False) -> Path:
    rng = np.random.default_rng(1)
    image = np.abs(rng.standard_normal((n_items, 12))).astype(np.float32)
    text = rng.standard_normal((n_items, 6)).astype(np.float32)
    if constant:
        text[:] = 1.0
    np.save(folder / "image_feat.npy", image)
    np.save(folder / "text_feat.npy", text)
    return folder


def write_reference(path: Path, models: dict) -> Path:
    path.write_text(yaml.safe_dump({"models": models}, sort_keys=False))
    return path


def test_reference_file_errors_name_the_key(tmp_path):
    figures = {"recall@20": [0.05, 0.06], "ndcg@20": [0.02, 0.03]}
    cases = [
        ({"nosuchmodel": {"point": {}, "seeds": [1, 2], "test": figures}},
         r"models\.nosuchmodel: not a model of ours"),
        ({"vbpr": {"point": {}, "seeds": [1, 2]}}, r"models\.vbpr: missing `test`"),
        ({"vbpr": {"point": {}, "seeds": [1], "test": figures}},
         r"models\.vbpr\.test\.recall@20: 2 value\(s\) for 1 seed\(s\)"),
        ({"vbpr": {"point": {}, "seeds": [1, 2], "test": {"recall@20": [0.1, 0.2]}}},
         r"models\.vbpr\.test: missing \['ndcg@20'\]"),
    ]
    for models, message in cases:
        with pytest.raises(ValueError, match=message):
            fidelity_mmrec.load_reference(write_reference(tmp_path / "ref.yaml", models))
    # a point lists what differs from our defaults: the rest is filled in
    entry = fidelity_mmrec.load_reference(write_reference(
        tmp_path / "ref.yaml", {"bm3": {"point": {"dropout": 0.5}, "seeds": [1, 2],
                                        "test": figures}}))["models"]["bm3"]
    assert entry["point"] == {"embedding_size": 64, "n_layers": 1, "reg_weight": 0.1,
                              "dropout": 0.5, "cl_weight": 2.0}


def test_verdict_uses_the_standard_error_of_the_difference():
    ours = [{"test": {"recall@20": r, "ndcg@20": n}}
            for r, n in ((0.050, 0.0269), (0.054, 0.0270), (0.058, 0.0271))]
    target = {"test": {"recall@20": [0.040, 0.046, 0.052], "ndcg@20": [0.0270, 0.0271, 0.0272]}}
    rows = fidelity_mmrec.compare(ours, target)
    recall = rows["recall@20"]
    # SEMs 0.0023094 and 0.0034641: SE of the difference sqrt(sum of squares) = 0.0041633
    assert recall["se_difference"] == pytest.approx(0.0041633, abs=1e-7)
    assert recall["tolerance"] == pytest.approx(2 * 0.0041633, abs=1e-6)  # above 5 % of 0.046
    assert recall["gap_percent"] == pytest.approx(100 * 0.008 / 0.046)
    assert recall["within"]                 # 0.008 apart, allowed 0.0083
    ndcg = rows["ndcg@20"]                  # 0.027 vs 0.0271: 5 % of MMRec's mean rules
    assert ndcg["within"] and ndcg["tolerance"] == pytest.approx(0.05 * 0.0271)
    target["test"]["recall@20"] = [0.044, 0.045, 0.046]         # tighter reference
    assert not fidelity_mmrec.compare(ours, target)["recall@20"]["within"]


def test_content_model_reads_the_mmrec_feature_files(tmp_path, capsys):
    folder, out = write_folder(tmp_path / "tiny"), tmp_path / "out"
    figures = {"recall@20": [0.3, 0.32], "ndcg@20": [0.15, 0.16]}
    reference = write_reference(tmp_path / "ref.yaml", {
        "vbpr": {"point": {"reg_weight": 1.0e-3}, "mmrec_point": {"reg_weight": 1.0e-3},
                 "seeds": [7, 8], "test": figures}})
    args = ["--folder", str(folder), "--reference", str(reference), "--seeds", "1", "2",
            "--max-epochs", "2", "--threads", "1", "--out", str(out)]
    with pytest.raises(FileNotFoundError, match=r"tiny: vbpr reads \['image_feat\.npy', "
                                                r"'text_feat\.npy'\], not found there"):
        fidelity_mmrec.main(args)
    write_features(folder, constant=True)
    with pytest.raises(ValueError, match=r"text_feat\.npy are degenerate: 1 distinct row"):
        fidelity_mmrec.main(args)
    write_features(folder)
    fidelity_mmrec.main(args)
    entry = files.read_json(out / "summary.json")["vbpr"]
    assert entry["hparams"] == {"embedding_size": 64, "reg_weight": 1.0e-3}
    assert sorted(entry["features"]) == ["image", "text"]
    assert entry["metrics"]["recall@20"]["mmrec_values"] == [0.3, 0.32]
    assert entry["reference"] == "MMRec on the Baby folder, seeds 7, 8"
    metrics = files.read_json(out / "vbpr" / "seed1" / "metrics.json")
    assert metrics["test"]["recall@20"] == entry["metrics"]["recall@20"]["values"][0]
    # the features are the model's input: moving them elsewhere changes nothing
    moved = tmp_path / "elsewhere"
    moved.mkdir()
    write_features(moved)
    (folder / "image_feat.npy").unlink()
    fidelity_mmrec.main(args[:-1] + [str(tmp_path / "out2"), "--features", str(moved)])
    again = files.read_json(tmp_path / "out2" / "summary.json")["vbpr"]
    assert again["metrics"]["recall@20"]["values"] == entry["metrics"]["recall@20"]["values"]
    capsys.readouterr()
    fidelity_mmrec.main(["--reference", str(reference), "--out", str(out), "--seeds", "1", "2",
                         "--markdown"])
    table = capsys.readouterr().out.splitlines()
    assert table[0].startswith("| model | point | metric | ours, per seed |")
    assert len(table) == 4                                  # header, rule, two metrics
    recall = entry["metrics"]["recall@20"]
    assert table[2].startswith(f"| VBPR | reg_weight 0.001 | recall@20 | "
                               f"{recall['values'][0]:.4f} {recall['values'][1]:.4f} | "
                               f"{recall['mean']:.4f} | 0.3000 0.3200 | 0.3100 |")
    # a model whose seeds are not all trained has no row
    fidelity_mmrec.main(["--reference", str(reference), "--out", str(out), "--seeds", "1", "2",
                         "3", "--markdown"])
    assert len(capsys.readouterr().out.splitlines()) == 2


def test_the_documented_table_is_recomputed_from_the_kept_records():
    """docs/fidelity.md's results table is `--markdown` over the records git keeps, for
    every content model of the reference file: no row is typed in by hand."""
    reference = fidelity_mmrec.load_reference(fidelity_mmrec.REFERENCE_FILE)
    content = [m for m, entry in reference["models"].items() if entry["features"] != "none"]
    table = fidelity_mmrec.markdown_table(REPO / "results" / "fidelity_mmrec", reference,
                                          list(reference["models"]), [1, 2, 3, 4, 5])
    labels = {line.split(" | ")[0][2:] for line in table.splitlines()[2:]}
    assert labels == {fidelity_mmrec.model_label(m) for m in content}
    assert table in (REPO / "docs" / "fidelity.md").read_text()


def test_a_feature_fingerprint_forgives_rounding_and_nothing_else():
    """Machines round make_features.py's SVD differently, by a float32 unit in the last
    place: that must match, while a new seed, a moved row or column, or a scale must not."""
    rng = np.random.default_rng(3)
    features = rng.standard_normal((200, 16)).astype(np.float32)
    expected = fidelity_mmrec.feature_fingerprint(features)
    rounded = np.nextafter(features, np.where(rng.random(features.shape) < 0.5, np.inf, -np.inf))
    assert np.any(rounded != features)
    assert fidelity_mmrec.fingerprint_mismatches(
        fidelity_mmrec.feature_fingerprint(rounded), expected) == []
    rows_swapped = features[[1, 0, *range(2, 200)]]
    columns_swapped = features[:, [1, 0, *range(2, 16)]]
    for changed in (rng.standard_normal((200, 16)), rows_swapped, columns_swapped,
                    features * 1.001, features[:199]):
        assert fidelity_mmrec.fingerprint_mismatches(
            fidelity_mmrec.feature_fingerprint(changed), expected) != []


@pytest.mark.realdata
@pytest.mark.skipif(not (BABY / "mmrec-split" / "baby.inter").exists(),
                    reason=f"real data not available at {BABY}")
def test_two_epochs_on_the_real_baby_folder_with_generated_features(tmp_path, capsys):
    import subprocess
    features = tmp_path / "features"
    features.mkdir()
    subprocess.run([sys.executable, str(BABY / "make_features.py"), str(BABY / "mmrec-split"),
                    str(features)], check=True, capture_output=True)
    reference = fidelity_mmrec.load_reference(fidelity_mmrec.REFERENCE_FILE)
    fidelity_mmrec.main(["--models", "vbpr", "--features", str(features), "--seeds", "1",
                         "--max-epochs", "2", "--threads", "2", "--out", str(tmp_path / "out")])
    entry = files.read_json(tmp_path / "out" / "summary.json")["vbpr"]
    assert entry["epochs_run"] == [2]
    assert entry["hparams"] == reference["models"]["vbpr"]["point"]
    for name in ("image_feat.npy", "text_feat.npy"):   # the features MMRec read
        found = fidelity_mmrec.feature_fingerprint(np.load(features / name))
        assert fidelity_mmrec.fingerprint_mismatches(found, reference["features"][name]) == []
    recall = entry["metrics"]["recall@20"]
    assert 0.02 < recall["mean"] < 0.2        # learned something in two epochs
    assert "vbpr at" in capsys.readouterr().out
