"""Hashes of every model's parameters after each of two training epochs on the demo dataset.

A refactor that claims to change no behaviour must leave these hashes unchanged: the same
seed, data and code path give the same bits (at two threads; see docs/training.md). The
hashes are taken through the engine's hooks (crane.engine.hooks), after each epoch's
validation; a model with nothing to train is hashed once, after its fit.

    python benchmarks/parameter_hashes.py --results results --out hashes.json
    python benchmarks/parameter_hashes.py --results results --check benchmarks/results/parameter_hashes.json

It needs a finished demo run's data and features under `--results` (`python3 run.py demo`).
Every model trains at its default point; CRANE also at each of its ablation variants.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

from crane import layout, models
from crane.engine.hooks import Hooks
from crane.engine.inputs import load_train_data
from crane.engine.runner import fit_and_evaluate
from crane.engine.settings import TrainingConfig
from crane.tuning import default_hparams, load_model_config

FEATURES = {"text": "minilm", "image": "colorhist"}
SEED = 2024


def state_hash(model: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


class HashAfterEachEpoch(Hooks):
    """Collects `state_hash` of the model at the end of every epoch."""

    def __init__(self) -> None:
        self.hashes: list[str] = []
        self.model: torch.nn.Module | None = None

    def on_train_start(self, model: torch.nn.Module) -> None:
        self.model = model

    def on_epoch_end(self, epoch: int, row: dict[str, Any]) -> None:
        self.hashes.append(state_hash(self.model))


def variants() -> list[tuple[str, str, dict[str, Any]]]:
    """(label, model, hyper-parameters) for every model, plus CRANE's ablation variants."""
    out = []
    for name in models.shipped():
        hparams = default_hparams(name)
        out.append((name, name, hparams))
        if name == "crane":
            for variant, overrides in load_model_config(name).get("ablations", {}).items():
                if overrides:
                    out.append((variant, name, {**hparams, **overrides}))
    return out


def model_hashes(results: Path, dataset: str, epochs: int) -> dict[str, list[str]]:
    data_dir = layout.data_dir(results, dataset)
    feature_dirs = {m: layout.feature_dir(results, dataset, m, enc) for m, enc in FEATURES.items()}
    hashes: dict[str, list[str]] = {}
    for label, name, hparams in variants():
        with tempfile.TemporaryDirectory() as cache:
            data, interactions = load_train_data(data_dir, feature_dirs, "cpu", cache)
            hooks = HashAfterEachEpoch()
            result = fit_and_evaluate(data, interactions, name, hparams, SEED,
                                      TrainingConfig(epochs=epochs, patience=epochs + 1),
                                      log=lambda _: None, hooks=hooks)
            hashes[label] = hooks.hashes or [state_hash(result.model)]
        print(f"{label:24s} {' '.join(hashes[label])}", flush=True)
    return hashes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=Path("results"))
    parser.add_argument("--dataset", default="demo")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--check", type=Path, help="a hashes file to compare against")
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    hashes = model_hashes(args.results, args.dataset, args.epochs)
    if args.out:
        args.out.write_text(json.dumps(hashes, indent=1, sort_keys=True) + "\n")
    if args.check:
        expected = json.loads(args.check.read_text())
        differ = sorted(k for k in expected.keys() | hashes.keys()
                        if expected.get(k) != hashes.get(k))
        print("all equal" if not differ else f"differ: {differ}")
        return 1 if differ else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
