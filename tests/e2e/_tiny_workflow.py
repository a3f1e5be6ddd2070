"""A tiny demo study and a way to run it through Snakemake in a folder of its own, for the
end-to-end tests of single study sections."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]

TINY = {
    "seeds": [2024],
    "tuning": "default",
    "training": {"epochs": 2, "patience": 2, "batch_size": 1024},
    "datasets": {"demo": {"source": {"type": "demo", "users": 200, "items": 100, "seed": 3},
                          "kcore": 5, "split": {"method": "mmrec_random", "seed": 2024},
                          "features": {"text": "minilm", "image": "colorhist"}}},
    "encoders": {"minilm": {"type": "sentence_transformers", "model": "all-MiniLM-L6-v2",
                            "fields": ["title", "brand", "categories", "description"],
                            "batch_size": 64},
                 "colorhist": {"type": "color_histogram", "bins": 8}},
}


def snakemake(workdir: Path, config: dict, *args: str) -> str:
    """Run the study `config` in `workdir` (Snakemake arguments `args` added); its output."""
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"),
           "--directory", str(workdir), "--configfile", str(path), "--cores", "2", *args]
    done = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True,
                          timeout=900)
    if done.returncode != 0:
        logs = "\n".join(f"--- {p}\n{p.read_text()[-2000:]}"
                         for p in sorted((workdir / "results").rglob("*.log")))
        pytest.fail(f"snakemake failed:\n{done.stderr[-4000:]}\n{logs}")
    return done.stdout + done.stderr
