import numpy as np
import pytest

from _report_study import make_study
from crane.report.collect import collect_final_runs, final_run_dir
from crane.report.main_results import main_results
from crane.report.tables import BEST, SECOND, to_markdown

MODELS = ["bpr", "lightgcn", "freedom", "crane"]
SEEDS = [1, 2, 3]


def _build(results, datasets=("baby",), models=MODELS, **options):
    runs = collect_final_runs(results, list(datasets), models, SEEDS)
    return main_results(runs, list(datasets), models, SEEDS, **options)


def _rows(result):
    return {row.label: row for section in result.table.sections for row in section.rows}


def test_cells_are_mean_and_sample_std_over_seeds(results):
    make_study(results, {"bpr": 0.5, "crane": 1.0})
    result = _build(results, models=["bpr", "crane"])
    values = [float(np.mean(_user_values(results, "bpr", s))) for s in SEEDS]
    expected = f"{np.mean(values):.4f} ± {np.std(values, ddof=1):.4f}"
    assert _rows(result)["BPR"].cells[1].text == expected  # Recall@20 column
    row = result.data.query("model == 'bpr' and metric == 'recall@20'").iloc[0]
    assert row["n_seeds"] == 3
    assert row["std"] == pytest.approx(np.std(values, ddof=1))


def _user_values(results, model, seed):
    import pandas as pd

    path = final_run_dir(results, "baby", model, seed) / "user_metrics.parquet"
    return pd.read_parquet(path)["recall@20"].to_numpy()


def test_groups_order_emphasis_and_significant_improvement(results):
    make_study(results, {"bpr": 0.5, "lightgcn": 0.7, "freedom": 0.9, "crane": 1.0})
    result = _build(results)
    assert [s.label for s in result.table.sections] == ["General", "Multimodal", "CRANE", None]
    assert [r.label for r in result.table.sections[0].rows] == ["BPR", "LightGCN"]
    rows = _rows(result)
    assert all(c.emphasis == BEST for c in rows["CRANE"].cells)
    assert all(c.emphasis == SECOND for c in rows["FREEDOM"].cells)
    assert all(c.emphasis == "" for c in rows["BPR"].cells + rows["LightGCN"].cells)
    # CRANE is better on every user: relative improvement 1.0 / 0.9 - 1, and p < 0.01.
    improvement = rows["CRANE improvement"].cells
    assert [c.text for c in improvement] == ["+11.11%"] * 4
    assert [c.mark for c in improvement] == ["**"] * 4
    tests = result.significance
    assert list(tests["baseline"]) == ["freedom"] * 4
    assert (tests["p_value"] < 0.01).all()
    assert (tests["n_pairs"] == 60).all()  # one pair per user (averaged over seeds)
    markdown = to_markdown(result.table)
    assert r"| CRANE improvement | +11.11%<sup>\*\*</sup> |" in markdown
    assert "**0.1128 ± 0.0011**" in markdown and "<u>0.1015 ± 0.0010</u>" in markdown


def test_identical_to_best_baseline_ties_and_is_not_significant(results):
    make_study(results, {"lightgcn": 0.7, "freedom": 0.9, "crane": 0.9})
    result = _build(results, models=["lightgcn", "freedom", "crane"])
    rows = _rows(result)
    assert all(c.emphasis == BEST for c in rows["CRANE"].cells + rows["FREEDOM"].cells)
    assert all(c.emphasis == SECOND for c in rows["LightGCN"].cells)
    improvement = rows["CRANE improvement"].cells
    assert [c.text for c in improvement] == ["+0.00%"] * 4
    assert [c.mark for c in improvement] == [""] * 4
    assert (result.significance["p_value"] == 1.0).all()


def test_worse_on_every_user_is_a_significant_negative_change(results):
    make_study(results, {"bpr": 0.5, "crane": 0.4})
    result = _build(results, models=["bpr", "crane"], test="ttest", pairing="concat")
    cell = _rows(result)["CRANE improvement"].cells[0]
    assert cell.text == "-20.00%" and cell.mark == "**"
    assert (result.significance["n_pairs"] == 180).all()  # (seed, user) pairs pooled
    assert "paired t-test" in " ".join(result.table.notes)


def test_missing_runs_show_dashes_and_are_listed(results):
    skip = {("baby", "freedom", s) for s in SEEDS} | {("baby", "lightgcn", 2)}
    make_study(results, {"bpr": 0.5, "lightgcn": 0.7, "freedom": 0.9, "crane": 1.0}, skip=skip)
    result = _build(results)
    rows = _rows(result)
    assert [c.text for c in rows["FREEDOM"].cells] == ["–"] * 4
    assert rows["LightGCN"].cells[0].emphasis == SECOND  # the best baseline left
    assert result.data.query("model == 'lightgcn'")["n_seeds"].eq(2).all()
    notes = " ".join(result.table.notes)
    assert ("Missing runs: dataset=baby model=freedom seed=1; dataset=baby model=freedom seed=2; "
            "dataset=baby model=freedom seed=3; dataset=baby model=lightgcn seed=2.") in notes
    assert list(result.significance["baseline"].unique()) == ["lightgcn"]
    assert _rows(result)["CRANE improvement"].cells[0].text == f"{(1.0 / 0.7 - 1) * 100:+.2f}%"


def test_missing_per_user_metrics_skip_the_test_and_say_so(results):
    make_study(results, {"bpr": 0.5, "crane": 1.0})
    for seed in SEEDS:
        (final_run_dir(results, "baby", "crane", seed) / "user_metrics.parquet").unlink()
    result = _build(results, models=["bpr", "crane"])
    cell = _rows(result)["CRANE improvement"].cells[0]
    assert cell.text == "+100.00%" and cell.mark == ""
    assert "No per-user metrics" in " ".join(result.table.notes)
    assert {m.kind for m in result.missing} == {"user_metrics"}


def test_without_our_model_there_is_no_improvement_row(results):
    make_study(results, {"bpr": 0.5, "lightgcn": 0.7})
    result = _build(results, models=["bpr", "lightgcn"])
    assert "CRANE improvement" not in _rows(result)
    assert result.significance.empty


def test_bad_metrics_json_names_the_file_and_field(results):
    make_study(results, {"bpr": 0.5})
    path = final_run_dir(results, "baby", "bpr", 1) / "metrics.json"
    path.write_text('{"valid": {}, "dataset": "baby", "seed": 1}')
    with pytest.raises(ValueError, match=r"seed1/metrics.json: missing field 'test'"):
        collect_final_runs(results, ["baby"], ["bpr"], SEEDS)
    path.write_text('{"valid": {}, "test": {"recall@20": "high"}}')
    with pytest.raises(ValueError, match=r"metrics.json: field test.recall@20 is not a number"):
        collect_final_runs(results, ["baby"], ["bpr"], SEEDS)
    path.write_text('{"valid": {}, "test": {}, "seed": 7}')
    with pytest.raises(ValueError, match=r"field 'seed' is 7 but the folder says 1"):
        collect_final_runs(results, ["baby"], ["bpr"], SEEDS)


def test_a_preset_of_ours_gets_its_own_improvement_row_and_is_never_a_baseline(results):
    make_study(results, {"freedom": 0.9, "crane": 1.0, "crane_scalable": 1.2})
    result = _build(results, models=["freedom", "crane", "crane_scalable"])
    assert [r.label for r in result.table.sections[-2].rows] == ["CRANE", "CRANE (scalable)"]
    rows = _rows(result)
    assert [c.text for c in rows["CRANE improvement"].cells] == ["+11.11%"] * 4
    assert [c.text for c in rows["CRANE (scalable) improvement"].cells] == ["+33.33%"] * 4
    tests = result.significance
    assert set(tests["baseline"]) == {"freedom"}
    assert list(tests["ours"]) == ["crane"] * 4 + ["crane_scalable"] * 4
    notes = " ".join(result.table.notes)
    assert "CRANE (scalable) improvement = " in notes and notes.count("Best baseline:") == 1
