"""The embedded demo: generated locally in the exact raw formats of the Amazon 2014 release,
then read by the 2014 parsers like any real category (see crane/data/demo.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from crane.data.demo import generate_demo
from crane.data.sources import amazon2014
from crane.data.sources._common import check_options

NAME = "demo"
DEFAULTS = {"users": 1500, "items": 800, "seed": 7, "category": "Demo"}
OPTIONS = set(DEFAULTS)


def _options(spec: dict[str, Any]) -> dict[str, Any]:
    check_options(spec, OPTIONS, NAME)
    return {key: spec.get(key, default) for key, default in DEFAULTS.items()}


def acquire(spec: dict[str, Any], raw_dir: Path, progress: bool = True) -> dict[str, dict]:
    summary = generate_demo(raw_dir, **_options(spec))
    return summary.file_records()


def _as_2014(spec: dict[str, Any]) -> tuple[dict[str, Any], str]:
    return {"reviews": "5core", "meta": True}, _options(spec)["category"]


def load_interactions(spec: dict[str, Any], raw_dir: Path,
                      max_malformed_share: float) -> pd.DataFrame:
    spec_2014, category = _as_2014(spec)
    return amazon2014.load_interactions(spec_2014, raw_dir, max_malformed_share,
                                        category=category)


def load_items(spec: dict[str, Any], raw_dir: Path, asins: np.ndarray,
               max_malformed_share: float) -> pd.DataFrame:
    spec_2014, category = _as_2014(spec)
    return amazon2014.load_items(spec_2014, raw_dir, asins, max_malformed_share,
                                 category=category)
