"""Which repository paths git would ignore: for the tests of what results/ keeps in git."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def ignored_by_git(names: list[str]) -> set[str]:
    """The `names` (paths relative to the repository root, existing or not) that .gitignore
    ignores; skips the test where git or the checkout is missing."""
    try:
        done = subprocess.run(["git", "check-ignore", "--no-index", "--stdin"], cwd=ROOT,
                              input="\n".join(names), capture_output=True, text=True)
    except OSError as error:
        pytest.skip(f"git is not available: {error}")
    if done.returncode not in (0, 1):  # 1: nothing ignored
        pytest.skip(f"not a git checkout: {done.stderr.strip()}")
    return set(done.stdout.split())
