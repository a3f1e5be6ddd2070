"""`crane train / evaluate / select / models` end to end on a small processed folder."""

import json

import pandas as pd
import pytest

from crane import files
from crane.cli import main
from crane.commands.train import parse_overrides


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
