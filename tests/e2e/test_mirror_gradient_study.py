"""The `mirror_gradient` section end to end through Snakemake on a tiny ID-only demo study:
BPR trains once more with Mirror Gradient, and the main table shows it as "BPR + MG"."""

from __future__ import annotations

import json

import pytest

from _tiny_workflow import TINY, snakemake

pytestmark = pytest.mark.e2e


def test_a_mirror_gradient_run_trains_and_is_a_main_table_row(tmp_path):
    config = {**TINY, "results": "results", "models": ["mostpop", "bpr"],
              "mirror_gradient": {"enabled": True, "models": ["bpr"]}}
    config["datasets"] = {"demo": {k: v for k, v in TINY["datasets"]["demo"].items()
                                   if k != "features"}}
    snakemake(tmp_path, config)
    runs = tmp_path / "results" / "demo" / "runs"
    mirrored = json.loads((runs / "mirror_gradient" / "bpr" / "seed2024" / "manifest.json").read_text())
    plain = json.loads((runs / "final" / "bpr" / "seed2024" / "manifest.json").read_text())
    assert mirrored["config"]["training"]["mirror_gradient"] is True
    assert plain["config"]["training"]["mirror_gradient"] is False
    assert mirrored["config"]["hparams"] == plain["config"]["hparams"]
    main = (tmp_path / "results" / "tables" / "main.md").read_text()
    assert "| BPR + MG |" in main and "| BPR |" in main
