"""A study continued from the run records git keeps (results/README.md).

The Scientific study keeps each finished final run's record in git, never its checkpoints,
data, features or graphs (.gitignore). These tests check, on a tiny study whose results folder
stands in for results/scientific, that those patterns keep what the tables need, and that a
fresh checkout holding only the records, continued the way results/README.md says, trains
only the runs without a record, while the other order retrains every run.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from _tiny_workflow import TINY, snakemake
from crane.study_summary import load_config
from tests.git_ignore import ignored_by_git

pytestmark = pytest.mark.e2e

CONFIG = {**TINY, "results": "results", "models": ["bpr", "vbpr"]}
# results/README.md's continuation, without the Snakemake arguments the helper adds itself:
# rebuild every job's inputs, then mark the records newer than those inputs.
REBUILD_INPUTS = ("--omit-from", "train_final")
RECORDS = "results/*/runs/final/*/*/metrics.json"
# A planned job's output line (its input lines list the finished runs as well).
PLANNED_RUN = re.compile(r"output: \S*/runs/final/(\w+)/seed\d+/metrics\.json")


REPO = Path(__file__).resolve().parents[2]
SCIENTIFIC = REPO / "results" / "scientific"


def tracked_by_git(results: Path) -> list[Path]:
    """The files under `results` that git would track if they were results/scientific's."""
    files = sorted(p for p in results.rglob("*") if p.is_file())
    names = [f"results/scientific/{p.relative_to(results).as_posix()}" for p in files]
    ignored = ignored_by_git(names)
    return [path for path, name in zip(files, names) if name not in ignored]


def planned_runs(output: str) -> set[str]:
    return {match.group(1) for match in PLANNED_RUN.finditer(output)}


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """The tiny study, run to the end."""
    workdir = tmp_path_factory.mktemp("finished")
    snakemake(workdir, CONFIG)
    return workdir


def checkout_of(finished: Path, into: Path, leave_out: str) -> Path:
    """What a fresh checkout would hold: the tracked records of every run but `leave_out`'s."""
    results = finished / "results"
    for path in tracked_by_git(results):
        relative = path.relative_to(finished)
        if f"/final/{leave_out}/" in f"/{relative.as_posix()}" or f"train_{leave_out}_" in path.name:
            continue
        (into / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, into / relative)
    return into


def test_git_keeps_each_final_runs_record_and_nothing_heavy(finished):
    kept = {p.relative_to(finished / "results").as_posix() for p in
            tracked_by_git(finished / "results")}
    for model in ("bpr", "vbpr"):
        run = f"demo/runs/final/{model}/seed2024"
        assert {f"{run}/{name}" for name in ("metrics.json", "user_metrics.parquet",
                                            "history.csv", "manifest.json")} <= kept
        assert f"demo/benchmarks/train_{model}_seed2024.tsv" in kept
        assert (finished / "results" / run / "checkpoint.pt").exists()
    assert all(name.startswith(("demo/runs/final/", "demo/benchmarks/train_")) for name in kept)
    assert not [name for name in kept if name.endswith((".pt", ".npy", ".npz"))]


def test_git_ignores_the_lock_a_running_study_leaves_in_its_results_folder():
    from crane.results_lock import LOCK_NAME
    name = f"results/scientific/{LOCK_NAME}"
    assert ignored_by_git([name]) == {name}


def test_a_checkout_continued_as_documented_trains_only_the_runs_without_a_record(
        finished, tmp_path):
    workdir = checkout_of(finished, tmp_path / "checkout", leave_out="vbpr")
    record = workdir / "results/demo/runs/final/bpr/seed2024/metrics.json"
    kept_bytes = record.read_bytes()

    # Run at once, Snakemake rebuilds the inputs first, and so retrains every run.
    assert planned_runs(snakemake(workdir, CONFIG, "-n")) == {"bpr", "vbpr"}

    snakemake(workdir, CONFIG, *REBUILD_INPUTS)
    records = [str(p.relative_to(workdir)) for p in workdir.glob(RECORDS)]
    assert records == ["results/demo/runs/final/bpr/seed2024/metrics.json"]
    snakemake(workdir, CONFIG, "--touch", *records)
    planned = snakemake(workdir, CONFIG, "-n")
    assert planned_runs(planned) == {"vbpr"}, planned
    snakemake(workdir, CONFIG)
    assert record.read_bytes() == kept_bytes
    table = pd.read_csv(workdir / "results/tables/main.csv")
    assert {"bpr", "vbpr"} <= set(table["model"])


def finished_models(dataset: str, config: dict) -> list[str]:
    """The config's models, in its order, whose every seed has a kept record on `dataset`."""
    final = SCIENTIFIC / dataset / "runs" / "final"
    return [m for m in config["models"]
            if all((final / m / f"seed{s}" / "metrics.json").exists() for s in config["seeds"])]


@pytest.mark.parametrize("dataset", ["scientific", "scientific_llo"])
def test_the_readme_table_of_each_scientific_split_is_recomputed_from_the_kept_records(
        dataset, tmp_path):
    """The README's Scientific tables are `crane tables` over the records git keeps, every
    model whose five seeds have finished: no row is typed in by hand, none goes stale."""
    config = load_config([REPO / "config" / "scientific.yaml"])
    models = finished_models(dataset, config)
    assert models, f"no model has finished every seed on {dataset}"
    done = subprocess.run(
        [sys.executable, "-m", "crane", "tables", "--results", str(SCIENTIFIC),
         "--out", str(tmp_path), "--datasets", dataset, "--models", *models,
         "--seeds", *map(str, config["seeds"]), "--parts", "main"],
        cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    table = "\n".join(line for line in (tmp_path / "main.md").read_text().splitlines()
                      if line.startswith("|"))
    assert f"| Model | {dataset} Recall@10 |" in table
    assert table in (REPO / "README.md").read_text()
