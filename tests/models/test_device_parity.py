"""The same code on a GPU: every model trains on CUDA, and scores there as it does on CPU.

CI has no GPU, so these tests skip there; on a machine with one they run with the rest
(`python -m pytest tests/models/test_device_parity.py`). They guard the promise that no
model has a CPU-only path (a numpy round trip, a tensor created on the default device) and
that the CPU fast paths (scipy products, numpy top-k) compute what the torch paths do.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from crane import models
from crane.engine.evaluate import FullRankingEvaluator
from crane.data.processed import VALID
from crane.engine.sampling import NegativeSampler
from crane.engine.inputs import build_model
from crane.engine.runner import fit_and_evaluate
from crane.engine.settings import TrainingConfig
from crane.synthetic import styled_alternate_cold
from tests.models.checks import model_defaults, random_recall_at_20

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

MODELS = models.shipped()
CUDA = torch.device("cuda")
# LGMRec draws Gumbel noise at evaluation too (as MMRec does), which no two devices draw
# alike: its scores are compared with the hypergraph view switched off (alpha 0).
DETERMINISTIC_SCORES = {"lgmrec": {"alpha": 0.0}}


def hparams_of(name: str) -> dict:
    return {**model_defaults(name), **DETERMINISTIC_SCORES.get(name, {})}


@pytest.fixture(scope="module")
def cpu_data():
    return styled_alternate_cold(n_users=300, seed=3)


def trained_on_cpu(name: str, data) -> torch.nn.Module:
    """A CPU model after a few Adam steps (scores that are not the initialisation's)."""
    torch.manual_seed(0)
    model = build_model(name, data, hparams_of(name))
    if not model.trainable:
        model.fit()
        return model
    sampler = NegativeSampler(data.train_user, data.train_item, data.n_items, 256,
                              torch.Generator().manual_seed(0),
                              use_negatives=model.uses_negatives)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=5e-3)
    generator = torch.Generator().manual_seed(0)
    for epoch in range(3):
        model.train()
        model.start_epoch(epoch, generator)
        for batch in sampler.epoch():
            optimizer.zero_grad(set_to_none=True)
            sum(model.loss(batch.users, batch.pos_items, batch.neg_items).values()).backward()
            optimizer.step()
    return model


@pytest.mark.parametrize("name", MODELS)
def test_cuda_scores_equal_cpu_scores(cpu_data, name):
    cpu_model = trained_on_cpu(name, cpu_data.data)
    cuda_data = replace(cpu_data.data, device=CUDA)
    torch.manual_seed(0)
    cuda_model = build_model(name, cuda_data, hparams_of(name))
    if cuda_model.trainable:
        cuda_model.load_state_dict(cpu_model.state_dict())
    else:
        cuda_model.fit()
    users = torch.arange(cpu_data.data.n_users)
    scores = {}
    for device, model in (("cpu", cpu_model), ("cuda", cuda_model)):
        model.eval()
        with torch.no_grad():
            model.prepare_scoring()
            scores[device] = model.score(users.to(model.device)).cpu()
    assert scores["cuda"].shape == (cpu_data.data.n_users, cpu_data.data.n_items)
    torch.testing.assert_close(scores["cuda"], scores["cpu"], rtol=1e-4, atol=1e-4)

    # Same metrics through the evaluator (CPU: numpy top-k; GPU: torch.topk), up to ties.
    recall = {}
    for device, model in (("cpu", cpu_model), ("cuda", cuda_model)):
        evaluator = FullRankingEvaluator.for_split(cpu_data.interactions, VALID, batch_size=128,
                                                   device=model.device)
        recall[device] = evaluator.evaluate(model).metrics["recall@20"]
    assert recall["cuda"] == pytest.approx(recall["cpu"], abs=0.01)


@pytest.mark.parametrize("name", MODELS)
def test_every_model_trains_on_cuda_and_learns(cpu_data, name, tmp_path):
    data = replace(cpu_data.data, device=CUDA)
    config = TrainingConfig(epochs=30, patience=30, batch_size=256, learning_rate=5e-3,
                            eval_batch_size=128)
    result = fit_and_evaluate(data, cpu_data.interactions, name, model_defaults(name), seed=0,
                              training=config, run_dir=tmp_path / name, log=lambda _: None)
    assert np.isfinite([row["loss"] for row in result.history if "loss" in row]).all()
    assert all(t.device.type == "cuda" for t in result.model.state_dict().values())
    if result.model.trainable or result.model.uses_content:
        # every model that learns or reads content beats a random ranking clearly here
        # (MostPop cannot: the planted styles are equally popular)
        assert result.test["recall@20"] > 2 * random_recall_at_20(cpu_data), result.test
