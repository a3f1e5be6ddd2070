from pathlib import Path

import pytest


@pytest.fixture
def results(tmp_path: Path) -> Path:
    """A results folder for hand-made run folders (see _report_study.py)."""
    return tmp_path / "results"
