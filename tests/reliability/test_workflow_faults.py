"""The workflow under hostile names, a second checkout, a killed Snakemake, command-line values.

Each test runs Snakemake on the test configuration in a temporary folder, and only as far as
the probe needs (the acquire job generates the demo's raw files in seconds).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from crane import layout
from crane.results_lock import LOCK_NAME

ROOT = Path(__file__).resolve().parents[2]
SNAKEFILE = ROOT / "Snakefile"


def write_config(folder: Path, **changes) -> Path:
    config = yaml.safe_load((ROOT / "config" / "test.yaml").read_text())
    config.update(changes)
    path = folder / "study.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def snakemake(folder: Path, config: Path, *args: str, timeout: int = 600):
    return subprocess.run([sys.executable, "-m", "snakemake", "-s", str(SNAKEFILE),
                           "--configfile", str(config), "--cores", "1", *args],
                          cwd=folder, capture_output=True, text=True, timeout=timeout)


def test_results_path_with_shell_syntax_runs_no_command(tmp_path):
    """`results: ".../r;touch PWNED;#"` ran `touch` in the acquire job; a space broke every job."""
    results = "r x;touch PWNED;#"
    config = write_config(tmp_path, results=results)
    target = str(layout.acquired_path(results, "demo"))
    done = snakemake(tmp_path, config, target)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / target).exists()
    assert (tmp_path / layout.log_path(results, "demo", "acquire")).exists()
    assert not list(tmp_path.rglob("PWNED")), "a value reached the shell unquoted"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".snakemake", results, "study.yaml"]


def test_hostile_encoder_name_stops_before_any_job(tmp_path):
    """An encoder named `ch$(touch${IFS}PWNED)` ran `touch` in the features job."""
    config = yaml.safe_load((ROOT / "config" / "test.yaml").read_text())
    hostile = "ch$(touch${IFS}PWNED)"
    config["encoders"][hostile] = config["encoders"].pop("colorhist")
    config["datasets"]["demo"]["features"]["image"] = hostile
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(config))
    done = snakemake(tmp_path, path)
    assert done.returncode != 0
    assert "encoders" in done.stderr and "does not match" in done.stderr
    assert not list(tmp_path.rglob("PWNED"))
    assert not (tmp_path / "results").exists(), "no job ran"


def test_second_checkout_is_locked_out(tmp_path):
    """Two checkouts writing one results folder were not locked against each other."""
    config = write_config(tmp_path, results="shared-results")
    lock = tmp_path / "shared-results" / LOCK_NAME
    lock.parent.mkdir()
    # Held by a live process (this one) of another checkout on this host.
    import socket
    lock.write_text(f'{{"checkout": "/elsewhere/crane-repro", "host": "{socket.gethostname()}", '
                    f'"pid": {os.getpid()}}}')
    target = str(layout.acquired_path("shared-results", "demo"))
    done = snakemake(tmp_path, config, target)
    assert done.returncode != 0
    assert "being written by the workflow of /elsewhere/crane-repro" in done.stderr
    assert not (tmp_path / target).exists(), "no job ran"
    assert "/elsewhere/crane-repro" in lock.read_text(), "the other checkout's lock is kept"


def test_stale_lock_of_a_dead_process_is_taken_over(tmp_path):
    """A lock left by kill -9 does not block the next run forever; a finished run frees it."""
    config = write_config(tmp_path, results="res")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    import socket
    lock = tmp_path / "res" / LOCK_NAME
    lock.parent.mkdir()
    lock.write_text(f'{{"checkout": "/elsewhere", "host": "{socket.gethostname()}", '
                    f'"pid": {dead.pid}}}')
    done = snakemake(tmp_path, config, str(layout.acquired_path("res", "demo")))
    assert done.returncode == 0, done.stderr[-3000:]
    assert not lock.exists(), "the lock is given back when the workflow ends"


def test_recovery_after_kill_9_as_the_readme_says(tmp_path):
    """After kill -9 of Snakemake the rerun needed --unlock and --rerun-incomplete with no
    hint in our docs; the README's recovery lines are checked here as written."""
    readme = (ROOT / "README.md").read_text()
    assert "snakemake --unlock" in readme and "--rerun-incomplete" in readme
    config = write_config(tmp_path, results="res")
    target = str(layout.interactions_path("res", "demo"))
    running = subprocess.Popen([sys.executable, "-m", "snakemake", "-s", str(SNAKEFILE),
                                "--configfile", str(config), "--cores", "1", target],
                               cwd=tmp_path, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    preprocess_log = tmp_path / layout.log_path("res", "demo", "preprocess")
    deadline = time.monotonic() + 300
    while not preprocess_log.exists() and running.poll() is None:
        assert time.monotonic() < deadline, "preprocessing never started"
        time.sleep(0.05)
    os.killpg(running.pid, signal.SIGKILL)
    running.wait()

    again = snakemake(tmp_path, config, target)
    assert again.returncode != 0 and "--unlock" in again.stderr
    assert snakemake(tmp_path, config, "--unlock").returncode == 0
    done = snakemake(tmp_path, config, "--rerun-incomplete", target)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / target).exists()


def test_readme_config_override_of_a_list_plans(tmp_path):
    """The README's `snakemake --cores all --config seeds=[1,2,3]` failed with
    `seeds.0: '1' is not of type 'integer'`."""
    config = write_config(tmp_path)
    done = snakemake(tmp_path, config, "-n", "--config", "seeds=[1,2,3]",
                     "training={batch_size: 32}")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "seed3" in done.stdout and "seed2024" not in done.stdout


def test_misspelt_hyperparameter_keeps_the_finished_run(tmp_path):
    """`embeding_size` failed only inside the training job, after Snakemake had deleted that
    run's finished metrics.json; now the plan refuses it and the finished run is untouched."""
    config = write_config(tmp_path, results="res",
                          model_overrides={"lightgcn": {"embeding_size": 32}})
    finished = tmp_path / layout.run_metrics_path(layout.final_run_dir("res", "demo", "lightgcn",
                                                                       2024))
    finished.parent.mkdir(parents=True)
    finished.write_text('{"test": {"recall@20": 0.1}}')
    done = snakemake(tmp_path, config, str(finished.relative_to(tmp_path)))
    assert done.returncode != 0
    assert "model_overrides.lightgcn" in done.stderr and "embeding_size" in done.stderr
    assert finished.read_text() == '{"test": {"recall@20": 0.1}}'
