"""`crane modality-table`: the modality-ablation table of one dataset.

A module of its own: the modality-ablation rule (workflow/rules/report.smk) runs it, and its
code inputs are this handler's imports (crane/code_inputs.py).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    table = subparsers.add_parser(
        "modality-table", help="the modality-ablation table of one dataset (model x modality "
                               "set: test Recall@20 and NDCG@20, change vs all modalities)")
    table.add_argument("--results", type=Path, required=True, help="results folder")
    table.add_argument("--out", type=Path, required=True,
                       help="output folder (tables/modality_ablation): writes <dataset>.*")
    table.add_argument("--dataset", required=True)
    table.add_argument("--models", nargs="+", required=True, help="content models, row order")
    table.add_argument("--sets", nargs="+", required=True, metavar="SET",
                       help="modality sets as folder names (text, image, image+text)")
    table.add_argument("--all-set", required=True,
                       help="the set of all the dataset's modalities (its runs are the final ones)")
    table.add_argument("--seeds", nargs="+", type=int, required=True)
    table.add_argument("--requires", nargs="*", default=[], metavar="MODEL=SET",
                       help="modalities a model needs by construction (its cells without them "
                            "are marked n/a)")
    table.add_argument("--baselines", nargs="*", default=[],
                       help="ID-only models shown for reference (their final runs)")
    table.set_defaults(func=run_modality_table)


def parse_requires(pairs: list[str]) -> dict[str, list[str]]:
    required = {}
    for pair in pairs:
        model, sep, modalities = pair.partition("=")
        if not sep or not model or not modalities:
            raise ValueError(f"--requires {pair!r}: expected MODEL=SET, e.g. dragon=image+text")
        required[model] = modalities.split("+")
    return required


def run_modality_table(args: argparse.Namespace) -> int:
    from crane.report.modality_ablation import write_modality_ablation

    written, runs = write_modality_ablation(
        args.results, args.out, args.dataset, args.models, args.sets, args.all_set, args.seeds,
        parse_requires(args.requires), args.baselines)
    log.info("wrote %s (%d runs missing)", ", ".join(sorted(written)), len(runs.missing))
    return 0
