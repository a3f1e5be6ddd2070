"""Which item kNN graphs the study's runs read, so that the graph jobs build exactly those.

A graph is (source, k): the top-k cosine neighbours of one modality's features, or of the
mean per-modality cosine of all of them (`MEAN_COSINE`). Which graphs a run reads follows
from its model and hyper-parameters:

- a model with a `knn_k` hyper-parameter reads the top-`knn_k` graph of each feature modality
  of the dataset (FREEDOM, LATTICE, MGCN, CRANE; CRANE without its item graph reads none, and
  is planned one graph too many, never one too few); a `<modality>_knn_k` (SMORE's
  `image_knn_k`, `text_knn_k`) sets that modality's k instead;
- ItemKNN-CBF reads one graph of the mean-cosine features at `knn_k + 1` (each item is among
  its own neighbours and is dropped).

A modality-ablation run (crane/study.py) reads the graphs of its own modalities only; its
mean-cosine graph, over fewer modalities than the dataset has, names them
(`mean_cosine_text-k11`), since its cache key differs from that of all of them.

tests/workflow/test_graph_plan.py builds every registered model on a cache that holds exactly
the graphs planned for it and checks that each one is read and none is computed in memory,
so this table cannot drift from the models. This module reads only the study plan (no torch):
the workflow imports it to build its job graph. Answers are remembered per plan object (a
plan is not changed once built).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Iterable

if TYPE_CHECKING:
    from crane.study import StudyPlan

MEAN_COSINE = "mean_cosine"
MEAN_COSINE_MODELS = frozenset({"itemknn_cbf"})


@dataclass(frozen=True, order=True)
class KnnGraph:
    source: str  # a feature modality, or MEAN_COSINE (all of the dataset's modalities)
    k: int
    # A mean-cosine graph over fewer modalities than the dataset has: those, sorted; empty
    # for all of them (and for a modality's own graph).
    subset: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        """The graph's file stem in the graphs folder (crane/layout.py)."""
        return f"{'_'.join((self.source, *self.subset))}-k{self.k}"

    def modalities(self, dataset_modalities: Iterable[str]) -> list[str]:
        """The feature modalities the graph is computed from."""
        if self.source != MEAN_COSINE:
            return [self.source]
        return list(self.subset) or sorted(dataset_modalities)


def graphs_read_by(model: str, hparams: dict[str, Any], modalities: Iterable[str],
                   dataset_modalities: Iterable[str] | None = None) -> set[KnnGraph]:
    """The graphs one run of `model` at `hparams` reads when given the features of
    `modalities`, on a dataset with `dataset_modalities` (default: the same)."""
    modalities = sorted(modalities)
    if not modalities:
        return set()
    if model in MEAN_COSINE_MODELS:
        k = int(hparams["knn_k"])
        fewer = dataset_modalities is not None and set(modalities) != set(dataset_modalities)
        return {KnnGraph(MEAN_COSINE, k + 1, tuple(modalities) if fewer else ())}
    # A modality's own `<modality>_knn_k` (SMORE's image_knn_k, text_knn_k) before `knn_k`.
    ks = {m: hparams.get(f"{m}_knn_k", hparams.get("knn_k")) for m in modalities}
    return {KnnGraph(m, int(k)) for m, k in ks.items() if k is not None}


@lru_cache(maxsize=None)
def _selectable(plan: StudyPlan, model: str) -> tuple[dict[str, Any], ...]:
    if plan.needs_selection(model):
        return tuple(plan.grid_points(model).values())
    return (plan.default_hparams(model),)


def selectable_points(plan: StudyPlan, model: str) -> list[dict[str, Any]]:
    """The points a run at `model`'s selected point may train: every grid point while the
    selection (made on validation by a job) is not known, else the one default point."""
    return [dict(p) for p in _selectable(plan, model)]


def _modalities(plan: StudyPlan, dataset: str) -> list[str]:
    return sorted(plan.feature_dirs(dataset))


def _read_by_any(plan: StudyPlan, dataset: str, model: str, points: Iterable[dict[str, Any]],
                 modalities: Iterable[str] | None = None) -> list[KnnGraph]:
    """Graphs read by a run at any of `points` given the features of `modalities` (default:
    all of the dataset's)."""
    have = _modalities(plan, dataset)
    given = have if modalities is None else sorted(modalities)
    return sorted(set().union(*(graphs_read_by(model, p, given, have) for p in points)))


def grid_run_graphs(plan: StudyPlan, dataset: str, model: str, hp: str) -> list[KnnGraph]:
    return _read_by_any(plan, dataset, model, [plan.grid_points(model)[hp]])


def final_run_graphs(plan: StudyPlan, dataset: str, model: str) -> list[KnnGraph]:
    return _read_by_any(plan, dataset, model, selectable_points(plan, model))


def ablation_run_graphs(plan: StudyPlan, dataset: str, variant: str) -> list[KnnGraph]:
    extra = plan.ablation_switches(variant)[0]
    return _read_by_any(plan, dataset, "crane",
                        [{**p, **extra} for p in selectable_points(plan, "crane")])


def sensitivity_run_graphs(plan: StudyPlan, dataset: str, param: str,
                           value: str) -> list[KnnGraph]:
    extra = {param: plan.sensitivity_value(param, value)}
    return _read_by_any(plan, dataset, "crane",
                        [{**p, **extra} for p in selectable_points(plan, "crane")])


def modality_ablation_run_graphs(plan: StudyPlan, dataset: str, model: str,
                                 modalities: str) -> list[KnnGraph]:
    """Graphs of a modality-ablation run: those of its modalities (a set name) only."""
    return _read_by_any(plan, dataset, model, selectable_points(plan, model),
                        plan.modality_set(modalities))


def dataset_graphs(plan: StudyPlan, dataset: str) -> list[KnnGraph]:
    """Every graph that some run of `dataset` in the study reads, sorted."""
    return list(_dataset_graphs(plan, dataset))


@lru_cache(maxsize=None)
def _dataset_graphs(plan: StudyPlan, dataset: str) -> tuple[KnnGraph, ...]:
    graphs: set[KnnGraph] = set()
    for model in plan.models:
        graphs.update(final_run_graphs(plan, dataset, model))  # covers its grid points
    if plan.ablations_enabled and dataset in plan.section_scope("ablations")[0]:
        for variant in plan.ablation_variants():
            graphs.update(ablation_run_graphs(plan, dataset, variant))
    if plan.sensitivity_enabled and dataset in plan.section_scope("sensitivity")[0]:
        for param, values in plan.sensitivity_points().items():
            for value in values:
                graphs.update(sensitivity_run_graphs(plan, dataset, param, str(value)))
    if plan.modality_ablation_enabled and dataset in plan.section_scope("modality_ablation")[0]:
        for model, modalities, why in plan.modality_ablation_cells(dataset):
            if not why:
                graphs.update(modality_ablation_run_graphs(plan, dataset, model, modalities))
    return tuple(sorted(graphs))
