"""Rule output patterns come from crane/layout.py, and only from there.

A layout function given wildcards (`"{dataset}"`) must give the pattern whose formatting is
the function's own result for real values, and the rule files must spell no results path of
their own.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from crane import layout

ROOT = Path(__file__).resolve().parents[2]
VALUES = {"dataset": "baby", "model": "crane", "hp": "0123456789ab", "seed": "2024",
          "variant": "crane_no_cl", "param": "rca_steps", "value": "3", "modality": "text",
          "encoder": "minilm", "modalities": "text", "suffix": "md", "graph": "text-k10", "job": "acquire", "name": "main.md"}
RESULTS = "results"

PATTERNS = [
    (layout.acquired_path, ["dataset"]),
    (layout.images_report_path, ["dataset"]),
    (layout.interactions_path, ["dataset"]),
    (layout.items_path, ["dataset"]),
    (layout.stats_path, ["dataset"]),
    (layout.stats_table_path, ["dataset"]),
    (layout.feature_matrix_path, ["dataset", "modality", "encoder"]),
    (layout.feature_manifest_path, ["dataset", "modality", "encoder"]),
    (layout.graph_record_path, ["dataset", "graph"]),
    (layout.runs_index_path, ["dataset"]),
    (layout.grid_run_dir, ["dataset", "model", "hp", "seed"]),
    (layout.selection_path, ["dataset", "model"]),
    (layout.final_run_dir, ["dataset", "model", "seed"]),
    (layout.ablation_run_dir, ["dataset", "variant", "seed"]),
    (layout.sensitivity_run_dir, ["dataset", "param", "value", "seed"]),
    (layout.modality_ablation_run_dir, ["dataset", "model", "modalities", "seed"]),
    (layout.modality_ablation_table_path, ["dataset", "suffix"]),
    (layout.log_path, ["dataset", "job"]),
    (layout.benchmark_path, ["dataset", "job"]),
    (layout.train_benchmark_path, ["dataset", "model", "seed"]),
    (layout.table_path, ["name"]),
]


@pytest.mark.parametrize("function, wildcards", PATTERNS, ids=lambda p: getattr(p, "__name__", ""))
def test_a_pattern_formats_into_the_path_for_those_values(function, wildcards):
    pattern = str(function(RESULTS, *(f"{{{w}}}" for w in wildcards)))
    assert re.findall(r"{(\w+)}", pattern) == wildcards
    assert pattern.format(**VALUES) == str(function(RESULTS, *(VALUES[w] for w in wildcards)))


def test_run_metrics_follow_the_run_folder():
    run = layout.final_run_dir(RESULTS, "{dataset}", "{model}", "{seed}")
    assert str(layout.run_metrics_path(run)) == "results/{dataset}/runs/final/{model}/seed{seed}/metrics.json"


def test_rule_files_spell_no_results_path():
    folders = ("raw", "data", "features", "graphs", "runs", "logs", "benchmarks", "tables")
    spelt = re.compile(r"""["'][^"'\n]*(\{R\}/|\bresults/|/(%s)/)""" % "|".join(folders))
    for path in [ROOT / "Snakefile", *sorted((ROOT / "workflow" / "rules").glob("*.smk"))]:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if not line.lstrip().startswith("#"):
                assert not spelt.search(line), f"{path.name}:{number}: {line.strip()}"
