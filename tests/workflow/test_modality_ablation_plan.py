"""Studies with fewer modalities: an ID-only dataset (no `features`) plans no feature or graph
job and trains its ID-only models; a content model on it is refused before any job runs; the
modality ablation plans one run per (content model, modality set, seed) with only that set's
features and kNN graphs, reads the all-modalities set from the final runs, and `crane plan`
counts exactly the jobs of Snakemake's own dry run."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from crane import layout, models, study_summary
from crane.config import ConfigError, validate_config
from crane.graphs import plan as graph_plan
from crane.study import StudyPlan

ROOT = Path(__file__).resolve().parents[2]
TEST_CONFIG = yaml.safe_load((ROOT / "config" / "test.yaml").read_text())


def config_with(tmp_path: Path, **changes) -> dict:
    config = copy.deepcopy(TEST_CONFIG)
    config["results"] = str(tmp_path / "results")
    config.update(changes)
    return config


def id_only(config: dict) -> dict:
    config = copy.deepcopy(config)
    del config["datasets"]["demo"]["features"]
    return config


def dry_run(tmp_path: Path, config: dict) -> subprocess.CompletedProcess:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return subprocess.run([sys.executable, "-m", "snakemake", "-n", "-p", "--configfile",
                           str(path)], cwd=ROOT, capture_output=True, text=True, timeout=600)


def job_stats(output: str) -> dict[str, int]:
    lines = output.splitlines()
    start = lines.index("Job stats:") + 3
    counts = {}
    for line in lines[start:]:
        if not line.strip():
            break
        rule, count = line.split()
        counts[rule] = int(count)
    counts.pop("total")
    return counts


def shell_commands(output: str, command: str) -> list[str]:
    return [line for line in output.splitlines() if f"-m crane {command} " in line]


# ---- ID-only datasets ------------------------------------------------------------------------
def test_an_id_only_dataset_runs_its_id_only_models(tmp_path):
    config = id_only(config_with(tmp_path, models=["mostpop", "bpr", "lightgcn"],
                                 ablations={"enabled": False}, sensitivity={"enabled": False}))
    plan = StudyPlan(validate_config(config))
    plan.check_points()
    assert plan.feature_dirs("demo") == {}
    assert graph_plan.dataset_graphs(plan, "demo") == []
    result = dry_run(tmp_path, config)
    assert result.returncode == 0, result.stdout + result.stderr
    counts = job_stats(result.stdout + result.stderr)
    assert "features" not in counts and "knn_graph" not in counts
    assert counts["train_final"] == 3
    assert counts == study_summary.job_counts(plan)
    trains = shell_commands(result.stdout, "train")
    assert len(trains) == 3 and not any("--feature" in c for c in trains)


@pytest.mark.parametrize("section", [None, "ablations"])
def test_a_content_model_on_an_id_only_dataset_is_refused(tmp_path, section):
    # freedom in `models`, or CRANE brought in by its ablations only
    names = ["bpr", "freedom"] if section is None else ["bpr"]
    config = id_only(config_with(tmp_path, models=names, sensitivity={"enabled": False},
                                 ablations={"enabled": section == "ablations"}))
    plan = StudyPlan(validate_config(config))
    model = "freedom" if section is None else "crane"
    with pytest.raises(ConfigError, match=rf"datasets\.demo has no `features`.*{model!r}"):
        plan.check_points()
    result = dry_run(tmp_path, config)
    assert result.returncode != 0
    assert "datasets.demo has no `features`" in result.stdout + result.stderr


def test_a_model_needing_both_modalities_is_refused_on_one(tmp_path, monkeypatch):
    monkeypatch.setattr(models.get("freedom"), "required_modalities", ("image", "text"))
    config = config_with(tmp_path, models=["bpr", "freedom"], ablations={"enabled": False},
                         sensitivity={"enabled": False})
    config["datasets"]["demo"]["features"] = {"text": "minilm"}
    with pytest.raises(ConfigError, match=r"'freedom' needs the image features"):
        StudyPlan(validate_config(config)).check_points()


# ---- the modality ablation -------------------------------------------------------------------
def ablation_config(tmp_path: Path, **section) -> dict:
    return config_with(tmp_path, models=["mostpop", "bpr", "freedom", "itemknn_cbf", "crane"],
                       modality_ablation={"enabled": True, **section})


def test_the_modality_ablation_plans_a_run_per_model_set_and_seed(tmp_path):
    plan = StudyPlan(validate_config(ablation_config(tmp_path, models=["freedom",
                                                                      "itemknn_cbf"])))
    plan.check_points()
    assert plan.modality_sets("demo") == [("image",), ("text",), ("image", "text")]
    results = plan.results
    assert plan.modality_ablation_runs() == [
        str(layout.modality_ablation_run_dir(results, "demo", "freedom", "image", 2024)),
        str(layout.modality_ablation_run_dir(results, "demo", "freedom", "text", 2024)),
        plan.final_run("demo", "freedom", 2024),  # all modalities: the final run, not retrained
        str(layout.modality_ablation_run_dir(results, "demo", "itemknn_cbf", "image", 2024)),
        str(layout.modality_ablation_run_dir(results, "demo", "itemknn_cbf", "text", 2024)),
        plan.final_run("demo", "itemknn_cbf", 2024)]
    assert str(layout.modality_ablation_run_dir(results, "demo", "freedom", "text", 2024)) \
        .endswith("demo/runs/modality_ablation/freedom/text/seed2024")
    # each run reads only its own modalities' graphs; a mean-cosine graph over fewer
    # modalities than the dataset has is a graph of its own
    assert graph_plan.modality_ablation_run_graphs(plan, "demo", "freedom", "text") == [
        graph_plan.KnnGraph("text", 10)]
    text_mean = graph_plan.modality_ablation_run_graphs(plan, "demo", "itemknn_cbf", "text")
    k = plan.default_hparams("itemknn_cbf")["knn_k"] + 1
    assert [g.name for g in text_mean] == [f"mean_cosine_text-k{k}"]
    assert text_mean[0].modalities(["image", "text"]) == ["text"]
    names = {g.name for g in graph_plan.dataset_graphs(plan, "demo")}
    assert {f"mean_cosine-k{k}", f"mean_cosine_image-k{k}", f"mean_cosine_text-k{k}"} <= names


def test_the_default_models_are_the_content_models_and_sets_follow_the_dataset(tmp_path):
    config = ablation_config(tmp_path, sets=[["text"], ["image"]])
    config["datasets"]["demo"]["features"] = {"text": "minilm"}
    config["ablations"] = {"enabled": False}
    config["sensitivity"] = {"enabled": False}
    plan = StudyPlan(validate_config(config))
    assert plan.modality_ablation_models() == ["freedom", "itemknn_cbf", "crane"]
    # the image set is left out on a text-only dataset: text alone is all it has, so every
    # cell is a final run and nothing is trained twice
    assert plan.modality_sets("demo") == [("text",)]
    assert plan.modality_ablation_runs() == [plan.final_run("demo", m, 2024)
                                             for m in ("freedom", "itemknn_cbf", "crane")]
    assert study_summary.job_counts(plan).get("train_modality_ablation", 0) == 0
    assert plan.modality_ablation_baselines() == ["mostpop", "bpr"]


def test_the_section_refuses_models_outside_the_study_or_without_content(tmp_path):
    for wanted, message in ((["lattice"], "not in `models`"), (["bpr"], "reads no item features")):
        plan = StudyPlan(validate_config(ablation_config(tmp_path, models=wanted)))
        with pytest.raises(ConfigError, match=message):
            plan.check_points()


def test_plan_counts_and_commands_equal_the_dry_run(tmp_path):
    config = ablation_config(tmp_path, models=["freedom", "itemknn_cbf"], sets=[["text"]])
    plan = StudyPlan(validate_config(config))
    result = dry_run(tmp_path, config)
    assert result.returncode == 0, result.stdout + result.stderr
    counts = job_stats(result.stdout + result.stderr)
    assert counts == study_summary.job_counts(plan)
    assert counts["train_modality_ablation"] == 2 and counts["modality_ablation_table"] == 1
    runs = [c for c in shell_commands(result.stdout, "train") if "/modality_ablation/" in c]
    assert len(runs) == 2
    for command in runs:
        assert "--feature text=" in command and "--feature image=" not in command
    graphs = shell_commands(result.stdout, "graphs")
    subset = [c for c in graphs if "mean_cosine_text-k" in c]
    assert len(subset) == 1 and "--mean-cosine" in subset[0]
    assert "--feature text=" in subset[0] and "--feature image=" not in subset[0]
    table = shell_commands(result.stdout, "modality-table")
    assert len(table) == 1
    assert "--sets text image+text" in table[0] and "--all-set image+text" in table[0]
