"""Fidelity check: our models on an MMRec dataset folder vs. MMRec's own code on that folder.

MMRec (enoche/MMRec, run outside this repository with only the patches a modern CPU stack
needs) was trained on the real Baby split `../shared/data/amazon2014-baby/mmrec-split` and,
for the content models, on the stand-in features `make_features.py` of that folder builds
(`image_feat.npy`, `text_feat.npy`, MMRec's names). Its figures, the point, the seeds, the
reference commit and the patches are in `benchmarks/references/mmrec-baby.yaml` (nothing of
MMRec's code is here). This script trains our implementation of each model at the same point
(embedding 64, Adam lr 1e-3 unless the point says otherwise, batch 2048, early stopping on
validation Recall@20 with patience 20 under MMRec's rule, see docs/training.md, up to 1000
epochs) on the same folder and features over several seeds, and reports mean +- std, the
standard error of the mean, and the gap to MMRec's mean: a metric agrees when the gap is
within max(5 % of MMRec's mean, 2 standard errors of the difference of the two means).
The table and its commands are in docs/fidelity.md.

With `--grid` it first tunes the model's grid (crane/configs/models/<model>.yaml, MMRec's
grid) on the first seed, selects on validation Recall@20 (crane.tuning.select_best, the
project's policy), runs the selected point on every seed and reports the gap to MMRec's
published Baby table (BPR and LightGCN only; MMRec selects its grid on test).

Usage (from the repository root; a run folder per (model, seed) makes it resumable):

    python benchmarks/fidelity_mmrec.py --models bpr lightgcn    # seeds 1..5
    python benchmarks/fidelity_mmrec.py --models vbpr --features ../features --threads 1
    python benchmarks/fidelity_mmrec.py --models bpr --seeds 1 2 --max-epochs 50
    python benchmarks/fidelity_mmrec.py --models freedom --timing 5  # s/epoch, s/eval pass only
    python benchmarks/fidelity_mmrec.py --models bpr --grid     # grid on seed 1, then 5 seeds
    python benchmarks/fidelity_mmrec.py --models lightgcn --grid --jobs 6 --device cuda
                                          # pending runs in 6 processes (one GPU or 6 cores)
    python benchmarks/fidelity_mmrec.py --markdown              # docs/fidelity.md's table

The folder is read directly (`<name>.inter`: userID itemID rating timestamp x_label, with
x_label 0/1/2 = train/validation/test); n_users and n_items are the largest ids + 1.
`--folder` takes any MMRec folder, or the `.inter` file itself; `--name` picks `<name>.inter`
in a folder holding several (default: the folder's only `.inter` file). `--features` is the
folder holding `image_feat.npy` and `text_feat.npy` (default: the `.inter` file's folder);
a content model reads what is there and says which file it lacks. The reference figures
are Baby's: on another dataset the gaps compare with them only as a yardstick.

    python benchmarks/fidelity_mmrec.py --folder data/sports --name sports --models bpr
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import multiprocessing
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

# OpenMP threads that spin while waiting take the cores from everything else on a shared
# machine; must be set before torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from crane import files  # noqa: E402
from crane.features.checks import check_not_degenerate  # noqa: E402
from crane.features.store import check_feature_matrix  # noqa: E402
from crane.models import available as available_models, get as get_model  # noqa: E402
from crane.data.processed import TRAIN, Interactions  # noqa: E402
from crane.engine.runner import fit_and_evaluate  # noqa: E402
from crane.engine.settings import TrainingConfig  # noqa: E402
from crane.models.base import TrainData  # noqa: E402
from crane.report.naming import model_label  # noqa: E402
from crane.tuning import default_hparams, grid_points, hp_hash, load_model_config, select_best  # noqa: E402

DEFAULT_FOLDER = Path(__file__).resolve().parents[2] / "shared/data/amazon2014-baby/mmrec-split"
REFERENCE_FILE = Path(__file__).resolve().parent / "references" / "mmrec-baby.yaml"
FEATURE_FILES = {"image": "image_feat.npy", "text": "text_feat.npy"}  # MMRec's file names
METRICS = ("recall@20", "ndcg@20")
RELATIVE_TOLERANCE = 0.05
# Relative tolerance of a feature fingerprint: the files' bytes differ between CPUs and BLAS
# thread counts by a float32 unit in the last place (make_features.py's SVD rounds
# differently), which moves these float64 averages by about 1e-12; any other change to the
# recipe, the seed or the item order moves them by far more.
FINGERPRINT_TOLERANCE = 1e-6


def load_reference(path: Path) -> dict:
    """The reference file, checked: every model names its point and, per seed, its test
    figures (the same number of values as seeds)."""
    content = yaml.safe_load(Path(path).read_text())
    models_ = content.get("models") if isinstance(content, dict) else None
    if not isinstance(models_, dict) or not models_:
        raise ValueError(f"{path}: no `models:` mapping")
    for model, entry in models_.items():
        where = f"{path}: models.{model}"
        if model not in available_models():
            raise ValueError(f"{where}: not a model of ours ({', '.join(available_models())})")
        for key in ("point", "seeds", "test"):
            if key not in entry:
                raise ValueError(f"{where}: missing `{key}`")
        for part in ("test", "valid"):
            for metric, values in (entry.get(part) or {}).items():
                if len(values) != len(entry["seeds"]):
                    raise ValueError(f"{where}.{part}.{metric}: {len(values)} value(s) for "
                                     f"{len(entry['seeds'])} seed(s)")
        missing = [m for m in METRICS if m not in entry["test"]]
        if missing:
            raise ValueError(f"{where}.test: missing {missing}")
        entry["point"] = default_hparams(model, **entry["point"])
    return content


def inter_file(folder: Path, name: str | None) -> Path:
    """The `.inter` file of `--folder` (a folder or the file itself) and `--name`."""
    folder = Path(folder)
    if folder.suffix == ".inter" and folder.is_file() and name in (None, folder.stem):
        return folder
    present = sorted(p.name for p in folder.glob("*.inter")) if folder.is_dir() else []
    if name is None:
        if len(present) == 1:
            return folder / present[0]
        if len(present) > 1:
            raise ValueError(f"{folder}: {len(present)} .inter files ({present}): choose one "
                             f"with --name")
        name = folder.name
    path = folder / f"{name}.inter"
    if not path.is_file():
        where = f"the folder has {present}" if folder.is_dir() else f"{folder} is not a folder"
        raise FileNotFoundError(f"{path}: MMRec interaction file not found; {where}: pass "
                                f"--folder the folder or the .inter file, and --name the "
                                f"file's stem")
    return path


def read_mmrec_folder(folder: Path, name: str | None = None) -> Interactions:
    path = inter_file(folder, name)
    frame = pd.read_csv(path, sep="\t", usecols=["userID", "itemID", "x_label"])
    bad = ~frame["x_label"].isin([0, 1, 2])
    if bad.any():
        raise ValueError(f"{path}: line {int(np.flatnonzero(bad)[0]) + 2}: x_label must be 0/1/2")
    user = frame["userID"].to_numpy(np.int64)
    item = frame["itemID"].to_numpy(np.int64)
    return Interactions(int(user.max()) + 1, int(item.max()) + 1, user, item,
                        frame["x_label"].to_numpy(np.int8))


def progress_printer(prefix: str):
    """Print improvements, resumes and the final line; skip the other epochs."""
    def log(message: str) -> None:
        if message.endswith(")") and " * (" not in message:
            return
        print(f"  {prefix} {message}", flush=True)
    return log


def summarise(values: list[float]) -> tuple[float, float, float]:
    """mean, sample std, standard error of the mean."""
    array = np.asarray(values, dtype=float)
    std = float(array.std(ddof=1)) if len(array) > 1 else math.nan
    return float(array.mean()), std, std / math.sqrt(len(array)) if len(array) > 1 else math.nan


def read_features(folder: Path, model: str, n_items: int) -> dict[str, np.ndarray]:
    """The MMRec feature files a content model reads: those present in `folder`, each checked
    (shape, finite values, not degenerate: crane.features.checks); a model that needs one that
    is absent is an error."""
    model_cls = get_model(model)
    if not model_cls.uses_content:
        return {}
    features = {}
    for modality, name in FEATURE_FILES.items():
        path = folder / name
        if path.is_file():
            matrix = check_feature_matrix(np.load(path), str(path))
            if matrix.shape[0] != n_items:
                raise ValueError(f"{path}: {matrix.shape[0]} rows, the .inter file has "
                                 f"{n_items} items")
            check_not_degenerate(matrix, np.ones(n_items, dtype=bool), str(path))
            features[modality] = matrix
    needed = model_cls.required_modalities or ()
    lacking = [FEATURE_FILES[m] for m in needed if m not in features]
    if lacking or not features:
        raise FileNotFoundError(f"{folder}: {model} reads {lacking or list(FEATURE_FILES.values())}"
                                f", not found there (pass --features the folder holding them)")
    return features


def feature_fingerprint(matrix: np.ndarray) -> dict:
    """Shape and float64 statistics of a feature matrix that survive the rounding differences
    between machines; the position-weighted mean also changes when rows or columns move."""
    values = np.asarray(matrix, dtype=np.float64)
    rows, columns = (np.linspace(0.0, 1.0, n) for n in values.shape)
    return {"shape": list(values.shape), "mean": float(values.mean()), "std": float(values.std()),
            "mean_row_norm": float(np.linalg.norm(values, axis=1).mean()),
            "position_weighted_mean": float(rows @ values @ columns / values.size)}


def fingerprint_mismatches(found: dict, expected: dict) -> list[str]:
    """The fingerprint entries that differ beyond FINGERPRINT_TOLERANCE (relative), as
    `key: found vs expected`; empty when the features are the expected ones."""
    return [f"{key}: {found.get(key)} vs {value}" for key, value in expected.items()
            if (found.get(key) != value if key == "shape" else
                not math.isclose(found.get(key, math.nan), value, rel_tol=FINGERPRINT_TOLERANCE))]


def with_features(data: TrainData, model: str, args: argparse.Namespace) -> TrainData:
    """`data` plus the item features `model` reads (none for an ID-only model)."""
    features = read_features(args.features, model, data.n_items)
    return dataclasses.replace(data, features=features, feature_hashes={
        modality: files.sha256_array(matrix) for modality, matrix in features.items()})


def time_models(data: TrainData, interactions: Interactions, args: argparse.Namespace,
                reference: dict) -> int:
    """Seconds per training epoch and per evaluation pass at this dataset's scale: the real
    training loop for `--timing` epochs (no early stop), one validation pass per epoch."""
    print(f"torch threads {torch.get_num_threads()}")
    for name in args.models:
        training = TrainingConfig(epochs=args.timing, patience=args.timing + 1)
        result = fit_and_evaluate(with_features(data, name, args), interactions, name,
                                  reference["models"][name]["point"], 0, training,
                                  log=lambda message: None)
        epochs = [row["seconds"] for row in result.history if "loss" in row]
        evals = result.eval_seconds / (result.epochs_run + 1)
        print(f"{name}: epoch s {[round(t, 3) for t in epochs]} median "
              f"{np.median(epochs):.3f}; eval pass s {evals:.3f} (mean over "
              f"{result.epochs_run + 1} passes)", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=Path, default=DEFAULT_FOLDER,
                        help="an MMRec dataset folder, or its .inter file")
    parser.add_argument("--name", default=None,
                        help="read <folder>/<name>.inter (default: the folder's only .inter)")
    parser.add_argument("--features", type=Path, default=None,
                        help="folder with image_feat.npy / text_feat.npy (default: the "
                             ".inter file's folder)")
    parser.add_argument("--reference", type=Path, default=REFERENCE_FILE,
                        help="MMRec's figures and points (YAML, see the default file)")
    parser.add_argument("--models", nargs="+", default=None,
                        help="models of the reference file (default: all of them)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3, 4, 5])
    parser.add_argument("--max-epochs", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--jobs", type=int, default=1,
                        help="train the pending (point, seed) runs in this many processes "
                             "(each with --threads threads; they may share one GPU)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--timing", type=int, default=0, metavar="EPOCHS",
                        help="only time EPOCHS training epochs and 3 validation passes")
    parser.add_argument("--grid", action="store_true",
                        help="tune the model file's grid on the first seed, select "
                             "on validation, run that point on every seed, compare with the "
                             "published table")
    parser.add_argument("--markdown", action="store_true",
                        help="print docs/fidelity.md's table from the run folders of --seeds, train nothing")
    parser.add_argument("--out", type=Path, default=Path("results/fidelity_mmrec"),
                        help="run folders (resumable) and summary.json")
    args = parser.parse_args(argv)
    reference = load_reference(args.reference)
    args.models = args.models or list(reference["models"])
    unknown = [m for m in args.models if m not in reference["models"]]
    if unknown:
        parser.error(f"--models {unknown}: not in {args.reference} (it has "
                     f"{', '.join(reference['models'])})")
    if args.markdown:
        print(markdown_table(args.out, reference, args.models, args.seeds))
        return 0
    summary_path = args.out / "summary.json"
    summary = files.read_json(summary_path) if summary_path.exists() else {}
    args.inter = inter_file(args.folder, args.name)
    args.features = args.features or args.inter.parent
    data, interactions, training = load(args)
    print(f"{args.inter}: {interactions.n_users} users, {interactions.n_items} items, "
          f"split {np.bincount(interactions.split).tolist()}", flush=True)
    if args.timing:
        return time_models(data, interactions, args, reference)
    for model in args.models:
        model_data = with_features(data, model, args)
        target = reference["models"][model]
        hparams = target["point"]
        if args.grid:
            if model not in reference.get("published", {}):
                parser.error(f"--grid: {args.reference} has no published figures for {model}")
            selection = tune_on_validation(model, args, model_data, interactions, training,
                                           reference)
            hparams = selection["hparams"]
            target = {"seeds": ["published"], "test": {
                m: [v] for m, v in reference["published"][model].items()}}
        run_pending(model, [(hparams, seed) for seed in args.seeds], args, interactions,
                    training, reference)
        per_seed = [train_seed(model, hparams, seed, args, model_data, interactions, training,
                               reference) for seed in args.seeds]
        rows = compare(per_seed, target)
        entry = {
            "hparams": hparams, "seeds": args.seeds, "metrics": rows,
            "file": str(args.inter),
            "features": model_data.feature_hashes,
            "reference": reference_of(args, target),
            "best_epochs": [m["best_epoch"] for m in per_seed],
            "epochs_run": [m["epochs_run"] for m in per_seed],
            "seconds_per_epoch": float(np.mean([m["seconds_per_epoch"] for m in per_seed])),
            "eval_seconds_per_pass": float(np.mean(
                [m["eval_seconds"] / (m["epochs_run"] + 1) for m in per_seed])),
        }
        if args.grid:
            entry["selection"] = selection
        key = f"{model}_grid" if args.grid else model
        summary[key] = entry
        print(f"\n{key} at {hparams} over {len(args.seeds)} seed(s), best epochs "
              f"{entry['best_epochs']}, {entry['seconds_per_epoch']:.2f}s/epoch")
        for metric, row in rows.items():
            values = ", ".join(f"{v:.4f}" for v in row["values"])
            print(f"  test {metric}: [{values}] {row['mean']:.4f} +- {row['std']:.4f} "
                  f"(SEM {row['sem']:.4f}) vs {entry['reference']} {row['mmrec']:.4f}: "
                  f"gap {row['gap_percent']:+.1f}%, {'within' if row['within'] else 'OUTSIDE'}"
                  f" tolerance {row['tolerance']:.4f}", flush=True)
        files.write_json(summary_path, summary)
    return 0


def load(args: argparse.Namespace) -> tuple[TrainData, Interactions, TrainingConfig]:
    if args.threads:
        torch.set_num_threads(args.threads)
    interactions = read_mmrec_folder(args.inter)
    train_user, train_item = interactions.part(TRAIN)
    data = TrainData(interactions.n_users, interactions.n_items, train_user, train_item,
                     device=torch.device(args.device))
    return data, interactions, TrainingConfig(epochs=args.max_epochs, checkpoint_every_s=60)


def run_pending(model: str, runs: list[tuple[dict, int]], args: argparse.Namespace,
                interactions: Interactions, training: TrainingConfig, reference: dict) -> None:
    """Train the (hyper-parameters, seed) runs that have no metrics.json yet: here, or in
    `--jobs` fresh processes (spawned: CUDA cannot be forked), each reading the folder."""
    pending = [(hparams, seed) for hparams, seed in runs
               if not (run_dir_of(args.out, model, hparams, seed, reference)
                       / "metrics.json").exists()]
    if args.jobs <= 1 or len(pending) <= 1:
        if pending:
            data, _, _ = load(args)
            data = with_features(data, model, args)
        for hparams, seed in pending:
            train_seed(model, hparams, seed, args, data, interactions, training, reference)
        return
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(min(args.jobs, len(pending)), mp_context=context) as pool:
        for future in [pool.submit(train_in_worker, model, hparams, seed, args, reference)
                       for hparams, seed in pending]:
            future.result()


def train_in_worker(model: str, hparams: dict, seed: int, args: argparse.Namespace,
                    reference: dict) -> None:
    data, interactions, training = load(args)
    train_seed(model, hparams, seed, args, with_features(data, model, args), interactions,
               training, reference)


def reference_of(args: argparse.Namespace, target: dict) -> str:
    seeds = target["seeds"]
    what = ("published table" if seeds == ["published"] else
            f"MMRec on the Baby folder, seed{'s' * (len(seeds) > 1)} "
            f"{', '.join(map(str, seeds))}")
    return what if args.inter.stem == "baby" else f"{what} (Baby's numbers; this is " \
        f"{args.inter.name})"


def dataset_label(inter: Path) -> str:
    return "amazon2014-baby-mmrec" if inter.stem == "baby" else f"{inter.stem}-mmrec"


def run_dir_of(out: Path, model: str, hparams: dict, seed: int, reference: dict) -> Path:
    """The reference point keeps the plain layout, so a grid search reuses its runs."""
    if hparams == reference["models"][model]["point"]:
        return out / model / f"seed{seed}"
    return out / model / "grid" / hp_hash(hparams) / f"seed{seed}"


def train_seed(model: str, hparams: dict, seed: int, args: argparse.Namespace,
               data: TrainData, interactions: Interactions, training: TrainingConfig,
               reference: dict) -> dict:
    """metrics.json of one (model, point, seed) run, trained now unless already finished."""
    run_dir = run_dir_of(args.out, model, hparams, seed, reference)
    if not (run_dir / "metrics.json").exists():
        wall, cpu = time.perf_counter(), time.process_time()
        result = fit_and_evaluate(data, interactions, model, hparams, seed, training,
                                  run_dir=run_dir, dataset=dataset_label(args.inter),
                                  log=progress_printer(f"[{model} seed {seed}]"))
        print(f"{model} {hparams} seed {seed}: {time.perf_counter() - wall:.0f}s wall, "
              f"{time.process_time() - cpu:.0f}s cpu, {result.epochs_run} epochs, "
              f"{result.seconds_per_epoch:.2f}s/epoch", flush=True)
    return files.read_json(run_dir / "metrics.json")


def tune_on_validation(model: str, args: argparse.Namespace, data: TrainData,
                       interactions: Interactions, training: TrainingConfig,
                       reference: dict) -> dict:
    """Every point of the model file's grid on the first seed; the project's
    tuning policy (crane.tuning.select_best: validation Recall@20) picks one."""
    points = grid_points(load_model_config(model))
    run_pending(model, [(hparams, args.seeds[0]) for hparams in points], args, interactions,
                training, reference)
    selection = select_best([run_dir_of(args.out, model, h, args.seeds[0], reference)
                             for h in points])
    for row in selection["table"]:
        print(f"  grid {row['hparams']}: valid recall@20 {row['valid']:.4f} "
              f"(test {row['test']:.4f}, best epoch {row['best_epoch']})", flush=True)
    print(f"  selected on validation: {selection['hparams']}", flush=True)
    return selection


def compare(per_seed: list[dict], target: dict) -> dict[str, dict]:
    """Mean, std, SEM of each test metric on both sides, and whether our mean lands within
    max(5 % of MMRec's mean, 2 standard errors of the difference of the means); a side with
    one seed contributes no standard error."""
    rows = {}
    for metric in METRICS:
        values = [m["test"][metric] for m in per_seed]
        mean, std, sem = summarise(values)
        ref_values = [float(v) for v in target["test"][metric]]
        ref_mean, ref_std, ref_sem = summarise(ref_values)
        se_diff = math.sqrt(sum(0.0 if math.isnan(x) else x * x for x in (sem, ref_sem)))
        tolerance = max(RELATIVE_TOLERANCE * ref_mean, 2 * se_diff)
        rows[metric] = {"values": values, "mean": mean, "std": std, "sem": sem,
                        "mmrec_values": ref_values, "mmrec": ref_mean, "mmrec_std": ref_std,
                        "se_difference": se_diff, "tolerance": tolerance,
                        "gap_percent": 100 * (mean - ref_mean) / ref_mean,
                        "within": abs(mean - ref_mean) <= tolerance}
    return rows


def markdown_table(out: Path, reference: dict, models_: list[str], seeds: list[int]) -> str:
    """docs/fidelity.md's table, recomputed from the run folders under `out` against the
    reference file as it is now: one row per model (at its reference point, every seed
    trained) and metric."""
    lines = ["| model | point | metric | ours, per seed | ours mean | MMRec, per seed | "
             "MMRec mean | gap | tolerance | verdict |", "|---|---|---|---|---|---|---|---|---|---|"]
    for model in models_:
        target = reference["models"][model]
        paths = [run_dir_of(out, model, target["point"], seed, reference) / "metrics.json"
                 for seed in seeds]
        if not all(path.exists() for path in paths):
            continue
        rows = compare([files.read_json(path) for path in paths], target)
        point = ", ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}"
                          for k, v in (target.get("mmrec_point") or {}).items())
        for metric in METRICS:
            row = rows[metric]
            ours = " ".join(f"{v:.4f}" for v in row["values"])
            theirs = " ".join(f"{v:.4f}" for v in row["mmrec_values"])
            lines.append(
                f"| {model_label(model)} | {point} | {metric} | {ours} | {row['mean']:.4f} | {theirs} | "
                f"{row['mmrec']:.4f} | {row['gap_percent']:+.1f} % | {row['tolerance']:.4f} | "
                f"{'agrees' if row['within'] else 'DIFFERS'} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
