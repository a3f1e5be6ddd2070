"""crane.engine.settings: trainer settings, and the ones a model's point may set."""

import subprocess
import sys

import pytest

from crane.engine.runner import fit_and_evaluate, resolve_training
from crane.engine.settings import MODEL_TRAINING_KEYS, TrainingConfig, split_point
from crane.tuning import default_hparams

QUIET = dict(log=lambda message: None)


def test_model_training_keys_are_trainer_settings():
    assert set(MODEL_TRAINING_KEYS) < set(TrainingConfig.keys())


def test_a_point_is_split_by_the_keys_its_model_file_declares():
    point = {"reg_weight": 1e-5, "learning_rate": 5e-4, "lr_scheduler": [0.96, 50]}
    model_hp, trainer = split_point("lattice", point, ("learning_rate", "lr_scheduler"))
    assert model_hp == {"reg_weight": 1e-5}
    assert trainer == {"learning_rate": 5e-4, "lr_scheduler": [0.96, 50]}
    with pytest.raises(ValueError, match=r"bpr: \['learning_rate'\] are trainer settings"):
        split_point("bpr", {"reg_weight": 1e-4, "learning_rate": 0.1}, ())


def test_the_model_files_training_block_beats_the_configs_training_section():
    config = TrainingConfig(learning_rate=1e-3, batch_size=1024)
    model_hp, lattice, from_point = resolve_training("lattice", default_hparams("lattice"),
                                                     config)
    assert "learning_rate" not in model_hp and model_hp["knn_k"] == 10
    assert lattice.learning_rate == 5e-4 and lattice.lr_scheduler == (0.96, 50.0)
    assert lattice.batch_size == 1024                      # not declared: the config's value
    assert from_point == {"learning_rate": 5e-4, "lr_scheduler": [0.96, 50]}
    _, bpr, from_point = resolve_training("bpr", default_hparams("bpr"), config)
    assert bpr == config and from_point == {}
    _, mgcn, _ = resolve_training("mgcn", default_hparams("mgcn"), config)
    assert mgcn.learning_rate == 1e-3 and mgcn.lr_scheduler == (0.96, 50.0)


def test_a_declared_value_in_the_point_trains_like_the_same_config_value(clustered,
                                                                          train_data_of):
    data = train_data_of(clustered)
    point = {**default_hparams("bpr"), "learning_rate": 0.05}
    from_point = fit_and_evaluate(data, clustered, "bpr", point, seed=1,
                                  training=TrainingConfig(epochs=2, batch_size=256),
                                  training_keys=("learning_rate",), **QUIET)
    from_config = fit_and_evaluate(data, clustered, "bpr", default_hparams("bpr"), seed=1,
                                   training=TrainingConfig(epochs=2, batch_size=256,
                                                           learning_rate=0.05), **QUIET)
    assert [r["lr"] for r in from_point.history] == [0.05, 0.05]
    assert from_point.test == from_config.test
    assert [r["loss"] for r in from_point.history] == [r["loss"] for r in from_config.history]


def test_planning_reads_settings_and_model_files_without_torch():
    code = ("import sys, crane.engine.settings, crane.tuning, crane.study\n"
            "crane.tuning.grid_points(crane.tuning.load_model_config('lattice'))\n"
            "assert 'torch' not in sys.modules, 'torch imported'\n")
    subprocess.run([sys.executable, "-c", code], check=True)
