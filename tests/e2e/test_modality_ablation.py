"""Studies with fewer modalities, end to end through Snakemake on a tiny demo dataset: an
ID-only dataset (no `features`) trains its ID-only models, and the modality ablation trains
VBPR on text only and image only and writes its table beside the main one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.e2e

TINY = {
    "seeds": [2024],
    "tuning": "default",
    "training": {"epochs": 2, "patience": 2, "batch_size": 1024},
    "datasets": {"demo": {"source": {"type": "demo", "users": 200, "items": 100, "seed": 3},
                          "kcore": 5, "split": {"method": "mmrec_random", "seed": 2024},
                          "features": {"text": "minilm", "image": "colorhist"}}},
    "encoders": {"minilm": {"type": "sentence_transformers", "model": "all-MiniLM-L6-v2",
                            "fields": ["title", "brand", "categories", "description"],
                            "batch_size": 64},
                 "colorhist": {"type": "color_histogram", "bins": 8}},
}


def snakemake(workdir: Path, config: dict) -> None:
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"),
           "--directory", str(workdir), "--configfile", str(path), "--cores", "2"]
    done = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True,
                          timeout=900)
    if done.returncode != 0:
        logs = "\n".join(f"--- {p}\n{p.read_text()[-2000:]}"
                         for p in sorted((workdir / "results").rglob("*.log")))
        pytest.fail(f"snakemake failed:\n{done.stderr[-4000:]}\n{logs}")


def test_an_id_only_dataset_runs_through_the_workflow(tmp_path):
    config = {**TINY, "results": "results", "models": ["mostpop", "bpr"]}
    config["datasets"] = {"demo": {k: v for k, v in TINY["datasets"]["demo"].items()
                                   if k != "features"}}
    snakemake(tmp_path, config)
    results = tmp_path / "results"
    assert not (results / "demo" / "features").exists()
    main = (results / "tables" / "main.md").read_text()
    assert "BPR" in main and "MostPop" in main


def test_the_modality_ablation_writes_its_table(tmp_path):
    config = {**TINY, "results": "results", "models": ["mostpop", "vbpr"],
              "modality_ablation": {"enabled": True}}
    snakemake(tmp_path, config)
    runs = tmp_path / "results" / "demo" / "runs"
    for modality in ("image", "text"):
        assert (runs / "modality_ablation" / "vbpr" / modality / "seed2024" / "metrics.json").exists()
    assert not (runs / "modality_ablation" / "vbpr" / "image+text").exists()  # the final run
    table = pd.read_csv(tmp_path / "results" / "tables" / "modality_ablation" / "demo.csv")
    recall = table[table.metric == "recall@20"]
    assert set(zip(recall.model, recall.modalities)) == {
        ("vbpr", "image"), ("vbpr", "text"), ("vbpr", "image+text"), ("mostpop", "none")}
    assert recall["mean"].notna().all()
    assert (tmp_path / "results" / "tables" / "modality_ablation" / "demo.html").exists()
