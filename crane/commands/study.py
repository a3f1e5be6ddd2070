"""`crane runs-index`, `crane dvc-yaml`: the study's bookkeeping around its runs."""

from __future__ import annotations

import argparse
from pathlib import Path

from crane import files


def register(subparsers: argparse._SubParsersAction) -> None:
    index = subparsers.add_parser("runs-index", help="index of finished runs and their test metrics")
    index.add_argument("runs", nargs="+", type=Path, help="run folders")
    index.add_argument("--out", type=Path, required=True)
    index.set_defaults(func=runs_index_command)

    dvc = subparsers.add_parser("dvc-yaml", help="write dvc.yaml from a workflow config")
    dvc.add_argument("--config", default="config/config.yaml", help="the params file (relative path)")
    dvc.add_argument("--out", type=Path, default=Path("dvc.yaml"))
    dvc.add_argument("--check", action="store_true", help="exit 1 if dvc.yaml is out of date")
    dvc.set_defaults(func=dvc_yaml_command)


def runs_index_command(args: argparse.Namespace) -> int:
    """One JSON listing every run of a dataset: a stable target (and DVC-friendly summary)."""
    index = {}
    for run in args.runs:
        metrics = files.read_json(run / "metrics.json")
        index[str(run)] = {key: metrics.get(key) for key in ("model", "seed", "hp_hash", "best_epoch")}
        index[str(run)]["test"] = metrics["test"]
    files.write_json(args.out, index)
    return 0


def dvc_yaml_command(args: argparse.Namespace) -> int:
    from crane import dvc_stages

    if args.check:
        current = args.out.read_text() if args.out.exists() else ""
        if current != dvc_stages.render(args.config):
            print(f"{args.out} is out of date with {args.config}: run `crane dvc-yaml --config {args.config}`")
            return 1
        return 0
    changed = dvc_stages.write(args.config, args.out)
    print(f"{args.out} {'written' if changed else 'already up to date'}")
    return 0
