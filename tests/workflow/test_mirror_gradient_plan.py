"""The `mirror_gradient` section: each named model runs once more per dataset and seed at its
selected point with `training.mirror_gradient` on, in its own folder; the tables command is
told which models have such rows; a bad section stops before any job runs; `crane plan`
counts exactly the jobs of Snakemake's own dry run."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from crane import layout, study_summary
from crane.config import ConfigError, validate_config
from crane.study import StudyPlan

ROOT = Path(__file__).resolve().parents[2]
TEST_CONFIG = yaml.safe_load((ROOT / "config" / "test.yaml").read_text())


def mirror_config(tmp_path: Path, **section) -> dict:
    config = copy.deepcopy(TEST_CONFIG)
    config["results"] = str(tmp_path / "results")
    config["ablations"] = {"enabled": False}
    config["sensitivity"] = {"enabled": False}
    config["mirror_gradient"] = {"enabled": True, **section}
    return config


def dry_run(tmp_path: Path, config: dict) -> str:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    result = subprocess.run([sys.executable, "-m", "snakemake", "-n", "-p", "--configfile",
                             str(path)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


def job_stats(output: str) -> dict[str, int]:
    lines = output.splitlines()
    counts = {}
    for line in lines[lines.index("Job stats:") + 3:]:
        if not line.strip():
            break
        rule, count = line.split()
        counts[rule] = int(count)
    counts.pop("total")
    return counts


def test_each_named_model_runs_once_more_per_dataset_and_seed(tmp_path):
    config = mirror_config(tmp_path, models=["lightgcn", "freedom"])
    config["seeds"] = [2024, 2025]
    plan = StudyPlan(validate_config(config))
    plan.check_points()
    runs = plan.mirror_gradient_runs()
    assert runs == [str(layout.mirror_gradient_run_dir(config["results"], "demo", m, s))
                    for m in ("lightgcn", "freedom") for s in (2024, 2025)]
    assert set(runs) <= set(plan.dataset_runs("demo"))
    assert not set(runs) & set(plan.final_runs())


def test_a_disabled_section_plans_nothing(tmp_path):
    config = mirror_config(tmp_path, models=["lightgcn"])
    config["mirror_gradient"]["enabled"] = False
    plan = StudyPlan(validate_config(config))
    assert plan.mirror_gradient_runs() == [] and plan.mirror_gradient_models() == []


@pytest.mark.parametrize("section, training, message", [
    ({}, {}, "name the models"),
    ({"models": ["selfcf"]}, {}, "not in `models`"),
    ({"models": ["mostpop"]}, {}, "takes no gradient step"),
    ({"models": ["bpr"]}, {"mirror_gradient": True}, "already true"),
])
def test_a_bad_section_is_refused_before_any_job(tmp_path, section, training, message):
    config = mirror_config(tmp_path, **section)
    config["training"] = {**config["training"], **training}
    plan = StudyPlan(validate_config(config))
    with pytest.raises(ConfigError, match=message):
        plan.check_points()


def test_the_section_refuses_unknown_keys(tmp_path):
    config = mirror_config(tmp_path, models=["bpr"], alpha=0.2)
    with pytest.raises(ConfigError, match="mirror_gradient"):
        validate_config(config)


def test_the_dry_run_trains_with_mirror_gradient_and_tells_the_tables(tmp_path):
    config = mirror_config(tmp_path, models=["bpr", "freedom"])
    plan = StudyPlan(validate_config(config))
    output = dry_run(tmp_path, config)
    counts = job_stats(output)
    assert counts == study_summary.job_counts(plan)
    assert counts["train_mirror_gradient"] == 2
    trains = [line for line in output.splitlines() if "-m crane train " in line]
    mirrored = [c for c in trains if "/mirror_gradient/" in c]
    assert len(mirrored) == 2 and len(trains) == 2 + len(config["models"])
    assert all("--set training.mirror_gradient=true" in c for c in mirrored)
    assert not any("mirror_gradient=true" in c for c in trains if c not in mirrored)
    tables = [line for line in output.splitlines() if "-m crane tables " in line]
    assert len(tables) == 1 and "--mirror-gradient bpr freedom" in tables[0]
