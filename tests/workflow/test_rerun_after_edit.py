"""Editing code reruns exactly the jobs that run it.

A copy of the workflow and the library in a temporary folder, with every output of the test
configuration present and up to date: the outputs are created empty and Snakemake's
`--touch` marks them done in job order. What this test checks is which jobs Snakemake plans
after an edit, which depends on the job graph and the files' times, not on what the files
hold, so no job needs to run. `crane/code_inputs.py` chooses the edited modules: one that
CRANE's runs import and BPR's do not (the propagation kernel), and one that only the
report imports.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from crane.code_inputs import CodeIndex
from crane.study import TRAIN_COMMAND

ROOT = Path(__file__).resolve().parents[2]
CONFIG = "config/test.yaml"
COPIED = ("Snakefile", "workflow", "crane", "config")


def snakemake(workdir: Path, *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "snakemake", "--configfile", CONFIG,
                           "--cores", "1", *args], cwd=workdir, capture_output=True,
                          text=True, timeout=600)
    if done.returncode != 0:
        pytest.fail(f"snakemake {' '.join(args)} failed:\n{done.stdout[-3000:]}\n"
                    f"{done.stderr[-3000:]}")
    return done.stdout


def planned(workdir: Path) -> set[str]:
    """Outputs Snakemake would write now (its --summary's plan column)."""
    rows = [line.split("\t") for line in snakemake(workdir, "--summary").splitlines()]
    return {row[0] for row in rows[1:] if len(row) == 6 and row[5] == "update pending"}


def edit(path: Path) -> None:
    path.write_text(path.read_text() + "\n# edited by the test\n")
    later = time.time() + 5  # strictly newer than every output, whatever the clock's grain
    os.utime(path, (later, later))


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    project = tmp_path_factory.mktemp("workflow") / "project"
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard",
                             "-z", *COPIED], cwd=ROOT, capture_output=True, text=True,
                            check=True).stdout
    for name in filter(None, listed.split("\0")):
        if (ROOT / name).is_file():
            (project / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, project / name)
    outputs = [row.split("\t")[0] for row in snakemake(project, "--summary").splitlines()[1:]]
    assert len(outputs) > 20
    for name in outputs:
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        (project / name).touch()
    snakemake(project, "--touch")
    assert planned(project) == set()
    return project


def runs_of(outputs: set[str], model: str) -> set[str]:
    return {o for o in outputs if f"/final/{model}/" in o}


def test_editing_a_kernel_that_crane_imports_reruns_crane_not_bpr(project):
    index = CodeIndex(project / "crane")
    crane = set(index.code_inputs(TRAIN_COMMAND, ["crane"]))
    bpr = set(index.code_inputs(TRAIN_COMMAND, ["bpr"]))
    indirect = sorted(crane - bpr - {index.files([index.model_module("crane")])[0]})
    assert indirect, "CRANE runs nothing that BPR does not"
    # the propagation kernel where there is one, else any such module
    module = next((m for m in indirect if "propagation" in m), indirect[0])
    edit(project / module)

    outputs = planned(project)
    config = yaml.safe_load((project / CONFIG).read_text())
    rerun = {m for m in config["models"] if runs_of(outputs, m)}
    assert "crane" in rerun and "bpr" not in rerun and "mostpop" not in rerun, (module, rerun)
    # exactly the models whose computed inputs hold the module, and what depends on them
    assert rerun == {m for m in config["models"]
                     if module in index.code_inputs(TRAIN_COMMAND, [m])}
    assert any("/ablations/" in o for o in outputs)
    assert any("/sensitivity/" in o for o in outputs)
    assert any("/tables/" in o for o in outputs)
    for upstream in ("/data/", "/features/", "/graphs/", "/raw/"):
        assert not any(upstream in o for o in outputs), upstream
    snakemake(project, "--touch")  # the runs are taken as redone for the next test


def test_editing_a_report_module_reruns_only_the_tables(project):
    index = CodeIndex(project / "crane")
    config = yaml.safe_load((project / CONFIG).read_text())
    elsewhere = set().union(*(index.code_inputs(TRAIN_COMMAND, [m]) for m in config["models"]))
    for command in ("acquire", "preprocess", "stats", "features", "graphs"):
        elsewhere |= set(index.code_inputs(command))
    report_only = sorted(set(index.code_inputs("tables")) - elsewhere)
    module = next(m for m in report_only if "/report/" in m)
    edit(project / module)
    outputs = planned(project)
    assert outputs and all("/tables/" in o for o in outputs), (module, outputs)
