"""dvc.yaml is generated from the config and the code: the committed file must match it."""

from pathlib import Path

import yaml

from crane import dvc_stages
from crane.code_inputs import CodeIndex
from crane.study import TRAIN_COMMAND
from crane.tuning import model_config_path

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_committed_dvc_yaml_matches_the_default_config(monkeypatch):
    monkeypatch.chdir(REPO_ROOT)
    assert (REPO_ROOT / "dvc.yaml").read_text() == dvc_stages.render("config/config.yaml"), \
        "dvc.yaml is stale (a config or a module's imports changed): run `crane dvc-yaml`"


def test_stages_per_dataset_with_persistent_outputs(monkeypatch):
    monkeypatch.chdir(REPO_ROOT)
    stages = yaml.safe_load(dvc_stages.render("config/paper.yaml"))["stages"]
    assert set(stages) == {f"{kind}_{d}" for kind in ("data", "features", "train")
                           for d in ("baby", "sports", "clothing", "electronics")} | {"tables"}
    for stage in stages.values():
        for out in stage["outs"]:
            assert next(iter(out.values())) == {"persist": True}
    assert "seeds" in stages["train_baby"]["params"][0]["config/paper.yaml"]
    assert stages["data_baby"]["params"] == [{"config/paper.yaml": ["datasets.baby"]}]
    # the legacy .b image encoder reads no image files: no image fetch in the data stage
    assert "images.json" not in stages["data_baby"]["cmd"]


def test_image_file_encoders_fetch_images_in_the_data_stage(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO_ROOT)
    config = yaml.safe_load(Path("config/paper.yaml").read_text())
    config["ablations"]["datasets"] = ["baby"]
    config["datasets"] = {"baby": {**config["datasets"]["baby"],
                                   "features": {"text": "minilm", "image": "clip"}}}
    path = tmp_path / "clip.yaml"
    path.write_text(yaml.safe_dump(config))
    stages = dvc_stages.build_stages(str(path), config)["stages"]
    assert "results/paper/baby/raw/images.json" in stages["data_baby"]["cmd"]


def test_each_stage_depends_on_the_code_its_jobs_run(monkeypatch):
    monkeypatch.chdir(REPO_ROOT)
    stages = yaml.safe_load(dvc_stages.render("config/paper.yaml"))["stages"]
    index = CodeIndex()
    train = set(stages["train_baby"]["deps"])
    models = yaml.safe_load((REPO_ROOT / "config" / "paper.yaml").read_text())["models"]
    for model in models:  # what the training rules list for each model's runs
        yaml_file = model_config_path(model)
        assert set(index.code_inputs(TRAIN_COMMAND, [model], [yaml_file])) <= train, model
    assert set(index.code_inputs("tables")) <= set(stages["tables"]["deps"])
    assert set(index.code_inputs("graphs")) <= set(stages["features_baby"]["deps"])
    # The plan checks every run's point against its model's typed config before any job
    # runs, so every stage reads the registry and the typed configs; no stage but training
    # reads a model's implementation.
    planning = {"crane/models/__init__.py", "crane/models/base.py",
                "crane/models/hyperparameters.py"}
    for stage in ("data_baby", "features_baby", "tables"):
        assert not [d for d in stages[stage]["deps"]
                    if d.startswith("crane/models/") and d not in planning], stage
    assert not [d for d in train if d.startswith("crane/report/")]
    for stage in stages.values():  # the workflow's own files plan every stage's jobs
        assert {"Snakefile", "workflow/rules/common.smk", "crane/study.py"} <= set(stage["deps"])
        code = [d for d in stage["deps"] if not d.startswith("results/")]
        assert code == sorted(code) and all((REPO_ROOT / d).is_file() for d in code)


def test_the_features_stage_builds_the_planned_graphs(monkeypatch, tmp_path):
    monkeypatch.chdir(REPO_ROOT)
    stages = yaml.safe_load(dvc_stages.render("config/paper.yaml"))["stages"]
    cmd = stages["features_baby"]["cmd"]
    # ItemKNN-CBF's grid reaches k = 200 (201 with the item itself); the others use k = 10
    for graph in ("text-k10", "image-k10", "mean_cosine-k11", "mean_cosine-k201"):
        assert f"results/paper/baby/graphs/{graph}.json" in cmd
    assert "results/paper/baby/features/text-minilm/manifest.json" in cmd
    # a study without graph models builds features only, and declares no graphs folder
    config = yaml.safe_load(Path("config/test.yaml").read_text())
    config.update(models=["mostpop", "bpr"])
    config.pop("ablations"), config.pop("sensitivity")
    path = tmp_path / "plain.yaml"
    path.write_text(yaml.safe_dump(config))
    stages = dvc_stages.build_stages(str(path), config)["stages"]
    assert "graphs" not in stages["features_demo"]["cmd"]
    assert [next(iter(o)) for o in stages["features_demo"]["outs"]] == [
        "results/test/demo/features"]
    assert "results/test/demo/graphs" not in stages["train_demo"]["deps"]


def test_metrics_are_the_headline_files_and_plots_the_report_figures(monkeypatch, tmp_path):
    monkeypatch.chdir(REPO_ROOT)
    dvc = yaml.safe_load(dvc_stages.render("config/config.yaml"))
    tables = next(iter(dvc["stages"]["tables"]["outs"][0]))
    # one small file per model (a table in `dvc metrics show`), not the full metrics.json
    models = yaml.safe_load(Path("config/config.yaml").read_text())["models"]
    assert dvc["metrics"] == [f"{tables}/headline_metrics/demo/{m}.json" for m in models]
    # images only: `dvc plots show` draws them without Vega, which it loads from a CDN
    assert dvc["plots"] == [f"{tables}/convergence.png", f"{tables}/sensitivity.png"]
    config = yaml.safe_load(Path("config/test.yaml").read_text())
    config.pop("sensitivity")
    path = tmp_path / "no-sweep.yaml"
    path.write_text(yaml.safe_dump(config))
    assert dvc_stages.build_stages(str(path), config)["plots"] == [
        "results/test/tables/convergence.png"]
