"""The model interface (crane.models.base): the scoring state the base class keeps and drops,
the modality checks, the registry, and what model files may not contain."""

from __future__ import annotations

import ast
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from crane import models
from crane.models.base import MODALITIES, Recommender
from crane.synthetic import random_train_data
from tests.models.checks import model_defaults

MODELS_DIR = Path(models.__file__).parent
MODELS = models.shipped()


class Counting(Recommender):
    """Scores users by a table; counts how often its scoring state is computed."""

    def __init__(self, data, hparams):
        super().__init__(data, hparams)
        self.item_bias = nn.Parameter(torch.zeros(data.n_items))
        self.computed = 0

    def scoring_tables(self):
        self.computed += 1
        return self.item_bias * 2

    def score(self, users):
        return self.scoring_state().expand(len(users), -1)


def test_prepare_scoring_keeps_the_state_until_train_drops_it():
    model = Counting(random_train_data(modalities=()), {})
    model.eval()
    with torch.no_grad():
        model.prepare_scoring()
    model.score(torch.arange(3))
    model.score(torch.arange(5))
    assert model.computed == 1
    with torch.no_grad():
        model.item_bias.add_(1.0)
    model.train()                 # the parameters are about to change: the state goes
    model.eval()
    assert torch.equal(model.score(torch.arange(2)), torch.full((2, model.n_items), 2.0))
    model.score(torch.arange(2))
    assert model.computed == 2    # computed on first use in eval mode, then kept


def test_scores_in_training_mode_are_never_kept():
    model = Counting(random_train_data(modalities=()), {})
    model.train()
    first = model.score(torch.arange(2))
    with torch.no_grad():
        model.item_bias.add_(1.0)
    assert not torch.equal(model.score(torch.arange(2)), first)
    assert model.computed == 2
    assert not first.requires_grad   # computed without building a graph


@pytest.mark.parametrize("name", [m for m in MODELS if models.get(m).trainable])
def test_no_model_scores_with_stale_parameters(name):
    """Every model: after an evaluation pass, an optimiser step and a new pass score with
    the new parameters."""
    data = random_train_data(n_users=30, n_items=24, per_user=4)
    hparams = {**model_defaults(name), **({"knn_k": 3} if "knn_k" in model_defaults(name)
                                          else {})}
    torch.manual_seed(0)
    model = models.get(name)(data, hparams)
    model.eval()
    with torch.no_grad():
        torch.manual_seed(1)
        model.prepare_scoring()
        before = model.score(torch.arange(data.n_users))
    model.train()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    model.eval()
    with torch.no_grad():
        torch.manual_seed(1)
        lazily = model.score(torch.arange(data.n_users))
        torch.manual_seed(1)
        model.prepare_scoring()
        prepared = model.score(torch.arange(data.n_users))
    assert not torch.allclose(lazily, before)
    torch.testing.assert_close(lazily, prepared)


def test_modalities_are_checked_once_for_every_content_model():
    data = random_train_data(n_users=20, n_items=15)
    model = Counting(data, {})
    assert model.feature_modalities(data) == MODALITIES
    assert model.feature_modalities(data, ("text", "image")) == ("text", "image")
    with pytest.raises(ValueError, match="counting needs item features"):
        model.feature_modalities(replace(data, features={}))
    with pytest.raises(ValueError, match=r"counting: unknown feature modality \['audio'\]"):
        model.feature_modalities(replace(data, features={**data.features,
                                                         "audio": data.features["text"]}))
    with pytest.raises(ValueError, match=r"counting: text features have shape \(14, 24\)"):
        model.feature_modalities(replace(data, features={"text": data.features["text"][:-1]}))
    flat = np.zeros(15, np.float32)
    with pytest.raises(ValueError, match="one row per item"):
        model.feature_modalities(replace(data, features={"image": flat}))


def test_registry_gets_lists_and_refuses_a_second_class_under_a_name():
    assert {"mostpop", "bpr", "lightgcn", "crane"} <= set(models.available())
    assert models.get("bpr").name == "bpr"
    with pytest.raises(KeyError, match="unknown model 'nope'; available: bm3, bpr"):
        models.get("nope")
    with pytest.raises(ValueError, match="registered twice"):
        models.register("bpr")(Counting)


def test_shipped_lists_the_package_models_and_not_one_registered_elsewhere(monkeypatch):
    monkeypatch.setitem(models._REGISTRY, "elsewhere", type("Elsewhere", (Counting,), {}))
    assert "elsewhere" in models.available()
    assert "elsewhere" not in models.shipped()
    assert {path.stem for path in model_files()} - {"base", "hyperparameters", "layers"} \
        <= set(models.shipped())


def model_files() -> list[Path]:
    return sorted(p for p in MODELS_DIR.glob("*.py") if p.name != "__init__.py")


@pytest.mark.parametrize("path", model_files(), ids=lambda p: p.name)
def test_model_files_hold_no_kernels_threads_or_sibling_models(path):
    """Kernels (autograd Functions) and thread policy live in crane.ops; a model imports
    the kernel layer and the model interface, never another model."""
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            bases = [ast.unparse(base) for base in node.bases]
            assert not any("autograd.Function" in base for base in bases), node.name
        if isinstance(node, ast.Attribute):
            assert node.attr not in {"set_num_threads", "run_pair", "sparse_product_threads",
                                     "batch_ops_on_one_thread"}, ast.unparse(node)
        if isinstance(node, ast.ImportFrom) and node.module:
            assert node.module != "crane.ops.threads", node.module
            if node.module.startswith("crane.models."):
                assert node.module.rsplit(".", 1)[1] in {"base", "hyperparameters", "layers"}, \
                    f"{path.name} imports the model module {node.module}"
        if isinstance(node, ast.Name):
            assert node.id not in {"run_pair", "sparse_product_threads"}, node.id
