"""crane/graphs/plan.py against the models themselves.

Every registered model is built at its default point on a cache folder that holds exactly
the graphs the plan gives it: none may be computed in memory (the plan misses nothing), and
removing any one of them must make the model compute it (the plan builds nothing unread).
A model built on the cache and one built without a cache score every user with the same
bits. Then the plan over a whole study: ItemKNN-CBF's grid up to k = 200 is built.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from crane import files, models
from crane.config import load_yaml, validate_config
from crane.engine.inputs import build_model
from crane.graphs import plan as graph_plan
from crane.graphs.item_knn import build_graph
from crane.models.base import TrainData
from crane.study import StudyPlan
from crane.tuning import load_model_config

ROOT = Path(__file__).resolve().parents[2]
MISSING = "computing it in memory"


def tiny_data(cache_dir: Path | None) -> TrainData:
    rng = np.random.default_rng(5)
    n_users, n_items = 40, 64  # more items than ItemKNN-CBF's default k + 1
    users = np.repeat(np.arange(n_users), 6)
    items = np.concatenate([rng.choice(n_items, 6, replace=False) for _ in range(n_users)])
    features = {"image": rng.standard_normal((n_items, 12)).astype(np.float32),
                "text": rng.standard_normal((n_items, 8)).astype(np.float32)}
    return TrainData(n_users=n_users, n_items=n_items, train_user=users.astype(np.int64),
                     train_item=items.astype(np.int64), features=features,
                     feature_hashes={m: files.sha256_array(f) for m, f in features.items()},
                     cache_dir=cache_dir)


def scores(name: str, data: TrainData, hparams: dict) -> torch.Tensor:
    torch.manual_seed(0)
    model = build_model(name, data, hparams)
    if not model.trainable:
        model.fit()
    model.eval()
    with torch.no_grad():
        return model.score(torch.arange(data.n_users))


@pytest.mark.parametrize("name", models.shipped())
def test_a_model_reads_exactly_the_planned_graphs(name, tmp_path, caplog):
    hparams = load_model_config(name)["defaults"]
    data = tiny_data(tmp_path)
    planned = graph_plan.graphs_read_by(name, hparams, data.features)
    features = {m: (data.features[m], data.feature_hashes[m]) for m in data.features}
    caches = [Path(build_graph(graph, features, tmp_path)["cache"]) for graph in planned]

    with caplog.at_level(logging.WARNING, logger="crane.graphs.item_knn"):
        cached = scores(name, data, hparams)
    assert MISSING not in caplog.text, f"{name} read a graph the plan does not build"
    assert sorted(tmp_path.iterdir()) == sorted(caches), "a model wrote into the cache"
    for cache in caches:
        kept = cache.read_bytes()
        cache.unlink()
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="crane.graphs.item_knn"):
            scores(name, data, hparams)
        assert cache.name in caplog.text, f"{name} does not read the planned {cache.name}"
        cache.write_bytes(kept)

    in_memory = scores(name, tiny_data(None), hparams)
    assert torch.equal(cached, in_memory), f"{name}: cached and in-memory graphs differ"


def test_the_study_plan_builds_each_graph_its_runs_read():
    config = validate_config(load_yaml(ROOT / "config" / "paper.yaml"))
    plan = StudyPlan(config)
    names = [g.name for g in graph_plan.dataset_graphs(plan, "baby")]
    grid = load_model_config("itemknn_cbf")["grid"]["knn_k"]
    smore = load_model_config("smore")["grid"]  # a k per modality
    per_modality = {f"{m}-k{k}" for m in ("image", "text") for k in smore[f"{m}_knn_k"]}
    assert set(names) == ({"image-k10", "text-k10"} | per_modality
                          | {f"mean_cosine-k{k + 1}" for k in grid})
    assert max(grid) + 1 == 201
    # a final ItemKNN-CBF run may read any point the selection can choose
    assert len(graph_plan.final_run_graphs(plan, "baby", "itemknn_cbf")) == len(grid)
    hp = next(iter(plan.grid_points("itemknn_cbf")))
    assert len(graph_plan.grid_run_graphs(plan, "baby", "itemknn_cbf", hp)) == 1
    assert graph_plan.final_run_graphs(plan, "baby", "bpr") == []


def test_ablation_and_sensitivity_values_that_change_k_are_planned(tmp_path):
    config = yaml.safe_load((ROOT / "config" / "test.yaml").read_text())
    config["sensitivity"]["params"] = ["knn_k"]
    models_dir = tmp_path / "models"
    models_dir.mkdir()
    for path in (ROOT / "crane" / "configs" / "models").glob("*.yaml"):
        (models_dir / path.name).write_text(path.read_text())
    crane_yaml = yaml.safe_load((models_dir / "crane.yaml").read_text())
    crane_yaml["sensitivity"]["knn_k"] = [5, 20]
    crane_yaml["ablations"]["crane_wide"] = {"knn_k": 30}
    (models_dir / "crane.yaml").write_text(yaml.safe_dump(crane_yaml))
    config["ablations"]["variants"] = ["crane", "crane_wide"]
    config["models_dir"] = str(models_dir)
    plan = StudyPlan(validate_config(config))
    assert [g.name for g in graph_plan.dataset_graphs(plan, "demo")] == [
        f"{m}-k{k}" for m in ("image", "text") for k in (5, 10, 20, 30)]
    assert graph_plan.sensitivity_run_graphs(plan, "demo", "knn_k", "5") == [
        graph_plan.KnnGraph("image", 5), graph_plan.KnnGraph("text", 5)]
