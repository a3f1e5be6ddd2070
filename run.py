#!/usr/bin/env python3
"""The two quick-start commands, needing nothing but python3.11 on the machine.

    python3 run.py demo    # whole pipeline on the embedded demo dataset -> results/tables/
    python3 run.py test    # whole test suite

Both create `.venv` from `requirements.lock` on first use (and again whenever the lock or
pyproject.toml changes), then run inside it. Anything after the command is passed on:
`python3 run.py demo -n` is a Snakemake dry run, `python3 run.py test -k metrics` selects tests.

Other commands: `env` (only build the environment), `lock` (re-resolve pyproject's direct
dependencies in a scratch venv and rewrite requirements.lock), `snakemake ARGS` (any
Snakemake call inside the environment, e.g. `--configfile config/paper.yaml -n`).
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
STAMP = VENV / ".crane-env-stamp"


def _python(venv: Path = VENV) -> Path:
    return venv / "bin" / "python"


def _env_fingerprint() -> str:
    digest = hashlib.sha256()
    for path in (LOCK, ROOT / "pyproject.toml"):
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _run(cmd: list[str | os.PathLike], **kwargs) -> None:
    print("+", " ".join(str(c) for c in cmd), flush=True)
    subprocess.run([str(c) for c in cmd], check=True, **kwargs)


def ensure_env() -> None:
    """Create or refresh .venv so that it holds exactly the lock, plus this package."""
    if sys.version_info[:2] != (3, 11):
        sys.exit(f"run.py needs python 3.11 (the lock is for it); this is {sys.version.split()[0]}")
    fingerprint = _env_fingerprint()
    if STAMP.exists() and STAMP.read_text().strip() == fingerprint and _python().exists():
        return
    started = time.monotonic()
    print(f"Building {VENV.name} from {LOCK.name} (first use or changed lock) ...", flush=True)
    if VENV.exists():
        shutil.rmtree(VENV)
    _run([sys.executable, "-m", "venv", VENV])
    pip = [_python(), "-m", "pip", "install", "--no-input", "--disable-pip-version-check"]
    # --no-deps: the lock is complete, so nothing unpinned can slip in; `pip check` proves it.
    _run([*pip, "--no-deps", "-r", LOCK])
    _run([*pip, "--no-deps", "--no-build-isolation", "-e", ROOT])
    _run([_python(), "-m", "pip", "check"])
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
    elif command == "snakemake":
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
