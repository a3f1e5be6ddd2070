"""Every content model trains and tests with one modality (text only, image only): the real
trainer runs two epochs on small synthetic data, and the test scores are finite. A model that
by construction needs more than one modality declares it (`required_modalities`) and refuses
one-modality data at construction, naming itself and the missing modality."""

from __future__ import annotations

import math

import pytest
import torch

from crane import models
from crane.engine.settings import TrainingConfig
from crane.engine.runner import fit_and_evaluate
from crane.modalities import MODALITIES
from crane.synthetic import only_modalities, styled_random_cold
from crane.tuning import load_model_config

CONTENT_MODELS = sorted(name for name in models.available() if models.get(name).uses_content)


@pytest.fixture(scope="module")
def synthetic():
    return styled_random_cold(n_users=60, n_items=64, n_styles=4, n_train=5, cold_share=0.2,
                              seed=3)


def small_point(model: str) -> dict:
    """The model's default point, with a kNN small enough for 64 items."""
    point = dict(load_model_config(model)["defaults"])
    if "knn_k" in point:
        point["knn_k"] = 5
    return point


def test_every_content_model_is_listed():
    # the registry, not a hand-written list: a new content model is checked here too
    assert {"vbpr", "lattice", "freedom", "bm3", "mgcn", "lgmrec", "crane", "itemknn_cbf",
            "mmgcn", "grcn", "mvgae", "dualgnn", "slmrec", "dragon"} <= set(CONTENT_MODELS)


@pytest.mark.parametrize("modality", MODALITIES)
@pytest.mark.parametrize("model", CONTENT_MODELS)
def test_content_model_runs_with_one_modality(synthetic, model, modality):
    data = only_modalities(synthetic.data, modality)
    required = set(models.get(model).required_modalities)
    point = small_point(model)
    training = TrainingConfig(epochs=2, patience=2, batch_size=128, learning_rate=1e-3,
                              eval_batch_size=64)
    if not required <= {modality}:
        with pytest.raises(ValueError, match=rf"{model}.*{sorted(required - {modality})[0]}"):
            fit_and_evaluate(data, synthetic.interactions, model, point, 0, training,
                             log=lambda _: None)
        return
    result = fit_and_evaluate(data, synthetic.interactions, model, point, 0, training,
                              log=lambda _: None)
    assert set(result.test) >= {"recall@20", "ndcg@20"}
    assert all(math.isfinite(v) for v in result.test.values())
    model_obj = result.model
    model_obj.eval()
    with torch.no_grad():
        model_obj.prepare_scoring()
        scores = model_obj.score(torch.arange(data.n_users))
    assert scores.shape == (data.n_users, data.n_items)
    assert torch.isfinite(scores).all()


def test_required_modalities_are_known_modalities():
    for name in models.available():
        assert set(models.get(name).required_modalities) <= set(MODALITIES), name
