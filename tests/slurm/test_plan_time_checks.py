"""A bad hyper-parameter value stops the workflow at plan time, before any (SLURM) job.

The SLURM scenario (test_slurm_cluster.py) once made a job fail with such a value; since the
workflow checks every trained point against its model's typed config while planning, the
value never reaches a job, and the scenario fails a job with a bug in the code instead.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CONFIG = "config/test.yaml"
BAD_OVERRIDE = "model_overrides={bpr: {embedding_size: -1}}"


def dry_run(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    return subprocess.run([sys.executable, "-m", "snakemake", "-n", "--cores", "1",
                           "--snakefile", str(ROOT / "Snakefile"), "--directory", str(workdir),
                           "--configfile", str(ROOT / CONFIG), *args],
                          cwd=workdir, env=env, capture_output=True, text=True, timeout=300)


def test_a_bad_model_override_stops_the_dry_run_naming_the_key(tmp_path):
    planned = dry_run(tmp_path)
    assert planned.returncode == 0, planned.stderr[-3000:]
    assert "train_final" in planned.stdout  # without the bad value, the jobs are planned
    refused = dry_run(tmp_path, "--config", BAD_OVERRIDE)
    output = refused.stdout + refused.stderr
    assert refused.returncode != 0, output[-3000:]
    assert "model_overrides.bpr" in output and "embedding_size" in output, output[-3000:]
    assert "train_final" not in output and "Job stats" not in output, output[-3000:]
