"""Every command the README shows is run by a test.

`test_every_readme_command_has_a_test` reads the README's shell blocks and the inline commands
of its prose, and fails for a command that `RUN_BY` does not list, or whose test no longer
holds the command. The commands that are cheap enough are run right here; the workflow's are
planned (`-n`) here and run for real, on the small test configuration, by the end-to-end and
reliability tests; the DVC ones by tests/dvc/test_dvc_pipeline.py.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HERE = "tests/test_readme_commands.py"
# Inline code in the README's prose that is a command (not a file name or a key).
COMMAND_START = re.compile(r"^(python3? |crane |snakemake |dvc )")

# README command -> (the file that runs it, the text that file must hold to run it).
RUN_BY: dict[str, tuple[str, str]] = {
    "python3 run.py demo": ("tests/test_readme_commands.py", '"run.py", "demo", "-n"'),
    "python3 run.py demo -n": ("tests/test_readme_commands.py", '"run.py", "demo", "-n"'),
    "python3 run.py test": (".ci/run", "python3 run.py test"),
    "python3 run.py test tests/reliability/test_config_checks.py": (
        HERE, '"run.py", "test", "tests/reliability/test_config_checks.py"'),
    "snakemake --cores all": (HERE, '"snakemake --cores all"'),
    "snakemake --cores all --configfile config/paper.yaml": (
        HERE, '"snakemake --cores all --configfile config/paper.yaml"'),
    "snakemake -n --configfile config/paper.yaml": (HERE, '"snakemake -n --configfile config/paper.yaml"'),
    "snakemake --cores all --config seeds=[1,2,3]": (HERE, '"snakemake --cores all --config seeds=[1,2,3]"'),
    "snakemake --cores all --configfile config/scientific.yaml": (
        HERE, '"snakemake --cores all --configfile config/scientific.yaml"'),
    "snakemake --cores all --configfile config/scientific-encoders.yaml": (
        HERE, '"snakemake --cores all --configfile config/scientific-encoders.yaml"'),
    "snakemake --cores all --configfile config/verdict.yaml": (
        HERE, '"snakemake --cores all --configfile config/verdict.yaml"'),
    "python benchmarks/encoders.py --items results/scientific/scientific/data/items.parquet": (
        "tests/benchmarks/test_encoders_benchmark.py", "encoders.main(["),
    "crane plan --config config/scientific.yaml": (
        HERE, '["plan", "--config", "config/scientific.yaml"]'),
    "snakemake --configfile config/paper.yaml --workflow-profile workflow/profiles/slurm": (
        HERE, '"snakemake --configfile config/paper.yaml --workflow-profile workflow/profiles/slurm"'),
    "snakemake --configfile config/paper.yaml --workflow-profile workflow/profiles/slurm-gpu": (
        HERE, '"snakemake --configfile config/paper.yaml --workflow-profile workflow/profiles/slurm-gpu"'),
    "snakemake --report results/demo/report.html": (
        "tests/e2e/test_demo_workflow.py", '"--report", "results/demo/report.html"'),
    "snakemake --unlock": ("tests/reliability/test_workflow_faults.py", '"--unlock"'),
    "snakemake --cores all --rerun-incomplete": ("tests/reliability/test_workflow_faults.py",
                                                 '"--rerun-incomplete"'),
    "crane --help": (HERE, '["--help"]'),
    "crane train --help": (HERE, '["train", "--help"]'),
    "crane models": (HERE, '["models"]'),
    "crane tables --parts main": ("tests/e2e/test_study_records.py",
                                  '"--parts", "main"'),
    "crane plan --config config/paper.yaml": (HERE, '["plan", "--config", "config/paper.yaml"]'),
    "crane outputs --config FILE": (HERE, '["outputs", "--config", "config/config.yaml"]'),
    "crane dvc-yaml": ("tests/dvc/test_dvc_yaml.py", "dvc_stages.render"),
    "crane dvc-yaml --config config/paper.yaml": (
        HERE, '"dvc-yaml", "--config", "config/paper.yaml"'),
    "crane train --data results/demo/demo/data --model bpr --seed 1 --set reg_weight=1e-3 "
    "--set training.epochs=2 --out results/try/bpr": (
        "tests/e2e/test_demo_workflow.py", "README_TRAIN = "),
    "python benchmarks/features_throughput.py": (HERE, '"benchmarks/features_throughput.py"'),
    "python benchmarks/run.py": ("tests/benchmarks/test_harness.py", '"benchmarks" / "run.py"'),
    "dvc repro": ("tests/dvc/test_dvc_pipeline.py", "dvc repro"),
    'dvc repro && git add dvc.lock && git commit -m "..."': (
        "tests/dvc/test_dvc_pipeline.py", "git add dvc.lock"),
    "dvc metrics show": ("tests/dvc/test_dvc_pipeline.py", "dvc metrics show"),
    "dvc metrics diff HEAD~1": ("tests/dvc/test_dvc_pipeline.py", "dvc metrics diff HEAD~1"),
    "dvc plots show": ("tests/dvc/test_dvc_pipeline.py", "dvc plots show"),
    "dvc push / dvc pull": ("tests/dvc/test_dvc_pipeline.py", "dvc pull"),
    "dvc exp run -S config/config.yaml:training.learning_rate=0.005": (
        "tests/dvc/test_dvc_pipeline.py", "dvc exp run -S config/config.yaml:training.learning_rate=0.005"),
    "dvc remote modify local url /shared/project/crane-dvc": (
        "tests/dvc/test_dvc_pipeline.py", "dvc remote modify local url"),
    "dvc remote add -d team s3://bucket/crane-dvc": ("tests/dvc/test_dvc_pipeline.py",
                                                     "dvc remote add -d team"),
}


def readme_commands() -> set[str]:
    text = (ROOT / "README.md").read_text()
    commands = set()
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            command = re.sub(r"\s+", " ", re.sub(r"\s+#.*$", "", line)).strip()
            if command:
                commands.add(command)
    prose = re.sub(r"```.*?```", "", text, flags=re.S)
    inline = {span for span in re.findall(r"`([^`\n]+)`", prose) if COMMAND_START.match(span)}
    # A command named in prose (`crane train`, `dvc push`) is covered by the full lines that
    # start with it.
    named = {span for span in inline
             if any(re.search(rf"(^| ){re.escape(span)}( |$)", other) and other != span
                    for other in commands | set(RUN_BY))}
    return commands | (inline - named)


def test_every_readme_command_has_a_test():
    shown = readme_commands()
    untested = sorted(shown - set(RUN_BY))
    assert not untested, f"README commands no test runs (add one and list it in RUN_BY): {untested}"
    text = re.sub(r"\s+", " ", (ROOT / "README.md").read_text().replace("\\\n", " "))
    stale = sorted(command for command in RUN_BY if command not in text)
    assert not stale, f"RUN_BY lists commands the README no longer shows: {stale}"
    for command, (path, needle) in RUN_BY.items():
        assert needle in (ROOT / path).read_text(), f"{path} no longer runs `{command}`"


def run(args: list[str], cwd: Path = ROOT, timeout: int = 600) -> subprocess.CompletedProcess:
    done = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(args)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def checkout(tmp_path_factory) -> Path:
    """A working folder holding the checkout's configs, so that planning writes nothing into
    the checkout (Snakemake keeps its metadata in the working folder)."""
    folder = tmp_path_factory.mktemp("readme")
    shutil.copytree(ROOT / "config", folder / "config")
    shutil.copytree(ROOT / "workflow" / "profiles", folder / "workflow" / "profiles")
    return folder


@pytest.mark.parametrize("command", [
    "snakemake --cores all",
    "snakemake --cores all --configfile config/paper.yaml",
    "snakemake -n --configfile config/paper.yaml",
    "snakemake --cores all --config seeds=[1,2,3]",
    "snakemake --cores all --configfile config/scientific.yaml",
    "snakemake --cores all --configfile config/scientific-encoders.yaml",
    "snakemake --cores all --configfile config/verdict.yaml",
    "snakemake --configfile config/paper.yaml --workflow-profile workflow/profiles/slurm",
    "snakemake --configfile config/paper.yaml --workflow-profile workflow/profiles/slurm-gpu",
])
def test_readme_snakemake_lines_plan(checkout, command):
    """Each README workflow line plans its jobs (`-n`; the real runs: tests/e2e)."""
    args = command.split()[1:]
    if "-n" not in args:
        args.append("-n")
    done = run([sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), *args],
               cwd=checkout)
    assert "Job stats:" in done.stdout
    if "seeds=[1,2,3]" in command:
        assert "seed3" in done.stdout


def test_run_py_demo_dry_run():
    done = run([sys.executable, "run.py", "demo", "-n"])
    assert "Job stats:" in done.stdout + done.stderr


def test_run_py_test_runs_a_test_file():
    done = run([sys.executable, "run.py", "test", "tests/reliability/test_config_checks.py"])
    assert " passed" in done.stdout


@pytest.mark.parametrize("args", [["--help"], ["train", "--help"], ["models"],
                                  ["plan", "--config", "config/paper.yaml"],
                                  ["plan", "--config", "config/scientific.yaml"],
                                  ["outputs", "--config", "config/config.yaml"]])
def test_readme_crane_commands(args):
    done = run([sys.executable, "-m", "crane", *args])
    assert done.stdout.strip()
    if args == ["models"]:
        assert "crane" in done.stdout.split() and "lightgcn" in done.stdout.split()


def test_readme_dvc_yaml_for_the_paper_study(tmp_path):
    out = tmp_path / "dvc.yaml"
    run([sys.executable, "-m", "crane", "dvc-yaml", "--config", "config/paper.yaml",
         "--out", str(out)])
    assert "train_baby" in out.read_text()


def test_features_throughput_benchmark_runs_small(tmp_path):
    rows = tmp_path / "rows.json"
    run([sys.executable, "benchmarks/features_throughput.py", "--texts", "8", "--words", "5",
         "--images", "4", "--image-size", "64", "--knn-items", "60", "--knn-dim", "16",
         "--skip", "clip", "--json", str(rows)])
    assert rows.read_text().strip()
