"""The README's DVC commands over the Snakemake workflow, in a throw-away git repository.

A copy of the project with a tiny config (the demo config's keys, fewer models and epochs).
Each test asks for the state it needs through module fixtures, so any test runs alone, in
any order, or under `-k`:

- `recorded`: `dvc repro` runs every stage; the README's record line (`dvc repro && git add
  dvc.lock && git commit`) runs none and commits the lock;
- `experiment`: on top of that, the README's `dvc exp run -S config/config.yaml:...` reruns
  exactly the stages that read the parameter (Snakemake redoes no job upstream of them), and
  the result is committed, so that `dvc metrics diff HEAD~1` has two studies to compare.

Tests that change DVC's remotes, or delete outputs to pull them back, work on a copy of the
repository, so that they leave the shared one as it was.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
DEMO = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
RESULTS = DEMO["results"]
TABLES = f"{RESULTS}/tables"
HEADLINE = f"{TABLES}/headline_metrics/demo"
MODELS = ["mostpop", "bpr"]

# The README's DVC commands, run as written ({folder}: a local folder standing in for shared
# storage). test_the_readme_shows_these_commands keeps the two in step.
REPRO = "dvc repro"
RECORD = 'dvc repro && git add dvc.lock && git commit -m "..."'
SHOW = "dvc metrics show"
DIFF = "dvc metrics diff HEAD~1"
PLOTS = "dvc plots show"
PUSH, PULL = "dvc push", "dvc pull"
EXPERIMENT = "dvc exp run -S config/config.yaml:training.learning_rate=0.005"
MOVE_LOCAL = "dvc remote modify local url {folder}"
ADD_TEAM = "dvc remote add -d team {folder}"

pytestmark = pytest.mark.e2e


def run(cmd: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    """One shell command line, as a user types it."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", DVC_NO_ANALYTICS="1",
               PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
               GIT_AUTHOR_NAME="test", GIT_AUTHOR_EMAIL="test@example.org",
               GIT_COMMITTER_NAME="test", GIT_COMMITTER_EMAIL="test@example.org")
    done = subprocess.run(["bash", "-c", cmd], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=1500)
    if check and done.returncode != 0:
        pytest.fail(f"{cmd} failed ({done.returncode}):\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}")
    return done


def project_files() -> list[str]:
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
                            cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return [f for f in listed.split("\0") if f and (ROOT / f).is_file()]


def ran_stages(output: str) -> set[str]:
    return {line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage")}


def copy_of(repo: Path, tmp_path: Path) -> Path:
    """The repository with its outputs, DVC cache and git history, for a test to change."""
    copy = tmp_path / "copy"
    shutil.copytree(repo, copy, symlinks=True)
    return copy


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    repo = tmp_path_factory.mktemp("dvc") / "project"
    for name in project_files():
        if name.startswith(("tests/", "benchmarks/")):
            continue
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, repo / name)
    config = yaml.safe_load((ROOT / "config" / "test.yaml").read_text())
    config.update(results=RESULTS, models=MODELS)
    config.pop("ablations"), config.pop("sensitivity")
    config["training"] = {**DEMO["training"], "epochs": 3, "patience": 2}
    (repo / "config" / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    run(f"{sys.executable} -m crane dvc-yaml", repo)
    run("git init -q && git add -A && git commit -qm project", repo)
    return repo


@pytest.fixture(scope="module")
def recorded(repo) -> dict[str, str]:
    """The study made and recorded: {"first": repro's output, "record": the record line's}."""
    first = run(REPRO, repo)
    record = run(RECORD, repo)
    return {"first": first.stdout, "record": record.stdout}


@pytest.fixture(scope="module")
def experiment(repo, recorded) -> dict:
    """A DVC experiment with another learning rate, committed on top of the recorded study."""
    features = repo / RESULTS / "demo/features/text-minilm/features.npy"
    stamp = features.stat().st_mtime_ns
    done = run(EXPERIMENT, repo)
    run("git add dvc.lock config/config.yaml && git commit -qm 'learning rate 0.005'", repo)
    return {"output": done.stdout, "features_unchanged": features.stat().st_mtime_ns == stamp}


def test_the_readme_shows_these_commands():
    readme = (ROOT / "README.md").read_text()
    for line in (REPRO, RECORD, SHOW, DIFF, PLOTS, PUSH, PULL, EXPERIMENT,
                 MOVE_LOCAL.split("{")[0], ADD_TEAM.split("{")[0]):
        assert line in readme, f"README.md no longer shows `{line}`: update it or this test"


def test_repro_runs_every_stage_then_none(repo, recorded):
    assert ran_stages(recorded["first"]) == {"data_demo", "features_demo", "train_demo", "tables"}
    assert ran_stages(recorded["record"]) == set(), recorded["record"]
    assert sorted(p.name for p in (repo / HEADLINE).iterdir()) == ["bpr.json", "mostpop.json"]
    log = run("git log --format=%s -- dvc.lock", repo).stdout.split("\n")
    assert "..." in log  # the lock is committed with the study


def test_an_experiment_reruns_exactly_the_stages_that_read_the_parameter(repo, experiment):
    assert ran_stages(experiment["output"]) == {"train_demo", "tables"}, experiment["output"]
    assert experiment["features_unchanged"], "Snakemake redid feature extraction"
    manifest = json.loads((repo / RESULTS / "demo/runs/final/bpr/seed2024/manifest.json")
                          .read_text())
    assert '"learning_rate": 0.005' in json.dumps(manifest)
    assert "up to date" in run("dvc status", repo).stdout


def test_metrics_show_prints_one_row_per_model(repo, recorded):
    lines = run(SHOW, repo).stdout.strip().splitlines()
    assert lines[0].split() == ["Path", "ndcg@20.mean", "recall@20.mean", "seeds"], lines[0]
    rows = {line.split()[0]: line.split()[1:] for line in lines[1:]}
    assert set(rows) == {f"{HEADLINE}/{m}.json" for m in MODELS}, lines
    for values in rows.values():  # one seed: a mean each and no spread
        assert len(values) == 3 and values[2] == "1", values


def test_metrics_diff_compares_with_the_previous_commit(repo, experiment):
    lines = run(DIFF, repo).stdout.strip().splitlines()
    assert lines[0].split() == ["Path", "Metric", "HEAD~1", "workspace", "Change"], lines
    # both sides are there: the previous commit's lock points at its metrics in the cache
    bpr = [line.split() for line in lines if line.startswith(f"{HEADLINE}/bpr.json")]
    assert bpr and all(len(row) == 5 for row in bpr), lines
    assert any(float(old) != float(new) for _, _, old, new, _ in bpr), lines
    # MostPop reads no learning rate: nothing of it changed, so the diff does not list it
    assert not [line for line in lines if line.startswith(f"{HEADLINE}/mostpop.json")], lines


def test_plots_show_draws_the_report_figures_offline(repo, recorded):
    done = run(PLOTS, repo)
    page = repo / "dvc_plots" / "index.html"
    assert str(page.relative_to(repo)) in done.stdout + done.stderr
    html = page.read_text()
    # nothing loaded from the network: images, no Vega scripts
    assert "<script" not in html and "http" not in html, html[:2000]
    images = re.findall(r'<img src="([^"]+)"', html)
    assert len(images) == 1 and "convergence.png" in images[0], images
    shown = (page.parent / images[0]).read_bytes()
    assert shown == (repo / TABLES / "convergence.png").read_bytes()
    assert "dvc_plots" not in run("git status --porcelain", repo).stdout  # git-ignored


def test_push_and_pull_through_the_default_local_remote(repo, recorded, tmp_path):
    copy = copy_of(repo, tmp_path)
    run(PUSH, copy)
    storage = copy / ".dvc-storage"
    assert storage.is_dir() and any(storage.rglob("*"))
    metrics = copy / RESULTS / "demo/runs/final/bpr/seed2024/metrics.json"
    expected = metrics.read_text()
    shutil.rmtree(copy / RESULTS / "demo/runs")
    shutil.rmtree(copy / ".dvc" / "cache")
    run(PULL, copy)
    assert metrics.read_text() == expected


@pytest.mark.parametrize("remote", [MOVE_LOCAL, ADD_TEAM], ids=["modify-local", "add-team"])
def test_a_shared_remote_gives_a_fresh_clone_the_study(repo, recorded, tmp_path, remote):
    copy = copy_of(repo, tmp_path)
    shared = tmp_path / "shared"  # shared storage, as a team would mount it
    run(remote.format(folder=shared), copy)
    run("git commit -qm 'shared remote' .dvc/config && " + PUSH, copy)
    assert any(shared.rglob("*")), "nothing was pushed to the shared folder"
    run(f"git clone -q '{copy}' clone", tmp_path)
    clone = tmp_path / "clone"
    run(PULL, clone)
    for model in MODELS:
        name = f"{HEADLINE}/{model}.json"
        assert (clone / name).read_text() == (repo / name).read_text()
    assert "up to date" in run("dvc status", clone).stdout
