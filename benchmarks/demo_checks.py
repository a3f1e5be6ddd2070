"""Does each model use content, and does it beat the ID-only baselines, on the demo?

Reads a finished demo study (its final runs, `python3 run.py demo`), then trains every
multimodal model again on each seed with the item feature rows shuffled (same features,
wrong items). A model that uses content must lose test Recall@20 when its features are
shuffled. Prints one table: test Recall@20 mean +- std over seeds with true and shuffled
features, the difference to BPR-MF and LightGCN in units of their std, and the final runs'
wall and CPU seconds summed over the seeds (Snakemake's benchmark files, when present).

    .venv/bin/python benchmarks/demo_checks.py [--results results] [--dataset demo]
                                               [--models vbpr freedom crane] [--seeds 2024 2025]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from crane import layout  # noqa: E402
from crane.config import validate_config  # noqa: E402
from crane.models import get as get_model  # noqa: E402
from crane.study import StudyPlan  # noqa: E402
from crane.engine.inputs import load_train_data  # noqa: E402
from crane.engine.runner import fit_and_evaluate  # noqa: E402
from crane.engine.settings import TrainingConfig  # noqa: E402

METRIC = "recall@20"


def final_metric(results: str, dataset: str, model: str, seed: int) -> float | None:
    path = layout.final_run_dir(results, dataset, model, seed) / "metrics.json"
    if not path.exists():
        return None
    return json.loads(path.read_text())["test"][METRIC]


def final_cost(results: str, dataset: str, model: str, seed: int) -> tuple[float, float] | None:
    """(wall s, CPU s) of a final run from the benchmark file rule train_final writes."""
    path = layout.benchmarks_dir(results, dataset) / f"train_{model}_seed{seed}.tsv"
    if not path.exists():
        return None
    header, values = path.read_text().splitlines()[:2]
    row = dict(zip(header.split("\t"), values.split("\t")))
    return float(row["s"]), float(row["cpu_time"])


def shuffled_metric(plan: StudyPlan, dataset: str, model: str, seed: int) -> float:
    data, interactions = load_train_data(
        Path(plan.data_dir(dataset)), {m: Path(d) for m, d in plan.feature_dirs(dataset).items()},
        device="cpu", cache_dir=None)
    rng = np.random.default_rng(seed)
    permutation = rng.permutation(data.n_items)
    data.features = {m: f[permutation] for m, f in data.features.items()}
    data.feature_hashes = {m: f"shuffled-{seed}-{h}" for m, h in data.feature_hashes.items()}
    result = fit_and_evaluate(data, interactions, model, plan.default_hparams(model), seed,
                              TrainingConfig.from_dict(plan.config["training"]), log=lambda *a: None)
    return result.test[METRIC]


def summary(values: list[float]) -> str:
    if not values:
        return "–"
    std = np.std(values, ddof=1) if len(values) > 1 else 0.0
    return f"{np.mean(values):.4f} ± {std:.4f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "config" / "config.yaml"))
    parser.add_argument("--dataset", default="demo")
    parser.add_argument("--models", nargs="*")
    parser.add_argument("--seeds", nargs="*", type=int)
    args = parser.parse_args()

    config = validate_config(yaml.safe_load(Path(args.config).read_text()))
    plan = StudyPlan(config)
    seeds = args.seeds or plan.seeds
    models = args.models or plan.models
    baselines = {m: [v for s in seeds if (v := final_metric(plan.results, args.dataset, m, s)) is not None]
                 for m in ("bpr", "lightgcn")}

    print(f"| model | test {METRIC} | shuffled features | drop | vs BPR (std) | vs LightGCN (std) "
          "| wall s | CPU s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for model in models:
        true = [v for s in seeds if (v := final_metric(plan.results, args.dataset, model, s)) is not None]
        uses_content = get_model(model).uses_content
        shuffled = [shuffled_metric(plan, args.dataset, model, s) for s in seeds] if uses_content else []
        drop = f"{np.mean(true) - np.mean(shuffled):+.4f}" if true and shuffled else "–"
        versus = []
        for name, base in baselines.items():
            if not (true and len(base) > 1):
                versus.append("–")
                continue
            spread = max(np.std(base, ddof=1), np.std(true, ddof=1) if len(true) > 1 else 0.0, 1e-9)
            versus.append(f"{(np.mean(true) - np.mean(base)) / spread:+.1f}")
        costs = [c for s in seeds if (c := final_cost(plan.results, args.dataset, model, s))]
        wall, cpu = (f"{sum(c[i] for c in costs):.0f}" if costs else "–" for i in (0, 1))
        print(f"| {model} | {summary(true)} | {summary(shuffled)} | {drop} | {versus[0]} | {versus[1]} "
              f"| {wall} | {cpu} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
