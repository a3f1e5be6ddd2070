"""benchmarks/demo_checks.py: reading a finished study's test metric and run costs."""

from __future__ import annotations

import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))

import demo_checks  # noqa: E402
from crane import layout  # noqa: E402


def test_reads_final_metric_and_snakemake_benchmark(tmp_path):
    run = layout.final_run_dir(tmp_path, "demo", "vbpr", 2024)
    run.mkdir(parents=True)
    (run / "metrics.json").write_text(json.dumps({"test": {"recall@20": 0.125}}))
    bench = layout.benchmarks_dir(tmp_path, "demo")
    bench.mkdir(parents=True)
    (bench / "train_vbpr_seed2024.tsv").write_text(
        "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
        "40.42\t0:00:40\t800\t900\t700\t750\t0\t1\t19.4\t7.86\n")
    assert demo_checks.final_metric(str(tmp_path), "demo", "vbpr", 2024) == 0.125
    assert demo_checks.final_cost(str(tmp_path), "demo", "vbpr", 2024) == (40.42, 7.86)
    # A run that has not finished (or ran outside Snakemake) reads as missing.
    assert demo_checks.final_metric(str(tmp_path), "demo", "vbpr", 2025) is None
    assert demo_checks.final_cost(str(tmp_path), "demo", "vbpr", 2025) is None
