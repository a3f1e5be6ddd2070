"""What a study will run, what that costs, and where its outputs land.

- `job_counts`: the jobs per workflow rule that Snakemake plans for a config from an empty
  results folder, counted from the same `StudyPlan` the rules read (a test compares them
  with `snakemake -n`).
- `estimate`: CPU-hours of the training jobs, from the stored speed benchmark
  (benchmarks/results/benchmark.csv: seconds per epoch of every model at Baby, Clothing and
  Electronics scale; a model it lacks is priced from another CPU machine's table beside it),
  with every assumption spelt out in the result; runs that have finished are left out of
  what is left to run, the final ones set beside their price, and the rest of their model
  priced at their own mean job.
- `outputs_message`: where the tables, plots and report of a config are.

`crane plan` and `crane outputs` print these (crane/commands/plan.py). Nothing here imports
torch, so planning stays fast.
"""

from __future__ import annotations

import csv
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from crane import layout
from crane.config import ConfigError, load_yaml, set_overrides, validate_config
from crane.files import read_json
from crane.graphs import plan as graph_plan
from crane.study import StudyPlan

# The rules in pipeline order, as Snakemake's job table names them; `all` is the target rule.
RULES = ("acquire", "fetch_images", "preprocess", "dataset_stats", "features", "knn_graph",
         "train_grid_point", "select", "train_final", "train_ablation", "train_sensitivity",
         "train_modality_ablation", "train_mirror_gradient", "modality_ablation_table", "tables",
         "all")

# Where the stored benchmark table sits in a checkout (an installed package has none).
BENCHMARK_TABLE = Path("benchmarks") / "results" / "benchmark.csv"

# A run stops early once validation has not improved `patience` times in a row: the assumed
# epoch a typical run stops at (its best epoch plus the patience). Paper-scale runs of these
# models mostly peak within the first couple of hundred epochs; `crane plan --stop-epoch`
# changes the assumption, and the estimate also gives the bound where every run trains to
# the config's maximum.
ASSUMED_STOP_EPOCH = 200

# Interactions after the 5-core filter of the Amazon 2014 categories the paper uses (MMRec's
# processed datasets; the benchmark tables' Baby, Clothing and Electronics rows have these
# sizes), for a dataset that has not been preprocessed yet.
AMAZON2014_5CORE_INTERACTIONS = {
    "Baby": 160_792,
    "Sports_and_Outdoors": 296_337,
    "Clothing_Shoes_and_Jewelry": 278_677,
    "Electronics": 1_689_188,
}


# ---- the config ------------------------------------------------------------------------
def load_config(paths: Iterable[str | Path], assignments: Iterable[str] = ()) -> dict[str, Any]:
    """The validated config of `snakemake --configfile PATHS --config ASSIGNMENTS`: files
    merged in order (later keys win, nested mappings merged), then `key=value` assignments
    (dotted keys reach into mappings)."""
    merged: dict[str, Any] = {}
    for path in paths:
        if not Path(path).is_file():
            raise ConfigError(f"config file {path} not found")
        _merge_into(merged, load_yaml(path))
    return validate_config(set_overrides(merged, assignments))


def _merge_into(base: dict[str, Any], update: dict[str, Any]) -> None:
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge_into(base[key], value)
        else:
            base[key] = value


# ---- job counts --------------------------------------------------------------------------
def selected_models(plan: StudyPlan, dataset: str) -> list[str]:
    """The models of `dataset` whose grid is searched and selected on validation: the study's
    models, and CRANE when its ablation or sensitivity runs on this dataset read the selection."""
    models = set(plan.models)
    if any(run.startswith(f"{layout.runs_root(plan.results, dataset)}/")
           for run in plan.ablation_runs() + plan.sensitivity_runs()):
        models.add("crane")
    return sorted(m for m in models if plan.needs_selection(m))


def job_counts(plan: StudyPlan) -> dict[str, int]:
    """Jobs per rule that the workflow runs for `plan` from an empty results folder (rules
    without a job are left out), in pipeline order."""
    counts: Counter[str] = Counter()
    for dataset in plan.datasets:
        counts["acquire"] += 1
        counts["fetch_images"] += int(plan.needs_image_fetch(dataset))
        counts["preprocess"] += 1
        counts["dataset_stats"] += 1
        counts["features"] += len(plan.feature_dirs(dataset))
        counts["knn_graph"] += len(graph_plan.dataset_graphs(plan, dataset))
        for model in selected_models(plan, dataset):
            counts["train_grid_point"] += len(plan.tuning_runs(dataset, model))
            counts["select"] += 1
    # The ablation variant without overrides is the final CRANE run itself: one job.
    # So is the modality set of all the dataset's modalities.
    final_runs = set(plan.final_runs())
    ablation_runs = set(plan.ablation_runs())
    modality_runs = set(plan.modality_ablation_runs())
    counts["train_final"] = len(final_runs | {r for r in ablation_runs | modality_runs
                                              if _is_final(plan, r)})
    counts["train_ablation"] = len({r for r in ablation_runs if not _is_final(plan, r)})
    counts["train_sensitivity"] = len(set(plan.sensitivity_runs()))
    counts["train_modality_ablation"] = len({r for r in modality_runs if not _is_final(plan, r)})
    counts["train_mirror_gradient"] = len(set(plan.mirror_gradient_runs()))
    counts["modality_ablation_table"] = len(plan.modality_ablation_datasets())
    counts["tables"] = 1
    counts["all"] = 1
    return {rule: counts[rule] for rule in RULES if counts[rule]}


def _is_final(plan: StudyPlan, run: str) -> bool:
    return any(run.startswith(f"{layout.runs_root(plan.results, d)}/final/") for d in plan.datasets)


# ---- the benchmark table -----------------------------------------------------------------
@dataclass(frozen=True)
class BenchmarkRow:
    """One model's measured cost at one benchmark scale (seconds of process CPU time where
    the table has them, else wall seconds)."""

    scale: str
    model: str
    interactions: int
    epoch_s: float | None  # one training epoch (None: a model that fits once)
    eval_s: float  # one full-ranking evaluation pass
    fit_s: float  # the one-off fit of a model without epochs
    build_s: float  # graph and parameter set-up


def find_benchmark_table(explicit: str | Path | None = None) -> Path | None:
    """The benchmark table: `explicit`, else benchmarks/results/benchmark.csv in the working
    folder, else in the checkout this package sits in; None when there is none (an installed
    package carries no benchmarks)."""
    if explicit is not None:
        path = Path(explicit)
        if not path.is_file():
            raise FileNotFoundError(f"benchmark table {path} not found")
        return path
    checkout = Path(__file__).resolve().parents[1]
    for path in (Path.cwd() / BENCHMARK_TABLE, checkout / BENCHMARK_TABLE):
        if path.is_file():
            return path
    return None


def other_cpu_tables(table: Path) -> list[Path]:
    """The benchmark tables of other CPU machines beside `table` (<its folder>/*/benchmark.csv),
    which price the models `table` has no row for; a GPU table prices nothing on a CPU."""
    return [path for path in sorted(table.parent.glob(f"*/{table.name}"))
            if benchmark_device(path).startswith("cpu")]


def _number(row: dict[str, str], key: str) -> float | None:
    text = (row.get(key) or "").strip()
    return float(text) if text else None


def read_benchmark(path: str | Path) -> list[BenchmarkRow]:
    """The model rows of a benchmark table that finished (`status` ok). A model benchmarked at
    a non-default point is named `model[key=value,...]`; the plain name's row wins."""
    rows: dict[tuple[str, str], tuple[bool, BenchmarkRow]] = {}
    with open(path, newline="", encoding="utf-8") as handle:
        for line, raw in enumerate(csv.DictReader(handle), start=2):
            if raw.get("status") != "ok" or raw.get("model") == "graphs":
                continue
            try:
                model = raw["model"].split("[")[0]
                eval_s = _number(raw, "cpu_eval_s") or _number(raw, "eval_s") or 0.0
                epoch_s = _number(raw, "cpu_epoch_s") or _number(raw, "epoch_s")
                row = BenchmarkRow(scale=raw["scale"], model=model,
                                   interactions=int(float(raw["interactions"])),
                                   epoch_s=epoch_s, eval_s=eval_s,
                                   fit_s=_number(raw, "fit_s") or 0.0,
                                   build_s=_number(raw, "build_s") or 0.0)
            except (KeyError, ValueError) as error:
                raise ValueError(f"{path}, line {line}: not a benchmark row ({error})") from None
            exact = "[" not in raw["model"]
            key = (row.scale, model)
            if key not in rows or (exact and not rows[key][0]):
                rows[key] = (exact, row)
    return [row for _, row in rows.values()]


def benchmark_machine(path: str | Path) -> str:
    """The CPU model of a benchmark table, from the machine.json beside it."""
    machine = Path(path).parent / "machine.json"
    if machine.is_file():
        return str(read_json(machine).get("cpu_model") or "unknown CPU")
    return "unknown CPU"


def benchmark_device(path: str | Path) -> str:
    """The device and threads the table was measured with, e.g. `cpu, 2 threads`."""
    with open(path, newline="", encoding="utf-8") as handle:
        for raw in csv.DictReader(handle):
            if raw.get("device"):
                threads = raw.get("threads")
                return f"{raw['device']}, {threads} threads" if threads else raw["device"]
    return "unknown device"


# ---- dataset sizes -----------------------------------------------------------------------
def dataset_interactions(config: dict[str, Any], dataset: str) -> tuple[int | None, str]:
    """(interactions, where the number comes from) of one dataset of the config: its
    preprocessed stats when they exist, else the demo generator's expected size, else the
    known size of an Amazon 2014 category; (None, why) when unknown."""
    stats_path = layout.stats_path(config["results"], dataset)
    if stats_path.is_file():
        return int(read_json(stats_path)["interactions"]), f"from {stats_path}"
    source = config["datasets"][dataset]["source"]
    if source["type"] == "demo":
        from crane.data.demo import EXTRA_INTERACTIONS

        users = int(source.get("users", 1500))
        return round(users * (5 + EXTRA_INTERACTIONS)), "the demo generator's expected size"
    if source["type"] == "amazon2014" and source.get("category") in AMAZON2014_5CORE_INTERACTIONS:
        return (AMAZON2014_5CORE_INTERACTIONS[source["category"]],
                f"Amazon 2014 {source['category']}, 5-core (MMRec's processed size)")
    return None, "size unknown until preprocessed"


def closest_row(rows: list[BenchmarkRow], model: str, interactions: int) -> BenchmarkRow | None:
    """The model's row at the benchmark scale closest to `interactions` (by ratio)."""
    candidates = [r for r in rows if r.model == model]
    if not candidates:
        return None
    return min(candidates, key=lambda r: abs(math.log(interactions / r.interactions)))


# ---- the estimate ------------------------------------------------------------------------
@dataclass
class DatasetEstimate:
    dataset: str
    interactions: int | None
    size_source: str
    runs: int = 0  # training runs (the reused tuning-seed final runs are not trained again)
    typical_s: float = 0.0
    max_s: float = 0.0
    scales: set[str] = field(default_factory=set)
    unpriced: Counter = field(default_factory=Counter)  # model -> runs without a benchmark row
    priced_elsewhere: dict[str, Path] = field(default_factory=dict)  # model -> other table
    priced_as_base: dict[str, str] = field(default_factory=dict)  # preset -> its model
    finished_runs: int = 0        # training runs whose metrics.json exists
    finished_job_s: float = 0.0   # the finished final runs' jobs, wall seconds (Snakemake)
    left_s: float = 0.0           # the other runs, typical case; own mean job where measured
    finished_priced_s: float = 0.0  # what the benchmark table prices the measured runs at
    measured_models: set[str] = field(default_factory=set)


@dataclass
class Estimate:
    table: Path
    device: str
    stop_epoch: int
    max_epochs: int
    eval_every: int
    datasets: list[DatasetEstimate]

    @property
    def typical_hours(self) -> float:
        return sum(d.typical_s for d in self.datasets) / 3600

    @property
    def max_hours(self) -> float:
        return sum(d.max_s for d in self.datasets) / 3600

    @property
    def finished_runs(self) -> int:
        return sum(d.finished_runs for d in self.datasets)

    @property
    def left_hours(self) -> float:
        return sum(d.left_s for d in self.datasets) / 3600

    def assumptions(self) -> list[str]:
        return [
            f"cost per run from {_shown(self.table)} (measured on {self.device}): graph set-up + "
            f"epochs x (CPU seconds per training epoch + one validation pass every "
            f"{self.eval_every} epoch(s)) + one test pass; a model without epochs: its fit "
            f"+ a validation and a test pass",
            "each model priced at the benchmark scale closest to the dataset's number of "
            "interactions among the scales that measured it, the seconds scaled in proportion "
            "to interactions",
            f"a typical run stops early at epoch {min(self.stop_epoch, self.max_epochs)} (its "
            f"best epoch plus the patience; --stop-epoch changes it); the upper bound trains "
            f"every run to the config's {self.max_epochs} epochs",
            "every hyper-parameter point of a model costs what the benchmarked point costs",
            "training jobs only: downloads, features and kNN graphs are not included, nor each "
            "job's start-up (imports, a few seconds), which is most of a tiny dataset's time",
        ]


def training_run_dirs(plan: StudyPlan, dataset: str) -> dict[str, list[str]]:
    """model -> the run folders of `dataset` that train (the final run on the tuning seed
    reuses the selected grid run when a grid is searched, so it is not one of them)."""
    runs: dict[str, set[str]] = {}
    selected = set(selected_models(plan, dataset))
    for model in plan.models:
        runs.setdefault(model, set()).update(
            plan.final_run(dataset, model, seed) for seed in plan.seeds
            if not (model in selected and seed == plan.tuning_seed))
    for model in selected:
        runs.setdefault(model, set()).update(plan.tuning_runs(dataset, model))
    prefix = f"{layout.runs_root(plan.results, dataset)}/"
    runs.setdefault("crane", set()).update(
        r for r in plan.ablation_runs() + plan.sensitivity_runs()
        if r.startswith(prefix) and not _is_final(plan, r))
    modality_root = f"{layout.modality_ablation_root(plan.results, dataset)}/"
    for run in plan.modality_ablation_runs():
        if run.startswith(modality_root):  # <root>/<model>/<set>/seed<N>
            runs.setdefault(run[len(modality_root):].split("/")[0], set()).add(run)
    for model in plan.mirror_gradient_models():
        runs.setdefault(model, set()).update(
            plan.mirror_gradient_run(dataset, model, seed) for seed in plan.seeds)
    return {model: sorted(dirs) for model, dirs in sorted(runs.items()) if dirs}


def measured_final_jobs(plan: StudyPlan, dataset: str, model: str) -> list[float]:
    """The wall seconds of `model`'s finished final runs on `dataset` (metrics.json written),
    from Snakemake's benchmark file of each job that has one."""
    seconds: list[float] = []
    for seed in plan.seeds:
        if not layout.run_metrics_path(plan.final_run(dataset, model, seed)).is_file():
            continue
        record = layout.train_benchmark_path(plan.results, dataset, model, seed)
        try:
            with open(record, newline="", encoding="utf-8") as handle:
                seconds.append(float(list(csv.DictReader(handle, delimiter="\t"))[-1]["s"]))
        except (OSError, KeyError, ValueError, IndexError):
            continue  # finished, but its job's record is missing or unreadable
    return seconds


def run_seconds(row: BenchmarkRow, interactions: int, epochs: int, eval_every: int) -> float:
    """Seconds of one run of `row`'s model on a dataset of `interactions`, trained `epochs`."""
    scale = interactions / row.interactions
    if row.epoch_s is None:
        return (row.build_s + row.fit_s + 2 * row.eval_s) * scale
    validations = math.ceil(epochs / eval_every)
    return (row.build_s + epochs * row.epoch_s + (validations + 1) * row.eval_s) * scale


def _priced_row(model: str, interactions: int, rows: list[BenchmarkRow],
                fallbacks: list[tuple[Path, list[BenchmarkRow]]],
                part: DatasetEstimate) -> BenchmarkRow | None:
    """`model`'s row from the main table, else from the first other table that has one
    (recorded in `part.priced_elsewhere`)."""
    row = closest_row(rows, model, interactions)
    for path, other in fallbacks:
        if row is None:
            row = closest_row(other, model, interactions)
            if row is not None:
                part.priced_elsewhere[model] = path
    return row


def estimate(plan: StudyPlan, table: str | Path, stop_epoch: int = ASSUMED_STOP_EPOCH,
             fallback_tables: Iterable[str | Path] = ()) -> Estimate:
    """CPU-hours of the plan's training runs, priced from the benchmark `table`; a model it
    has no row for is priced from the first of `fallback_tables` (other machines) that has."""
    if stop_epoch < 1:
        raise ValueError(f"--stop-epoch must be at least 1, got {stop_epoch}")
    rows = read_benchmark(table)
    fallbacks = [(Path(path), read_benchmark(path)) for path in fallback_tables]
    training = plan.config["training"]
    max_epochs, eval_every = int(training["epochs"]), int(training.get("eval_every", 1))
    typical_epochs = min(stop_epoch, max_epochs)
    result = Estimate(Path(table), benchmark_device(table), stop_epoch, max_epochs, eval_every, [])
    for dataset in plan.datasets:
        interactions, source = dataset_interactions(plan.config, dataset)
        part = DatasetEstimate(dataset, interactions, source)
        for model, run_dirs in training_run_dirs(plan, dataset).items():
            runs = len(run_dirs)
            part.runs += runs
            row = _priced_row(model, interactions, rows, fallbacks, part) if interactions else None
            base = plan.specs[model].config.get("preset_of") if model in plan.specs else None
            if row is None and interactions and base:
                # a preset nobody benchmarked costs what its model costs (for crane_scalable,
                # whose switches exist to make crane's step cheaper, that prices it high)
                row = _priced_row(base, interactions, rows, fallbacks, part)
                if row is not None:
                    part.priced_as_base[model] = base
            finished = sum(layout.run_metrics_path(run).is_file() for run in run_dirs)
            measured = measured_final_jobs(plan, dataset, model) if model in plan.models else []
            part.finished_runs += finished
            part.finished_job_s += sum(measured)
            left = runs - finished
            if measured:  # this study's own runs of the model price the rest of them
                part.measured_models.add(model)
                part.left_s += left * sum(measured) / len(measured)
            if row is None:
                part.unpriced[model] += runs
                continue
            part.scales.add(row.scale)
            typical = run_seconds(row, interactions, typical_epochs, eval_every)
            part.typical_s += runs * typical
            part.max_s += runs * run_seconds(row, interactions, max_epochs, eval_every)
            part.finished_priced_s += len(measured) * typical
            if not measured:
                part.left_s += left * typical
        result.datasets.append(part)
    return result


# ---- text ---------------------------------------------------------------------------------
def _shown(path: Path) -> str:
    """`path` relative to the working folder when it lies under it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def format_counts(counts: dict[str, int]) -> list[str]:
    width = max(len(rule) for rule in [*counts, "total"])
    lines = [f"{'job':<{width}}  {'count':>6}", f"{'-' * width}  {'-' * 6}"]
    lines += [f"{rule:<{width}}  {count:>6,}" for rule, count in counts.items()]
    lines.append(f"{'total':<{width}}  {sum(counts.values()):>6,}")
    return lines


def _hours(value: float) -> str:
    return f"{value:,.1f}" if value >= 0.1 else f"{value:.3f}"


def format_estimate(result: Estimate) -> list[str]:
    lines = [f"Estimated compute of the training jobs: about {_hours(result.typical_hours)} "
             f"CPU-hours; at most {_hours(result.max_hours)} CPU-hours if every run trains "
             f"all {result.max_epochs} epochs."]
    if result.finished_runs:
        lines.append(f"Left to run, beside the {result.finished_runs:,} training runs that have "
                     f"finished: about {_hours(result.left_hours)} CPU-hours.")
    lines.append("Per dataset:")
    for part in result.datasets:
        size = f"{part.interactions:,} interactions" if part.interactions else "size unknown"
        scales = f"; benchmark scale {', '.join(sorted(part.scales))}" if part.scales else ""
        lines.append(f"  {part.dataset}: {part.runs:,} training runs, about "
                     f"{_hours(part.typical_s / 3600)} CPU-hours ({size}, {part.size_source}"
                     f"{scales})")
        elsewhere: dict[Path, list[str]] = {}
        for model, path in sorted(part.priced_elsewhere.items()):
            elsewhere.setdefault(path, []).append(model)
        for path, models in elsewhere.items():
            lines.append(f"    priced from {_shown(path)} ({benchmark_machine(path)}), which "
                         f"alone has their rows: {', '.join(models)}")
        for preset, base in sorted(part.priced_as_base.items()):
            lines.append(f"    {preset} has no benchmark row: priced as {base}, the model it is "
                         f"a preset of")
        if part.finished_runs:
            lines.append(
                f"    finished: {part.finished_runs:,} of its training runs (its final runs' "
                f"jobs took {_hours(part.finished_job_s / 3600)} hours by Snakemake's benchmark "
                f"files, against {_hours(part.finished_priced_s / 3600)} priced above); "
                f"left: about {_hours(part.left_s / 3600)} CPU-hours, the models with "
                f"finished runs ({len(part.measured_models)}) priced at their own mean job")
        if part.unpriced:
            missing = ", ".join(f"{m} ({n} runs)" for m, n in sorted(part.unpriced.items()))
            why = ("its size is unknown until it is preprocessed" if part.interactions is None
                   else "no benchmark row")
            lines.append(f"    not in the estimate ({why}): {missing}")
    lines.append("Assumptions:")
    lines += [f"  - {text}" for text in result.assumptions()]
    return lines


def report_path(config: dict[str, Any]) -> Path:
    """Where `python3 run.py demo` builds the Snakemake report of a config."""
    return Path(config["results"]) / "report.html"


def outputs_message(config: dict[str, Any], config_files: Iterable[str] = (),
                    assignments: Iterable[str] = ()) -> str:
    """Where a validated config's tables, plots, report, runs and logs are: the last thing
    `python3 run.py demo` prints. `config_files` and `assignments` name the config as
    Snakemake was given it. Plots are the .png files the tables folder holds (the
    convergence plot when none exists yet)."""
    config_files, assignments = list(config_files), list(assignments)
    results = Path(config["results"])
    tables = layout.tables_dir(results)
    plots = sorted(tables.glob("*.png")) or [layout.table_path(results, "convergence.png")]
    report = report_path(config)
    datasets = list(config["datasets"])
    dataset = datasets[0] if len(datasets) == 1 else "<dataset>"
    given = "".join(f" --configfile {f}" for f in config_files)
    given += f" --config {' '.join(assignments)}" if assignments else ""
    label = " + ".join(config_files) or "the config"
    label += f" with {' '.join(assignments)}" if assignments else ""
    report_line = f"  report  {report}"
    if not report.is_file():
        report_line += f"  (not built yet: snakemake --report {report}{given})"
    return "\n".join([
        f"Results of {label} are in {results}/:",
        f"  tables  {tables}/ (main.md: the main results table)",
        f"  plots   {', '.join(str(p) for p in plots)}",
        report_line,
        f"  runs    {layout.runs_root(results, dataset)}/ (one folder per run: metrics, history, manifest)",
        f"  logs    {layout.logs_dir(results, dataset)}/",
    ])
