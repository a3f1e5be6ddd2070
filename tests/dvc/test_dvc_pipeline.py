"""`dvc repro` over the Snakemake workflow, in a throw-away git repository.

A copy of the project with a tiny config: repro runs every stage; a second repro runs none;
one changed parameter reruns exactly the stages that read it (and Snakemake redoes no job
upstream of them); with each study's dvc.lock committed, `dvc metrics diff HEAD~1` compares
the two; push to and pull from the default local remote restore the outputs.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent

pytestmark = pytest.mark.e2e


def run(cmd: list[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", DVC_NO_ANALYTICS="1",
               PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
               GIT_AUTHOR_NAME="test", GIT_AUTHOR_EMAIL="test@example.org",
               GIT_COMMITTER_NAME="test", GIT_COMMITTER_EMAIL="test@example.org")
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=1500)
    if check and done.returncode != 0:
        pytest.fail(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}")
    return done


def project_files() -> list[str]:
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
                            cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return [f for f in listed.split("\0") if f and (ROOT / f).is_file()]


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    repo = tmp_path_factory.mktemp("dvc") / "project"
    for name in project_files():
        if name.startswith(("tests/", "benchmarks/")):
            continue
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, repo / name)
    config = yaml.safe_load((ROOT / "config" / "test.yaml").read_text())
    config.update(results="results", models=["mostpop", "bpr"])
    config.pop("ablations"), config.pop("sensitivity")
    config["training"]["epochs"] = 3
    (repo / "config" / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    run([sys.executable, "-m", "crane", "dvc-yaml"], repo)
    run(["git", "init", "-q"], repo)
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "project"], repo)
    return repo


def ran_stages(output: str) -> set[str]:
    return {line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage")}


def test_repro_then_nothing_then_exactly_the_dependent_stages(repo):
    first = run(["dvc", "repro"], repo)
    assert ran_stages(first.stdout) == {"data_demo", "features_demo", "train_demo", "tables"}
    metrics = json.loads((repo / "results/tables/metrics.json").read_text())
    assert set(metrics["demo"]) == {"mostpop", "bpr"}

    second = run(["dvc", "repro"], repo)
    assert ran_stages(second.stdout) == set(), second.stdout
    run(["git", "add", "dvc.lock"], repo)  # what the README asks: the lock with the study
    run(["git", "commit", "-qm", "study with patience 2"], repo)

    features = repo / "results/demo/features/text-minilm/features.npy"
    stamp = features.stat().st_mtime_ns
    config_path = repo / "config" / "config.yaml"
    config = yaml.safe_load(config_path.read_text())
    config["training"]["patience"] = 1
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    third = run(["dvc", "repro"], repo)
    assert ran_stages(third.stdout) == {"train_demo", "tables"}, third.stdout
    assert features.stat().st_mtime_ns == stamp, "Snakemake redid feature extraction"
    manifest = json.loads((repo / "results/demo/runs/final/bpr/seed2024/manifest.json").read_text())
    assert "patience" in json.dumps(manifest) and '"patience": 1' in json.dumps(manifest)

    status = run(["dvc", "status"], repo)
    assert "up to date" in status.stdout
    run(["git", "add", "dvc.lock", "config/config.yaml"], repo)
    run(["git", "commit", "-qm", "study with patience 1"], repo)


def test_metrics_diff_compares_with_the_previous_commit(repo):
    diff = json.loads(run(["dvc", "metrics", "diff", "HEAD~1", "--all", "--json"], repo).stdout)
    recall = diff["results/tables/metrics.json"]["demo.bpr.recall@20"]
    # both sides are there: the previous commit's lock points at its metrics in the cache
    assert isinstance(recall["old"], float) and isinstance(recall["new"], float), recall


def test_metrics_are_declared(repo):
    shown = run(["dvc", "metrics", "show", "--json"], repo)
    assert "recall@20" in shown.stdout


def test_push_and_pull_through_the_default_local_remote(repo):
    run(["dvc", "push"], repo)
    storage = repo / ".dvc-storage"
    assert storage.is_dir() and any(storage.rglob("*"))
    metrics = repo / "results/demo/runs/final/bpr/seed2024/metrics.json"
    expected = metrics.read_text()
    shutil.rmtree(repo / "results/demo/runs")
    shutil.rmtree(repo / ".dvc" / "cache")
    run(["dvc", "pull"], repo)
    assert metrics.read_text() == expected
