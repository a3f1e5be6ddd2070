"""Mirror Gradient (MMRec's `mg` trainer option): the same parameter updates as a literal
transcription of MMRec's `_train_epoch`, on any model, off by default, and it still learns."""

from __future__ import annotations

import copy

import pytest
import torch

from crane.engine.hooks import Hooks
from crane.engine.runner import fit_and_evaluate
from crane.engine.settings import TrainingConfig
from crane.synthetic import clustered_interactions, train_data
from crane.tuning import default_hparams

QUIET = dict(log=lambda message: None)


class Recorder(Hooks):
    """Keeps a copy of the model as it starts training, the epoch's batches, and the
    parameters after them."""

    def __init__(self):
        self.model = self.start = self.after = None
        self.batches = []

    def on_train_start(self, model):
        self.model, self.start = model, copy.deepcopy(model)

    def train_batches(self, epoch, batches):
        for batch in batches:
            self.batches.append(batch)
            yield batch

    def on_epoch_trained(self, epoch, row):
        self.after = {k: v.detach().clone() for k, v in self.model.state_dict().items()}


def mmrec_mirror_epoch(model, batches, lr, alpha1, alpha2, beta):
    """MMRec's common/trainer.py `_train_epoch` with mg on, written out (Adam, no clipping)."""
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    model.train()
    for batch_idx, batch in enumerate(batches):
        optimizer.zero_grad()
        loss = sum(model.loss(batch.users, batch.pos_items, batch.neg_items).values())
        if batch_idx % beta == 0:
            first_loss = alpha1 * loss
            first_loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            loss = sum(model.loss(batch.users, batch.pos_items, batch.neg_items).values())
            second_loss = -1 * alpha2 * loss
            second_loss.backward()
        else:
            loss.backward()
        optimizer.step()
    return model.state_dict()


def one_epoch(model, training):
    interactions = clustered_interactions(n_users=60, n_items=40, per_user=8)
    recorder = Recorder()
    fit_and_evaluate(train_data(interactions), interactions, model, default_hparams(model),
                     seed=3, training=training, hooks=recorder, **QUIET)
    return recorder


@pytest.mark.parametrize("model", ["bpr", "lightgcn"])
def test_mirror_gradient_equals_mmrecs_trainer(model):
    """Each parameter after one epoch with mg on equals MMRec's loop replayed on the same batches."""
    training = TrainingConfig(epochs=1, batch_size=64, mirror_gradient=True,
                              mirror_alpha1=1.0, mirror_alpha2=0.3, mirror_beta=2)
    run = one_epoch(model, training)
    assert len(run.batches) >= 4
    expected = mmrec_mirror_epoch(run.start, run.batches, training.learning_rate,
                                  alpha1=1.0, alpha2=0.3, beta=2)
    for name, value in expected.items():
        torch.testing.assert_close(run.after[name], value, rtol=1e-5, atol=1e-6, msg=name)


def test_mirror_gradient_is_off_by_default_and_changes_the_updates_when_on():
    assert not TrainingConfig().mirror_gradient
    plain = one_epoch("lightgcn", TrainingConfig(epochs=1, batch_size=64))
    mirrored = one_epoch("lightgcn", TrainingConfig(epochs=1, batch_size=64,
                                                    mirror_gradient=True))
    for name, value in plain.after.items():
        assert not torch.equal(value, mirrored.after[name]), name


@pytest.mark.parametrize("bad", [{"mirror_beta": 0}, {"mirror_alpha2": -0.1},
                                 {"mirror_gradient": "yes"}, {"mirror_alpha1": float("nan")}])
def test_bad_mirror_settings_name_the_key(bad):
    key = next(iter(bad))
    with pytest.raises(ValueError, match=f"training.{key}"):
        TrainingConfig(**bad)


@pytest.mark.parametrize("model", ["lightgcn", "freedom"])
def test_learns_with_mirror_gradient(model):
    """Trained with mg on, the model beats popularity on clustered data."""
    interactions = clustered_interactions()
    features = None
    if model == "freedom":
        import numpy as np
        rng = np.random.default_rng(0)
        cluster = np.arange(interactions.n_items) % 4
        features = {m: (np.eye(4)[cluster] * 3 + rng.normal(size=(interactions.n_items, 4)))
                    .astype("float32") for m in ("image", "text")}
    data = train_data(interactions, features)
    training = TrainingConfig(epochs=30, patience=30, batch_size=256, learning_rate=0.01,
                              mirror_gradient=True, mirror_alpha2=0.2)
    mirrored = fit_and_evaluate(data, interactions, model, default_hparams(model), seed=1,
                                training=training, **QUIET)
    popular = fit_and_evaluate(data, interactions, "mostpop", {}, seed=1,
                               training=training, **QUIET)
    assert mirrored.test["recall@20"] > popular.test["recall@20"] + 0.2
