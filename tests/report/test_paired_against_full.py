"""Ablation variants and sensitivity points are tested against the full model at its selected
point: the per-user paired test marks their cells, the seed-paired difference is recorded."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from crane import layout
from crane.report.build import write_ablation, write_sensitivity

from _report_study import METRICS, N_USERS, user_frame, write_run

SEEDS = (1, 2, 3)


def run_at(run_dir: Path, scale: float, seed: int, hparams: dict) -> None:
    rng = np.random.default_rng(0)  # the same users' base difficulty in every run
    base = rng.uniform(0.05, 0.15, N_USERS)
    users = user_frame(base, scale * (1.0 + 0.01 * seed), np.full(N_USERS, 5))
    write_run(run_dir, dataset="baby", model="crane", seed=seed,
              test={m: float(users[m].mean()) for m in METRICS}, users=users, hparams=hparams)


@pytest.fixture
def study(tmp_path) -> Path:
    results = tmp_path / "results"
    for seed in SEEDS:
        selected = {"rca_steps": 2}
        run_at(layout.final_run_dir(results, "baby", "crane", seed), 1.0, seed, selected)
        # worse on every user / equal to the full model on every user
        run_at(layout.ablation_run_dir(results, "baby", "crane_no_cl", seed), 0.8, seed, selected)
        run_at(layout.ablation_run_dir(results, "baby", "crane_rca1", seed), 1.0, seed, selected)
        run_at(layout.sensitivity_run_dir(results, "baby", "rca_steps", "1", seed), 0.9, seed,
               {"rca_steps": 1})
        run_at(layout.sensitivity_run_dir(results, "baby", "rca_steps", "2", seed), 1.0, seed,
               selected)
    return results


def test_ablation_variants_carry_the_paired_test_against_the_full_model(study, tmp_path):
    out = tmp_path / "tables"
    write_ablation(study, out, ["baby"], SEEDS, ["crane", "crane_no_cl", "crane_rca1"])
    data = pd.read_csv(out / "ablation.csv").set_index(["variant", "metric"])
    worse = data.loc[("crane_no_cl", "recall@20")]
    assert worse["p_value"] < 0.01 and worse["mark"] == "**" and worse["n_pairs"] == N_USERS
    full_mean = data.loc[("crane", "recall@20"), "mean"]
    assert worse["seed_difference"] == pytest.approx(worse["mean"] - full_mean)
    assert worse["n_seed_pairs"] == 3 and worse["seed_difference_se"] > 0
    same = data.loc[("crane_rca1", "recall@20")]
    assert same["p_value"] == 1.0 and pd.isna(same["mark"]) and same["seed_difference"] == 0.0
    assert pd.isna(data.loc[("crane", "recall@20"), "p_value"])  # the reference itself
    markdown = (out / "ablation.md").read_text()
    no_cl_row = next(line for line in markdown.splitlines() if "w/o contrastive" in line)
    rca1_row = next(line for line in markdown.splitlines() if "without recursion" in line)
    assert no_cl_row.count("<sup>\\*\\*</sup>") == len(METRICS) and "<sup>" not in rca1_row
    assert "Wilcoxon signed-rank test on per-user test metrics of the variant" in markdown


def test_sensitivity_table_names_the_selected_value_and_tests_the_others(study, tmp_path):
    out = tmp_path / "tables"
    write_sensitivity(study, out, ["baby"], SEEDS, {"rca_steps": ["1", "2"]})
    data = pd.read_csv(out / "sensitivity.csv").set_index("param_value")
    assert data.loc[1, "mark"] == "**" and data.loc[1, "seed_difference"] < 0
    assert data.loc[2, "p_value"] == 1.0 and bool(data.loc[2, "selected"])
    assert not bool(data.loc[1, "selected"])
    markdown = (out / "sensitivity.md").read_text()
    assert "rca_steps = 2 (selected)" in markdown and "rca_steps = 1 |" in markdown
