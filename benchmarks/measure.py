"""One measurement, run in its own process by benchmarks/run.py (so peak memory is its own).

    python benchmarks/measure.py JOB.json

The job names a scale and either a model or `graphs`; the result (JSON) is written to the
job's `result` path after every phase, so a run killed by the harness's timeout still leaves
what it measured. Everything goes through the project's real code paths:

- graphs: `crane.graphs.user_item.symmetric_bipartite_adjacency` of the training matrix and
  `crane.graphs.item_knn.build_neighbour_cache` per modality (which fills the kNN cache that the
  model runs of the same scale then read);
- a model: `crane.engine.inputs.build_model` (its graphs; kNN graphs from that cache), then
  the engine's own loop (`crane.engine.loop.TrainingLoop`: the negative sampler, the model's
  loss, backward and the Adam step, then a `crane.engine.evaluate.FullRankingEvaluator` pass
  over every validation user) for `epochs` epochs, observed through the loop's hooks
  (`crane.engine.hooks.Hooks`).
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
from crane.engine.hooks import Hooks  # noqa: E402

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
    from crane.graphs.item_knn import build_neighbour_cache
    from crane.graphs.user_item import symmetric_bipartite_adjacency

    data = load_data(job, with_features=True, recorder=recorder)
    train = train_data(data, device, job["cache_dir"], with_features=True)
    start = time.perf_counter()
    symmetric_bipartite_adjacency(train.train_matrix())
    timings = {"user_item_s": time.perf_counter() - start}
    recorder.update(**timings)
    for modality, features in train.features.items():
        start = time.perf_counter()
        build_neighbour_cache(features, KNN_K, train.cache_dir,
                              train.feature_hashes[modality], device=device)
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
    from crane.engine.evaluate import FullRankingEvaluator
    from crane.engine.inputs import build_model
    from crane.engine.loop import TrainingLoop
    from crane.engine.runner import resolve_training
    from crane.engine.runtime import seed_everything
    from crane.engine.settings import TrainingConfig
    from crane.tuning import declared_training_keys, default_hparams

    job_start = time.monotonic()
    model_cls = models.get(job["model"])
    # Trainer settings in the model spec (`crane:precision=bf16`) go to the trainer unless
    # the model file declares them as part of its point.
    overrides = dict(job.get("overrides", {}))
    declared = declared_training_keys(job["model"])
    trainer = {k: overrides.pop(k) for k in list(overrides)
               if k in TrainingConfig.keys() and k not in declared}
    hparams = default_hparams(job["model"], **overrides)
    # ID-only models never see the features (their memory would blur the peak).
    with_features = model_cls.uses_content
    data = load_data(job, with_features, recorder)
    train = train_data(data, device, job["cache_dir"], with_features)
    epochs = int(job["epochs"])
    model_hp, training, _ = resolve_training(job["model"], hparams, TrainingConfig(
        epochs=epochs, patience=epochs + 1, eval_every=1,
        batch_size=int(job.get("batch_size", 2048)),
        eval_batch_size=int(job.get("eval_batch_size", 4096)), checkpoint_every_s=1e9,
        **trainer))
    seed = int(job.get("seed", 7))
    recorder.update(hparams=hparams, batch_size=training.batch_size,
                    batches_per_epoch=-(-len(train.train_user) // training.batch_size))

    seed_everything(seed)
    start = time.perf_counter()
    model = build_model(job["model"], train, model_hp)
    recorder.update(build_s=time.perf_counter() - start, trainable=model.trainable)
    start = time.perf_counter()
    evaluator = FullRankingEvaluator.for_split(data.interactions, VALID,
                                               batch_size=training.eval_batch_size,
                                               device=device)
    recorder.update(eval_setup_s=time.perf_counter() - start, eval_users=len(evaluator.users))

    hooks = MeasuringHooks(job, job_start, recorder, model.trainable)
    loop = TrainingLoop(model, train, CpuTimedEvaluator(evaluator, hooks.cpu_seconds["eval"]),
                        training, seed, log=lambda _: None, hooks=hooks,
                        resume_key="benchmark")
    if job.get("profile_path"):
        profile_run(loop.run, Path(job["profile_path"]))
    else:
        loop.run()
    if not model.trainable:  # fit() + one evaluation: no epoch hook runs
        recorder.update(**summarise_history(loop.history, trainable=False),
                        cpu_eval_s=statistics.median(hooks.cpu_seconds["eval"]))


class CpuTimedEvaluator:
    """An evaluator that adds each pass's process CPU seconds to `sink`: on a shared machine
    wall time grows with the load, CPU time much less (it still counts every thread's work)."""

    def __init__(self, evaluator, sink: list):
        self.evaluator, self.sink = evaluator, sink
        self.users = evaluator.users

    def evaluate(self, model, topk: int = 0):
        start = time.process_time()
        try:
            return self.evaluator.evaluate(model, topk=topk)
        finally:
            self.sink.append(time.process_time() - start)


class MeasuringHooks(Hooks):
    """Records each epoch's CPU seconds and the running summary after every epoch; with
    `max_batches` each epoch stops after that many batches (timing the batch loop from the
    first batch on); raises _StopEarly when another epoch would pass the soft time limit."""

    def __init__(self, job: dict, job_start: float, recorder: Recorder, trainable: bool):
        self.job_start, self.recorder, self.trainable = job_start, recorder, trainable
        self.soft_limit = float(job.get("soft_limit_s", float("inf")))
        self.max_batches = int(job.get("max_batches") or 0)
        self.cpu_seconds: dict[str, list[float]] = {"epoch": [], "eval": []}
        self.partial: list[dict] = []  # per epoch with max_batches: batch-loop seconds, batches
        self.rows: list[dict] = []
        self._epoch_cpu_start = 0.0

    def on_epoch_start(self, epoch: int) -> None:
        self._epoch_cpu_start = time.process_time()

    def on_epoch_trained(self, epoch: int, row: dict) -> None:
        self.cpu_seconds["epoch"].append(time.process_time() - self._epoch_cpu_start)

    def train_batches(self, epoch: int, batches):
        if not self.max_batches:
            return batches
        return first_batches(batches, self.max_batches, self.partial)

    def on_epoch_end(self, epoch: int, row: dict) -> None:
        self.rows.append(row)
        rows = self.rows
        # what the next epoch will take here (a truncated one with max_batches)
        next_cost = rows[-1]["seconds"] + rows[-1].get("eval_seconds", 0.0)
        cpu_epochs = self.cpu_seconds["epoch"]
        if self.partial:
            scaled = extrapolate_epochs(rows, self.partial,
                                        self.recorder.data["batches_per_epoch"])
            # CPU seconds scaled like the wall seconds of the same epoch
            cpu_epochs = [cpu * new["seconds"] / old["seconds"]
                          for cpu, new, old in zip(cpu_epochs, scaled, rows)]
            rows = scaled
        self.recorder.update(**summarise_history(rows, self.trainable),
                             cpu_epoch_s=statistics.median(cpu_epochs),
                             cpu_eval_s=statistics.median(self.cpu_seconds["eval"] or [math.nan]))
        if time.monotonic() - self.job_start + next_cost > self.soft_limit:
            raise _StopEarly


def first_batches(batches, max_batches: int, sink: list):
    """The first `max_batches` of an epoch's batches (the sampler has drawn the whole epoch's
    shuffle and negatives as usual), recording how long the batch loop took from the first
    batch on, and the first batch alone (it pays per-epoch work such as a graph rebuild)."""
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
