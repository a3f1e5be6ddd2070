"""The whole workflow on the tiny test configuration: the same rules as the demo, end to end.

One Snakemake run (acquire -> preprocess -> features -> graphs -> train -> ablations ->
sensitivity -> tables) into a temporary folder, then checks on what it wrote, then a second
invocation that must find nothing to do.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "config" / "test.yaml"

pytestmark = pytest.mark.e2e


def snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"),
           "--directory", str(workdir), "--configfile", str(CONFIG), "--cores", "2", *args]
    return subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True, timeout=1800)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("workflow")
    done = snakemake(workdir)
    if done.returncode != 0:
        logs = "\n".join(f"--- {p}\n{p.read_text()[-3000:]}"
                         for p in sorted((workdir / "results" / "test").rglob("*.log")))
        pytest.fail(f"snakemake failed:\n{done.stderr[-6000:]}\n{logs}")
    return workdir


def test_tables_are_written_with_every_model(finished_run):
    config = yaml.safe_load(CONFIG.read_text())
    tables = finished_run / "results" / "test" / "tables"
    main = (tables / "main.md").read_text()
    for model in config["models"]:
        assert model in main.lower(), f"{model} missing from the main table"
    assert (tables / "main.tex").read_text().count("\\toprule") == 1
    metrics = json.loads((tables / "metrics.json").read_text())
    assert set(metrics["demo"]) >= set(config["models"])
    assert (tables / "convergence.png").stat().st_size > 1000


def test_every_run_folder_is_complete(finished_run):
    config = yaml.safe_load(CONFIG.read_text())
    results = finished_run / "results" / "test" / "demo"
    for model in config["models"]:
        run = results / "runs" / "final" / model / "seed2024"
        metrics = json.loads((run / "metrics.json").read_text())
        assert metrics["model"] == model and metrics["seed"] == 2024
        assert 0.0 <= metrics["test"]["recall@20"] <= 1.0
        users = pd.read_parquet(run / "user_metrics.parquet")
        assert len(users) > 0 and "recall@20" in users
        assert not (run / "last.pt").exists(), "resume state must be removed when a run finishes"
    assert (results / "runs" / "ablations" / "crane_no_cl" / "seed2024" / "metrics.json").exists()
    # the full-model variant is read from the final CRANE run, never trained twice
    assert not (results / "runs" / "ablations" / "crane").exists()
    ablation = (results.parent / "tables" / "ablation.md").read_text()
    assert "CRANE (full)" in ablation


def test_features_have_manifests_and_the_text_is_real_minilm(finished_run):
    features = finished_run / "results" / "test" / "demo" / "features"
    manifest = json.loads((features / "text-minilm" / "manifest.json").read_text())
    assert manifest["dim"] == 384
    image = json.loads((features / "image-colorhist" / "manifest.json").read_text())
    assert image["content_hash"] != manifest["content_hash"]


def test_second_invocation_has_nothing_to_do(finished_run):
    again = snakemake(finished_run, "--dry-run")
    assert again.returncode == 0, again.stderr
    assert "Nothing to be done" in again.stdout + again.stderr


def test_report_shows_the_tables_inline(finished_run):
    """`snakemake --report` shows each table as an HTML page (a .md could only be
    downloaded), builds without Snakemake's never-awaited coroutine warnings, and its
    captions hold no mailto: link (RST reads `Recall@20` as an address)."""
    (finished_run / "results" / "demo").mkdir(exist_ok=True)  # the demo's folder, as after a demo
    done = snakemake(finished_run, "--report", "results/demo/report.html")  # the README's line
    assert done.returncode == 0, done.stderr[-3000:]
    assert "was never awaited" not in done.stdout + done.stderr
    report = (finished_run / "results" / "demo" / "report.html").read_text()
    assert '"name": "main.html"' in report or '"name":"main.html"' in report
    assert "mailto:" not in report
    tables = finished_run / "results" / "test" / "tables"
    main_html = (tables / "main.html").read_text()
    assert "<table" in main_html and "CRANE" in main_html


# The README's one run by hand, run as written from a folder whose results/demo/demo/data is the
# finished test run's data.
README_TRAIN = ("crane train --data results/demo/demo/data --model bpr --seed 1 "
                "--set reg_weight=1e-3 --set training.epochs=2 --out results/try/bpr")


def test_readme_train_by_hand(finished_run, tmp_path):
    data = tmp_path / "results" / "demo" / "demo" / "data"
    data.parent.mkdir(parents=True)
    data.symlink_to(finished_run / "results" / "test" / "demo" / "data")
    done = subprocess.run([sys.executable, "-m", "crane", *README_TRAIN.split()[1:]],
                          cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    run = tmp_path / "results" / "try" / "bpr"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["hparams"]["reg_weight"] == 1e-3
    assert len(pd.read_csv(run / "history.csv")) == 2, "training.epochs=2 was applied"
