"""Dataset, hyper-parameter, user-activity, efficiency and ablation tables."""

import json
import math

import numpy as np
import pandas as pd
import pytest

from _report_study import METRICS, make_study, write_run
from crane import files
from crane.report.ablation import ablation_table
from crane.report.collect import collect_ablation_runs, collect_final_runs
from crane.report.datasets_table import dataset_statistics
from crane.report.efficiency import efficiency_table, seconds_to_best
from crane.report.hyperparameters import selected_hyperparameters
from crane.report.tables import BEST, SECOND, to_latex, to_markdown
from crane.report.user_activity import assign_bins, bin_labels, user_activity

SEEDS = [1, 2, 3]


def test_dataset_statistics(results):
    stats = {"users": 100, "items": 50, "interactions": 1000, "sparsity": 0.8,
             "train": 800, "valid": 100, "test": 100}
    (results / "baby" / "data").mkdir(parents=True)
    (results / "baby" / "data" / "stats.json").write_text(json.dumps(stats))
    table, data, missing = dataset_statistics(results, ["baby", "sports"])
    cells = [c.text for c in table.sections[0].rows[0].cells]
    assert cells == ["100", "50", "1,000", "800", "100", "100", "80.00%"]
    assert [c.text for c in table.sections[0].rows[1].cells] == ["–"] * 7
    assert data["sparsity"].tolist() == [pytest.approx(0.8)]
    assert [m.key for m in missing] == [(("dataset", "sports"),)]
    (results / "baby" / "data" / "stats.json").write_text(json.dumps({**stats, "users": -1}))
    with pytest.raises(ValueError, match=r"stats.json: field 'users' must be a non-negative"):
        dataset_statistics(results, ["baby"])


def test_selected_hyperparameters_from_selection_or_runs(results):
    make_study(results, {"bpr": 0.5, "lightgcn": 0.7})
    selection = {"model": "lightgcn", "hparams": {"n_layers": 2, "reg_weight": 0.001},
                 "hp_hash": "ffeeddccbbaa", "metric": "recall@20",
                 "points": [{"hp_hash": "ffeeddccbbaa", "hparams": {}, "valid": {"recall@20": 0.0812}},
                            {"hp_hash": "0011", "hparams": {}, "valid": {"recall@20": 0.07}}]}
    (results / "baby" / "runs" / "selected").mkdir(parents=True)
    (results / "baby" / "runs" / "selected" / "lightgcn.json").write_text(json.dumps(selection))
    runs = collect_final_runs(results, ["baby"], ["bpr", "lightgcn", "vbpr"], SEEDS)
    table, data, missing = selected_hyperparameters(results, runs, ["baby"],
                                                    ["bpr", "lightgcn", "vbpr"])
    rows = {r.label: [c.text for c in r.cells] for r in table.sections[0].rows}
    assert rows["LightGCN"] == ["n_layers=2, reg_weight=0.001", "Recall@20 0.0812", "2", "ffeeddcc"]
    assert rows["BPR"][0] == "reg_weight=0.0001" and rows["BPR"][2] == "–"  # from metrics.json
    assert rows["VBPR"] == ["–"] * 4
    assert [dict(m.key)["model"] for m in missing] == ["vbpr"]
    assert set(data.query("model == 'lightgcn'")["param"]) == {"n_layers", "reg_weight"}
    assert r"n\_layers=2, reg\_weight=0.001" in to_latex(table)
    del selection["points"]
    (results / "baby" / "runs" / "selected" / "lightgcn.json").write_text(json.dumps(selection))
    with pytest.raises(ValueError, match=r"lightgcn.json: missing field 'points'"):
        selected_hyperparameters(results, runs, ["baby"], ["lightgcn"])


def test_selection_as_crane_tuning_writes_it(results):
    make_study(results, {"bpr": 0.5})
    selection = {"model": "bpr", "metric": "recall@20", "selected_by": "validation",
                 "hparams": {"reg_weight": 0.01}, "hp_hash": "h2", "run_dir": "x", "valid": 0.05,
                 "table": [{"hp_hash": "h1", "hparams": {}, "valid": 0.04, "test": 0.0},
                           {"hp_hash": "h2", "hparams": {}, "valid": 0.05, "test": 0.0},
                           {"hp_hash": "h3", "hparams": {}, "valid": 0.03, "test": 0.0}]}
    (results / "baby" / "runs" / "selected").mkdir(parents=True)
    (results / "baby" / "runs" / "selected" / "bpr.json").write_text(json.dumps(selection))
    runs = collect_final_runs(results, ["baby"], ["bpr"], SEEDS)
    table, _, _ = selected_hyperparameters(results, runs, ["baby"], ["bpr"])
    assert [c.text for c in table.sections[0].rows[0].cells] == [
        "reg_weight=0.01", "Recall@20 0.0500", "3", "h2"]


def test_activity_bins():
    assert bin_labels([5, 10, 20]) == ["<5", "5-9", "10-19", "20+"]
    assert bin_labels([3, 4]) == ["<3", "3", "4+"]
    counts = pd.Series([3, 5, 9, 10, 19, 20, 400])
    assert assign_bins(counts, [5, 10, 20]).tolist() == ["<5", "5-9", "5-9", "10-19", "10-19",
                                                         "20+", "20+"]
    with pytest.raises(ValueError, match="increasing positive integers"):
        bin_labels([10, 5])


def test_user_activity_table(results):
    make_study(results, {"bpr": 0.5, "crane": 1.0})
    runs = collect_final_runs(results, ["baby"], ["bpr", "crane"], SEEDS)
    table, data, missing = user_activity(runs, ["baby"], ["bpr", "crane"], edges=[5, 10, 20])
    # The study has 20 users with 3, 20 with 7, 10 with 12 and 10 with 25 training items.
    assert table.columns == ["<5 (n=20)", "5-9 (n=20)", "10-19 (n=10)", "20+ (n=10)"]
    assert not missing
    users = pd.read_parquet(results / "baby/runs/final/crane/seed1/user_metrics.parquet")
    per_seed = []
    for seed in SEEDS:
        frame = pd.read_parquet(results / f"baby/runs/final/crane/seed{seed}/user_metrics.parquet")
        per_seed.append(frame.loc[frame["n_train"] >= 20, "recall@20"].mean())
    row = data.query("model == 'crane' and bin == '20+'").iloc[0]
    assert row["mean"] == pytest.approx(np.mean(per_seed))
    assert row["std"] == pytest.approx(np.std(per_seed, ddof=1))
    assert row["users"] == 10 and len(users) == 60
    crane_row = [r for s in table.sections for r in s.rows if r.label == "CRANE"][0]
    assert all(c.emphasis == BEST for c in crane_row.cells)
    # Edges that leave no user below the first one: no "<N" column.
    table, _, _ = user_activity(runs, ["baby"], ["bpr", "crane"], edges=[1, 10])
    assert table.columns == ["1-9 (n=40)", "10+ (n=20)"]


def test_efficiency_uses_metrics_and_benchmarks(results):
    make_study(results, {"bpr": 0.5, "crane": 1.0})
    bench = results / "baby" / "benchmarks"
    bench.mkdir(parents=True)
    header = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
    (bench / "train_crane_seed1.tsv").write_text(header + "100.0\t0:01:40\t2048.5\t3000\t1\t1\t0\t0\t90\t95\n")
    (bench / "train_crane_seed2.tsv").write_text(header + "120.0\t0:02:00\t1024.5\t3000\t1\t1\t0\t0\t90\t95\n")
    for seed, flops in zip(SEEDS, (2.5e9, 3.0e9, 3.5e9)):  # the trainer's count of one step
        path = results / "baby" / "runs" / "final" / "crane" / f"seed{seed}" / "metrics.json"
        files.write_json(path, {**files.read_json(path), "flops_per_step": flops})
    runs = collect_final_runs(results, ["baby"], ["bpr", "crane"], SEEDS)
    table, data = efficiency_table(results, runs, ["baby"], ["bpr", "crane"], SEEDS)
    crane = data.query("model == 'crane'").iloc[0]
    assert crane["benchmark_s"] == pytest.approx(110.0)
    assert crane["benchmark_max_rss"] == pytest.approx(1536.5)
    assert crane["seconds_per_epoch"] == pytest.approx(1.5) and crane["best_epoch"] == 10
    rows = {r.label: [c.text for c in r.cells] for r in table.sections[0].rows}
    # make_study's histories: 5 epochs of 1 s each, all before the best epoch (10)
    assert rows["CRANE"] == ["1.50", "3.000", "10.0", "5.0", "30.0", "45.0", "512", "110.0",
                             "1536"]
    assert rows["BPR"][1] == "–" and rows["BPR"][-2:] == ["–", "–"]  # no count, no benchmark


def test_seconds_to_best_sum_training_and_validation_up_to_the_best_epoch(tmp_path):
    history = pd.DataFrame({"epoch": [1, 2, 3, 4], "seconds": [2.0, 3.0, 4.0, 5.0],
                            "eval_seconds": [0.5, None, 0.5, 0.5]})
    history.to_csv(tmp_path / "history.csv", index=False)
    assert seconds_to_best(tmp_path, 3) == pytest.approx(2.0 + 0.5 + 3.0 + 4.0 + 0.5)
    assert seconds_to_best(tmp_path, 4) == pytest.approx(15.5)
    assert math.isnan(seconds_to_best(tmp_path, math.nan))
    assert math.isnan(seconds_to_best(tmp_path / "absent", 3))


def test_ablation_table_orders_variants_and_escapes_names(results):
    values = {"crane": 0.10, "crane_no_cl": 0.08, "crane_concat": 0.09, "my_variant": 0.10}
    for variant, value in values.items():
        for seed in SEEDS:  # the full model's runs are the final CRANE runs
            kind = "final" if variant == "crane" else "ablations"
            write_run(results / "baby" / "runs" / kind / variant / f"seed{seed}", dataset="baby",
                      model="crane", seed=seed,
                      test={m: value + 0.001 * seed for m in METRICS})
    from crane.report.collect import discover_ablation_variants

    variants = discover_ablation_variants(results, ["baby"])
    assert variants == ["crane", "crane_concat", "crane_no_cl", "my_variant"]
    runs = collect_ablation_runs(results, ["baby"], variants + ["crane_rca1"], SEEDS)
    table, data = ablation_table(runs, ["baby"], variants + ["crane_rca1"], SEEDS)
    rows = {r.label: r.cells for r in table.sections[0].rows}
    assert rows["CRANE (full)"][0].text == "0.1020 ± 0.0010"
    assert rows["CRANE (full)"][0].emphasis == BEST and rows["my_variant"][0].emphasis == BEST
    assert rows["w/o RCA (concatenation)"][0].emphasis == SECOND
    assert [c.text for c in rows["RCA without recursion"]] == ["–"] * 4
    change = data.query("variant == 'crane_no_cl' and metric == 'recall@20'")["change_vs_full_pct"]
    assert change.iloc[0] == pytest.approx((0.082 - 0.102) / 0.102 * 100)
    tex = to_latex(table)
    assert r"my\_variant & \textbf{0.1020 $\pm$ 0.0010}" in tex
    assert "variant=crane_rca1 seed=1" in to_markdown(table)
