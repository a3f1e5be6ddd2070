"""`crane plan`, `crane outputs`: what a config will run and cost, and where its outputs land.

A module of their own, so that editing them changes no pipeline job's code inputs
(crane/code_inputs.py reads a job's command module as a whole file).
"""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    plan = subparsers.add_parser(
        "plan", help="jobs per rule of a config, and an estimate of their CPU-hours",
        description="The jobs per workflow rule that `snakemake --configfile CONFIG` runs from "
        "an empty results folder, and the CPU-hours of its training jobs estimated from the "
        "stored speed benchmark (benchmarks/results/benchmark.csv), with its assumptions.")
    _config_arguments(plan)
    plan.add_argument("--benchmark", type=Path, default=None,
                      help="benchmark table to price runs from (default: "
                           "benchmarks/results/benchmark.csv of the checkout)")
    plan.add_argument("--stop-epoch", type=int, default=None,
                      help="assumed epoch a typical run stops early at (default: "
                           "crane.study_summary.ASSUMED_STOP_EPOCH)")
    plan.set_defaults(func=plan_command)

    outputs = subparsers.add_parser(
        "outputs", help="where a config's tables, plots and report are")
    _config_arguments(outputs)
    outputs.add_argument("--report-path", action="store_true",
                         help="print only the path of the Snakemake report (<results>/report.html)")
    outputs.set_defaults(func=outputs_command)


def _config_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", nargs="+", default=["config/config.yaml"], metavar="FILE",
                        help="config file(s), merged in order as snakemake --configfile does "
                             "(default: config/config.yaml)")
    parser.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE",
                        help="values on top, as snakemake --config KEY=VALUE (dotted keys reach "
                             "into sections: training.epochs=50)")


def _label(args: argparse.Namespace) -> str:
    """The config as the user gave it: files, and the values set on top."""
    return " + ".join(args.config) + (f" with {' '.join(args.set)}" if args.set else "")


def plan_command(args: argparse.Namespace) -> int:
    from crane import study_summary
    from crane.study import StudyPlan

    config = study_summary.load_config(args.config, args.set)
    plan = StudyPlan(config)
    print(f"Plan of {_label(args)} (results in {config['results']}/): jobs per rule from an "
          f"empty results folder")
    print("\n".join(study_summary.format_counts(study_summary.job_counts(plan))))
    print()
    table = study_summary.find_benchmark_table(args.benchmark)
    if table is None:
        print(f"No benchmark table found ({study_summary.BENCHMARK_TABLE} in the working folder "
              f"or the checkout), so no estimate of the compute: run from a checkout or pass "
              f"--benchmark FILE.")
        return 0
    stop_epoch = args.stop_epoch or study_summary.ASSUMED_STOP_EPOCH
    # the stored table's gaps are priced from other CPU machines' tables beside it, unless a
    # table was named
    fallbacks = [] if args.benchmark else study_summary.other_cpu_tables(table)
    result = study_summary.estimate(plan, table, stop_epoch, fallbacks)
    print("\n".join(study_summary.format_estimate(result)))
    return 0


def outputs_command(args: argparse.Namespace) -> int:
    from crane import study_summary

    config = study_summary.load_config(args.config, args.set)
    if args.report_path:
        print(study_summary.report_path(config))
    else:
        print(study_summary.outputs_message(config, args.config, args.set))
    return 0
