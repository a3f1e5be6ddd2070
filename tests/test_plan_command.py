"""`crane plan`: the jobs per rule match Snakemake's own dry run, and the CPU-hours estimate
follows the plan and the benchmark table (crane/study_summary.py)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from crane import layout, study_summary
from crane.cli import main as crane_main
from crane.study import StudyPlan

ROOT = Path(__file__).resolve().parents[1]
TEST_CONFIG = ROOT / "config" / "test.yaml"
BENCHMARK = ROOT / "benchmarks" / "results" / "benchmark.csv"


def snakemake_job_stats(tmp_path: Path, assignments: list[str]) -> dict[str, int]:
    """The first `Job stats:` table of `snakemake -n` on config/test.yaml (rule -> count)."""
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--quiet", "rules",
         "--configfile", str(TEST_CONFIG), "--config", *assignments],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = (result.stdout + result.stderr).splitlines()
    start = lines.index("Job stats:") + 3  # the title, the header and its rule
    counts = {}
    for line in lines[start:]:
        if not line.strip():
            break
        rule, count = line.split()
        counts[rule] = int(count)
    total = counts.pop("total")
    assert sum(counts.values()) == total
    return counts


@pytest.mark.parametrize("extra", [
    [],
    # a searched grid (grid points, selections) and CRANE's selection for its ablations and
    # sensitivity runs although CRANE is not one of the study's models
    ["tuning=grid", "models=[bpr,freedom]"],
], ids=["test-config", "grid-without-crane"])
def test_plan_counts_equal_snakemake_dry_run(tmp_path, extra):
    assignments = [f"results={tmp_path / 'results'}", *extra]
    config = study_summary.load_config([TEST_CONFIG], assignments)
    planned = study_summary.job_counts(StudyPlan(config))
    assert planned == snakemake_job_stats(tmp_path, assignments)


def test_config_files_merge_in_order_and_assignments_win(tmp_path):
    override = tmp_path / "more.yaml"
    override.write_text("seeds: [1, 2, 3]\ntraining: {epochs: 7}\n")
    config = study_summary.load_config([TEST_CONFIG, override], ["training.patience=5"])
    assert config["seeds"] == [1, 2, 3]
    # nested sections merge: test.yaml's batch size stays beside the new epochs
    assert config["training"]["epochs"] == 7 and config["training"]["batch_size"] == 1024
    assert config["training"]["patience"] == 5
    with pytest.raises(ValueError, match="missing.yaml not found"):
        study_summary.load_config([tmp_path / "missing.yaml"])


def small_study(tmp_path, seeds) -> StudyPlan:
    return StudyPlan(study_summary.load_config([TEST_CONFIG], [
        f"results={tmp_path / 'results'}", f"seeds={seeds}",
        "ablations.enabled=false", "sensitivity.enabled=false"]))


def test_estimate_is_positive_and_scales_with_seeds(tmp_path):
    one = study_summary.estimate(small_study(tmp_path, [1]), BENCHMARK)
    three = study_summary.estimate(small_study(tmp_path, [1, 2, 3]), BENCHMARK)
    assert one.typical_hours > 0
    assert three.typical_hours == pytest.approx(3 * one.typical_hours)
    assert three.datasets[0].runs == 3 * one.datasets[0].runs == 15


def test_estimate_caps_epochs_at_the_assumed_stop(tmp_path):
    plan = small_study(tmp_path, [1])
    plan.config["training"]["epochs"] = 1000
    capped = study_summary.estimate(plan, BENCHMARK, stop_epoch=100)
    assert capped.max_hours > 5 * capped.typical_hours
    assert study_summary.estimate(plan, BENCHMARK, stop_epoch=200).typical_hours == pytest.approx(
        2 * capped.typical_hours, rel=0.05)
    assert any("stops early at epoch 100" in text for text in capped.assumptions())


def test_estimate_prices_each_dataset_at_the_closest_scale():
    rows = study_summary.read_benchmark(BENCHMARK)
    assert study_summary.closest_row(rows, "lightgcn", 150_000).scale == "baby"
    assert study_summary.closest_row(rows, "lightgcn", 2_000_000).scale == "electronics"
    # a model the largest scale did not measure is priced at the closest scale that did
    assert study_summary.closest_row(rows, "bpr", 2_000_000).scale == "clothing"
    # a model benchmarked at a non-default point only (`freedom[...]`) goes by its name
    assert study_summary.closest_row(rows, "freedom", 150_000).scale == "baby"
    assert study_summary.closest_row(rows, "no_such_model", 1000) is None


def _table_with(path: Path, models: list[str], device: str, cpu: str) -> Path:
    """A copy of the stored table's Baby rows of `models`, as measured on `device`."""
    import csv
    with open(BENCHMARK, newline="") as handle:
        reader = csv.DictReader(handle)
        rows = [r for r in reader if r["scale"] == "baby" and r["model"] in models]
        fields = reader.fieldnames
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows({**r, "device": device} for r in rows)
    (path.parent / "machine.json").write_text(f'{{"cpu_model": "{cpu}"}}')
    return path


def test_a_model_the_table_lacks_is_priced_from_another_cpu_machine_not_a_gpu(tmp_path):
    main = _table_with(tmp_path / "results" / "benchmark.csv", ["bpr"], "cpu", "Machine A")
    other = _table_with(tmp_path / "results" / "b" / "benchmark.csv", ["lightgcn"], "cpu",
                        "Machine B")
    _table_with(tmp_path / "results" / "gpu" / "benchmark.csv", ["lightgcn", "freedom"],
                "cuda", "Machine C")
    assert study_summary.other_cpu_tables(main) == [other]
    plan = StudyPlan(study_summary.load_config([TEST_CONFIG], [
        f"results={tmp_path / 'study'}", "models=[bpr,lightgcn,freedom]",
        "ablations.enabled=false", "sensitivity.enabled=false"]))
    alone = study_summary.estimate(plan, main)
    helped = study_summary.estimate(plan, main, fallback_tables=[other])
    assert set(alone.datasets[0].unpriced) == {"lightgcn", "freedom"}
    assert set(helped.datasets[0].unpriced) == {"freedom"}  # the GPU table prices nothing
    assert helped.datasets[0].priced_elsewhere == {"lightgcn": other}
    assert helped.typical_hours > alone.typical_hours
    text = "\n".join(study_summary.format_estimate(helped))
    assert "(Machine B), which alone has their rows: lightgcn" in text


def test_grid_search_prices_the_grid_and_reuses_the_tuning_seed_run(tmp_path):
    plan = StudyPlan(study_summary.load_config([TEST_CONFIG], [
        f"results={tmp_path / 'results'}", "tuning=grid", "models=[bpr]", "seeds=[1,2]",
        "ablations.enabled=false", "sensitivity.enabled=false"]))
    grid = len(plan.grid_points("bpr"))
    assert grid > 1
    # the grid on the first seed, then the selected point on the second seed only
    runs = study_summary.training_run_dirs(plan, "demo")
    assert {model: len(dirs) for model, dirs in runs.items()} == {"bpr": grid + 1}


def test_plan_command_prints_counts_estimate_and_assumptions(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    assert crane_main(["plan", "--config", "config/test.yaml",
                       "--set", f"results={tmp_path / 'results'}"]) == 0
    out = capsys.readouterr().out
    assert "train_final" in out and "total" in out
    assert "CPU-hours" in out and "Assumptions:" in out
    assert "benchmarks/results/benchmark.csv" in out


def test_plan_command_without_benchmark_table_still_counts(tmp_path, capsys, monkeypatch):
    """An installed package has no benchmarks/ folder: the counts come, the estimate says why
    it is missing."""
    checkout = tmp_path / "checkout"
    shutil.copytree(ROOT / "crane", checkout / "crane",
                    ignore=shutil.ignore_patterns("__pycache__"))
    (checkout / "config").mkdir()
    shutil.copy(TEST_CONFIG, checkout / "config" / "test.yaml")
    result = subprocess.run(
        [sys.executable, "-m", "crane", "plan", "--config", "config/test.yaml"],
        cwd=checkout, capture_output=True, text=True, timeout=300,
        env={"PATH": "", "PYTHONPATH": str(checkout)})
    assert result.returncode == 0, result.stderr
    assert "train_final" in result.stdout
    assert "No benchmark table found" in result.stdout
    assert "CPU-hours" not in result.stdout


def test_benchmark_option_names_a_missing_file(capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    assert crane_main(["plan", "--config", "config/test.yaml", "--benchmark", "nope.csv"]) == 2
    assert "nope.csv not found" in capsys.readouterr().err


def test_outputs_message_names_tables_plots_and_report(tmp_path):
    results = tmp_path / "study"
    config = study_summary.load_config([TEST_CONFIG], [f"results={results}"])
    before = study_summary.outputs_message(config, ["config/test.yaml"])
    assert f"{results}/tables/" in before
    assert f"{results}/tables/convergence.png" in before
    assert f"snakemake --report {results}/report.html --configfile config/test.yaml" in before
    assert f"{results}/demo/runs/" in before
    # once built: the plots the tables folder holds, and the report without the hint
    (results / "tables").mkdir(parents=True)
    for name in ("convergence.png", "sensitivity.png"):
        (results / "tables" / name).write_bytes(b"png")
    hint = study_summary.outputs_message(config, ["config/test.yaml"], ["seeds=[1,2]"])
    assert "--configfile config/test.yaml --config seeds=[1,2])" in hint
    (results / "report.html").write_text("<html></html>")
    after = study_summary.outputs_message(config, ["config/test.yaml"])
    assert f"{results}/tables/convergence.png, {results}/tables/sensitivity.png" in after
    assert f"report  {results}/report.html\n" in after
    assert "not built yet" not in after
    # values set on top of the files are named, and go into the report command too
    with_seeds = study_summary.outputs_message(config, ["config/test.yaml"], ["seeds=[1,2]"])
    assert "Results of config/test.yaml with seeds=[1,2] are in" in with_seeds


def test_outputs_command_reads_the_results_folder_from_the_config(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    assert crane_main(["outputs", "--config", "config/test.yaml", "--report-path"]) == 0
    assert capsys.readouterr().out.strip() == "results/test/report.html"
    assert crane_main(["outputs", "--config", "config/config.yaml"]) == 0
    assert "results/demo/tables/" in capsys.readouterr().out


def test_a_preset_without_a_row_is_priced_as_its_model(tmp_path):
    table = _table_with(tmp_path / "results" / "benchmark.csv", ["crane"], "cpu", "Machine A")
    plan = StudyPlan(study_summary.load_config([TEST_CONFIG], [
        f"results={tmp_path / 'study'}", "models=[crane,crane_scalable]",
        "ablations.enabled=false", "sensitivity.enabled=false"]))
    part = study_summary.estimate(plan, table).datasets[0]
    assert not part.unpriced
    assert part.priced_as_base == {"crane_scalable": "crane"}
    alone = StudyPlan(study_summary.load_config([TEST_CONFIG], [
        f"results={tmp_path / 'study'}", "models=[crane]",
        "ablations.enabled=false", "sensitivity.enabled=false"]))
    # the preset's runs cost what crane's do: twice the runs, twice the hours
    assert study_summary.estimate(plan, table).typical_hours == pytest.approx(
        2 * study_summary.estimate(alone, table).typical_hours)
    text = "\n".join(study_summary.format_estimate(study_summary.estimate(plan, table)))
    assert "crane_scalable has no benchmark row: priced as crane" in text
    # a model that is no preset stays unpriced
    lone = _table_with(tmp_path / "other" / "benchmark.csv", ["bpr"], "cpu", "Machine A")
    unpriced = study_summary.estimate(plan, lone).datasets[0].unpriced
    assert set(unpriced) == {"crane", "crane_scalable"}


def test_finished_runs_price_what_is_left_at_their_own_mean_job(tmp_path):
    table = _table_with(tmp_path / "results" / "benchmark.csv", ["bpr", "lightgcn"], "cpu",
                        "Machine A")
    plan = StudyPlan(study_summary.load_config([TEST_CONFIG], [
        f"results={tmp_path / 'study'}", "models=[bpr,lightgcn]", "seeds=[1,2,3]",
        "ablations.enabled=false", "sensitivity.enabled=false"]))
    dataset = plan.datasets[0]
    before = study_summary.estimate(plan, table)
    assert before.finished_runs == 0 and before.left_hours == pytest.approx(before.typical_hours)
    # two of BPR's three runs finished, in jobs of 100 and 300 s; one run without a benchmark
    # file still counts as finished but prices nothing
    for seed, seconds in ((1, 100.0), (2, 300.0)):
        run = Path(plan.final_run(dataset, "bpr", seed))
        run.mkdir(parents=True)
        (run / "metrics.json").write_text("{}")
        record = layout.train_benchmark_path(plan.results, dataset, "bpr", seed)
        record.parent.mkdir(parents=True, exist_ok=True)
        record.write_text(f"s\th:m:s\tcpu_time\n{seconds}\t0:00:00\t{seconds}\n")
    (Path(plan.final_run(dataset, "lightgcn", 1)) / "metrics.json").parent.mkdir(parents=True)
    (Path(plan.final_run(dataset, "lightgcn", 1)) / "metrics.json").write_text("{}")
    after = study_summary.estimate(plan, table)
    part, whole = after.datasets[0], before.datasets[0]
    assert after.typical_hours == pytest.approx(before.typical_hours)  # the whole study's price
    assert part.finished_runs == 3 and part.finished_job_s == pytest.approx(400.0)
    assert part.measured_models == {"bpr"}
    lightgcn_run = (whole.typical_s - 3 * _typical_run(plan, table, "bpr")) / 3
    # left: BPR's last run at its own mean (200 s), LightGCN's two at the table's price
    assert part.left_s == pytest.approx(200.0 + 2 * lightgcn_run)
    text = "\n".join(study_summary.format_estimate(after))
    assert "finished: 3 of its training runs" in text
    assert "beside the 3 training runs that have finished" in text


def _typical_run(plan, table, model):
    """The benchmark table's price of one typical run of `model` in the plan's dataset."""
    rows = study_summary.read_benchmark(table)
    interactions, _ = study_summary.dataset_interactions(plan.config, plan.datasets[0])
    row = study_summary.closest_row(rows, model, interactions)
    return study_summary.run_seconds(row, interactions,
                                     min(study_summary.ASSUMED_STOP_EPOCH,
                                         int(plan.config["training"]["epochs"])),
                                     int(plan.config["training"].get("eval_every", 1)))


def test_finished_grid_runs_are_not_left_to_run(tmp_path):
    table = _table_with(tmp_path / "results" / "benchmark.csv", ["bpr"], "cpu", "Machine A")
    plan = StudyPlan(study_summary.load_config([TEST_CONFIG], [
        f"results={tmp_path / 'results'}", "tuning=grid", "models=[bpr]", "seeds=[1,2]",
        "ablations.enabled=false", "sensitivity.enabled=false"]))
    dataset = plan.datasets[0]
    runs = study_summary.training_run_dirs(plan, dataset)["bpr"]
    # every grid point on the tuning seed, and the final run of the other seed
    assert sorted(runs) == sorted(plan.tuning_runs(dataset, "bpr")
                                  + [plan.final_run(dataset, "bpr", 2)])
    before = study_summary.estimate(plan, table).datasets[0]
    for run in plan.tuning_runs(dataset, "bpr"):
        Path(run).mkdir(parents=True)
        (Path(run) / "metrics.json").write_text("{}")
    after = study_summary.estimate(plan, table).datasets[0]
    grid = len(plan.tuning_runs(dataset, "bpr"))
    assert after.finished_runs == grid and not after.measured_models
    assert after.left_s == pytest.approx(before.left_s / (grid + 1))  # the final run alone
