"""The benchmark suite: per scale and model, graph build, training epoch, evaluation, memory.

    python benchmarks/run.py [--scales baby clothing electronics] [--models ...] [--epochs N]
                             [--out benchmarks/results] [--timeout S] [--threads N]

Each (scale, model) is measured in a FRESH subprocess (benchmarks/measure.py), so its peak
resident memory is its own, under a hard wall-clock timeout and an address-space limit; a
model that fails is recorded as `timeout`, `oom` or `error: ...` and the table goes on.
Before the models of a scale, one `graphs` run times the user-item adjacency and the item
kNN graphs (k = 10, per modality) and leaves them in a kNN cache that the model runs of that
scale read (so their `build` column is the rest of their graph set-up).

Models are given as registry names, optionally with hyper-parameter overrides on top of
the model file's defaults (crane/configs/models/<model>.yaml): `freedom:reg_weight=0,dropout=0.8`,
or with trainer settings the model file does not declare (`crane:precision=bf16`).
The default list is every model with a config file, FREEDOM at MMRec's timing point (reg_weight 0).

Results (rows replace earlier rows of the same scale and model; --fresh starts over):
`<out>/benchmark.csv`, `<out>/benchmark.md` (a table per scale), `<out>/machine.json`.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(HERE))

import synthetic  # noqa: E402
import tables  # noqa: E402
from crane import files  # noqa: E402
from crane.configs import MODELS_DIR  # noqa: E402

DEFAULT_OUT = HERE / "results"
# Timing points that differ from a model's defaults: MMRec's FREEDOM timing ran at
# dropout 0.8, reg_weight 0 (../shared/data/amazon2014-baby/README.md).
BENCHMARK_POINTS = {"freedom": {"reg_weight": 0.0, "dropout": 0.8}}
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", nargs="+", default=["baby", "clothing", "electronics"],
                        choices=list(synthetic.SCALES))
    parser.add_argument("--models", nargs="+", default=None,
                        help="model[:key=value,...] (default: every model with a config)")
    parser.add_argument("--epochs", type=int, default=3,
                        help="training epochs per model (each followed by an evaluation pass)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--timeout", type=float, default=900.0,
                        help="hard wall-clock limit per model run, seconds")
    parser.add_argument("--memory-limit-gib", type=float, default=24.0,
                        help="address-space limit per model run (0: none)")
    parser.add_argument("--threads", type=int, default=2, help="torch / BLAS threads")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--omp-wait-policy", default="PASSIVE", choices=["PASSIVE", "ACTIVE", ""],
                        help="OMP_WAIT_POLICY of the runs ('' leaves the environment's): idle "
                             "OpenMP threads spinning (ACTIVE) make every parallel region "
                             "wait for a descheduled thread when other processes share the "
                             "cores)")
    parser.add_argument("--batch-size", type=int, default=2048)
    parser.add_argument("--eval-batch-size", type=int, default=4096)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--max-batches", type=int, default=0,
                        help="time only the first N batches of each epoch and scale the batch "
                             "loop to a full epoch (marked 'extrapolated'); 0: full epochs")
    parser.add_argument("--no-real-baby", action="store_true",
                        help="generate Baby-sized data even when the real pairs are present")
    parser.add_argument("--no-graphs", action="store_true",
                        help="skip the per-scale graphs run (models then build kNN themselves)")
    parser.add_argument("--fresh", action="store_true",
                        help="drop earlier rows in --out instead of merging with them")
    parser.add_argument("--merge", nargs="+", type=Path, default=[], metavar="CSV",
                        help="measure nothing: merge these result CSVs (later files win per "
                             "scale and model) into --out and rewrite its tables")
    parser.add_argument("--repeat", type=int, default=1, metavar="N",
                        help="run each model N times (a fresh process each, the models "
                             "alternating round by round) and report the median run: a shared "
                             "VM's speed drifts between runs")
    parser.add_argument("--profile", action="store_true",
                        help="cProfile each model's epochs + evaluations (slower) into "
                             "<out>/profiles/<scale>-<model>.txt")
    args = parser.parse_args(argv)
    if args.epochs < 1:
        parser.error("--epochs must be >= 1")
    if args.timeout <= 0:
        parser.error("--timeout must be positive")
    if args.repeat < 1:
        parser.error("--repeat must be >= 1")
    args.model_specs = [parse_model_spec(spec, parser) for spec in
                        (args.models or default_models())]
    return args


def default_models() -> list[str]:
    names = sorted(p.stem for p in MODELS_DIR.glob("*.yaml"))
    order = tables.MODEL_ORDER
    names.sort(key=lambda n: order.index(n) if n in order else len(order))
    return names


def parse_model_spec(spec: str, parser: argparse.ArgumentParser | None = None
                     ) -> tuple[str, str, dict]:
    """`name[:k=v,...]` -> (name, table label, overrides); defaults from BENCHMARK_POINTS."""
    name, _, rest = spec.partition(":")
    overrides = dict(BENCHMARK_POINTS.get(name, {})) if not rest else {}
    for assignment in filter(None, rest.split(",")):
        key, sep, value = assignment.partition("=")
        if not sep or not key:
            message = f"--models {spec!r}: expected name:key=value,key=value"
            if parser is not None:
                parser.error(message)
            raise ValueError(message)
        overrides[key.strip()] = _parse_value(value.strip())
    label = name + (f"[{','.join(f'{k}={v}' for k, v in overrides.items())}]"
                    if overrides else "")
    return name, label, overrides


def _parse_value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


# -- running one measurement ------------------------------------------------------------------

def run_job(job: dict, work: Path, timeout: float, memory_limit_gib: float,
            threads: int, omp_wait_policy: str = "") -> dict:
    """Run benchmarks/measure.py on `job` in a fresh process; its result row, never raises."""
    job_path = work / f"{job['scale']}-{_safe(job['label'])}.job.json"
    result_path = job_path.with_suffix("").with_suffix(".result.json")
    result_path.unlink(missing_ok=True)
    files.write_json(job_path, {**job, "result": str(result_path)})
    env = {**os.environ, **{name: str(threads) for name in THREAD_VARIABLES}}
    if omp_wait_policy:
        env["OMP_WAIT_POLICY"] = omp_wait_policy
    start = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, str(HERE / "measure.py"), str(job_path)], env=env, cwd=REPO,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
        preexec_fn=_limit_memory(memory_limit_gib))
    try:
        output, _ = process.communicate(timeout=timeout)
        timed_out = False
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)  # the measurement's own process group
        output, _ = process.communicate()
        timed_out = True
    wall = time.monotonic() - start
    row = files.read_json(result_path) if result_path.exists() else {
        "scale": job["scale"], "model": job["label"]}
    row["wall_s"] = wall
    row["overrides"] = job.get("overrides") or None
    if timed_out:
        row["status"] = "timeout"
    elif row.get("status") in (None, "running"):
        # killed from outside (the kernel's OOM killer sends SIGKILL) or crashed hard
        row["status"] = ("oom" if process.returncode == -signal.SIGKILL
                         else f"error: exit code {process.returncode}: "
                              + " ".join((output or "").split()[-40:]))
    if str(row["status"]).startswith("error") and row.get("traceback"):
        print(row["traceback"], file=sys.stderr)
    return row


def _limit_memory(gib: float):
    if gib <= 0:
        return None
    limit = int(gib * 2**30)

    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    return apply


def _safe(label: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in label)


# -- the suite ------------------------------------------------------------------------------

def merge_results(args: argparse.Namespace) -> int:
    """Combine result CSVs of separate runs (e.g. one scale each) into --out's tables."""
    import pandas as pd

    machine_path = args.out / tables.MACHINE_NAME
    machine = {}
    for csv in args.merge:
        if not csv.exists():
            raise SystemExit(f"--merge: {csv} not found")
        if (csv.parent / tables.MACHINE_NAME).exists():
            machine = files.read_json(csv.parent / tables.MACHINE_NAME)
    if machine_path.exists() and not machine:
        machine = files.read_json(machine_path)
    rows = [row for csv in args.merge for row in pd.read_csv(csv).to_dict("records")]
    frame = tables.merge_rows(args.out, rows, fresh=args.fresh)
    tables.write_outputs(args.out, frame, machine)
    print((args.out / tables.MARKDOWN_NAME).read_text())
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.merge:
        return merge_results(args)
    machine = tables.describe_machine(args.threads, args.device)
    machine["thread_env"].update({name: str(args.threads) for name in THREAD_VARIABLES})
    machine["thread_env"]["OMP_WAIT_POLICY"] = (args.omp_wait_policy
                                                or os.environ.get("OMP_WAIT_POLICY"))
    args.out.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="crane-bench-") as tmp:
        work = Path(tmp)
        for scale in args.scales:
            cache_dir = work / f"knn-{scale}"
            cache_dir.mkdir()
            common = {"scale": scale, "epochs": args.epochs, "threads": args.threads,
                      "device": args.device, "seed": args.seed, "batch_size": args.batch_size,
                      "eval_batch_size": args.eval_batch_size,
                      "real_baby": not args.no_real_baby, "cache_dir": str(cache_dir),
                      "soft_limit_s": 0.8 * args.timeout, "max_batches": args.max_batches}
            jobs = [] if args.no_graphs else [{**common, "model": "graphs", "label": "graphs"}]
            jobs += [{**common, "model": name, "label": label, "overrides": overrides,
                      "profile_path": str(args.out / "profiles" / f"{scale}-{_safe(label)}.txt")
                      if args.profile else None}
                     for name, label, overrides in args.model_specs]
            # Repeats run in rounds, every model once per round, so that the models compared
            # alternate and a drift of the machine's speed reaches all of them alike.
            done: dict[str, list[dict]] = {job["label"]: [] for job in jobs}
            for round_number in range(1, args.repeat + 1):
                for job in jobs:
                    runs = 1 if job["model"] == "graphs" else args.repeat
                    if round_number > runs:
                        continue
                    print(f"[{scale}] {job['label']} (run {round_number} of {runs}) ...",
                          flush=True)
                    done[job["label"]].append(run_job(job, work, args.timeout,
                                                      args.memory_limit_gib, args.threads,
                                                      args.omp_wait_policy))
                    if round_number < runs:
                        continue
                    row = combine_repeats(done[job["label"]])
                    rows.append(row)
                    print("    " + summary_line(row), flush=True)
                    machine["load_average_at_end"] = list(os.getloadavg())
                    frame = tables.merge_rows(args.out, rows, fresh=args.fresh)
                    tables.write_outputs(args.out, frame, machine)
    print()
    print((args.out / tables.MARKDOWN_NAME).read_text())
    return 0


REPEATED_TIMINGS = ("epoch_s", "eval_s", "cpu_epoch_s", "cpu_eval_s", "fit_s", "probe_ms")


def combine_repeats(rows: list[dict]) -> dict:
    """One row for repeated runs of a job: each timing is the median (lower middle) over the
    runs, `<timing>_runs` lists them all, the peak memory is the largest. A failed run is
    reported instead, as it is."""
    if len(rows) == 1:
        return rows[0]
    failed = [row for row in rows if row.get("status") != "ok"]
    if failed:
        return failed[0]
    combined = {**rows[0], "repeats": len(rows)}
    for key in REPEATED_TIMINGS:
        values = [row[key] for row in rows if row.get(key) is not None]
        if len(values) == len(rows):
            combined[key] = statistics.median_low(values)
            combined[f"{key}_runs"] = " ".join(f"{value:.3f}" for value in values)
    peaks = [row["peak_rss_mib"] for row in rows if row.get("peak_rss_mib") is not None]
    if peaks:
        combined["peak_rss_mib"] = max(peaks)
    return combined


def summary_line(row: dict) -> str:
    parts = [str(row.get("status"))]
    for key in ("build_s", "epoch_s", "fit_s", "eval_s", "user_item_s", "knn_image_s",
                "knn_text_s"):
        if row.get(key) is not None:
            parts.append(f"{key} {row[key]:.3f}")
    if row.get("peak_rss_mib") is not None:
        parts.append(f"peak {row['peak_rss_mib']:.0f} MiB")
    parts.append(f"wall {row['wall_s']:.1f} s")
    return ", ".join(parts)


if __name__ == "__main__":
    sys.exit(main())
