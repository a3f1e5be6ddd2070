"""The headline metrics files: one per dataset and model, so that `dvc metrics show` is a table."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from crane import layout
from crane.report.collect import collect_final_runs
from crane.report.headline_metrics import file_name, headline_metrics, write_headline_metrics

BIN = Path(sys.executable).parent


def write_run(results: Path, dataset: str, model: str, seed: int, test: dict[str, float]) -> None:
    run_dir = layout.final_run_dir(results, dataset, model, seed)
    run_dir.mkdir(parents=True)
    (run_dir / "metrics.json").write_text(json.dumps(
        {"dataset": dataset, "model": model, "seed": seed, "valid": test, "test": test}))


@pytest.fixture
def scores(tmp_path):
    """Final runs as the report collects them: bpr on two seeds, mostpop on one."""
    results = tmp_path / "results"
    write_run(results, "demo", "bpr", 1, {"recall@20": 0.1, "ndcg@20": 0.05, "recall@10": 0.07})
    write_run(results, "demo", "bpr", 2, {"recall@20": 0.3, "ndcg@20": 0.15, "recall@10": 0.2})
    write_run(results, "demo", "mostpop", 1, {"recall@20": 0.02, "ndcg@20": 0.01})
    return collect_final_runs(results, ["demo"], ["bpr", "mostpop"], [1, 2]).scores


def test_mean_and_sample_std_over_seeds_of_the_test_split(scores):
    table = headline_metrics(scores)
    assert set(table) == {"demo"} and set(table["demo"]) == {"bpr", "mostpop"}
    bpr = table["demo"]["bpr"]
    assert bpr["recall@20"] == {"mean": 0.2, "std": pytest.approx(0.141421, abs=1e-6)}
    assert bpr["ndcg@20"] == {"mean": 0.1, "std": pytest.approx(0.070711, abs=1e-6)}
    assert bpr["seeds"] == 2
    assert "recall@10" not in bpr  # headline numbers only
    # one seed has no spread: null (an empty cell in DVC), not 0
    assert table["demo"]["mostpop"]["recall@20"] == {"mean": 0.02, "std": None}
    assert table["demo"]["mostpop"]["seeds"] == 1


def test_a_missing_headline_metric_names_the_runs_and_what_they_have(scores):
    with pytest.raises(ValueError, match=r"demo/mostpop have no 'recall@10' \(they have: "
                                         r"ndcg@20, recall@20\)"):
        headline_metrics(scores, ["recall@20", "recall@10"])


def test_one_file_per_model_and_no_stale_file(scores, tmp_path):
    out = tmp_path / "tables"
    stale = out / "headline_metrics" / "demo" / "lightgcn.json"
    stale.parent.mkdir(parents=True)
    stale.write_text("{}")  # a model an earlier study had
    written = write_headline_metrics(scores, out)
    assert sorted(written) == ["headline_metrics/demo/bpr.json",
                               "headline_metrics/demo/mostpop.json"]
    assert not stale.exists()
    bpr = json.loads(written["headline_metrics/demo/bpr.json"].read_text())
    assert bpr == headline_metrics(scores)["demo"]["bpr"]


def test_dvc_metrics_show_prints_one_row_per_model(scores, tmp_path):
    repo = tmp_path / "repo"
    write_headline_metrics(scores, repo / "tables")
    listed = "".join(f"- tables/{file_name('demo', m)}\n" for m in ("bpr", "mostpop"))
    (repo / "dvc.yaml").write_text(f"metrics:\n{listed}")  # as crane/dvc_stages.py lists them
    env = dict(os.environ, DVC_NO_ANALYTICS="1",
               PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    for cmd in (["git", "init", "-q"], ["dvc", "init", "-q"], ["dvc", "metrics", "show"]):
        done = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert lines[0].split() == ["Path", "ndcg@20.mean", "ndcg@20.std", "recall@20.mean",
                                "recall@20.std", "seeds"]
    rows = {line.split()[0]: line.split()[1:] for line in lines[1:]}
    # DVC prints 5 significant digits by default
    assert rows["tables/headline_metrics/demo/bpr.json"] == ["0.1", "0.07071", "0.2", "0.14142", "2"]
    assert set(rows) == {"tables/headline_metrics/demo/bpr.json",
                         "tables/headline_metrics/demo/mostpop.json"}
