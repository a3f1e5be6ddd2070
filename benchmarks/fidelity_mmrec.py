"""Fidelity check: our BPR and LightGCN on MMRec's own Baby split vs. MMRec's numbers.

MMRec (enoche/MMRec, unchanged, seed 999, 2 CPU cores) was run on the dataset folder
`../shared/data/amazon2014-baby/mmrec-split` (see its README) and reached test
Recall@20 / NDCG@20 of 0.0541 / 0.0242 (BPR, reg_weight 1e-4) and 0.0778 / 0.0339
(LightGCN, 2 layers, reg_weight 1e-4, best validation epoch 57 counted from 0). This script
trains our implementations with the protocol settings (embedding 64, Adam lr 1e-3, batch
2048, early stopping on validation Recall@20 with patience 20 under MMRec's rule, see
docs/training.md, up to 1000 epochs) on the same folder over several seeds and reports
mean +- std, the standard error of the mean, and whether each metric lands within
max(3 % of MMRec's value, 2 SEM) of it.

With `--grid` it first tunes the model's grid (crane/configs/models/<model>.yaml, MMRec's
grid) on the first seed, selects on validation Recall@20 (crane.tuning.select_best, the project's
policy), runs the selected point on every seed and reports the gap to MMRec's published
Baby table (BPR 0.0575 / 0.0249, LightGCN 0.0754 / 0.0328; MMRec selects its grid on test).

Usage (from the repository root; a run folder per (model, seed) makes it resumable):

    python benchmarks/fidelity_mmrec.py                      # both models, seeds 1..5
    python benchmarks/fidelity_mmrec.py --models bpr --seeds 1 2 --threads 2
    python benchmarks/fidelity_mmrec.py --max-epochs 50 --out results/fidelity
    python benchmarks/fidelity_mmrec.py --timing 5            # s/epoch and s/eval pass only
    python benchmarks/fidelity_mmrec.py --models bpr --grid   # grid on seed 1, then 5 seeds
    python benchmarks/fidelity_mmrec.py --models lightgcn --grid --jobs 6 --device cuda
                                          # pending runs in 6 processes (one GPU or 6 cores)

The numbers these commands give, and the command behind each row, are in docs/training.md.

The folder is read directly (`<name>.inter`: userID itemID rating timestamp x_label, with
x_label 0/1/2 = train/validation/test); n_users and n_items are the largest ids + 1.
`--folder` takes any MMRec folder, or the `.inter` file itself; `--name` picks `<name>.inter`
in a folder holding several (default: the folder's only `.inter` file). MMRec's reference
numbers above are Baby's: on another dataset the gaps compare with them only as a yardstick.

    python benchmarks/fidelity_mmrec.py --folder data/sports --name sports --models bpr
"""

from __future__ import annotations

import argparse
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from crane import files  # noqa: E402
from crane.data.processed import TRAIN, VALID, Interactions  # noqa: E402
from crane.engine.evaluate import FullRankingEvaluator  # noqa: E402
from crane.engine.inputs import build_model  # noqa: E402
from crane.engine.runner import fit_and_evaluate  # noqa: E402
from crane.engine.sampling import NegativeSampler  # noqa: E402
from crane.engine.settings import TrainingConfig  # noqa: E402
from crane.models.base import TrainData  # noqa: E402
from crane.ops.adam import make_adam  # noqa: E402
from crane.tuning import grid_points, hp_hash, load_model_config, select_best  # noqa: E402

DEFAULT_FOLDER = Path(__file__).resolve().parents[2] / "shared/data/amazon2014-baby/mmrec-split"
MMREC = {  # model -> (hyper-parameters, MMRec's test recall@20, ndcg@20 on this folder)
    "bpr": ({"embedding_size": 64, "reg_weight": 1e-4}, 0.0541, 0.0242),
    "lightgcn": ({"embedding_size": 64, "n_layers": 2, "reg_weight": 1e-4}, 0.0778, 0.0339),
}
# MMRec's published Baby table (BPR and LightGCN, each grid selected by MMRec): --grid target
PUBLISHED = {"bpr": (0.0575, 0.0249), "lightgcn": (0.0754, 0.0328)}
RELATIVE_TOLERANCE = 0.03


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


def time_models(data: TrainData, interactions: Interactions, model_names: list[str],
                epochs: int) -> int:
    """Seconds per training epoch and per full validation pass at this dataset's scale."""
    evaluator = FullRankingEvaluator.for_split(interactions, VALID, device=data.device)
    sampler = NegativeSampler(data.train_user, data.train_item, data.n_items, 2048,
                              torch.Generator().manual_seed(0), device=data.device)
    print(f"torch threads {torch.get_num_threads()}, {len(evaluator.users)} validation users")
    for name in model_names:
        torch.manual_seed(0)
        model = build_model(name, data, MMREC[name][0])
        optimizer = make_adam(list(model.parameters()), 1e-3, 0.0)
        epoch_wall, epoch_cpu = [], []
        for _ in range(epochs):
            wall, cpu = time.perf_counter(), time.process_time()
            model.train()
            for batch in sampler.epoch():
                optimizer.zero_grad(set_to_none=True)
                sum(model.loss(batch.users, batch.pos_items, batch.neg_items).values()).backward()
                optimizer.step()
            epoch_wall.append(time.perf_counter() - wall)
            epoch_cpu.append(time.process_time() - cpu)
        eval_wall, eval_cpu = [], []
        for _ in range(3):
            wall, cpu = time.perf_counter(), time.process_time()
            evaluator.evaluate(model)
            eval_wall.append(time.perf_counter() - wall)
            eval_cpu.append(time.process_time() - cpu)
        # CPU seconds show the work itself when other jobs share the cores (wall time won't)
        print(f"{name}: epoch wall s {[round(t, 3) for t in epoch_wall]} median "
              f"{np.median(epoch_wall):.3f} (cpu {np.median(epoch_cpu):.3f}); eval pass wall s "
              f"{[round(t, 3) for t in eval_wall]} median {np.median(eval_wall):.3f} "
              f"(cpu {np.median(eval_cpu):.3f})", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=Path, default=DEFAULT_FOLDER,
                        help="an MMRec dataset folder, or its .inter file")
    parser.add_argument("--name", default=None,
                        help="read <folder>/<name>.inter (default: the folder's only .inter)")
    parser.add_argument("--models", nargs="+", default=list(MMREC), choices=list(MMREC))
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
    parser.add_argument("--out", type=Path, default=Path("results/fidelity_mmrec"),
                        help="run folders (resumable) and summary.json")
    args = parser.parse_args(argv)
    args.inter = inter_file(args.folder, args.name)
    data, interactions, training = load(args)
    print(f"{args.inter}: {interactions.n_users} users, {interactions.n_items} items, "
          f"split {np.bincount(interactions.split).tolist()}", flush=True)
    if args.timing:
        return time_models(data, interactions, args.models, args.timing)
    summary_path = args.out / "summary.json"
    summary = files.read_json(summary_path) if summary_path.exists() else {}
    for model in args.models:
        hparams, ref_recall, ref_ndcg = MMREC[model]
        if args.grid:
            selection = tune_on_validation(model, args, data, interactions, training)
            hparams, (ref_recall, ref_ndcg) = selection["hparams"], PUBLISHED[model]
        run_pending(model, [(hparams, seed) for seed in args.seeds], args, data,
                    interactions, training)
        per_seed = [train_seed(model, hparams, seed, args, data, interactions, training)
                    for seed in args.seeds]
        rows = compare(per_seed, ref_recall, ref_ndcg)
        entry = {
            "hparams": hparams, "seeds": args.seeds, "metrics": rows,
            "file": str(args.inter),
            "reference": reference_of(args),
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
                data: TrainData, interactions: Interactions, training: TrainingConfig) -> None:
    """Train the (hyper-parameters, seed) runs that have no metrics.json yet: here, or in
    `--jobs` fresh processes (spawned: CUDA cannot be forked), each reading the folder."""
    pending = [(hparams, seed) for hparams, seed in runs
               if not (run_dir_of(args.out, model, hparams, seed) / "metrics.json").exists()]
    if args.jobs <= 1 or len(pending) <= 1:
        for hparams, seed in pending:
            train_seed(model, hparams, seed, args, data, interactions, training)
        return
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(min(args.jobs, len(pending)), mp_context=context) as pool:
        for future in [pool.submit(train_in_worker, model, hparams, seed, args)
                       for hparams, seed in pending]:
            future.result()


def train_in_worker(model: str, hparams: dict, seed: int, args: argparse.Namespace) -> None:
    data, interactions, training = load(args)
    train_seed(model, hparams, seed, args, data, interactions, training)


def reference_of(args: argparse.Namespace) -> str:
    what = "published table" if args.grid else "MMRec on the Baby folder, seed 999"
    return what if args.inter.stem == "baby" else f"{what} (Baby's numbers; this is " \
        f"{args.inter.name})"


def dataset_label(inter: Path) -> str:
    return "amazon2014-baby-mmrec" if inter.stem == "baby" else f"{inter.stem}-mmrec"


def run_dir_of(out: Path, model: str, hparams: dict, seed: int) -> Path:
    """MMRec's point keeps the plain layout, so a grid search reuses its runs."""
    if hparams == MMREC[model][0]:
        return out / model / f"seed{seed}"
    return out / model / "grid" / hp_hash(hparams) / f"seed{seed}"


def train_seed(model: str, hparams: dict, seed: int, args: argparse.Namespace,
               data: TrainData, interactions: Interactions, training: TrainingConfig) -> dict:
    """metrics.json of one (model, point, seed) run, trained now unless already finished."""
    run_dir = run_dir_of(args.out, model, hparams, seed)
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
                       interactions: Interactions, training: TrainingConfig) -> dict:
    """Every point of the model file's grid on the first seed; the project's
    tuning policy (crane.tuning.select_best: validation Recall@20) picks one."""
    points = grid_points(load_model_config(model))
    run_pending(model, [(hparams, args.seeds[0]) for hparams in points], args, data,
                interactions, training)
    selection = select_best([run_dir_of(args.out, model, h, args.seeds[0]) for h in points])
    for row in selection["table"]:
        print(f"  grid {row['hparams']}: valid recall@20 {row['valid']:.4f} "
              f"(test {row['test']:.4f}, best epoch {row['best_epoch']})", flush=True)
    print(f"  selected on validation: {selection['hparams']}", flush=True)
    return selection


def compare(per_seed: list[dict], ref_recall: float, ref_ndcg: float) -> dict[str, dict]:
    """Mean, std, SEM of each test metric and whether it lands within max(3 %, 2 SEM)."""
    rows = {}
    for metric, reference in (("recall@20", ref_recall), ("ndcg@20", ref_ndcg)):
        values = [m["test"][metric] for m in per_seed]
        mean, std, sem = summarise(values)
        tolerance = max(RELATIVE_TOLERANCE * reference, 2 * sem if not math.isnan(sem) else 0)
        rows[metric] = {"values": values, "mean": mean, "std": std, "sem": sem,
                        "mmrec": reference, "tolerance": tolerance,
                        "gap_percent": 100 * (mean - reference) / reference,
                        "within": abs(mean - reference) <= tolerance}
    return rows


if __name__ == "__main__":
    sys.exit(main())
