"""Studies with fewer modalities, end to end through Snakemake on a tiny demo dataset: an
ID-only dataset (no `features`) trains its ID-only models, and the modality ablation trains
VBPR on text only and image only and writes its table beside the main one."""

from __future__ import annotations

import pandas as pd
import pytest

from _tiny_workflow import TINY, snakemake

pytestmark = pytest.mark.e2e


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
