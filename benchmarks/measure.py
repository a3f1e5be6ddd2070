"""One measurement, run in its own process by benchmarks/run.py (so peak memory is its own).

    python benchmarks/measure.py JOB.json

The job names a scale and either a model or `graphs`; the result (JSON) is written to the
job's `result` path after every phase, so a run killed by the harness's timeout still leaves
what it measured. Everything goes through the project's real code paths:

- graphs: `crane.graphs.user_item.symmetric_bipartite_adjacency` of the training matrix and
  `crane.graphs.item_knn.cached_neighbours` per modality (which fills the kNN cache that the
  model runs of the same scale then read);
- a model: `crane.train.build_model` (its graphs; kNN graphs from that cache), then the
  trainer's own loop (`crane.train._TrainingLoop`: `crane.sampling.NegativeSampler`, the
  model's loss, backward and the Adam step, then a `crane.evaluate.FullRankingEvaluator`
  pass over every validation user) for `epochs` epochs.
"""

from __future__ import annotations

import math
import os
import platform
import resource
import statistics
import sys
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import synthetic  # noqa: E402
from probe import reference_step_ms  # noqa: E402
from crane import files  # noqa: E402
from crane.data.processed import TRAIN, VALID  # noqa: E402
from crane.device import describe, resolve_device  # noqa: E402

GRAPHS = "graphs"
KNN_K = 10  # the kNN size every graph model uses by default (MMRec's knn_k)


class _StopEarly(Exception):
    """Raised after an epoch when another one would run past the job's soft time limit."""


class Recorder:
    """The job's result dict, rewritten to disk after every change."""

    def __init__(self, path: Path, base: dict):
        self.path = path
        self.data = dict(base)
        self.data["load_start"] = list(os.getloadavg())
        self.save()

    def update(self, **values) -> None:
        self.data.update(values)
        self.save()

    def save(self) -> None:
        self.data["peak_rss_mib"] = peak_rss_mib()
        self.data["load_end"] = list(os.getloadavg())
        files.write_json(self.path, self.data)


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def main(job_path: str) -> int:
    job = files.read_json(job_path)
    threads = int(job["threads"])
    torch.set_num_threads(threads)
    device = resolve_device(job.get("device", "auto"))
    recorder = Recorder(Path(job["result"]), {
        "scale": job["scale"], "model": job["label"], "status": "running",
        "threads": torch.get_num_threads(), "device": describe(device),
        "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(), "torch": torch.__version__,
    })
    recorder.update(probe_start_ms=reference_step_ms())
    try:
        if job["model"] == GRAPHS:
            measure_graphs(job, device, recorder)
        else:
            measure_model(job, device, recorder)
        status = "ok"
    except _StopEarly:
        status = "ok"
    except Exception as error:  # recorded in the table instead of crashing the harness
        status = classify_error(error)
        recorder.update(traceback=traceback.format_exc()[-4000:])
    if device.type == "cuda":
        recorder.data["peak_gpu_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
    probe_end = reference_step_ms()
    recorder.update(status=status, probe_end_ms=probe_end,
                    probe_ms=(recorder.data["probe_start_ms"] + probe_end) / 2)
    return 0


def classify_error(error: BaseException) -> str:
    text = f"{type(error).__name__}: {error}"
    if isinstance(error, MemoryError) or any(
            marker in str(error).lower() for marker in ("out of memory", "can't allocate memory",
                                                        "cannot allocate memory")):
        return "oom"
    return "error: " + " ".join(text.split())[:300]


def load_data(job: dict, with_features: bool, recorder: Recorder) -> synthetic.BenchmarkData:
    start = time.perf_counter()
    data = synthetic.load_scale(job["scale"], seed=int(job.get("seed", 7)),
                                with_features=with_features,
                                real_baby_dir=synthetic.REAL_BABY_DIR if job.get("real_baby", True)
                                else None)
    recorder.update(data_s=time.perf_counter() - start, **_data_columns(data))
    return data


def _data_columns(data: synthetic.BenchmarkData) -> dict:
    summary = data.summary()
    return {"source": summary["source"], "users": summary["users"], "items": summary["items"],
            "interactions": summary["interactions"], "train_interactions": summary["train"],
            "valid_interactions": summary["valid"]}


# -- graphs -----------------------------------------------------------------------------------

def measure_graphs(job: dict, device: torch.device, recorder: Recorder) -> None:
    """User-item adjacency and per-modality kNN build times; fills the scale's kNN cache."""
    from crane.graphs.item_knn import cached_neighbours
    from crane.graphs.user_item import symmetric_bipartite_adjacency

    data = load_data(job, with_features=True, recorder=recorder)
    train = train_data(data, device, job["cache_dir"], with_features=True)
    start = time.perf_counter()
    symmetric_bipartite_adjacency(train.train_matrix())
    timings = {"user_item_s": time.perf_counter() - start}
    recorder.update(**timings)
    for modality, features in train.features.items():
        start = time.perf_counter()
        cached_neighbours(features, KNN_K, train.cache_dir, train.feature_hashes[modality],
                          device=device)
        timings[f"knn_{modality}_s"] = time.perf_counter() - start
        timings[f"knn_{modality}_dim"] = int(features.shape[1])
        recorder.update(**timings)
    recorder.update(build_s=sum(v for k, v in timings.items() if k.endswith("_s")),
                    knn_k=KNN_K)


def train_data(data: synthetic.BenchmarkData, device: torch.device, cache_dir: str | None,
               with_features: bool):
    from crane.models.base import TrainData

    user, item = data.interactions.part(TRAIN)
    return TrainData(n_users=data.interactions.n_users, n_items=data.interactions.n_items,
                     train_user=user.astype(np.int64), train_item=item.astype(np.int64),
                     features=data.features if with_features else {},
                     feature_hashes=data.feature_hashes if with_features else {},
                     cache_dir=Path(cache_dir) if cache_dir else None, device=device)


# -- a model --------------------------------------------------------------------------------

def measure_model(job: dict, device: torch.device, recorder: Recorder) -> None:
    from crane import models
    from crane.evaluate import FullRankingEvaluator
    from crane.train import TrainingConfig, _TrainingLoop, build_model, seed_everything
    from crane.tuning import load_model_config

    job_start = time.monotonic()
    model_cls = models.get(job["model"])
    hparams = {**load_model_config(job["model"])["defaults"],
               **job.get("overrides", {})}
    # ID-only models never see the features (their memory would blur the peak).
    with_features = bool(model_cls.required_modalities) or model_cls.uses_content
    data = load_data(job, with_features, recorder)
    train = train_data(data, device, job["cache_dir"], with_features)
    epochs = int(job["epochs"])
    training = TrainingConfig(epochs=epochs, patience=epochs + 1, eval_every=1,
                              batch_size=int(job.get("batch_size", 2048)),
                              eval_batch_size=int(job.get("eval_batch_size", 4096)),
                              checkpoint_every_s=1e9).with_overrides(hparams)
    seed = int(job.get("seed", 7))
    recorder.update(hparams=hparams, batch_size=training.batch_size,
                    batches_per_epoch=-(-len(train.train_user) // training.batch_size))

    seed_everything(seed)
    start = time.perf_counter()
    model = build_model(job["model"], train, hparams)
    recorder.update(build_s=time.perf_counter() - start, trainable=model.trainable)
    start = time.perf_counter()
    evaluator = FullRankingEvaluator.for_split(data.interactions, VALID,
                                               batch_size=training.eval_batch_size,
                                               device=device)
    recorder.update(eval_setup_s=time.perf_counter() - start, eval_users=len(evaluator.users))

    soft_limit = float(job.get("soft_limit_s", float("inf")))
    cpu_seconds: dict[str, list[float]] = {"epoch": [], "eval": []}
    partial: list[dict] = []  # per epoch with --max-batches: batch-loop seconds, batches run

    def after_epoch(epoch: int) -> None:
        rows = [row for row in loop.history if "seconds" in row]
        # what the next epoch will take here (a truncated one with --max-batches)
        next_cost = rows[-1]["seconds"] + rows[-1].get("eval_seconds", 0.0)
        cpu_epochs = cpu_seconds["epoch"]
        if partial:
            scaled = extrapolate_epochs(rows, partial, recorder.data["batches_per_epoch"])
            # CPU seconds scaled like the wall seconds of the same epoch
            cpu_epochs = [cpu * new["seconds"] / old["seconds"]
                          for cpu, new, old in zip(cpu_epochs, scaled, rows)]
            rows = scaled
        recorder.update(**summarise_history(rows, model.trainable),
                        cpu_epoch_s=statistics.median(cpu_epochs),
                        cpu_eval_s=statistics.median(cpu_seconds["eval"] or [math.nan]))
        if time.monotonic() - job_start + next_cost > soft_limit:
            raise _StopEarly

    max_batches = int(job.get("max_batches") or 0)
    if max_batches:
        limit_epoch_batches(max_batches, partial)
    loop = _TrainingLoop(model, train, evaluator, training, seed, None, log=lambda _: None,
                         on_epoch_end=after_epoch, resume_key="benchmark")
    # Process CPU seconds beside the trainer's wall seconds: on a shared machine wall time
    # grows with the load, CPU time much less (it still counts every thread's work).
    loop._train_epoch = cpu_timed(loop._train_epoch, cpu_seconds["epoch"])
    evaluator.evaluate = cpu_timed(evaluator.evaluate, cpu_seconds["eval"])
    if job.get("profile_path"):
        profile_run(loop.run, Path(job["profile_path"]))
    else:
        loop.run()
    if not model.trainable:  # fit() + one evaluation: no epoch hook runs
        recorder.update(**summarise_history(loop.history, trainable=False),
                        cpu_eval_s=statistics.median(cpu_seconds["eval"]))


def limit_epoch_batches(max_batches: int, sink: list) -> None:
    """Make every epoch of this process stop after `max_batches` batches.

    The trainer builds its NegativeSampler itself, so the class is swapped for a subclass
    whose epochs draw the whole epoch's shuffle and negatives as usual, then yield only the
    first batches, recording how long the batch loop took from the first batch on.
    """
    import crane.train
    from crane.sampling import NegativeSampler

    class FirstBatches(NegativeSampler):
        def epoch(self):
            batches = super().epoch()
            first = second = time.perf_counter()
            count = 0
            try:
                for count, batch in enumerate(batches, start=1):
                    if count == 1:
                        first = time.perf_counter()
                    elif count == 2:  # the first batch (with any per-epoch set-up) is done
                        second = time.perf_counter()
                    yield batch
                    if count == max_batches:
                        break
            finally:
                end = time.perf_counter()
                sink.append({"batch_seconds": end - first, "batches": count,
                             "first_batch_seconds": (second if count > 1 else end) - first})

    crane.train.NegativeSampler = FirstBatches


def extrapolate_epochs(rows: list[dict], partial: list[dict], batches_per_epoch: int
                       ) -> list[dict]:
    """Epoch seconds of truncated epochs scaled to a full epoch.

    seconds = fixed part (epoch start, shuffle, negatives: measured) + the first batch (it
    pays per-epoch work, e.g. LATTICE's graph rebuild: measured) + the later batches' mean
    seconds x the epoch's other batches.
    """
    out = []
    for row, part in zip(rows, partial):
        fixed = row["seconds"] - part["batch_seconds"]
        first = part.get("first_batch_seconds", 0.0)
        later = part["batches"] - 1
        if later > 0:
            per_batch = (part["batch_seconds"] - first) / later
            loop = first + per_batch * (batches_per_epoch - 1)
        else:
            loop = part["batch_seconds"] * batches_per_epoch
        out.append({**row, "seconds": fixed + loop, "measured_batches": part["batches"],
                    "first_batch_s": first})
    return out


def profile_run(function, path: Path, lines: int = 40) -> None:
    """Run `function` under cProfile; the top `lines` functions by own time go to `path`."""
    import cProfile
    import io
    import pstats

    profiler = cProfile.Profile()
    profiler.enable()
    try:
        function()
    finally:
        profiler.disable()
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(lines)
        files.write_text(path, text.getvalue())


def cpu_timed(function, sink: list):
    def timed(*args, **kwargs):
        start = time.process_time()
        try:
            return function(*args, **kwargs)
        finally:
            sink.append(time.process_time() - start)
    return timed


def summarise_history(rows: list[dict], trainable: bool) -> dict:
    """Median epoch and evaluation seconds (the first epoch separately: warm-up effects)."""
    seconds = [row["seconds"] for row in rows]
    evals = [row["eval_seconds"] for row in rows if "eval_seconds" in row]
    out = {"eval_s": statistics.median(evals) if evals else None,
           "eval_passes": len(evals),
           "valid_recall@20": rows[-1].get("valid_recall@20") if rows else None}
    if trainable:
        out.update(epoch_s=statistics.median(seconds), first_epoch_s=seconds[0],
                   epochs=len(seconds), loss=rows[-1].get("loss"),
                   measured_batches=rows[-1].get("measured_batches"),
                   first_batch_s=rows[-1].get("first_batch_s"))
    else:
        out.update(fit_s=seconds[0], epochs=0)
    return out


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    sys.exit(main(sys.argv[1]))
