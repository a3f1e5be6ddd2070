"""`crane train / evaluate / select / models` end to end on a small processed folder."""

import json
from pathlib import Path

import pandas as pd
import pytest
import torch

from crane import files
from crane.cli import main
from crane.commands._spec import parse_feature_dirs
from crane.commands.train import parse_overrides
from crane.tuning import hp_hash

FAST = json.dumps({"epochs": 2, "batch_size": 256, "checkpoint_every_s": 0})


def test_set_overrides_split_model_and_training_keys():
    hparams, training = parse_overrides(["reg_weight=1e-3", "training.epochs=5",
                                         "training.lr_scheduler=[0.96, 50]", "name=abc"])
    assert hparams == {"reg_weight": 1e-3, "name": "abc"}
    assert training == {"epochs": 5, "lr_scheduler": [0.96, 50]}
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_overrides(["reg_weight"])


def test_train_evaluate_select_models(tmp_path, processed_dir, capsys):
    runs = []
    for reg in ("1e-3", "1e-1"):
        out = tmp_path / f"run-{reg}"
        code = main(["train", "--data", str(processed_dir), "--model", "bpr", "--seed", "3",
                     "--training", json.dumps({"batch_size": 256, "learning_rate": 0.01}),
                     "--set", f"reg_weight={reg}", "--set", "training.epochs=2",
                     "--device", "cpu", "--out", str(out), "--dataset", "synthetic"])
        assert code == 0
        runs.append(out)
    metrics = files.read_json(runs[0] / "metrics.json")
    assert metrics["hparams"] == {"embedding_size": 64, "reg_weight": 1e-3}
    assert metrics["epochs_run"] == 2 and metrics["dataset"] == "synthetic"
    for key in ("hp_hash", "best_epoch", "valid", "test", "seconds_per_epoch", "train_seconds",
                "eval_seconds", "peak_memory_mb"):
        assert key in metrics
    manifest = files.read_json(runs[0] / "manifest.json")
    assert manifest["config"]["training"]["epochs"] == 2
    assert len(manifest["inputs"]["interactions.parquet"]) == 64
    assert {"torch", "numpy", "scipy", "pandas"} <= set(manifest["packages"])
    history = pd.read_csv(runs[0] / "history.csv")
    assert list(history["epoch"]) == [1, 2] and "loss_bpr" in history and "loss_reg" in history
    users = pd.read_parquet(runs[0] / "user_metrics.parquet")
    assert users["recall@20"].mean() == pytest.approx(metrics["test"]["recall@20"])
    assert not (runs[0] / "last.pt").exists()

    capsys.readouterr()
    assert main(["evaluate", "--run", str(runs[0]), "--topk", "5", "--device", "cpu"]) == 0
    rescored = json.loads(capsys.readouterr().out)
    assert rescored["test"]["recall@20"] == pytest.approx(metrics["test"]["recall@20"])
    assert rescored["valid"]["recall@20"] == pytest.approx(metrics["valid"]["recall@20"])
    topk = pd.read_parquet(runs[0] / "topk.parquet")
    assert list(topk.columns) == ["user_id", "rank", "item_id"]
    assert topk.groupby("user_id").size().eq(5).all()

    selected = tmp_path / "selected" / "bpr.json"
    assert main(["select", "--runs", *map(str, runs), "--metric", "recall@20",
                 "--out", str(selected)]) == 0
    choice = files.read_json(selected)
    best = max(runs, key=lambda r: files.read_json(r / "metrics.json")["valid"]["recall@20"])
    assert choice["run_dir"] == str(best) and len(choice["table"]) == 2

    capsys.readouterr()
    assert main(["models"]) == 0
    listed = capsys.readouterr().out
    assert "bpr" in listed and "mostpop\tfit-once" in listed


def test_bad_input_gives_a_clear_error(tmp_path, processed_dir, capsys):
    code = main(["train", "--data", str(processed_dir), "--model", "bpr", "--seed", "1",
                 "--set", "training.epochs_typo=3", "--out", str(tmp_path / "run")])
    assert code == 2
    assert "epochs_typo" in capsys.readouterr().err
    code = main(["train", "--data", str(processed_dir), "--model", "no_such_model",
                 "--seed", "1", "--out", str(tmp_path / "run")])
    assert code == 2
    assert "no_such_model" in capsys.readouterr().err


def train(processed_dir, out, *args):
    return main(["train", "--data", str(processed_dir), "--seed", "1", "--device", "cpu",
                 "--training", FAST, "--out", str(out), *args])


def test_the_point_is_the_default_then_hparams_or_selected_then_extra_then_set(
        tmp_path, processed_dir):
    assert train(processed_dir, tmp_path / "a", "--model", "bpr",
                 "--hparams", '{"reg_weight": 0.5}', "--extra", '{"reg_weight": 0.25}',
                 "--set", "embedding_size=16") == 0
    metrics = files.read_json(tmp_path / "a" / "metrics.json")
    assert metrics["hparams"] == {"embedding_size": 16, "reg_weight": 0.25}
    assert metrics["hp_hash"] == hp_hash(metrics["hparams"])

    selection = tmp_path / "selected.json"
    files.write_json(selection, {"hparams": {"embedding_size": 8, "reg_weight": 0.1}})
    assert train(processed_dir, tmp_path / "b", "--model", "bpr", "--selected",
                 str(selection), "--extra", '{"reg_weight": 0.2}') == 0
    assert files.read_json(tmp_path / "b" / "metrics.json")["hparams"] == {
        "embedding_size": 8, "reg_weight": 0.2}


def test_reuse_from_copies_the_grid_run_of_the_same_point_and_seed(tmp_path, processed_dir):
    point = {"embedding_size": 8, "reg_weight": 0.1}
    grid = tmp_path / "grid"
    assert train(processed_dir, grid / hp_hash(point) / "seed1", "--model", "bpr",
                 "--hparams", json.dumps(point)) == 0
    stamp = (grid / hp_hash(point) / "seed1" / "metrics.json").read_text()
    assert train(processed_dir, tmp_path / "final", "--model", "bpr",
                 "--hparams", json.dumps(point), "--reuse-from", str(grid)) == 0
    assert (tmp_path / "final" / "metrics.json").read_text() == stamp   # copied, not retrained
    other = {**point, "reg_weight": 0.2}                                # no such grid run
    assert train(processed_dir, tmp_path / "other", "--model", "bpr",
                 "--hparams", json.dumps(other), "--reuse-from", str(grid)) == 0
    assert files.read_json(tmp_path / "other" / "metrics.json")["hp_hash"] == hp_hash(other)


def test_declared_trainer_settings_beat_the_training_config_and_reach_the_manifest(
        tmp_path, processed_dir, capsys):
    models = tmp_path / "models"
    models.mkdir()
    (models / "bpr.yaml").write_text("defaults: {embedding_size: 8, reg_weight: 1.0e-4}\n"
                                     "training: {defaults: {learning_rate: 0.05}}\n")
    config = ["--model", "bpr", "--model-config", str(models)]
    assert train(processed_dir, tmp_path / "a", *config,
                 "--set", "training.learning_rate=0.5", "--set", "training.batch_size=128"
                 ) == 0
    manifest = files.read_json(tmp_path / "a" / "manifest.json")["config"]
    metrics = files.read_json(tmp_path / "a" / "metrics.json")
    # a declared key set on the command line is part of the point; batch_size is not declared
    assert metrics["hparams"] == {"embedding_size": 8, "reg_weight": 1e-4, "learning_rate": 0.5}
    assert manifest["training"]["learning_rate"] == 0.5
    assert manifest["training"]["batch_size"] == 128
    assert manifest["training_from_model"] == ["learning_rate"]
    history = pd.read_csv(tmp_path / "a" / "history.csv")
    assert list(history["lr"]) == [0.5, 0.5]

    assert train(processed_dir, tmp_path / "b", *config) == 0      # --training says 1e-3
    manifest = files.read_json(tmp_path / "b" / "manifest.json")["config"]
    assert manifest["training"]["learning_rate"] == 0.05
    assert manifest["training"]["epochs"] == 2

    capsys.readouterr()
    assert train(processed_dir, tmp_path / "c", "--model", "bpr",
                 "--set", "learning_rate=0.5") == 2                # the packaged bpr.yaml
    assert "['learning_rate'] are trainer settings" in capsys.readouterr().err


def test_feature_pairs_are_parsed_strictly(tmp_path, processed_dir, capsys):
    assert parse_feature_dirs(["text=a", "image=b"]) == {"text": Path("a"), "image": Path("b")}
    for pairs, named in ((["text"], "expected MODALITY=DIR"), (["=a"], "expected"),
                         (["text="], "expected"), (["text=a", "text=b"], "given twice")):
        with pytest.raises(ValueError, match=named):
            parse_feature_dirs(pairs)
    assert train(processed_dir, tmp_path / "run", "--model", "bpr", "--feature", "text") == 2
    assert "--feature 'text': expected MODALITY=DIR" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_an_unavailable_device_is_an_error_for_training_and_features(tmp_path, processed_dir,
                                                                     capsys):
    assert train(processed_dir, tmp_path / "run", "--model", "mostpop", "--device", "cpu") == 0
    code = main(["train", "--data", str(processed_dir), "--model", "mostpop", "--seed", "1",
                 "--device", "cuda", "--out", str(tmp_path / "gpu")])
    assert code == 2 and "CUDA is not available" in capsys.readouterr().err
    from crane.features import extract

    with pytest.raises(ValueError, match="CUDA is not available"):
        extract.extract_features(processed_dir, tmp_path, "text", "x",
                                 {"type": "mmrec_npy"}, tmp_path / "out", device="cuda")
