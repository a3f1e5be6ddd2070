"""Build every table and figure of the study into one folder (results/tables/ by default).

Outputs, by part (see `PARTS`):
  main             main.md/.tex/.html/.csv (with a "<Model> + MG" row per Mirror Gradient
                   model), main_significance.csv, metrics.json (every test metric of the
                   final runs), headline_metrics/<dataset>/<model>.json (for `dvc metrics`)
  datasets         datasets.md/.tex/.html/.csv
  hyperparameters  hyperparameters.md/.tex/.html/.csv
  user_activity    user_activity.md/.tex/.html/.csv
  efficiency       efficiency.md/.tex/.html/.csv
  convergence      convergence.png/.pdf (also `dvc plots`), convergence.csv (model, dataset,
                   epoch, metric)
  ablation         ablation.md/.tex/.html/.csv (each variant tested against the full model)
  sensitivity      sensitivity.png/.pdf, sensitivity.md/.tex/.html/.csv
and always missing.txt: every expected input that was not found.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Mapping, Sequence

from crane import files
from crane import layout
from crane.report import significance
from crane.report.ablation import ablation_table
from crane.report.collect import (MissingRun, collect_ablation_runs, collect_final_runs,
                                  collect_mirror_gradient_runs, collect_sensitivity_runs,
                                  combine_runs, discover_ablation_variants,
                                  discover_sensitivity, sort_values)
from crane.report.datasets_table import dataset_statistics
from crane.report.efficiency import efficiency_table
from crane.report.headline_metrics import write_headline_metrics
from crane.report.hyperparameters import selected_hyperparameters
from crane.report.main_results import main_results
from crane.report.sensitivity import sensitivity_table
from crane.report.naming import MAIN_METRICS, PARTS, with_mirror_gradient
from crane.report.plots import (convergence_data, convergence_figure, save_figure,
                                sensitivity_data, sensitivity_figure)
from crane.report.tables import to_csv, write_table
from crane.report.user_activity import DEFAULT_EDGES, user_activity

log = logging.getLogger(__name__)


_FINAL_RUN_PARTS = {"main", "hyperparameters", "user_activity", "efficiency", "convergence"}


def build_report(results_dir: str | Path, out_dir: str | Path, datasets: Sequence[str],
                 models: Sequence[str], seeds: Sequence[int], *,
                 test: str = "wilcoxon", pairing: str = "user_mean", ours: str = "crane",
                 metrics: Sequence[str] = MAIN_METRICS,
                 activity_bins: Sequence[int] = DEFAULT_EDGES,
                 curve_metric: str = "recall@20",
                 ablation_variants: Sequence[str] | None = None,
                 sensitivity_grid: Mapping[str, Sequence[str]] | None = None,
                 ablation_scope: tuple[Sequence[str], Sequence[int]] | None = None,
                 sensitivity_scope: tuple[Sequence[str], Sequence[int]] | None = None,
                 mirror_gradient: Sequence[str] = (),
                 parts: Sequence[str] = PARTS) -> dict[str, Path]:
    """Write the parts' tables and figures into `out_dir`; return {file name: path}.

    `ablation_variants` / `sensitivity_grid` ({param: [value folder names]}) default to what
    is found on disk. `ablation_scope` / `sensitivity_scope` are the (datasets, seeds) those
    runs were made for (a study often runs them on fewer of each than the main table); both
    default to `datasets` and `seeds`. `mirror_gradient` names the models whose Mirror Gradient
    runs are rows of the main table ("<Model> + MG", after the model). `curve_metric` is the
    metric of the convergence curves (validation), the user-activity table and the
    sensitivity plots (test).
    """
    results_dir, out_dir = Path(results_dir), Path(out_dir)
    _check_arguments(datasets, models, seeds, test, pairing, parts)
    written: dict[str, Path] = {}
    missing: list[MissingRun] = []

    if _FINAL_RUN_PARTS & set(parts):
        runs = collect_final_runs(results_dir, datasets, models, seeds)
        log.info("final runs: %d found, %d missing", len(runs.runs), len(runs.missing))
        missing.extend(runs.missing)
    if "main" in parts:
        main_runs, main_models = runs, list(models)
        if mirror_gradient:
            # its missing runs come back in result.missing (kind "mirror_gradient")
            mirror = collect_mirror_gradient_runs(results_dir, datasets, mirror_gradient, seeds)
            main_runs = combine_runs(runs, mirror)
            main_models = with_mirror_gradient_rows(models, mirror_gradient)
        result = main_results(main_runs, datasets, main_models, seeds, metrics, ours, test,
                              pairing)
        written |= write_table(result.table, result.data, out_dir, "main")
        written |= _write_text(out_dir / "main_significance.csv", to_csv(result.significance))
        missing.extend(m for m in result.missing if m.kind != "final")
        path = out_dir / "metrics.json"
        files.write_json(path, dvc_metrics(runs.scores))
        written[path.name] = path
        written |= write_headline_metrics(runs.scores, out_dir)
    if "datasets" in parts:
        table, data, absent = dataset_statistics(results_dir, datasets)
        written |= write_table(table, data, out_dir, "datasets")
        missing.extend(absent)
    if "hyperparameters" in parts:
        table, data, absent = selected_hyperparameters(results_dir, runs, datasets, models)
        written |= write_table(table, data, out_dir, "hyperparameters")
        missing.extend(absent)
    if "user_activity" in parts:
        table, data, absent = user_activity(runs, datasets, models, activity_bins, curve_metric,
                                            ours)
        written |= write_table(table, data, out_dir, "user_activity")
        missing.extend(absent)
    if "efficiency" in parts:
        table, data = efficiency_table(results_dir, runs, datasets, models, seeds)
        written |= write_table(table, data, out_dir, "efficiency")
    if "convergence" in parts:
        curves, absent = convergence_data(runs, datasets, models, curve_metric)
        written |= save_figure(convergence_figure(curves, datasets, models, curve_metric, ours),
                               out_dir, "convergence")
        written |= _write_text(out_dir / "convergence.csv", to_csv(curves))
        missing.extend(absent)
    if "ablation" in parts:
        scope_datasets, scope_seeds = ablation_scope or (datasets, seeds)
        files_written, absent = write_ablation(results_dir, out_dir, scope_datasets,
                                               scope_seeds, ablation_variants, metrics,
                                               test, pairing)
        written |= files_written
        missing.extend(absent)
    if "sensitivity" in parts:
        scope_datasets, scope_seeds = sensitivity_scope or (datasets, seeds)
        files_written, absent = write_sensitivity(results_dir, out_dir, scope_datasets,
                                                  scope_seeds, sensitivity_grid, curve_metric,
                                                  test, pairing)
        written |= files_written
        missing.extend(absent)

    written |= _write_text(out_dir / "missing.txt", missing_report(missing))
    return dict(sorted(written.items()))


def with_mirror_gradient_rows(models: Sequence[str], mirror_gradient: Sequence[str]) -> list[str]:
    """The main table's rows: each model, then its Mirror Gradient row if it has one."""
    unknown = [m for m in mirror_gradient if m not in models]
    if unknown:
        raise ValueError(f"mirror gradient model(s) {', '.join(unknown)} not among the models "
                         f"({', '.join(models)})")
    return [row for m in models
            for row in ([m, with_mirror_gradient(m)] if m in mirror_gradient else [m])]


def write_ablation(results_dir: str | Path, out_dir: str | Path, datasets: Sequence[str],
                   seeds: Sequence[int], variants: Sequence[str] | None = None,
                   metrics: Sequence[str] = MAIN_METRICS, test: str = "wilcoxon",
                   pairing: str = "user_mean") -> tuple[dict[str, Path], list[MissingRun]]:
    """ablation.md/.tex/.html/.csv; `variants` default to the folders under results/<d>/ablations/."""
    results_dir = Path(results_dir)
    if variants is None:
        variants = discover_ablation_variants(results_dir, datasets)
    runs = collect_ablation_runs(results_dir, datasets, variants, seeds)
    table, data = ablation_table(runs, datasets, variants, seeds, metrics, test, pairing)
    return write_table(table, data, Path(out_dir), "ablation"), runs.missing


def write_sensitivity(results_dir: str | Path, out_dir: str | Path, datasets: Sequence[str],
                      seeds: Sequence[int], grid: Mapping[str, Sequence[str]] | None = None,
                      metric: str = "recall@20", test: str = "wilcoxon",
                      pairing: str = "user_mean") -> tuple[dict[str, Path], list[MissingRun]]:
    """sensitivity.png/.pdf and its table (.md/.tex/.html/.csv); `grid` defaults to the
    folders under results/<d>/sensitivity/."""
    results_dir = Path(results_dir)
    if grid is None:
        grid = discover_sensitivity(results_dir, datasets)
    grid = {p: sort_values(v, layout.sensitivity_root(results_dir, "<dataset>") / p)
            for p, v in sorted(grid.items())}
    runs = collect_sensitivity_runs(results_dir, datasets, grid, seeds)
    summary = sensitivity_data(runs, metric)
    figure = sensitivity_figure(summary, datasets, list(grid), metric, seeds)
    written = save_figure(figure, Path(out_dir), "sensitivity")
    # each point against the full model at its selected point (the final CRANE runs)
    selected = collect_final_runs(results_dir, datasets, [layout.FULL_MODEL_VARIANT], seeds)
    table, data = sensitivity_table(runs, selected, summary, datasets, metric, seeds, test,
                                    pairing)
    written |= write_table(table, data, Path(out_dir), "sensitivity")
    return written, runs.missing


def dvc_metrics(scores, decimals: int = 6) -> dict:
    """{dataset: {model: {metric: mean test value over seeds}}} for `dvc metrics`."""
    test = scores[scores["split"] == "test"]
    means = test.groupby(["dataset", "model", "metric"], sort=True)["value"].mean()
    result: dict = {}
    for (dataset, model, metric), value in means.items():
        result.setdefault(dataset, {}).setdefault(model, {})[metric] = round(float(value), decimals)
    return result


def missing_report(missing: Sequence[MissingRun]) -> str:
    lines = sorted({m.describe() for m in missing})
    if not lines:
        return "Nothing missing: every expected input was found.\n"
    return f"{len(lines)} expected input(s) not found:\n" + "\n".join(lines) + "\n"


def _write_text(path: Path, text: str) -> dict[str, Path]:
    files.write_text(path, text)
    return {path.name: path}


def _check_arguments(datasets, models, seeds, test, pairing, parts) -> None:
    if not datasets:
        raise ValueError("report: give at least one dataset")
    if not models:
        raise ValueError("report: give at least one model")
    if not seeds:
        raise ValueError("report: give at least one seed")
    if test not in significance.TESTS:
        raise ValueError(f"report: unknown test {test!r}; choose from {', '.join(significance.TESTS)}")
    if pairing not in significance.PAIRINGS:
        raise ValueError(f"report: unknown pairing {pairing!r}; "
                         f"choose from {', '.join(significance.PAIRINGS)}")
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        raise ValueError(f"report: unknown part(s) {', '.join(unknown)}; choose from {', '.join(PARTS)}")
