"""`crane acquire`, `crane preprocess`, `crane stats`: the data steps of the pipeline."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from crane import files
from crane.commands._spec import add_spec_argument


def register(subparsers: argparse._SubParsersAction) -> None:
    acquire = subparsers.add_parser(
        "acquire", help="download, copy or generate a dataset's raw files",
        description="Fill RAW_DIR with the dataset's raw files (resumable; writes "
                    "acquired.json last).")
    acquire.add_argument("--dataset", required=True, metavar="NAME",
                         help="dataset name (config key)")
    add_spec_argument(acquire, help_text="the dataset's config block datasets.<name>: "
                                         "JSON, or @file (JSON/YAML)")
    acquire.add_argument("--out", required=True, type=Path, metavar="RAW_DIR",
                         help="raw folder to fill")
    acquire.add_argument("--no-progress", action="store_true", help="no progress bars")
    acquire.set_defaults(func=_acquire)

    preprocess = subparsers.add_parser(
        "preprocess", help="raw files -> processed split (parquet + MMRec files)",
        description="Clean, k-core, dense ids, split; write DATA_DIR atomically.")
    preprocess.add_argument("--dataset", required=True, metavar="NAME",
                            help="dataset name (config key)")
    add_spec_argument(preprocess, help_text="the dataset's config block datasets.<name>: "
                                            "JSON, or @file (JSON/YAML)")
    preprocess.add_argument("--raw", required=True, type=Path, metavar="RAW_DIR",
                            help="acquired raw folder")
    preprocess.add_argument("--out", required=True, type=Path, metavar="DATA_DIR",
                            help="processed folder to write (replaced whole)")
    preprocess.set_defaults(func=_preprocess)

    stats = subparsers.add_parser(
        "stats", help="statistics table of processed datasets",
        description="Print users, items, interactions, sparsity and split sizes.")
    stats.add_argument("--data", required=True, type=Path, nargs="+", metavar="DATA_DIR",
                       help="processed folder(s)")
    stats.add_argument("--out", type=Path, default=None, metavar="FILE",
                       help="also write the table: .json for JSON, else markdown")
    stats.set_defaults(func=_stats)


def _acquire(args: argparse.Namespace) -> int:
    from crane.data.sources import acquire

    acquire(args.dataset, args.spec, args.out, progress=not args.no_progress)
    return 0


def _preprocess(args: argparse.Namespace) -> int:
    from crane.data.prepare import prepare_dataset

    prepare_dataset(args.dataset, args.spec, args.raw, args.out)
    return 0


def _stats(args: argparse.Namespace) -> int:
    from crane.data.stats import dataset_stats, format_table

    rows = []
    for data_dir in args.data:
        stats = dataset_stats(data_dir)
        rows.append((str(stats.get("dataset") or data_dir.parent.name), stats))
    table = format_table(rows)
    sys.stdout.write(table)
    if args.out is not None:
        if args.out.suffix == ".json":
            files.write_json(args.out, {name: stats for name, stats in rows})
        else:
            files.write_text(args.out, table)
    return 0
