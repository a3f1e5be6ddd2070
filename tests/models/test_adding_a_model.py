"""The model of docs/adding-a-model.md is real code: read from the page, registered, trained
through the engine on synthetic data, it learns; afterwards it is unregistered."""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

import pytest
import torch

from crane import models
from crane.engine.runner import fit_and_evaluate
from crane.engine.settings import TrainingConfig
from crane.synthetic import styled_and_grouped
from tests.models._threads import one_torch_thread
from tests.models.checks import assert_scores_agree_across_chunks, parameters_without_gradient

PAGE = Path(__file__).resolve().parents[2] / "docs" / "adding-a-model.md"
NAME = "onehop"
HPARAMS = {"embedding_size": 32, "reg_weight": 1e-4}


def page_code() -> str:
    blocks = re.findall(r"```python\n(.*?)```", PAGE.read_text(encoding="utf-8"), re.S)
    assert len(blocks) == 1, "the page should hold exactly one python block: the model"
    return blocks[0]


@pytest.fixture(scope="module")
def onehop():
    """The page's model, registered for this module only."""
    assert NAME not in models.available(), "the page's model must not clash with a shipped one"
    module = types.ModuleType("docs_adding_a_model")
    sys.modules[module.__name__] = module
    try:
        exec(compile(page_code(), str(PAGE), "exec"), module.__dict__)
        with one_torch_thread():
            yield models.get(NAME)
    finally:
        models._REGISTRY.pop(NAME, None)
        del sys.modules[module.__name__]
    assert NAME not in models.available()


@pytest.fixture(scope="module")
def synthetic():
    return styled_and_grouped(n_users=300, n_items=200, cold_share=0.0, modalities=(), seed=1)


def test_the_page_model_is_registered_with_a_typed_config(onehop, synthetic):
    model = onehop(synthetic.data, HPARAMS)
    assert model.name == NAME and model.config.embedding_size == 32
    with pytest.raises(ValueError, match=r"onehop: hyper-parameter embedding_size=0 must be"):
        onehop(synthetic.data, {**HPARAMS, "embedding_size": 0})
    with pytest.raises(ValueError, match=r"onehop: unknown hyper-parameter\(s\) \['n_layers'\]"):
        onehop(synthetic.data, {**HPARAMS, "n_layers": 2})


def test_every_parameter_learns_and_scores_agree(onehop, synthetic):
    torch.manual_seed(0)
    model = onehop(synthetic.data, HPARAMS)
    users, pos = torch.tensor([0, 1, 2, 2]), torch.tensor([3, 4, 5, 6])
    assert parameters_without_gradient(model, users, pos, torch.tensor([7, 8, 9, 10])) == []
    assert_scores_agree_across_chunks(model)


def test_the_page_model_trains_through_the_engine_and_learns(onehop, synthetic):
    training = TrainingConfig(epochs=8, patience=8, batch_size=256, learning_rate=5e-3)

    def run(name, hparams):
        return fit_and_evaluate(synthetic.data, synthetic.interactions, name, hparams, 0,
                                training, log=lambda _: None)

    result = run(NAME, HPARAMS)
    losses = [row["loss"] for row in result.history if "loss" in row]
    assert len(losses) == 8 and losses[-1] < 0.8 * losses[0]
    assert result.test["recall@20"] > 2 * run("mostpop", {}).test["recall@20"]
