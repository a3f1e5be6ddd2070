"""The modality-ablation table (crane/report/modality_ablation.py) from run folders written by
the real trainer: tiny VBPR runs on text only, image only and both (the final runs), and
MostPop as the ID-only reference; `crane modality-table` writes it."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from crane import layout
from crane.cli import main as crane_main
from crane.engine.runner import fit_and_evaluate
from crane.engine.settings import TrainingConfig
from crane.report.modality_ablation import write_modality_ablation
from crane.synthetic import only_modalities, styled_random_cold
from crane.tuning import load_model_config

SEEDS = (1, 2)
DATASET = "demo"


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """results/demo with VBPR on each modality set and MostPop, two seeds each."""
    results = tmp_path_factory.mktemp("modality") / "results"
    synthetic = styled_random_cold(n_users=50, n_items=64, n_styles=4, n_train=5,
                                   cold_share=0.2, seed=1)
    training = TrainingConfig(epochs=1, patience=1, batch_size=128, eval_batch_size=64)
    vbpr = load_model_config("vbpr")["defaults"]
    for seed in SEEDS:
        for modalities in ("image", "text", "image+text"):
            data = only_modalities(synthetic.data, *modalities.split("+"))
            run = (layout.final_run_dir(results, DATASET, "vbpr", seed) if "+" in modalities
                   else layout.modality_ablation_run_dir(results, DATASET, "vbpr", modalities,
                                                         seed))
            fit_and_evaluate(data, synthetic.interactions, "vbpr", vbpr, seed, training,
                             run_dir=run, log=lambda _: None, dataset=DATASET)
        fit_and_evaluate(synthetic.data, synthetic.interactions, "mostpop", {}, seed, training,
                         run_dir=layout.final_run_dir(results, DATASET, "mostpop", seed),
                         log=lambda _: None, dataset=DATASET)
    return results


def read_metric(results, model, modalities, seed, metric):
    run = (layout.final_run_dir(results, DATASET, model, seed) if modalities in ("image+text",
                                                                                 "none")
           else layout.modality_ablation_run_dir(results, DATASET, model, modalities, seed))
    return pd.read_json(run / "metrics.json", typ="series")["test"][metric]


def test_the_table_holds_mean_std_and_change_against_all_modalities(study, tmp_path):
    out = tmp_path / "tables"
    written, runs = write_modality_ablation(study, out, DATASET, ["vbpr"],
                                            ["image", "text", "image+text"], "image+text",
                                            list(SEEDS), baselines=["mostpop"])
    assert sorted(written) == [f"{DATASET}.{s}" for s in ("csv", "html", "md", "tex")]
    assert runs.missing == []
    data = pd.read_csv(out / f"{DATASET}.csv")
    for modalities in ("image", "text", "image+text"):
        for metric in ("recall@20", "ndcg@20"):
            row = data[(data.model == "vbpr") & (data.modalities == modalities)
                       & (data.metric == metric)].iloc[0]
            values = [read_metric(study, "vbpr", modalities, s, metric) for s in SEEDS]
            assert row["mean"] == pytest.approx(sum(values) / 2)
            assert row["std"] == pytest.approx(pd.Series(values).std(ddof=1))
            full = data[(data.model == "vbpr") & (data.modalities == "image+text")
                        & (data.metric == metric)].iloc[0]["mean"]
            if modalities == "image+text":
                assert math.isnan(row["change_vs_all_pct"])
            else:
                assert row["change_vs_all_pct"] == pytest.approx((row["mean"] - full) / full * 100)
    baseline = data[(data.model == "mostpop") & (data.metric == "recall@20")]
    assert list(baseline.modalities) == ["none"]
    markdown = (out / f"{DATASET}.md").read_text()
    assert "image + text" in markdown and "ID only" in markdown and "ID-only baselines" in markdown
    text_row = data[(data.model == "vbpr") & (data.modalities == "text")
                    & (data.metric == "recall@20")].iloc[0]
    assert f"({text_row['change_vs_all_pct']:+.1f}%)" in markdown


def test_a_model_needing_both_is_marked_and_a_missing_run_is_listed(study, tmp_path):
    out = tmp_path / "tables"
    crane_main(["modality-table", "--results", str(study), "--out", str(out), "--dataset",
                DATASET, "--models", "vbpr", "--sets", "image", "text", "image+text",
                "--all-set", "image+text", "--seeds", "1", "2", "3",
                "--requires", "vbpr=image+text"])
    data = pd.read_csv(out / f"{DATASET}.csv")
    marked = data[data.modalities.isin(["image", "text"])]
    assert set(marked.note) == {"needs image", "needs text"}
    assert marked["mean"].isna().all()
    markdown = (out / f"{DATASET}.md").read_text()
    assert "n/a (needs text)" in markdown and "by construction" in markdown
    # seed 3 was never run: listed, not silently averaged away
    assert "Missing runs:" in markdown and "seed=3" in markdown
    full = data[(data.modalities == "image+text") & (data.metric == "recall@20")].iloc[0]
    assert full["n_seeds"] == 2


def test_the_all_modalities_set_must_be_a_column(study, tmp_path):
    with pytest.raises(ValueError, match="must be among the sets"):
        write_modality_ablation(study, tmp_path, DATASET, ["vbpr"], ["text"], "image+text",
                                list(SEEDS))
