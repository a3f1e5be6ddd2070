"""dvc.yaml is generated from the config: the committed file must match it."""

from pathlib import Path

import yaml

from crane import dvc_stages

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_committed_dvc_yaml_matches_the_default_config(monkeypatch):
    monkeypatch.chdir(REPO_ROOT)
    assert (REPO_ROOT / "dvc.yaml").read_text() == dvc_stages.render("config/config.yaml"), \
        "dvc.yaml is stale: run `crane dvc-yaml`"


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
    assert "results/baby/raw/images.json" in stages["data_baby"]["cmd"]
