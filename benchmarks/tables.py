"""The benchmark's outputs: results CSV, Markdown tables (one per scale) and machine.json.

Rows are keyed by (scale, model label): a later run of some scales or models replaces those
rows and keeps the others, so the suite can be run in pieces (e.g. Electronics alone).
"""

from __future__ import annotations

import importlib.metadata
import json
import math
import os
import platform
import subprocess
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from crane import files

CSV_NAME = "benchmark.csv"
MARKDOWN_NAME = "benchmark.md"
MACHINE_NAME = "machine.json"

COLUMNS = ["scale", "model", "status", "build_s", "epoch_s", "first_epoch_s", "fit_s",
           "epochs", "measured_batches", "eval_s", "eval_passes", "cpu_epoch_s", "cpu_eval_s",
           "peak_rss_mib", "peak_gpu_mib",
           "batch_size", "batches_per_epoch", "eval_users", "eval_setup_s", "data_s",
           "user_item_s", "knn_image_s", "knn_text_s", "knn_k", "valid_recall@20", "loss",
           "source", "users", "items", "interactions", "train_interactions", "threads",
           "device", "load_start", "load_end", "probe_ms", "probe_start_ms", "probe_end_ms",
           "wall_s", "started_at", "hparams", "overrides",
           "repeats", "epoch_s_runs", "eval_s_runs", "cpu_epoch_s_runs", "cpu_eval_s_runs",
           "fit_s_runs", "probe_ms_runs"]

SCALE_ORDER = ["tiny", "baby", "clothing", "electronics"]
MODEL_ORDER = ["graphs", "mostpop", "bpr", "lightgcn", "vbpr", "itemknn_cbf", "lattice",
               "freedom", "bm3", "mgcn", "lgmrec", "crane"]

# Baby, 2 CPU cores: MMRec's own figures (../shared/data/amazon2014-baby/README.md) and the
# targets of issue 10 (a third of MMRec for BPR/LightGCN, 3 s for FREEDOM, 0.3 s per eval).
BABY_TARGETS = {"bpr": (0.6, 0.2), "lightgcn": (4.2, 1.4), "freedom": (19.0, 3.0)}
MMREC_EVAL_S, EVAL_TARGET_S = 2.8, 0.3


# -- machine -----------------------------------------------------------------------------------

def describe_machine(threads: int, device: str) -> dict:
    """CPU, memory, versions and thread settings, without importing torch."""
    cpu_model = _cpuinfo_field("model name") or platform.processor() or "unknown"
    return {
        "cpu_model": cpu_model,
        "cpu_family_model": f"{_cpuinfo_field('cpu family')}/{_cpuinfo_field('model')}",
        "simd": [f for f in ("avx2", "fma", "avx512f", "avx512_bf16")
                 if f in (_cpuinfo_field("flags") or "").split()],
        "logical_cpus": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "memory_gib": _meminfo_gib("MemTotal"),
        "memory_available_gib_at_start": _meminfo_gib("MemAvailable"),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": {name: _version(name) for name in ("torch", "numpy", "scipy", "pandas")},
        "threads_requested": threads,
        "thread_env": {name: os.environ.get(name) for name in
                       ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")},
        "device_requested": device,
        "gpu": _gpu_name(),
        "git_commit": _git_commit(),
        "load_average_at_start": list(os.getloadavg()),
        "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def _cpuinfo_field(name: str) -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(name):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def _meminfo_gib(field: str) -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith(field + ":"):
                return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def _version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "absent"


def _gpu_name() -> str | None:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=10, cwd=Path(__file__).resolve().parent)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


# -- rows ------------------------------------------------------------------------------------

def merge_rows(out_dir: Path, rows: list[dict], fresh: bool = False) -> pd.DataFrame:
    """Existing CSV rows (unless `fresh`) with `rows` replacing those of the same key."""
    new = pd.DataFrame([_flatten(row) for row in rows], columns=COLUMNS)
    path = out_dir / CSV_NAME
    if path.exists() and not fresh:
        old = pd.read_csv(path)
        keys = set(zip(new["scale"], new["model"]))
        keep = [(s, m) not in keys for s, m in zip(old["scale"], old["model"])]
        new = pd.concat([old[keep].reindex(columns=COLUMNS), new], ignore_index=True)
    new = new.drop_duplicates(subset=["scale", "model"], keep="last")
    new["_scale"] = new["scale"].map(_rank(SCALE_ORDER))
    new["_model"] = new["model"].map(lambda m: _rank(MODEL_ORDER)(str(m).split("[")[0]))
    new = new.sort_values(["_scale", "_model", "model"], kind="stable")
    return new.drop(columns=["_scale", "_model"]).reset_index(drop=True)


def _rank(order: list[str]):
    return lambda value: order.index(value) if value in order else len(order)


def _flatten(row: dict) -> dict:
    out = {}
    for column in COLUMNS:
        value = row.get(column)
        if isinstance(value, (dict, list)):
            value = (" ".join(f"{v:.2f}" for v in value) if column.startswith("load")
                     else json.dumps(value, sort_keys=True))
        out[column] = value
    return out


def write_outputs(out_dir: Path, frame: pd.DataFrame, machine: dict) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    with files.atomic_path(out_dir / CSV_NAME) as tmp:
        frame.to_csv(tmp, index=False)
    files.write_json(out_dir / MACHINE_NAME, machine)
    files.write_text(out_dir / MARKDOWN_NAME, markdown(frame, machine))


# -- Markdown --------------------------------------------------------------------------------

def markdown(frame: pd.DataFrame, machine: dict) -> str:
    lines = ["# Benchmark results", "", machine_line(machine), ""]
    for scale in [s for s in SCALE_ORDER if s in set(frame["scale"])] + sorted(
            set(frame["scale"]) - set(SCALE_ORDER)):
        lines += scale_table(frame[frame["scale"] == scale]) + [""]
    if "baby" in set(frame["scale"]):
        lines += baby_targets(frame[frame["scale"] == "baby"]) + [""]
    return "\n".join(lines)


def machine_line(machine: dict) -> str:
    versions = machine.get("versions", {})
    return (f"Machine: {machine.get('cpu_model')}, {machine.get('usable_cpus')} usable CPU(s), "
            f"{machine.get('memory_gib')} GiB RAM, GPU: {machine.get('gpu') or 'none'}; "
            f"{machine.get('threads_requested')} torch thread(s), OMP_WAIT_POLICY "
            f"{machine.get('thread_env', {}).get('OMP_WAIT_POLICY') or 'unset'}; "
            f"torch {versions.get('torch')}, "
            f"numpy {versions.get('numpy')}, scipy {versions.get('scipy')}; commit "
            f"{machine.get('git_commit')}. Load average (1/5/15 min) when the (last) run "
            f"started: {_load(machine.get('load_average_at_start'))}; every row's load at its "
            f"start and end is in {CSV_NAME} (load_start, load_end).")


def _load(values) -> str:
    return " / ".join(f"{v:.1f}" for v in values) if values else "?"


def scale_table(rows: pd.DataFrame) -> list[str]:
    first = rows.iloc[0]
    sizes = rows[rows["users"].notna()]
    head = f"## {first['scale']}"
    if len(sizes):
        r = sizes.iloc[0]
        head += (f": {_int(r['users'])} users, {_int(r['items'])} items, "
                 f"{_int(r['interactions'])} interactions ({_int(r['train_interactions'])} "
                 f"train); {r['source']}")
    out = [head, ""]
    graphs = rows[rows["model"] == "graphs"]
    if len(graphs):
        g = graphs.iloc[0]
        out += [f"Graphs ({g['status']}): user-item adjacency {_s(g['user_item_s'])}; "
                f"item kNN (k = {_int(g['knn_k'])}, cold cache) image {_s(g['knn_image_s'])}, "
                f"text {_s(g['knn_text_s'])}; peak {_mib(g['peak_rss_mib'])}. Model rows "
                "below read these kNN graphs from the cache: their build time is the rest "
                "of their graph and parameter set-up.", ""]
    out += ["| model | build graphs (s) | train (s/epoch) | eval (s/pass) | peak RSS (MiB) "
            "| train CPU (s/epoch) | eval CPU (s/pass) | epochs | load (1 min) | probe (ms) "
            "| status |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for _, r in rows[rows["model"] != "graphs"].iterrows():
        train = (f"fit {_num(r['fit_s'])}" if _present(r["fit_s"]) else _num(r["epoch_s"]))
        if _present(r.get("measured_batches")) and _present(r["epoch_s"]):
            train += (f" (extrapolated from {_int(r['measured_batches'])} of "
                      f"{_int(r['batches_per_epoch'])} batches)")
        out.append(f"| {r['model']} | {_num(r['build_s'])} | {train} | {_num(r['eval_s'])} "
                   f"| {_num(r['peak_rss_mib'], 0)} | {_num(r['cpu_epoch_s'])} "
                   f"| {_num(r['cpu_eval_s'])} | {_int(r['epochs'])} "
                   f"| {_first_load(r['load_start'])} | {_num(r.get('probe_ms'))} "
                   f"| {r['status']} |")
    return out


def baby_targets(rows: pd.DataFrame) -> list[str]:
    out = ["## Baby, against MMRec (2 CPU cores) and the targets", "",
           "Targets are wall seconds on an otherwise idle machine; on a shared one read the CPU "
           "seconds beside them (2 threads: an idle machine's wall time lies between CPU / 2 "
           "and CPU) and the load. The probe is a fixed reference workload timed in the same "
           "process (benchmarks/probe.py): a higher probe means a slower machine at the time.",
           "",
           "| model | measured train (s/epoch) | train CPU (s) | target | MMRec "
           "| measured eval (s/pass) | eval CPU (s) | target | MMRec | load (1 min) "
           "| probe (ms) |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for _, r in rows[rows["model"] != "graphs"].iterrows():
        base = str(r["model"]).split("[")[0]
        mmrec, target = BABY_TARGETS.get(base, (None, None))
        train_key = "fit_s" if _present(r["fit_s"]) else "epoch_s"
        train = r[train_key]
        out.append(f"| {r['model']} | {_num(train)}{_verdict(train, target)}"
                   f"{_runs(r, train_key)} "
                   f"| {_num(r['cpu_epoch_s'])} | {_num(target)} | {_num(mmrec)} "
                   f"| {_num(r['eval_s'])}{_verdict(r['eval_s'], EVAL_TARGET_S)}"
                   f"{_runs(r, 'eval_s')} "
                   f"| {_num(r['cpu_eval_s'])} "
                   f"| {EVAL_TARGET_S} | {MMREC_EVAL_S if base in BABY_TARGETS else '-'} "
                   f"| {_first_load(r['load_start'])} | {_num(r.get('probe_ms'))} |")
    return out


def _verdict(value, target) -> str:
    if not _present(value) or target is None:
        return ""
    return " (met)" if float(value) <= target else " (missed)"


def _runs(row, key: str) -> str:
    """' [median of N runs: low-high]' for a timing measured in repeated runs."""
    runs = row.get(f"{key}_runs")
    if not _present(runs):
        return ""
    values = [float(value) for value in str(runs).split()]
    return f" [median of {len(values)} runs: {_num(min(values))}-{_num(max(values))}]"


def _present(value) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value)) \
        and value != ""


def _num(value, digits: int = 2) -> str:
    if not _present(value):
        return "-"
    value = float(value)
    if digits and abs(value) < 0.1:
        digits = 3
    return f"{value:,.{digits}f}"


def _s(value) -> str:
    return f"{_num(value)} s" if _present(value) else "-"


def _mib(value) -> str:
    return f"{_num(value, 0)} MiB" if _present(value) else "-"


def _int(value) -> str:
    return f"{int(float(value)):,}" if _present(value) else "-"


def _first_load(value) -> str:
    if not _present(value):
        return "-"
    return str(value).split()[0]
