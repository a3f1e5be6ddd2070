"""The engine: early stopping, test-once on the best state, determinism, resume, learning,
the FLOP count of a step."""

import contextlib

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from crane import files
from crane.data.processed import TEST, VALID
from crane.models import register
from crane.models.base import Recommender
from crane.engine.hooks import Hooks
from crane.engine.loop import TrainingLoop
from crane.engine.runner import fit_and_evaluate
from crane.engine.settings import TrainingConfig
from crane.engine.stopping import EarlyStopping
from crane.tuning import default_hparams as defaults

QUIET = dict(log=lambda message: None)


class StopAfter(Hooks):
    """Raises `error` at the end of epoch `epoch` (a run killed after that epoch)."""

    def __init__(self, epoch, error):
        self.epoch, self.error = epoch, error

    def on_epoch_end(self, epoch, row):
        if epoch == self.epoch:
            raise self.error


@register("test_scripted")
class ScriptedQuality(Recommender):
    """Validation quality follows `schedule[epoch - 1]`: a mix of an oracle and noise.

    The epoch lives in a buffer, so the best checkpoint really is that epoch's state.
    """

    def __init__(self, data, hparams):
        super().__init__(data, hparams)
        self.schedule = list(hparams["schedule"])
        self.register_buffer("oracle", torch.as_tensor(np.asarray(hparams["oracle"]),
                                                       dtype=torch.float32))
        noise = torch.rand(data.n_users, data.n_items, generator=torch.Generator().manual_seed(0))
        self.register_buffer("noise", noise)
        self.register_buffer("epoch", torch.zeros((), dtype=torch.long))
        self.weight = nn.Parameter(torch.zeros(1))

    def start_epoch(self, epoch, generator):
        self.epoch.fill_(epoch)

    def loss(self, users, pos_items, neg_items):
        broken = int(self.epoch) == self.hparams.get("nan_epoch")
        return {"dummy": (self.weight ** 2).sum() * (torch.nan if broken else 1.0)}

    def score(self, users):
        quality = self.schedule[int(self.epoch) - 1]
        return quality * self.oracle[users] + self.noise[users]


def oracle_of(inter):
    both = inter.csr(VALID) + inter.csr(TEST)
    return both.toarray()


def test_early_stopping_counts_evaluations_without_improvement():
    stopper = EarlyStopping(patience=2)
    assert stopper.update(0.1, 1) and not stopper.should_stop
    assert not stopper.update(0.1, 2)            # equal is not an improvement
    assert stopper.update(0.2, 3)
    assert not stopper.update(0.15, 4) and not stopper.should_stop
    assert not stopper.update(0.19, 5) and not stopper.should_stop   # patience reached ...
    assert not stopper.update(0.18, 6) and stopper.should_stop       # ... and exceeded: stop
    assert stopper.best_epoch == 3


def test_early_stopping_compares_the_metric_rounded_as_mmrec_does():
    stopper = EarlyStopping(patience=5)
    assert stopper.update(0.07531, 1)
    assert not stopper.update(0.07534, 2)        # 0.0753 both: a gain lost in rounding
    assert stopper.update(0.07536, 3)            # 0.0754
    assert stopper.best_epoch == 3 and stopper.bad_evaluations == 0
    exact = EarlyStopping(patience=5, decimals=None)
    assert exact.update(0.07531, 1) and exact.update(0.07534, 2)


def test_trainer_stops_after_patience_and_tests_the_best_epoch(clustered, train_data_of):
    schedule = [0.0, 0.5, 3.0, 1.0, 0.2, 0.4, 5.0, 5.0]   # best at epoch 3, then 3 bad ones
    hparams = {"schedule": schedule, "oracle": oracle_of(clustered)}
    config = TrainingConfig(epochs=8, patience=2, batch_size=512)
    result = fit_and_evaluate(train_data_of(clustered), clustered, "test_scripted", hparams,
                              seed=0, training=config, **QUIET)
    assert result.best_epoch == 3
    assert result.epochs_run == 6                       # epochs 7 and 8 never ran
    assert result.stop_reason == "early_stopping"
    assert [row["epoch"] for row in result.history] == [1, 2, 3, 4, 5, 6]
    assert result.valid["recall@20"] == result.history[2]["valid_recall@20"]
    # the test pass used epoch 3's state (quality 3.0: oracle dominates the noise)
    assert int(result.model.epoch) == 3
    assert result.test["recall@20"] > 0.9


def test_non_finite_loss_stops_and_keeps_the_best_state(clustered, train_data_of):
    hparams = {"schedule": [0.0, 3.0, 4.0, 5.0], "oracle": oracle_of(clustered), "nan_epoch": 3}
    result = fit_and_evaluate(train_data_of(clustered), clustered, "test_scripted", hparams,
                              seed=0, training=TrainingConfig(epochs=4), **QUIET)
    assert result.stop_reason == "non_finite_loss"
    assert result.best_epoch == 2 and int(result.model.epoch) == 2
    with pytest.raises(FloatingPointError, match="before any validated state"):
        fit_and_evaluate(train_data_of(clustered), clustered, "test_scripted",
                         {**hparams, "nan_epoch": 1}, seed=0, training=TrainingConfig(epochs=4),
                         **QUIET)


def test_eval_every_and_lr_schedule(clustered, train_data_of):
    hparams = {"schedule": [1.0] * 6, "oracle": oracle_of(clustered)}
    training = TrainingConfig(epochs=5, eval_every=2, learning_rate=0.1, lr_scheduler=(0.5, 1))
    result = fit_and_evaluate(train_data_of(clustered), clustered, "test_scripted", hparams,
                              seed=0, training=training, **QUIET)
    evaluated = [row["epoch"] for row in result.history if "valid_recall@20" in row
                 and not pd.isna(row["valid_recall@20"])]
    assert evaluated == [2, 4, 5]                        # every 2nd epoch, and the last one
    assert [row["lr"] for row in result.history] == pytest.approx([0.1 * 0.5 ** e
                                                                   for e in range(5)])


def test_training_config_rejects_unknown_keys_and_bad_values():
    with pytest.raises(ValueError, match="epochz"):
        TrainingConfig.from_dict({"epochz": 3})
    with pytest.raises(ValueError, match="patience"):
        TrainingConfig.from_dict({"patience": 0})
    with pytest.raises(ValueError, match="valid_metric"):
        TrainingConfig.from_dict({"valid_metric": "auc"})
    config = TrainingConfig.from_dict({"lr_scheduler": [0.96, 50]})
    assert config.lr_scheduler == (0.96, 50.0)
    assert config.updated({"learning_rate": 5e-4}).learning_rate == 5e-4
    with pytest.raises(ValueError, match="reg_weight"):
        config.updated({"reg_weight": 1})


def test_same_seed_same_metrics_other_seed_differs(clustered, train_data_of):
    config = TrainingConfig(epochs=4, batch_size=256, learning_rate=0.01)
    runs = [fit_and_evaluate(train_data_of(clustered), clustered, "lightgcn",
                             defaults("lightgcn", n_layers=2), seed=seed, training=config, **QUIET)
            for seed in (11, 11, 12)]
    assert runs[0].test == runs[1].test and runs[0].valid == runs[1].valid
    assert [r["loss"] for r in runs[0].history] == [r["loss"] for r in runs[1].history]
    assert runs[0].test != runs[2].test


def test_killed_run_resumes_to_the_same_result(tmp_path, clustered, train_data_of):
    config = TrainingConfig(epochs=8, patience=50, batch_size=256, learning_rate=0.01,
                            checkpoint_every_s=0, lr_scheduler=(0.9, 2))
    data = train_data_of(clustered)
    straight = fit_and_evaluate(data, clustered, "bpr", defaults("bpr"), seed=5, training=config,
                                run_dir=tmp_path / "straight", **QUIET)

    class Killed(RuntimeError):
        pass

    run_dir = tmp_path / "killed"
    with pytest.raises(Killed):
        fit_and_evaluate(data, clustered, "bpr", defaults("bpr"), seed=5, training=config,
                         run_dir=run_dir, hooks=StopAfter(4, Killed()), **QUIET)
    assert (run_dir / "last.pt").exists() and not (run_dir / "metrics.json").exists()
    messages = []
    resumed = fit_and_evaluate(data, clustered, "bpr", defaults("bpr"), seed=5, training=config,
                               run_dir=run_dir, log=messages.append)
    assert any("resumed" in m and "epoch 4" in m for m in messages)
    assert resumed.test == straight.test and resumed.valid == straight.valid
    assert resumed.best_epoch == straight.best_epoch
    drop = ["seconds", "eval_seconds"]
    assert (pd.DataFrame(resumed.history).drop(columns=drop)
            .equals(pd.DataFrame(straight.history).drop(columns=drop)))
    assert not (run_dir / "last.pt").exists()
    for name in ("metrics.json", "history.csv", "user_metrics.parquet", "checkpoint.pt"):
        assert (run_dir / name).exists(), name


def test_resume_state_of_another_configuration_is_ignored(tmp_path, clustered, train_data_of):
    data = train_data_of(clustered)
    config = TrainingConfig(epochs=3, batch_size=256, checkpoint_every_s=0)
    with pytest.raises(RuntimeError):
        fit_and_evaluate(data, clustered, "bpr", defaults("bpr", reg_weight=0.1), seed=1,
                         training=config, run_dir=tmp_path,
                         hooks=StopAfter(1, RuntimeError("stop")), **QUIET)
    messages = []
    result = fit_and_evaluate(data, clustered, "bpr", defaults("bpr", reg_weight=0.01), seed=1,
                              training=config, run_dir=tmp_path, log=messages.append)
    assert any("another configuration" in m for m in messages)
    assert result.epochs_run == 3


def test_models_learn_the_cluster_structure(clustered, train_data_of):
    data = train_data_of(clustered)
    config = TrainingConfig(epochs=25, patience=5, batch_size=256, learning_rate=0.01)
    recall = {name: fit_and_evaluate(data, clustered, name, defaults(name), seed=0, training=config,
                                     **QUIET).test["recall@20"]
              for name in ("mostpop", "bpr", "lightgcn")}
    # random ranking finds about 20 of ~110 candidates: recall@20 ~ 0.18
    assert recall["mostpop"] < 0.3
    assert recall["bpr"] > recall["mostpop"] + 0.2
    assert recall["lightgcn"] > recall["mostpop"] + 0.2


def test_non_trainable_model_fits_once(clustered, train_data_of):
    result = fit_and_evaluate(train_data_of(clustered), clustered, "mostpop", {}, seed=0,
                              training=TrainingConfig(epochs=100), **QUIET)
    assert result.best_epoch == 0 and result.epochs_run == 0 and len(result.history) == 1
    counts = np.bincount(clustered.part(0)[1], minlength=clustered.n_items)
    assert np.array_equal(result.model.popularity.numpy(), counts)


def test_the_first_step_is_counted_and_counting_changes_no_bit(tmp_path, clustered,
                                                               train_data_of, monkeypatch):
    config = TrainingConfig(epochs=3, batch_size=256, learning_rate=0.01)

    def run(model, run_dir=None):
        return fit_and_evaluate(train_data_of(clustered), clustered, model, defaults(model),
                                seed=3, training=config, run_dir=run_dir, **QUIET)

    counted = run("xsimgcl", tmp_path / "run")
    assert counted.flops_per_step > 0           # its InfoNCE is a dense product
    assert files.read_json(tmp_path / "run" / "metrics.json")["flops_per_step"] == \
        counted.flops_per_step
    assert run("lightgcn").flops_per_step == 0  # sparse products only: not counted
    monkeypatch.setattr(TrainingLoop, "_flop_counter", lambda self: contextlib.nullcontext())
    plain = run("xsimgcl")
    assert plain.flops_per_step is None
    assert plain.test == counted.test
    assert ([{k: v for k, v in row.items() if "seconds" not in k} for row in plain.history]
            == [{k: v for k, v in row.items() if "seconds" not in k} for row in counted.history])
