"""`crane train`, `crane evaluate`, `crane select`, `crane models`: the training engine's steps.

`crane train` trains one run of a model at one hyper-parameter point and seed. The point is,
later wins: the model file's default point (crane/configs/models/<model>.yaml, or
`--model-config DIR`), then `--hparams` or the point a `crane select` chose (`--selected`),
then `--extra` (one JSON object: the study's ablation and sensitivity switches), then `--set
KEY=VALUE`. Trainer settings come from `--training` and `--set training.KEY=VALUE`; the keys
the model file's `training:` block declares belong to the point instead (config/README.md).
With `--reuse-from`, the tuning seed's grid run of that very point is copied instead of
trained again: same data, same seed, same numbers.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
from pathlib import Path
from typing import Any

from crane import files
from crane.commands._spec import parse_feature_dirs, parse_spec

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    train = subparsers.add_parser(
        "train", help="train one model / hyper-parameter point / seed into a run folder",
        description=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    train.add_argument("--data", required=True, type=Path, help="processed dataset folder")
    train.add_argument("--feature", action="append", default=[], metavar="MODALITY=DIR",
                       help="feature folder of one modality (repeatable), e.g. text=DIR")
    train.add_argument("--cache", type=Path, default=None, help="cache folder (kNN graphs)")
    train.add_argument("--model", required=True, help="registered model name (crane models)")
    train.add_argument("--model-config", type=Path, default=None, metavar="DIR",
                       help="folder of <model>.yaml (default: the packaged crane/configs/models)")
    point = train.add_mutually_exclusive_group()
    point.add_argument("--hparams", type=parse_spec, default=None,
                       help="hyper-parameters, JSON or @file, over the model's default point")
    point.add_argument("--selected", type=Path, default=None,
                       help="the point chosen by `crane select` (its selected/<model>.json)")
    train.add_argument("--extra", type=parse_spec, default=None,
                       help="overrides of the point as one JSON object (ablation switches)")
    train.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       dest="overrides",
                       help="override a hyper-parameter (reg_weight=1e-3) or a trainer "
                            "setting (training.epochs=5); repeatable")
    train.add_argument("--seed", type=int, required=True)
    train.add_argument("--training", type=parse_spec, default=None,
                       help="trainer settings, JSON or @file (epochs, patience, ...)")
    train.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    train.add_argument("--threads", type=int, default=None,
                       help="CPU threads for torch (default: torch's own choice)")
    train.add_argument("--reuse-from", type=Path, default=None, metavar="DIR",
                       help="grid-run root <results>/<ds>/runs/grid/<model>: copy the run of "
                            "the same point and seed when it exists")
    train.add_argument("--out", required=True, type=Path, help="run folder to write")
    train.add_argument("--dataset", default=None, help="dataset name recorded in metrics.json")
    train.set_defaults(func=run_train)

    evaluate = subparsers.add_parser(
        "evaluate", help="re-score a finished run's checkpoint",
        description="Re-score a run's best checkpoint on validation and test; print the "
                    "metrics as JSON and optionally export each test user's top-K items.")
    evaluate.add_argument("--run", required=True, type=Path, help="run folder")
    evaluate.add_argument("--data", type=Path, default=None,
                          help="processed dataset folder (default: the one the run used)")
    evaluate.add_argument("--topk", type=int, default=0, help="export top-K lists (K > 0)")
    evaluate.add_argument("--topk-out", type=Path, default=None,
                          help="where to write the top-K parquet (default RUN/topk.parquet)")
    evaluate.add_argument("--device", default="auto")
    evaluate.add_argument("--threads", type=int, default=None)
    evaluate.set_defaults(func=run_evaluate)

    select = subparsers.add_parser(
        "select", help="choose a grid point by its VALIDATION metric",
        description="Read the metrics.json of each run folder (one grid point each, in grid "
                    "order) and write the point with the best validation metric.")
    select.add_argument("--runs", nargs="+", required=True, type=Path, help="run folders")
    select.add_argument("--metric", default="recall@20")
    select.add_argument("--out", required=True, type=Path, help="selected/<model>.json")
    select.set_defaults(func=run_select)

    listing = subparsers.add_parser("models", help="list the registered models")
    listing.set_defaults(func=run_models)


def set_threads(threads: int | None) -> None:
    """Honour the rule's thread budget (Snakemake `threads:`) instead of every core."""
    if threads is None:
        return
    if threads < 1:
        raise ValueError(f"--threads must be >= 1, got {threads}")
    import torch

    torch.set_num_threads(threads)


def parse_overrides(pairs: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """`--set` pairs -> (hyper-parameter overrides, training overrides).

    Values are read as JSON where they parse (1e-3, 5, true, [0.96, 50]), else as strings.
    """
    hparams: dict[str, Any] = {}
    training: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"--set {pair!r}: expected KEY=VALUE")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        if key.startswith("training."):
            training[key.removeprefix("training.")] = value
        else:
            hparams[key] = value
    return hparams, training


def selected_point(path: Path) -> dict[str, Any]:
    selection = files.read_json(path)
    if "hparams" not in selection:
        raise ValueError(f"{path}: no 'hparams' key (not a `crane select` output?)")
    return selection["hparams"]


def resolve_point(model: str, config_dir: Path | None, given: dict[str, Any] | None,
                  extra: dict[str, Any] | None, overrides: dict[str, Any]) -> dict[str, Any]:
    """The run's point: the model file's default point (when the file exists), then `given`
    (--hparams or --selected), then `extra`, then `overrides` (--set)."""
    from crane.tuning import default_point, load_model_config, model_config_path

    path = model_config_path(model, config_dir)
    defaults: dict[str, Any] = {}
    if path.exists():
        defaults = default_point(load_model_config(model, config_dir))
    elif given is None:
        raise FileNotFoundError(f"{path}: no defaults for model {model!r}; pass --hparams")
    return {**defaults, **(given or {}), **(extra or {}), **overrides}


def split_training_overrides(training_overrides: dict[str, Any], declared: tuple[str, ...]
                             ) -> tuple[dict[str, Any], dict[str, Any]]:
    """`--set training.KEY` pairs -> (point values for keys the model file declares, trainer
    settings for the others)."""
    to_point = {k: v for k, v in training_overrides.items() if k in declared}
    to_training = {k: v for k, v in training_overrides.items() if k not in declared}
    return to_point, to_training


def reusable_run(reuse_from: Path, hparams: dict[str, Any], seed: int) -> Path | None:
    from crane.tuning import hp_hash

    candidate = reuse_from / hp_hash(hparams) / f"seed{seed}"
    return candidate if (candidate / "metrics.json").exists() else None


def run_train(args: argparse.Namespace) -> int:
    from crane import models
    from crane.tuning import declared_training_keys

    models.get(args.model)  # unknown name: fail before reading any data
    feature_dirs = parse_feature_dirs(args.feature)
    hp_overrides, training_overrides = parse_overrides(args.overrides)
    declared = declared_training_keys(args.model, args.model_config)
    to_point, to_training = split_training_overrides(training_overrides, declared)
    given = selected_point(args.selected) if args.selected is not None else args.hparams
    hparams = resolve_point(args.model, args.model_config, given, args.extra,
                            {**hp_overrides, **to_point})
    if args.reuse_from is not None and (source := reusable_run(args.reuse_from, hparams,
                                                               args.seed)):
        log.info("reusing %s (same point, same seed) for %s", source, args.out)
        with files.atomic_dir(args.out) as tmp:
            shutil.copytree(source, tmp, dirs_exist_ok=True)
        return 0
    from crane.engine.runner import train_run  # torch is imported only to train
    from crane.engine.settings import TrainingConfig

    set_threads(args.threads)
    training = TrainingConfig.from_dict({**(args.training or {}), **to_training})
    metrics = train_run(data_dir=args.data, feature_dirs=feature_dirs, model=args.model,
                        hparams=hparams, seed=args.seed, out_dir=args.out, training=training,
                        device=args.device, cache_dir=args.cache, dataset=args.dataset,
                        training_keys=declared)
    print(json.dumps({k: metrics[k] for k in ("model", "seed", "hp_hash", "best_epoch",
                                              "valid", "test")}, indent=2))
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    from crane.engine.runner import evaluate_run

    if args.topk < 0:
        raise ValueError(f"--topk must be >= 0, got {args.topk}")
    set_threads(args.threads)
    result = evaluate_run(args.run, data_dir=args.data, device=args.device, topk=args.topk,
                          topk_path=args.topk_out)
    print(json.dumps(result, indent=2))
    return 0


def run_select(args: argparse.Namespace) -> int:
    from crane.tuning import select_best, write_selection

    selection = select_best(args.runs, metric=args.metric)
    write_selection(args.out, selection)
    print(f"{selection['model']}: selected {selection['hp_hash']} "
          f"(valid {args.metric} {selection['valid']:.4f}) -> {args.out}", file=sys.stderr)
    return 0


def run_models(args: argparse.Namespace) -> int:
    from crane import models

    for name in models.available():
        cls = models.get(name)
        needs = "any" if cls.uses_content else "-"
        kind = "trainable" if cls.trainable else "fit-once"
        print(f"{name}\t{kind}\tmodalities: {needs}")
    return 0
