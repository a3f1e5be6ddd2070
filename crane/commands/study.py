"""`crane run`: one run of the study (grid point, selected point, ablation or sensitivity).

Unlike `crane train`, which takes everything explicitly, `crane run` resolves the
hyper-parameters the way the tuning policy says: inline (`--hparams`), or the point a
`crane select` chose on validation (`--selected`), plus `--extra` overrides (ablation
switches, sensitivity values). With `--reuse-from`, the tuning seed's grid run of that very
point is copied instead of trained again: same data, same seed, same numbers.
"""

from __future__ import annotations

import argparse
import logging
import shutil
from pathlib import Path

from crane import files
from crane.commands._spec import parse_spec
from crane.tuning import hp_hash

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("run", help="one run of the study (resolves tuning policy)",
                                   description=__doc__)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--data", type=Path, required=True, help="processed dataset folder")
    parser.add_argument("--feature", action="append", default=[], metavar="MODALITY=DIR",
                        help="feature folder per modality (repeatable)")
    parser.add_argument("--cache", type=Path, help="graph cache folder")
    parser.add_argument("--model", required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--training", type=parse_spec, default={}, help="training config JSON")
    parser.add_argument("--device", default="auto")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--hparams", type=parse_spec, help="hyper-parameters JSON")
    source.add_argument("--selected", type=Path, help="selection file written by `crane select`")
    parser.add_argument("--extra", type=parse_spec, default={}, help="overrides JSON")
    parser.add_argument("--reuse-from", type=Path,
                        help="grid-run root <results>/<ds>/runs/<model>: copy the matching run")
    parser.add_argument("--out", type=Path, required=True)
    parser.set_defaults(func=run_command)

    index = subparsers.add_parser("runs-index", help="index of finished runs and their test metrics")
    index.add_argument("runs", nargs="+", type=Path, help="run folders")
    index.add_argument("--out", type=Path, required=True)
    index.set_defaults(func=runs_index_command)

    dvc = subparsers.add_parser("dvc-yaml", help="write dvc.yaml from a workflow config")
    dvc.add_argument("--config", default="config/config.yaml", help="the params file (relative path)")
    dvc.add_argument("--out", type=Path, default=Path("dvc.yaml"))
    dvc.add_argument("--check", action="store_true", help="exit 1 if dvc.yaml is out of date")
    dvc.set_defaults(func=dvc_yaml_command)


def resolve_hparams(hparams: dict | None, selected: Path | None, extra: dict) -> dict:
    if selected is not None:
        selection = files.read_json(selected)
        if "hparams" not in selection:
            raise ValueError(f"{selected}: no 'hparams' key (not a `crane select` output?)")
        hparams = selection["hparams"]
    return {**(hparams or {}), **extra}


def reusable_run(reuse_from: Path, hparams: dict, seed: int) -> Path | None:
    candidate = reuse_from / hp_hash(hparams) / f"seed{seed}"
    return candidate if (candidate / "metrics.json").exists() else None


def parse_feature_dirs(pairs: list[str]) -> dict[str, Path]:
    feature_dirs = {}
    for pair in pairs:
        modality, sep, folder = pair.partition("=")
        if not sep:
            raise ValueError(f"--feature {pair!r} is not of the form MODALITY=DIR")
        feature_dirs[modality] = Path(folder)
    return feature_dirs


def run_command(args: argparse.Namespace) -> int:
    hparams = resolve_hparams(args.hparams, args.selected, args.extra)
    if args.reuse_from is not None and (source := reusable_run(args.reuse_from, hparams, args.seed)):
        log.info("reusing %s (same point, same seed) for %s", source, args.out)
        with files.atomic_dir(args.out) as tmp:
            shutil.copytree(source, tmp, dirs_exist_ok=True)
        return 0
    from crane.train import train_run  # torch import only when training

    metrics = train_run(
        data_dir=args.data, feature_dirs=parse_feature_dirs(args.feature), model=args.model,
        hparams=hparams, seed=args.seed, out_dir=args.out, training=args.training,
        device=args.device, cache_dir=args.cache, dataset=args.dataset,
    )
    log.info("test %s", {k: round(v, 4) for k, v in metrics["test"].items() if k.endswith("@20")})
    return 0


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
