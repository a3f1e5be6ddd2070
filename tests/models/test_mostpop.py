"""MostPop: scores are the items' training counts, for every user alike; nothing to tune."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from crane.models import get
from crane.synthetic import random_train_data
from tests.models.checks import assert_scores_agree_across_chunks


def test_scores_are_training_counts_for_every_user():
    data = random_train_data(n_users=30, n_items=20, modalities=())
    model = get("mostpop")(data, {})
    assert model.trainable is False and list(model.parameters()) == []
    model.fit()
    counts = np.bincount(data.train_item, minlength=data.n_items).astype(np.float32)
    scores = model.score(torch.tensor([0, 7, 7, 29]))
    assert scores.shape == (4, data.n_items)
    assert all(np.array_equal(row, counts) for row in scores.numpy())
    assert_scores_agree_across_chunks(model)


def test_fitted_counts_travel_in_a_checkpoint():
    data = random_train_data(n_users=30, n_items=20, modalities=())
    model = get("mostpop")(data, {})
    model.fit()
    restored = get("mostpop")(data, {})
    restored.load_state_dict(model.state_dict())
    assert torch.equal(restored.score(torch.arange(3)), model.score(torch.arange(3)))


def test_any_hyper_parameter_is_a_mistake():
    with pytest.raises(ValueError, match=r"mostpop: unknown hyper-parameter\(s\) \['k'\]"):
        get("mostpop")(random_train_data(modalities=()), {"k": 1})
