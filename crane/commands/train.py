"""`crane train`, `crane evaluate`, `crane select`, `crane models`: the training engine's steps."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from crane.commands._spec import parse_spec


def register(subparsers: argparse._SubParsersAction) -> None:
    train = subparsers.add_parser(
        "train", help="train one model / grid point / seed into a run folder",
        description="Train one (model, hyper-parameter point, seed) and write its run folder "
                    "(metrics.json, history.csv, user_metrics.parquet, checkpoint.pt, "
                    "manifest.json). A killed run resumes from last.pt.")
    train.add_argument("--data", required=True, type=Path, help="processed dataset folder")
    train.add_argument("--feature", action="append", default=[], metavar="MODALITY=DIR",
                       help="feature folder of one modality (repeatable), e.g. text=DIR")
    train.add_argument("--cache", type=Path, default=None, help="cache folder (kNN graphs)")
    train.add_argument("--model", required=True, help="registered model name (crane models)")
    train.add_argument("--hparams", type=parse_spec, default=None,
                       help="hyper-parameters, JSON or @file, merged over the model's defaults")
    train.add_argument("--model-config", type=Path, default=None,
                       help="folder of <model>.yaml (default: the packaged crane/configs/models)")
    train.add_argument("--seed", type=int, required=True)
    train.add_argument("--training", type=parse_spec, default=None,
                       help="trainer settings, JSON or @file (epochs, patience, ...)")
    train.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       dest="overrides",
                       help="override a hyper-parameter (reg_weight=1e-3) or a trainer "
                            "setting (training.epochs=5); repeatable")
    train.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    train.add_argument("--threads", type=int, default=None,
                       help="CPU threads for torch (default: torch's own choice)")
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


def parse_features(pairs: list[str]) -> dict[str, Path]:
    features: dict[str, Path] = {}
    for pair in pairs:
        modality, sep, folder = pair.partition("=")
        if not sep or not modality or not folder:
            raise ValueError(f"--feature {pair!r}: expected MODALITY=DIR")
        if modality in features:
            raise ValueError(f"--feature: modality {modality!r} given twice")
        features[modality] = Path(folder)
    return features


def resolve_hparams(model: str, given: dict[str, Any] | None, overrides: dict[str, Any],
                    config_dir: Path | None) -> dict[str, Any]:
    """Model defaults (when its yaml exists), then --hparams, then --set."""
    from crane.tuning import default_point, load_model_config, model_config_path

    defaults: dict[str, Any] = {}
    path = model_config_path(model, config_dir)
    if path.exists():
        defaults = default_point(load_model_config(model, config_dir))
    elif given is None:
        raise FileNotFoundError(f"{path}: no defaults for model {model!r}; pass --hparams")
    return {**defaults, **(given or {}), **overrides}


def run_train(args: argparse.Namespace) -> int:
    from crane import models
    from crane.train import TrainingConfig, train_run

    models.get(args.model)  # unknown name: fail before reading any data
    set_threads(args.threads)
    hp_overrides, training_overrides = parse_overrides(args.overrides)
    hparams = resolve_hparams(args.model, args.hparams, hp_overrides, args.model_config)
    training = TrainingConfig.from_dict({**(args.training or {}), **training_overrides})
    metrics = train_run(data_dir=args.data, feature_dirs=parse_features(args.feature),
                        model=args.model, hparams=hparams, seed=args.seed, out_dir=args.out,
                        training=training, device=args.device, cache_dir=args.cache,
                        dataset=args.dataset)
    print(json.dumps({k: metrics[k] for k in ("model", "seed", "hp_hash", "best_epoch",
                                              "valid", "test")}, indent=2))
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    from crane.train import evaluate_run

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
        needs = ",".join(cls.required_modalities) or ("any" if cls.uses_content else "-")
        kind = "trainable" if cls.trainable else "fit-once"
        print(f"{name}\t{kind}\tmodalities: {needs}")
    return 0
