"""crane.engine.hooks: what the loop calls, in which order, and that observing changes nothing."""

import torch

from crane.engine.hooks import Hooks
from crane.engine.runner import fit_and_evaluate
from crane.engine.settings import TrainingConfig
from crane.tuning import default_hparams

QUIET = dict(log=lambda message: None)
CONFIG = TrainingConfig(epochs=3, patience=10, batch_size=512, eval_every=2, learning_rate=0.01)


class Recorder(Hooks):
    """Records every call; `keep` batches per epoch pass (all when None)."""

    def __init__(self, keep=None):
        self.events, self.rows, self.batches, self.keep = [], {}, {}, keep
        self.model = None

    def on_train_start(self, model):
        self.model = model
        self.events.append(("train_start",))

    def on_epoch_start(self, epoch):
        self.events.append(("epoch_start", epoch))

    def train_batches(self, epoch, batches):
        self.events.append(("batches", epoch))
        self.batches[epoch] = 0
        for batch in batches:
            if self.keep is not None and self.batches[epoch] == self.keep:
                return
            self.batches[epoch] += 1
            yield batch

    def on_epoch_trained(self, epoch, row):
        self.events.append(("trained", epoch))
        assert set(row) >= {"epoch", "seconds", "lr", "loss"} and "valid_recall@20" not in row

    def on_epoch_end(self, epoch, row):
        self.events.append(("end", epoch))
        self.rows[epoch] = dict(row)


def train(clustered, train_data_of, model="bpr", hooks=None):
    return fit_and_evaluate(train_data_of(clustered), clustered, model,
                            default_hparams(model), seed=3, training=CONFIG, hooks=hooks,
                            **QUIET)


def test_hooks_are_called_in_order_with_the_history_rows(clustered, train_data_of):
    hooks = Recorder()
    result = train(clustered, train_data_of, hooks=hooks)
    expected = [("train_start",)]
    for epoch in (1, 2, 3):
        expected += [("epoch_start", epoch), ("batches", epoch), ("trained", epoch),
                     ("end", epoch)]
    assert hooks.events == expected
    assert hooks.model is result.model
    assert [hooks.rows[e] for e in (1, 2, 3)] == result.history
    assert "valid_recall@20" in hooks.rows[2] and "valid_recall@20" not in hooks.rows[1]
    n_train = len(clustered.part(0)[0])
    assert hooks.batches == {e: -(-n_train // 512) for e in (1, 2, 3)}


def test_observing_a_run_leaves_it_bit_for_bit_the_same(clustered, train_data_of):
    plain = train(clustered, train_data_of)
    observed = train(clustered, train_data_of, hooks=Recorder())
    for name, tensor in plain.model.state_dict().items():
        assert torch.equal(tensor, observed.model.state_dict()[name]), name
    assert [r["loss"] for r in plain.history] == [r["loss"] for r in observed.history]
    assert plain.test == observed.test


def test_train_batches_may_run_part_of_an_epoch(clustered, train_data_of):
    hooks = Recorder(keep=1)
    partial = train(clustered, train_data_of, hooks=hooks)
    assert hooks.batches == {1: 1, 2: 1, 3: 1}
    full = train(clustered, train_data_of)
    assert [r["loss"] for r in partial.history] != [r["loss"] for r in full.history]


def test_a_model_fitted_once_gets_only_the_start_hook(clustered, train_data_of):
    hooks = Recorder()
    result = train(clustered, train_data_of, model="mostpop", hooks=hooks)
    assert hooks.events == [("train_start",)] and hooks.model is result.model
