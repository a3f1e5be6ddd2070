"""build_report end to end on a small hand-made study, plots, and the `crane tables` CLI."""

import json

import pandas as pd
import pytest

from _report_study import METRICS, make_study, write_run
from crane.cli import main
from crane.report.build import build_report, write_sensitivity
from crane.report.collect import collect_sensitivity_runs
from crane.report.collect import collect_final_runs
from crane.report.plots import convergence_data, sensitivity_data

MODELS = ["bpr", "lightgcn", "crane"]
SEEDS = [1, 2]
EXPECTED_FILES = sorted(
    [f"{stem}.{ext}" for stem in ("main", "datasets", "hyperparameters", "user_activity",
                                  "ablation", "efficiency", "sensitivity")
     for ext in ("md", "tex", "html", "csv")]
    + ["main_significance.csv", "metrics.json", "missing.txt", "convergence.png",
       "convergence.pdf", "convergence.csv", "sensitivity.png", "sensitivity.pdf"])
HEADLINE_FILES = [f"headline_metrics/baby/{model}.json" for model in ("bpr", "crane", "lightgcn")]


def _sensitivity_runs(results):
    for param, values in {"lambda_cl": ["0.001", "0.01", "0.1"], "rca_steps": ["1", "2", "3"]}.items():
        for i, value in enumerate(values):
            for seed in SEEDS:
                write_run(results / "baby" / "runs" / "sensitivity" / param / value / f"seed{seed}",
                          dataset="baby", model="crane", seed=seed,
                          test={m: 0.1 + 0.01 * i + 0.002 * seed for m in METRICS})


@pytest.fixture
def study(results):
    make_study(results, {"bpr": 0.5, "lightgcn": 0.7, "crane": 1.0}, seeds=SEEDS,
               skip={("baby", "lightgcn", 2)})
    write_run(results / "baby" / "runs" / "ablations" / "crane_no_cl" / "seed1", dataset="baby",
              model="crane", seed=1, test={m: 0.09 for m in METRICS})
    _sensitivity_runs(results)
    return results


def test_build_report_writes_every_output(study, tmp_path):
    out = tmp_path / "tables"
    written = build_report(study, out, ["baby"], MODELS, SEEDS)
    assert sorted(written) == sorted(EXPECTED_FILES + HEADLINE_FILES)
    assert sorted(p.name for p in out.iterdir()) == sorted(EXPECTED_FILES + ["headline_metrics"])
    assert sorted(str(p.relative_to(out)) for p in (out / "headline_metrics").rglob("*.json")) \
        == HEADLINE_FILES  # no temporaries left
    for name in ("convergence.png", "sensitivity.png"):
        assert written[name].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert written[name].stat().st_size > 5000
    for name in ("convergence.pdf", "sensitivity.pdf"):
        assert written[name].read_bytes()[:5] == b"%PDF-"
    metrics = json.loads(written["metrics.json"].read_text())
    assert sorted(metrics["baby"]) == ["bpr", "crane", "lightgcn"]
    assert sorted(metrics["baby"]["crane"]) == sorted(METRICS)
    main_csv = pd.read_csv(written["main.csv"])
    crane = main_csv.query("model == 'crane' and metric == 'recall@20'").iloc[0]
    assert metrics["baby"]["crane"]["recall@20"] == pytest.approx(crane["mean"], abs=1e-6)
    curves = pd.read_csv(written["convergence.csv"])
    assert list(curves.columns) == ["model", "dataset", "epoch", "recall@20"]
    assert curves.query("model == 'crane' and epoch == 5")["recall@20"].item() == pytest.approx(1.0)
    missing = written["missing.txt"].read_text()
    assert "final: dataset=baby model=lightgcn seed=2" in missing
    assert "ablation: dataset=baby variant=crane_no_cl seed=2" in missing
    assert "stats: dataset=baby" in missing
    tex = written["main.tex"].read_text()
    assert r"\toprule" in tex and r"\bottomrule" in tex and r"CRANE improvement" in tex
    for name in written:  # LaTeX output is plain ASCII: every symbol went through tex_escape
        if name.endswith(".tex"):
            assert written[name].read_text().isascii(), name


def test_build_report_is_deterministic(study, tmp_path):
    first = build_report(study, tmp_path / "a", ["baby"], MODELS, SEEDS)
    second = build_report(study, tmp_path / "b", ["baby"], MODELS, SEEDS)
    for name, path in first.items():
        assert path.read_bytes() == second[name].read_bytes(), name


def test_parts_limit_the_outputs(study, tmp_path):
    written = build_report(study, tmp_path / "t", ["baby"], MODELS, SEEDS,
                           parts=["datasets", "ablation"])
    assert sorted(written) == ["ablation.csv", "ablation.html", "ablation.md", "ablation.tex",
                               "datasets.csv", "datasets.html", "datasets.md", "datasets.tex",
                               "missing.txt"]
    with pytest.raises(ValueError, match="unknown part"):
        build_report(study, tmp_path / "t", ["baby"], MODELS, SEEDS, parts=["mian"])


def test_ablation_scope_limits_what_is_expected(study, tmp_path):
    """A study that runs its ablations on one seed must not list the other seed as missing,
    nor read a stale folder of that seed."""
    write_run(study / "baby" / "runs" / "ablations" / "crane_no_cl" / "seed2", dataset="baby",
              model="crane", seed=2, test={m: 0.5 for m in METRICS})  # stale: not in scope
    written = build_report(study, tmp_path / "t", ["baby"], MODELS, SEEDS,
                           parts=["ablation"], ablation_variants=["crane_no_cl"],
                           ablation_scope=(["baby"], [1]))
    assert "ablation" not in written["missing.txt"].read_text()
    table = pd.read_csv(written["ablation.csv"]).query("metric == 'recall@20'")
    assert table["n_seeds"].tolist() == [1]
    assert table["mean"].tolist() == pytest.approx([0.09])
    everything = build_report(study, tmp_path / "u", ["baby"], MODELS, SEEDS,
                              parts=["ablation"], ablation_variants=["crane_no_cl"])
    table = pd.read_csv(everything["ablation.csv"]).query("metric == 'recall@20'")
    assert table["n_seeds"].tolist() == [2]


def test_tables_cli_passes_the_sections_scope(study, tmp_path):
    out = tmp_path / "cli"
    assert main(["tables", "--results", str(study), "--out", str(out), "--datasets", "baby",
                 "--models", *MODELS, "--seeds", "1", "2", "--parts", "ablation", "sensitivity",
                 "--variants", "crane_no_cl", "--ablation-seeds", "1",
                 "--sensitivity-seeds", "2", "--grid", "rca_steps=1,2,3"]) == 0
    assert (out / "missing.txt").read_text().startswith("Nothing missing")
    sensitivity = pd.read_csv(out / "sensitivity.csv")  # seed 2 only: 0.1 + 0.01 i + 0.004
    assert sensitivity["n_seeds"].tolist() == [1, 1, 1]
    assert sensitivity["mean"].tolist() == pytest.approx([0.104, 0.114, 0.124])


def test_convergence_skips_epochs_without_validation(results):
    history = pd.DataFrame({"epoch": [1, 2, 3, 4], "loss": 1.0,
                            "recall@20": [0.1, None, 0.3, None]})
    for seed, shift in ((1, 0.0), (2, 0.1)):
        write_run(results / "baby" / "runs" / "final" / "bpr" / f"seed{seed}", dataset="baby",
                  model="bpr", seed=seed, test={"recall@20": 0.1},
                  history=history.assign(**{"recall@20": history["recall@20"] + shift}))
    runs = collect_final_runs(results, ["baby"], ["bpr"], [1, 2])
    curves, missing = convergence_data(runs, ["baby"], ["bpr"])
    assert curves["epoch"].tolist() == [1, 3]
    assert curves["recall@20"].tolist() == pytest.approx([0.15, 0.35])
    assert not missing
    history.drop(columns="recall@20").to_csv(results / "baby/runs/final/bpr/seed1/history.csv")
    with pytest.raises(ValueError, match=r"seed1/history.csv: no column for validation 'recall@20'"):
        convergence_data(runs, ["baby"], ["bpr"])


def test_sensitivity_summary_and_plot(study, tmp_path):
    grid = {"lambda_cl": ["0.1", "0.001", "0.01"], "rca_steps": ["1", "2", "3"]}
    runs = collect_sensitivity_runs(study, ["baby"], grid, SEEDS)
    summary = sensitivity_data(runs)
    lam = summary[summary["param"] == "lambda_cl"]
    assert lam["x"].tolist() == [0.001, 0.01, 0.1]  # numeric, not string, order
    assert lam["mean"].tolist() == pytest.approx([0.103, 0.113, 0.123])
    assert lam["std"].tolist() == pytest.approx([0.002 / 2 ** 0.5] * 3)
    written, missing = write_sensitivity(study, tmp_path / "s", ["baby"], SEEDS,
                                         {"tau": ["0.2"]})
    assert [m.describe().split(" (")[0] for m in missing] == [
        "sensitivity: dataset=baby param=tau param_value=0.2 seed=1",
        "sensitivity: dataset=baby param=tau param_value=0.2 seed=2"]
    assert written["sensitivity.png"].stat().st_size > 0
    (study / "baby" / "runs" / "sensitivity" / "tau" / "high").mkdir(parents=True)
    with pytest.raises(ValueError, match=r"sensitivity/tau/high: sensitivity value folder must be a number"):
        write_sensitivity(study, tmp_path / "s", ["baby"], SEEDS)


def test_cli_tables(study, tmp_path, capsys):
    out = tmp_path / "cli"
    code = main(["tables", "--results", str(study), "--out", str(out), "--datasets", "baby",
                 "--models", *MODELS, "--seeds", "1", "2", "--test", "ttest",
                 "--activity-bins", "5", "10", "--parts", "main", "user_activity"])
    assert code == 0
    significance = pd.read_csv(out / "main_significance.csv")
    assert set(significance["test"]) == {"ttest"}
    assert "5-9 (n=20)" in (out / "user_activity.md").read_text()
    code = main(["ablation-table", "--results", str(study), "--out", str(out),
                 "--datasets", "baby", "--seeds", "1"])
    assert code == 0 and "w/o contrastive loss" in (out / "ablation.md").read_text()
    code = main(["sensitivity-plot", "--results", str(study), "--out", str(out),
                 "--datasets", "baby", "--seeds", "1", "2", "--grid", "rca_steps=1,2,3"])
    assert code == 0 and pd.read_csv(out / "sensitivity.csv")["param"].unique().tolist() == ["rca_steps"]


def test_cli_reports_bad_input_in_one_line(study, tmp_path, capsys):
    (study / "baby" / "runs" / "final" / "bpr" / "seed1" / "metrics.json").write_text("{not json")
    code = main(["tables", "--results", str(study), "--out", str(tmp_path / "x"),
                 "--datasets", "baby", "--models", *MODELS, "--seeds", "1", "2"])
    assert code == 2
    error = capsys.readouterr().err
    assert "crane tables: error:" in error and "bpr/seed1/metrics.json: not valid JSON" in error
