"""Mirror Gradient runs are rows of the main table ("<Model> + MG", right after the model, in
its group): a baseline with Mirror Gradient can be the best baseline our model is tested
against; our own model with Mirror Gradient never is; a missing run is listed."""

import shutil

import pandas as pd
import pytest

from _report_study import make_study
from crane import layout
from crane.report.build import build_report

SEEDS = [1, 2, 3]


def add_mirror_gradient_runs(results, scratch, quality):
    """Runs of quality[model] moved into the Mirror Gradient folders of `results`."""
    make_study(scratch, quality, seeds=SEEDS)
    for model in quality:
        for seed in SEEDS:
            source = layout.final_run_dir(scratch, "baby", model, seed)
            target = layout.mirror_gradient_run_dir(results, "baby", model, seed)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(source, target)


def build(results, models, mirror_gradient):
    out = results / "tables"
    build_report(results, out, ["baby"], models, SEEDS, mirror_gradient=mirror_gradient,
                 parts=["main"])
    table = (out / "main.md").read_text()
    tests = pd.read_csv(out / "main_significance.csv")
    return table, tests, pd.read_csv(out / "main.csv")


def test_a_baseline_with_mirror_gradient_is_a_row_and_can_be_the_best(results, tmp_path):
    make_study(results, {"lightgcn": 0.7, "freedom": 0.9, "crane": 1.0}, seeds=SEEDS)
    add_mirror_gradient_runs(results, tmp_path / "scratch", {"freedom": 0.95})
    table, tests, data = build(results, ["lightgcn", "freedom", "crane"], ["freedom"])
    rows = [line.split("|")[1].strip() for line in table.splitlines()
            if line.startswith("| ") and "±" in line]
    assert rows == ["LightGCN", "FREEDOM", "FREEDOM + MG", "CRANE"]
    assert list(tests["baseline"]) == ["freedom+mg"] * 4
    assert tests["improvement_pct"].tolist() == pytest.approx([(1.0 / 0.95 - 1) * 100] * 4,
                                                              rel=1e-3)
    group = data.set_index("model")["group"].to_dict()
    assert group["freedom+mg"] == group["freedom"] == "multimodal"


def test_our_model_with_mirror_gradient_is_ours_not_a_baseline(results, tmp_path):
    make_study(results, {"freedom": 0.9, "crane": 1.0}, seeds=SEEDS)
    add_mirror_gradient_runs(results, tmp_path / "scratch", {"crane": 1.2})
    table, tests, data = build(results, ["freedom", "crane"], ["crane"])
    assert list(tests["baseline"]) == ["freedom"] * 4
    assert "| CRANE + MG |" in table
    assert set(data.query("model == 'crane+mg'")["group"]) == {"ours"}


def test_a_missing_mirror_gradient_run_is_a_dash_and_listed(results, tmp_path):
    make_study(results, {"lightgcn": 0.7, "crane": 1.0}, seeds=SEEDS)
    add_mirror_gradient_runs(results, tmp_path / "scratch", {"lightgcn": 0.8})
    shutil.rmtree(layout.mirror_gradient_run_dir(results, "baby", "lightgcn", 2))
    table, _, data = build(results, ["lightgcn", "crane"], ["lightgcn"])
    assert set(data.query("model == 'lightgcn+mg'")["n_seeds"]) == {2}
    missing = (results / "tables" / "missing.txt").read_text()
    assert "mirror_gradient: dataset=baby model=lightgcn+mg seed=2" in missing


def test_a_mirror_gradient_model_outside_the_models_is_refused(results):
    make_study(results, {"lightgcn": 0.7, "crane": 1.0}, seeds=SEEDS)
    with pytest.raises(ValueError, match="freedom"):
        build(results, ["lightgcn", "crane"], ["freedom"])
