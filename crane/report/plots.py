"""Figures: validation convergence curves and hyper-parameter sensitivity, as PNG and PDF.

Figures are built on `matplotlib.figure.Figure` directly (Agg canvas, no pyplot state), and
saved without time stamps or version strings so that reruns give identical files.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from crane.files import atomic_path
from crane.report.aggregate import summarise_over_seeds
from crane.report.collect import (MissingRun, RunCollection, history_metric_column,
                                  parse_value, read_history)
from crane.report.naming import metric_label, model_label

SENSITIVITY_COLUMNS = ["dataset", "param", "param_value", "x", "mean", "std", "n_seeds"]
# Fixed metadata: no creation date, no producer version, so output bytes are reproducible.
_PNG_METADATA = {"Software": None}
_PDF_METADATA = {"CreationDate": None, "Producer": None, "Creator": None}
# One (colour, marker) per model: ten colours and eleven markers, so the first ten models
# differ in both and the pairs stay distinct for up to 110 models, even where two colours look
# alike (blue and cyan; colour-blind readers, grey print).
_COLOURS = [f"tab:{c}" for c in ("blue", "orange", "green", "red", "purple", "brown", "pink",
                                  "gray", "olive", "cyan")]
_MARKERS = ["o", "s", "^", "D", "v", "P", "X", "<", ">", "h", "p"]
_OURS_STYLE = {"color": "black", "marker": "*", "linewidth": 2.6, "markersize": 8, "zorder": 5}
_MARKS_PER_CURVE = 8  # markers along a curve, whatever its number of epochs
FITTED_ONCE_NOTE = "fitted once"  # legend suffix of a model without training epochs


def convergence_data(runs: RunCollection, datasets: Sequence[str], models: Sequence[str],
                     metric: str = "recall@20") -> tuple[pd.DataFrame, list[MissingRun]]:
    """Validation `metric` per epoch, mean over the seeds that reached the epoch.

    Columns: model, dataset, epoch, <metric> (written as convergence.csv).
    """
    frames, missing = [], []
    for _, run in runs.runs.iterrows():  # one file per run
        path = Path(run["run_dir"]) / "history.csv"
        if not path.exists():
            key = tuple((c, run[c]) for c in runs.key_columns)
            missing.append(MissingRun("history", key, path))
            continue
        history = read_history(Path(run["run_dir"]))
        column = history_metric_column(history, metric, path)
        frames.append(pd.DataFrame({"model": run["model"], "dataset": run["dataset"],
                                    "seed": run["seed"], "epoch": history["epoch"].astype(int),
                                    metric: history[column].astype(float)}))
    if not frames:
        return pd.DataFrame(columns=["model", "dataset", "epoch", metric]), missing
    # Epochs without validation (eval_every > 1) have no value: they are not points.
    curves = (pd.concat(frames, ignore_index=True).dropna(subset=[metric])
              .groupby(["dataset", "model", "epoch"], sort=False)[metric].mean().reset_index())
    curves = curves.assign(_d=curves["dataset"].map({d: i for i, d in enumerate(datasets)}),
                           _m=curves["model"].map({m: i for i, m in enumerate(models)}))
    curves = curves.sort_values(["_d", "_m", "epoch"]).reset_index(drop=True)
    return curves[["model", "dataset", "epoch", metric]], missing


def convergence_figure(curves: pd.DataFrame, datasets: Sequence[str], models: Sequence[str],
                       metric: str = "recall@20", ours: str = "crane") -> Figure:
    """One panel per dataset, one curve per model; the legend sits right of the panels.

    A model fitted once (one validation point, e.g. MostPop) has no curve: its score is drawn
    as a dashed horizontal line across the panel, so it is visible and comparable.
    """
    figure, axes = _grid(len(datasets), width=4.2)
    for axis, dataset in zip(axes, datasets):
        subset = curves[curves["dataset"] == dataset]
        for model in models:
            line = subset[subset["model"] == model]
            if line.empty:
                continue
            style = model_style(models, model, ours)
            if len(line) == 1:
                axis.axhline(line[metric].iloc[0], linestyle="--", linewidth=1.4,
                             color=style["color"], marker=style["marker"], clip_on=False,
                             label=f"{model_label(model)} ({FITTED_ONCE_NOTE})")
                continue
            axis.plot(line["epoch"], line[metric], label=model_label(model),
                      markevery=max(1, len(line) // _MARKS_PER_CURVE), **style)
        axis.set_title(dataset)
        axis.set_xlabel("epoch")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.set_ylabel(f"validation {metric_label(metric)}")
        axis.grid(True, alpha=0.3)
        if subset.empty:
            _no_data(axis)
    _legend_outside(figure, axes)
    return figure


def model_style(models: Sequence[str], model: str, ours: str = "crane") -> dict:
    """Line style of a model, the same in every panel: `ours` thick black with a star, the
    others a (colour, marker) pair by their position among the non-`ours` models."""
    if model == ours:
        return dict(_OURS_STYLE)
    index = [m for m in models if m != ours].index(model)
    return {"color": _COLOURS[index % len(_COLOURS)], "marker": _MARKERS[index % len(_MARKERS)],
            "linewidth": 1.3, "markersize": 5, "zorder": 3}


def sensitivity_data(runs: RunCollection, metric: str = "recall@20") -> pd.DataFrame:
    """Test `metric` per (dataset, param, value): mean ± std (ddof=1) over seeds."""
    scores = runs.scores
    scores = scores[(scores["split"] == "test") & (scores["metric"] == metric)]
    summary = summarise_over_seeds(scores, ["dataset", "param", "param_value"])
    summary["x"] = [parse_value(v, Path(f"sensitivity/{p}")) for v, p in
                    zip(summary["param_value"], summary["param"])]
    return (summary.sort_values(["param", "x", "dataset"]).reset_index(drop=True)
            [SENSITIVITY_COLUMNS])


def sensitivity_figure(summary: pd.DataFrame, datasets: Sequence[str], params: Sequence[str],
                       metric: str = "recall@20",
                       seeds: Sequence[int] | None = None) -> Figure:
    """One panel per parameter, one line per dataset: mean over seeds with ± one sample std
    error bars. The title says over how many seeds; with one there are no error bars."""
    figure, axes = _grid(max(len(params), 1), width=3.8)
    for axis, param in zip(axes, params):
        subset = summary[summary["param"] == param]
        for dataset in datasets:
            line = subset[subset["dataset"] == dataset].sort_values("x")
            if line.empty:
                continue
            several = (line["n_seeds"] > 1).any()
            axis.errorbar(line["x"], line["mean"],
                          yerr=line["std"].fillna(0.0) if several else None,
                          label=dataset, markersize=4, capsize=4, linewidth=1.4,
                          **_dataset_style(datasets, dataset))
        if _wants_log_axis(subset["x"]):
            axis.set_xscale("log")
        elif not subset.empty and (subset["x"] % 1 == 0).all():
            axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.set_title(param)
        axis.set_xlabel(param)
        axis.set_ylabel(f"test {metric_label(metric)}")
        axis.grid(True, alpha=0.3)
        if subset.empty:
            _no_data(axis)
    if not params:
        axes[0].set_axis_off()
        _no_data(axes[0], "no sensitivity runs")
    figure.suptitle(_seeds_title(summary, seeds), fontsize="medium")
    _legend_outside(figure, axes)
    return figure


def _dataset_style(datasets: Sequence[str], dataset: str) -> dict:
    index = list(datasets).index(dataset)
    return {"color": _COLOURS[index % len(_COLOURS)], "marker": _MARKERS[index % len(_MARKERS)]}


def _seeds_title(summary: pd.DataFrame, seeds: Sequence[int] | None) -> str:
    """What the points are: mean ± std over N seeds, or one seed without error bars."""
    n = len(seeds) if seeds is not None else int(summary["n_seeds"].max() or 0)
    listed = f" ({', '.join(map(str, seeds))})" if seeds is not None else ""
    if n > 1:
        return f"mean ± sample std over {n} seeds{listed}"
    return f"one seed{listed}: no error bars"


def _legend_outside(figure: Figure, axes) -> None:
    """One legend for all panels, right of them, so that it never covers a curve."""
    handles, labels = {}, []
    for axis in axes:
        for handle, label in zip(*axis.get_legend_handles_labels()):
            if label not in handles:
                handles[label] = handle
                labels.append(label)
    if labels:
        figure.legend([handles[label] for label in labels], labels, loc="outside right upper",
                      fontsize="small", frameon=False)


def save_figure(figure: Figure, out_dir: Path, stem: str) -> dict[str, Path]:
    """Write <stem>.png and <stem>.pdf atomically; return {file name: path}."""
    written = {}
    for fmt, metadata, extra in (("png", _PNG_METADATA, {"dpi": 150}), ("pdf", _PDF_METADATA, {})):
        path = Path(out_dir) / f"{stem}.{fmt}"
        with atomic_path(path) as tmp:
            figure.savefig(tmp, format=fmt, metadata=metadata, **extra)
        written[path.name] = path
    return written


def _grid(n_panels: int, width: float):
    # Constrained layout makes room for the legend outside the panels (loc="outside ...").
    figure = Figure(figsize=(width * n_panels + 1.8, 3.4), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, n_panels, squeeze=False)[0]
    return figure, list(axes)


def _wants_log_axis(x: pd.Series) -> bool:
    """Log scale for positive values spanning two orders of magnitude (e.g. 1e-3 .. 1e-1)."""
    if x.empty or (x <= 0).any():
        return False
    return math.log10(x.max() / x.min()) >= 2


def _no_data(axis, text: str = "no runs") -> None:
    axis.text(0.5, 0.5, text, ha="center", va="center", transform=axis.transAxes)
