"""run.py, the quick-start entry point: a quiet environment build (one line per phase, the
log's tail on failure), short job lines on the demo's console, and the demo's last words
naming where the results are."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def load_run_py():
    # Loaded under its own name: benchmarks/run.py is imported as `run` by its own tests.
    spec = importlib.util.spec_from_file_location("quick_start_run", ROOT / "run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


run_py = load_run_py()


def test_build_prints_one_line_per_phase_and_logs_the_output(tmp_path, capsys):
    log = tmp_path / "venv" / "build.log"
    run_py.run_phases([
        ("first phase", [sys.executable, "-c", "print('chatty pip output ' * 3)"]),
        ("second phase", [sys.executable, "-c", "import sys; print('more', file=sys.stderr)"]),
    ], log)
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith("  [1/2] first phase ... done")
    assert out.splitlines()[1].startswith("  [2/2] second phase ... done")
    assert len(out.splitlines()) == 2
    assert "chatty" not in out
    text = log.read_text()
    assert "chatty pip output" in text and "more" in text


def test_failed_phase_prints_the_logs_tail_and_path(tmp_path, capsys):
    log = tmp_path / "build.log"
    failing = ("import sys\n"
               "for n in range(100): print(f'resolver line {n}')\n"
               "print('ERROR: no matching distribution for torch==0.0'); sys.exit(3)")
    with pytest.raises(run_py.BuildError, match=f"installing the lock failed .*exit status 3.*{log}"):
        run_py.run_phases([
            ("creating", [sys.executable, "-c", "pass"]),
            ("installing the lock", [sys.executable, "-c", failing]),
            ("never reached", [sys.executable, "-c", "print('ran')"]),
        ], log)
    out = capsys.readouterr().out
    assert "[2/3] installing the lock ... failed" in out
    assert "ERROR: no matching distribution for torch==0.0" in out
    assert "resolver line 99" in out and "resolver line 61" in out
    assert "resolver line 60\n" not in out  # only the last 40 lines of the log
    assert str(log) in out
    assert "never reached" not in out


def test_missing_program_is_a_failed_phase(tmp_path, capsys):
    log = tmp_path / "build.log"
    with pytest.raises(run_py.BuildError, match="exit status 127"):
        run_py.run_phases([("checking", [tmp_path / "no-such-python", "-V"])], log)
    assert "no-such-python" in log.read_text()


def test_long_input_line_keeps_data_files_and_counts_source_files():
    code = [f"{ROOT}/crane/module_{n}.py" for n in range(40)]
    data = ["results/demo/demo/data/interactions.parquet",
            "results/demo/demo/features/text-minilm/features.npy"]
    line = f"    input: {', '.join(data[:1] + code[:20] + data[1:] + code[20:])}\n"
    assert len(line) > 1000
    short = run_py.shorten_job_line(line, ROOT / "crane")
    assert short == f"    input: {', '.join(data)} + 40 source files under crane/\n"
    assert len(short) <= run_py.LINE_LIMIT


def test_long_list_of_data_files_is_cut_with_a_count():
    runs = [f"results/demo/demo/runs/final/model{n}/seed2024/metrics.json" for n in range(30)]
    line = f"    input: {', '.join(runs)}, {ROOT}/crane/cli.py\n"
    short = run_py.shorten_job_line(line, ROOT / "crane")
    assert short.startswith(f"    input: {runs[0]}, ")
    assert short.rstrip().endswith("more + 1 source file under crane/")
    assert len(short) <= run_py.LINE_LIMIT + 1
    shown = short.split(": ", 1)[1].split(", ... ")[0].split(", ")
    hidden = int(short.split(", ... ")[1].split()[0])
    assert len(shown) + hidden == 30


def test_only_long_job_lists_are_shortened():
    long_shell = "    shell: " + "x " * 200 + "\n"
    assert run_py.shorten_job_line(long_shell) == long_shell
    assert run_py.shorten_job_line("    input: a, b\n") == "    input: a, b\n"
    progress = "12 of 60 steps (20%) done\n"
    assert run_py.shorten_job_line(progress) == progress


@pytest.mark.parametrize("args, runs", [
    ([], True),
    (["--forceall", "-p"], True),
    (["-n"], False),
    (["-np"], False),
    (["--dry-run"], False),
    (["--report", "x.html"], False),
    (["--unlock"], False),
])
def test_demo_finishes_only_after_a_real_run(args, runs):
    assert run_py.is_a_run(args) is runs


def test_demo_config_comes_from_the_snakemake_arguments():
    assert run_py.config_arguments(["-p"]) == (["config/config.yaml"], [])
    assert run_py.config_arguments(
        ["--configfile", "config/test.yaml", "--config", "seeds=[1,2]", "results=out", "-p"]
    ) == (["config/test.yaml"], ["seeds=[1,2]", "results=out"])
    # `--configfile=FILE` takes one value, as in argparse: what follows is a target
    assert run_py.config_arguments(["--configfile=a.yaml", "all", "-C", "k=v"]) == (
        ["a.yaml"], ["k=v"])


def test_a_changed_weights_lock_rebuilds_the_environment(tmp_path, monkeypatch):
    """The environment's fingerprint covers weights.lock, so new pinned weights reach .venv."""
    for name in ("requirements.lock", "weights.lock", "pyproject.toml"):
        (tmp_path / name).write_text(f"{name}\n")
    monkeypatch.setattr(run_py, "LOCK", tmp_path / "requirements.lock")
    monkeypatch.setattr(run_py, "WEIGHTS_LOCK", tmp_path / "weights.lock")
    monkeypatch.setattr(run_py, "ROOT", tmp_path)
    before = run_py._env_fingerprint()
    (tmp_path / "weights.lock").write_text("other-weights==1 --hash=sha256:00\n")
    assert run_py._env_fingerprint() != before
