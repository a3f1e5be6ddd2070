"""The workflow on a real single-node SLURM cluster, through the SLURM profiles.

One scenario, run once for the module (2.5-6 minutes on a busy 2-core machine):

0. local: a plain Snakemake run (no profile) builds the test configuration's inputs and the
   final runs of two models; their metrics are the reference. The two run folders are then
   moved away, so that the SLURM runs must train them again.
1. SLURM (workflow/profiles/slurm), with a bug in one model's code (the snapshot's model
   file gets a constructor that raises): the plan is valid, so both jobs are submitted; that
   job fails when it runs, the other one finishes; Snakemake exits non-zero and prints the
   failed job's log. (A bad configuration value is no way to fail a job: the workflow refuses
   it at plan time, before any job; test_plan_time_checks.py checks that.)
2. The bug fixed, the same command again, through workflow/profiles/slurm-gpu (the node has
   two stand-in GPUs): only the failed job runs, and SLURM allocates it a GPU. The GPU profile
   is the CPU one plus GPU requests (test_profiles.py checks that), and resources are not rerun
   triggers, so this is the "rerun the same command" case and the GPU case in one round of
   jobs; the job still trains on CPU (`device: auto`, no CUDA here).

Then: every training job ran as a SLURM job (its kept SLURM log and `scontrol show job`
agree on the job id, rule, wildcards, working folder and state), and the test metrics of the
SLURM runs equal the local ones within TOLERANCE (absolute). Both sides see the same inputs,
seed and thread count: the local run gets the profile's threads for train_final and, like the
job step inside a SLURM job, `--cores all` of this machine. Training on CPU is deterministic
for a fixed thread count, so the values agree exactly in practice; the tolerance leaves room
only for float noise far below any metric's resolution (1 / number of test users).

Snakemake runs a snapshot of the workflow and of the `crane` package taken when the scenario
starts (PYTHONPATH points the jobs at it), so that edits to the checkout during these minutes
cannot trigger reruns and upset the resume check.

It installs Debian's munge and slurm packages and starts daemons as root, so it runs only where
asked: in CI (CI=true) or with CRANE_SLURM_TESTS=1; it is skipped otherwise (saying how to
run it), without root or apt, and always with CRANE_SLURM_TESTS=0.
The cluster (tests/slurm/slurm-up.sh) is always stopped by PID (tests/slurm/slurm-down.sh):
by the fixture's finalizer, on SIGTERM, and by a watchdog process after a hard time limit.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pytest
import yaml

from crane.config import validate_config
from crane.study import StudyPlan

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
WORKFLOW_FILES = ["Snakefile", "workflow", "config", "crane"]  # what the snapshot holds
CONFIG = "config/test.yaml"
PROFILE = "workflow/profiles/slurm"
GPU_PROFILE = "workflow/profiles/slurm-gpu"

pytestmark = pytest.mark.slurm

DATASET = "demo"
FAILING_MODEL = "bpr"      # fails in step 1, trained in step 2
FINISHED_MODEL = "freedom"  # trained in step 1, must be left alone in step 2
FAILING_CLASS = "BPR"      # its class in crane/models/bpr.py
INJECTED_BUG = f"a bug in {FAILING_MODEL}.py, injected by tests/slurm/test_slurm_cluster.py"
TOLERANCE = 1e-6
# The node advertises more than this VM has (nothing enforces it) so that both training jobs,
# sized by the profile for real datasets (4 CPUs, 16 GB, 1 GPU each), run side by side.
NODE = {"SLURM_CPUS": "8", "SLURM_MEM_MB": "64000", "SLURM_GPUS": "2"}
BUDGET_S = 540             # hard limit for the whole scenario, cluster start to stop
SKIP_CODES = {77: "cannot install the SLURM packages with apt-get",
              78: "/etc/slurm/slurm.conf belongs to a real SLURM installation"}


class Deadline:
    """One time budget shared by every step, so that the scenario as a whole is bounded."""

    def __init__(self, seconds: float):
        self.end = time.monotonic() + seconds

    def limit(self, cap: float) -> int:
        left = int(self.end - time.monotonic())
        if left < 10:
            pytest.fail(f"SLURM scenario ran out of its {BUDGET_S} s budget")
        return min(int(cap), left)


def _env(snapshot: Path | None = None) -> dict[str, str]:
    # Jobs inherit this environment (sbatch --export=ALL); a SLURM_* variable from an outer
    # allocation would confuse the executor.
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    if snapshot is not None:  # `python -m crane` imports the snapshot, not the checkout
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(snapshot), env.get("PYTHONPATH")]))
    return env


def _snapshot(destination: Path) -> Path:
    for name in WORKFLOW_FILES:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, destination / name,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(source, destination / name)
    return destination


# Commands still running, each in its own session, so that a teardown can stop them and
# everything they started by process group (on SIGTERM, or when one outlives its limit).
_RUNNING: set[subprocess.Popen] = set()


def _kill_group(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _run(cmd: list[str], limit: int, snapshot: Path | None = None,
         **kwargs) -> subprocess.CompletedProcess:
    process = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=_env(snapshot), start_new_session=True, **kwargs)
    _RUNNING.add(process)
    try:
        out, err = process.communicate(timeout=limit + 30)
    except subprocess.TimeoutExpired:
        _kill_group(process)
        out, err = process.communicate()
        pytest.fail(f"{cmd[:6]} did not stop within {limit + 30} s:\n{out[-3000:]}\n{err[-3000:]}")
    except BaseException:  # Ctrl-C: nothing may outlive the test
        _kill_group(process)
        raise
    finally:
        _RUNNING.discard(process)
    return subprocess.CompletedProcess(cmd, process.returncode, out, err)


# ---- the cluster ----------------------------------------------------------------------------

def skip_reason(environ: dict[str, str]) -> str | None:
    """Why the real-cluster scenario does not run here, or None when it runs."""
    asked = environ.get("CRANE_SLURM_TESTS", "")
    if asked == "0":
        return "CRANE_SLURM_TESTS=0"
    if asked == "1" or environ.get("CI", "").lower() in {"true", "1", "yes"}:
        return None
    return ("the real-SLURM scenario installs Debian's munge and slurm packages and starts their "
            "daemons as root; it runs in CI (CI=true) or when asked: "
            "CRANE_SLURM_TESTS=1 python3 run.py test tests/slurm")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A running single-node cluster; stopped by PID whatever happens."""
    reason = skip_reason(dict(os.environ))
    if reason:
        pytest.skip(reason)
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        pytest.skip("starting a SLURM cluster needs root (it installs packages and daemons)")
    scratch = tmp_path_factory.mktemp("slurm")
    deadline = Deadline(BUDGET_S)
    down = ["bash", str(HERE / "slurm-down.sh"), str(scratch / "cluster")]
    # Last resort if this process hangs or is killed: stop the daemons anyway.
    watchdog = subprocess.Popen(["bash", "-c", f"sleep {BUDGET_S + 60}; exec \"$@\"", "-", *down],
                                start_new_session=True, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)

    def stop():
        for process in list(_RUNNING):  # snakemake ignores SIGTERM while its jobs run
            _kill_group(process)
        subprocess.run(down, timeout=90, capture_output=True)  # scancel, then the daemons

    def on_sigterm(signum, frame):
        stop()
        _kill_group(watchdog)
        signal.signal(signal.SIGTERM, previous or signal.SIG_DFL)
        os.kill(os.getpid(), signum)

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        started = time.monotonic()
        up = _run(["env", *(f"{k}={v}" for k, v in NODE.items()), "bash",
                   str(HERE / "slurm-up.sh"), str(scratch / "cluster")], deadline.limit(240))
        if up.returncode in SKIP_CODES:
            pytest.skip(f"{SKIP_CODES[up.returncode]}: {up.stderr.strip()[-500:]}")
        assert up.returncode == 0, f"slurm-up.sh failed:\n{up.stdout}\n{up.stderr}"
        print(f"cluster up in {time.monotonic() - started:.0f} s")
        yield Cluster(scratch, deadline)
    finally:
        stop()
        _kill_group(watchdog)  # its own session: the shell and its sleep
        watchdog.wait()
        signal.signal(signal.SIGTERM, previous or signal.SIG_DFL)


@dataclass
class Cluster:
    scratch: Path
    deadline: Deadline


def scontrol_job(job_id: str) -> dict[str, str]:
    """`scontrol show job` as a dict; finished jobs stay listed for MinJobAge (300 s)."""
    shown = subprocess.run(["scontrol", "-o", "show", "job", job_id], capture_output=True,
                           text=True, timeout=30)
    assert shown.returncode == 0, f"scontrol show job {job_id}: {shown.stderr}"
    return dict(re.findall(r"(\S+?)=(\S*)", shown.stdout))


# ---- the scenario ---------------------------------------------------------------------------

@dataclass
class Step:
    returncode: int
    output: str
    seconds: float
    jobs: dict[str, dict[str, str]] = field(default_factory=dict)  # SLURM job id -> scontrol

    def submitted(self) -> dict[str, Path]:
        """SLURM job id -> its log, from Snakemake's 'submitted with SLURM jobid' lines."""
        found = re.findall(r"submitted with SLURM jobid (\d+) \(log: (\S+)\)", self.output)
        return {job_id: Path(log) for job_id, log in found}

    def job_stats(self) -> dict[str, int]:
        table = re.search(r"Job stats:\njob\s+count\n-+\s+-+\n((?:\S+\s+\d+\n)+)", self.output)
        assert table, f"no job stats in the output:\n{self.output[-3000:]}"
        return {name: int(n) for name, n in re.findall(r"(\S+)\s+(\d+)", table.group(1))}


@dataclass
class Scenario:
    workdir: Path
    plan: StudyPlan
    reference: dict[str, dict]       # model -> metrics.json of the local run
    local: Step
    failing: Step
    resumed: Step
    failed_log: tuple[str, str]      # the failing job's own log (path, content) after step 1
    mtimes_after_failure: dict[str, int]
    mtimes_after_resume: dict[str, int]

    def run_dir(self, model: str) -> Path:
        return self.workdir / self.plan.final_run(DATASET, model, self.plan.seeds[0])

    def metrics(self, model: str) -> dict:
        return json.loads((self.run_dir(model) / "metrics.json").read_text())


def _mtimes(run_dirs: dict[str, Path]) -> dict[str, int]:
    """model -> mtime (ns) of its metrics.json, for the runs that have one."""
    return {m: (d / "metrics.json").stat().st_mtime_ns for m, d in run_dirs.items()
            if (d / "metrics.json").exists()}


@pytest.fixture(scope="module")
def scenario(cluster, tmp_path_factory) -> Scenario:
    snapshot = _snapshot(tmp_path_factory.mktemp("snapshot"))
    config = yaml.safe_load((snapshot / CONFIG).read_text())
    assert {FAILING_MODEL, FINISHED_MODEL} <= set(config["models"]), "models left config/test.yaml"
    plan = StudyPlan(validate_config(config))
    workdir = tmp_path_factory.mktemp("workflow")
    models = (FAILING_MODEL, FINISHED_MODEL)
    run_dirs = {m: workdir / plan.final_run(DATASET, m, plan.seeds[0]) for m in models}
    targets = [str(run_dirs[m].relative_to(workdir) / "metrics.json") for m in models]
    profile = yaml.safe_load((snapshot / PROFILE / "config.yaml").read_text())
    threads = profile["set-threads"]["train_final"]

    def snakemake(*args: str, cap: float) -> Step:
        limit = cluster.deadline.limit(cap)
        # -k: snakemake ignores SIGTERM while it believes jobs are running
        cmd = ["timeout", "-k", "15", str(limit), sys.executable, "-m", "snakemake", *targets,
               "--snakefile", str(snapshot / "Snakefile"), "--directory", str(workdir),
               "--configfile", str(snapshot / CONFIG), *args]
        started = time.monotonic()
        done = _run(cmd, limit, snapshot, cwd=workdir)
        step = Step(done.returncode, done.stdout + done.stderr, time.monotonic() - started)
        assert done.returncode not in (124, 137), \
            f"snakemake timed out:\n{_diagnostics(step, workdir, cluster)}"
        step.jobs = {job_id: scontrol_job(job_id) for job_id in step.submitted()}
        print(f"snakemake {' '.join(args)[:60]}...: rc {done.returncode} in {step.seconds:.0f} s")
        return step

    # 0. local reference, with the thread count the SLURM jobs get on this machine
    local = snakemake("--cores", "all", "--set-threads", f"train_final={threads}", cap=330)
    assert local.returncode == 0, f"local run failed:\n{_diagnostics(local, workdir, cluster)}"
    assert not (workdir / ".snakemake" / "slurm_logs").exists(), "the local run went to SLURM"
    reference = {}
    for model, run_dir in run_dirs.items():
        reference[model] = json.loads((run_dir / "metrics.json").read_text())
        shutil.move(run_dir, tmp_path_factory.mktemp(f"local-{model}"))

    # 1. SLURM with a bug in one model's code, 2. the bug fixed, on "GPU nodes"
    fix = _inject_bug(snapshot)
    failing = snakemake("--workflow-profile", str(snapshot / PROFILE), cap=240)
    failed_log = _failed_rule_log(failing, workdir)  # read now: step 2 overwrites it
    after_failure = _mtimes(run_dirs)
    fix()
    resumed = snakemake("--workflow-profile", str(snapshot / GPU_PROFILE), cap=240)
    return Scenario(workdir, plan, reference, local, failing, resumed, failed_log,
                    after_failure, _mtimes(run_dirs))


def _inject_bug(snapshot: Path) -> Callable[[], None]:
    """Make the failing model's constructor raise; return the function that undoes it.

    Planning never builds a model (it checks configs only), so the workflow submits the job
    and the bug shows when the job runs. The model file is an input of that model's training
    jobs only: the other model's job does not depend on it.
    """
    path = snapshot / "crane" / "models" / f"{FAILING_MODEL}.py"
    original = path.read_text()
    assert f"class {FAILING_CLASS}(" in original, f"{path} has no class {FAILING_CLASS}"
    path.write_text(original + f"""

def _injected_bug(self, *args, **kwargs):
    raise RuntimeError({INJECTED_BUG!r})


{FAILING_CLASS}.__init__ = _injected_bug
""")
    return lambda: path.write_text(original)


def _failed_rule_log(step: Step, workdir: Path) -> tuple[str, str]:
    """(path, content) of the log that Snakemake's error report names for train_final."""
    error = re.search(r"Error in rule train_final:.*?\n\s+log: ([^,\s]+)", step.output, re.DOTALL)
    if not error:
        return "", ""
    log = workdir / error.group(1)
    return error.group(1), log.read_text() if log.exists() else ""


def _diagnostics(step: Step, workdir: Path, cluster: Cluster) -> str:
    parts = [f"--- snakemake output (tail)\n{step.output[-6000:]}"]
    for log in sorted((workdir / ".snakemake" / "slurm_logs").rglob("*.log"))[-6:]:
        parts.append(f"--- {log}\n{log.read_text()[-2000:]}")
    queue = subprocess.run(["squeue", "--states=all"], capture_output=True, text=True, timeout=30)
    parts.append(f"--- squeue --states=all\n{queue.stdout}{queue.stderr}")
    for daemon in ("slurmctld", "slurmd"):
        log = cluster.scratch / "cluster" / "log" / f"{daemon}.log"
        if log.exists():
            parts.append(f"--- {log}\n{log.read_text()[-1500:]}")
    return "\n".join(parts)


def _job_for(step: Step, model: str) -> tuple[str, dict[str, str]]:
    wanted = f"rule_train_final_wildcards_{DATASET}_{model}_"
    found = [(job_id, job) for job_id, job in step.jobs.items()
             if job.get("Comment", "").startswith(wanted)]
    assert len(found) == 1, \
        f"expected one SLURM job for {model}, got {found}\n{step.output[-3000:]}"
    return found[0]


# ---- the checks -----------------------------------------------------------------------------

def test_a_failed_training_job_stops_the_run_and_shows_its_log(scenario):
    step = scenario.failing
    assert step.returncode != 0, \
        f"the run with a bug in {FAILING_MODEL}.py succeeded:\n{step.output[-3000:]}"
    assert "Error in rule train_final" in step.output
    job_id, job = _job_for(step, FAILING_MODEL)
    assert job["JobState"] == "FAILED" and job["ExitCode"] != "0:0", job
    # the rule's log, named in the error report; --show-failed-logs (profile) prints it
    path, log_text = scenario.failed_log
    assert path, f"no log named in the error report:\n{step.output[-3000:]}"
    assert log_text.strip(), f"the failing job wrote nothing to {path}"
    assert f"Logfile {path}:" in step.output
    last_line = log_text.strip().splitlines()[-1]
    assert INJECTED_BUG in last_line, f"the job failed for another reason:\n{log_text[-3000:]}"
    assert last_line in step.output, f"the job's error {last_line!r} was not shown"
    # the executor keeps a failed job's SLURM log, and names it too
    assert Path(job["StdOut"]).name == f"{job_id}.log" and Path(job["StdOut"]).exists()
    assert f"Logfile {job['StdOut']}:" in step.output


def test_the_other_job_finished_on_slurm_despite_the_failure(scenario):
    job_id, job = _job_for(scenario.failing, FINISHED_MODEL)
    assert job["JobState"] == "COMPLETED" and job["ExitCode"] == "0:0", job
    assert "gpu" not in job.get("TresPerJob", "") + job["TRES"], "the CPU profile asked for a GPU"
    assert FINISHED_MODEL in scenario.mtimes_after_failure
    assert FAILING_MODEL not in scenario.mtimes_after_failure


def test_the_second_invocation_runs_only_the_failed_job_on_a_gpu(scenario):
    step = scenario.resumed
    assert step.returncode == 0, f"resuming failed:\n{step.output[-6000:]}"
    assert step.job_stats() == {"train_final": 1, "total": 1}, step.output[-3000:]
    assert len(step.submitted()) == 1
    job_id, job = _job_for(step, FAILING_MODEL)
    # sbatch --gpus=1 is a per-job TRES request; SLURM allocated it (else the job would pend)
    assert job.get("TresPerJob") == "gres:gpu:1", f"the GPU profile got no GPU: {job}"
    assert scenario.mtimes_after_resume[FINISHED_MODEL] == \
        scenario.mtimes_after_failure[FINISHED_MODEL], f"{FINISHED_MODEL} was trained again"


@pytest.mark.parametrize("model", [FINISHED_MODEL, FAILING_MODEL])
def test_each_final_run_was_trained_inside_a_slurm_job(scenario, model):
    step = scenario.failing if model == FINISHED_MODEL else scenario.resumed
    job_id, job = _job_for(step, model)
    seed = scenario.plan.seeds[0]
    assert job["JobState"] == "COMPLETED" and job["ExitCode"] == "0:0", job
    assert Path(job["WorkDir"]).resolve() == scenario.workdir.resolve()
    # the record the profile keeps (slurm-keep-successful-logs): <wildcards>/<job id>.log
    log = Path(job["StdOut"])
    assert log.name == f"{job_id}.log" and log.parent.parent.name == "rule_train_final"
    assert log.is_relative_to(scenario.workdir / ".snakemake" / "slurm_logs")
    text = log.read_text()
    assert "--executor slurm-jobstep" in text  # Snakemake's job step, inside the allocation
    assert f"wildcards: dataset={DATASET}, model={model}, seed={seed}" in text
    assert "1 of 1 steps (100%) done" in text
    manifest = json.loads((scenario.run_dir(model) / "manifest.json").read_text())
    if "slurm_job_id" in manifest:  # the run records SLURM_JOB_ID (crane/engine/runner.py)
        assert str(manifest["slurm_job_id"]) == job_id


@pytest.mark.parametrize("model", [FINISHED_MODEL, FAILING_MODEL])
def test_slurm_metrics_equal_the_local_run(scenario, model):
    local, slurm = scenario.reference[model], scenario.metrics(model)
    assert slurm["seed"] == local["seed"] and slurm["hparams"] == local["hparams"]
    assert slurm["best_epoch"] == local["best_epoch"]
    for split in ("valid", "test"):
        assert set(slurm[split]) == set(local[split])
        for name, value in local[split].items():
            assert slurm[split][name] == pytest.approx(value, abs=TOLERANCE, rel=0), \
                f"{model} {split} {name}: SLURM {slurm[split][name]} != local {value}"


def test_the_scenario_runs_in_ci_or_when_asked():
    """Not on a user's `python3 run.py test`: it installs packages and daemons as root."""
    assert "CRANE_SLURM_TESTS=1" in skip_reason({})
    assert skip_reason({"CI": "false"}) == skip_reason({})
    assert skip_reason({"CI": "true"}) is None
    assert skip_reason({"CRANE_SLURM_TESTS": "1"}) is None
    assert skip_reason({"CI": "true", "CRANE_SLURM_TESTS": "0"}) == "CRANE_SLURM_TESTS=0"
