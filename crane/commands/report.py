"""`crane tables`, `crane ablation-table`, `crane sensitivity-plot`: paper tables and plots."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from crane.report.naming import DEFAULT_EDGES, MAIN_METRICS, PAIRINGS, PARTS, TESTS

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    tables = subparsers.add_parser(
        "tables", help="main, dataset, hyper-parameter, user-activity, efficiency, ablation "
                       "tables and convergence / sensitivity plots")
    _add_common(tables)
    tables.add_argument("--models", nargs="+", required=True,
                        help="models in table row order (grouped general / multimodal / ours)")
    tables.add_argument("--test", choices=TESTS, default="wilcoxon",
                        help="paired test on per-user metrics (default: wilcoxon)")
    tables.add_argument("--pairing", choices=PAIRINGS, default="user_mean",
                        help="user_mean: average each user over seeds (default); "
                             "concat: one pair per (seed, user)")
    tables.add_argument("--ours", default="crane", help="the model compared with the best baseline")
    tables.add_argument("--metrics", nargs="+", default=list(MAIN_METRICS),
                        help="metric columns of the main and ablation tables")
    tables.add_argument("--activity-bins", nargs="+", type=int, default=list(DEFAULT_EDGES),
                        metavar="N", help="edges of the user-activity bins (default: 5 10 20)")
    tables.add_argument("--curve-metric", default="recall@20",
                        help="metric of the curves, user-activity table and sensitivity plot")
    tables.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS),
                        help="which outputs to build (default: all)")
    tables.add_argument("--mirror-gradient", nargs="+", default=[], metavar="MODEL",
                        help="models whose Mirror Gradient runs are main-table rows "
                             "(config `mirror_gradient`)")
    tables.add_argument("--variants", nargs="*", default=None,
                        help="ablation variants (default: the folders found)")
    tables.add_argument("--grid", nargs="*", type=_grid_entry, default=None,
                        metavar="PARAM=V1,V2", help="sensitivity values (default: the folders found)")
    for part in ("ablation", "sensitivity"):
        tables.add_argument(f"--{part}-datasets", nargs="+", default=None, metavar="DATASET",
                            help=f"datasets the {part} runs were made for (default: --datasets)")
        tables.add_argument(f"--{part}-seeds", nargs="+", type=int, default=None, metavar="SEED",
                            help=f"seeds the {part} runs were made for (default: --seeds)")
    tables.set_defaults(func=_run_tables)

    ablation = subparsers.add_parser("ablation-table", help="the ablation table alone")
    _add_common(ablation)
    ablation.add_argument("--variants", nargs="*", default=None,
                          help="variants in row order (default: the folders found)")
    ablation.add_argument("--metrics", nargs="+", default=list(MAIN_METRICS))
    ablation.set_defaults(func=_run_ablation)

    sensitivity = subparsers.add_parser("sensitivity-plot", help="the sensitivity plot alone")
    _add_common(sensitivity)
    sensitivity.add_argument("--grid", nargs="*", type=_grid_entry, default=None,
                             metavar="PARAM=V1,V2", help="values per parameter (default: found)")
    sensitivity.add_argument("--metric", default="recall@20")
    sensitivity.set_defaults(func=_run_sensitivity)


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--results", type=Path, default=Path("results"), help="results folder")
    parser.add_argument("--out", type=Path, default=None,
                        help="output folder (default: <results>/tables)")
    parser.add_argument("--datasets", nargs="+", required=True)
    parser.add_argument("--seeds", nargs="+", type=int, required=True)


def _grid_entry(text: str) -> tuple[str, list[str]]:
    param, sep, values = text.partition("=")
    if not sep or not param or not values:
        raise argparse.ArgumentTypeError(f"expected PARAM=V1,V2,..., got {text!r}")
    return param, [v for v in values.split(",") if v]


def _out(args: argparse.Namespace) -> Path:
    return args.out if args.out is not None else args.results / "tables"


def _run_tables(args: argparse.Namespace) -> int:
    from crane.report import build

    written = build.build_report(
        args.results, _out(args), args.datasets, args.models, args.seeds, test=args.test,
        pairing=args.pairing, ours=args.ours, metrics=args.metrics,
        activity_bins=args.activity_bins, curve_metric=args.curve_metric,
        ablation_variants=args.variants,
        sensitivity_grid=dict(args.grid) if args.grid is not None else None,
        ablation_scope=_scope(args, "ablation"), sensitivity_scope=_scope(args, "sensitivity"),
        mirror_gradient=args.mirror_gradient, parts=args.parts)
    log.info("wrote %d files to %s", len(written), _out(args))
    return 0


def _scope(args: argparse.Namespace, part: str) -> tuple[list[str], list[int]]:
    datasets = getattr(args, f"{part}_datasets")
    seeds = getattr(args, f"{part}_seeds")
    return (datasets or args.datasets, seeds or args.seeds)


def _run_ablation(args: argparse.Namespace) -> int:
    from crane.report import build

    written, missing = build.write_ablation(args.results, _out(args), args.datasets, args.seeds,
                                            args.variants, args.metrics)
    log.info("wrote %s (%d runs missing)", ", ".join(written), len(missing))
    return 0


def _run_sensitivity(args: argparse.Namespace) -> int:
    grid = dict(args.grid) if args.grid is not None else None
    from crane.report import build

    written, missing = build.write_sensitivity(args.results, _out(args), args.datasets,
                                               args.seeds, grid, args.metric)
    log.info("wrote %s (%d runs missing)", ", ".join(written), len(missing))
    return 0
