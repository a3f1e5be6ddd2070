"""The study plan: which runs a validated config asks for, and where each one lives.

The Snakefile is a thin layer over this module, so the job grid is plain, tested Python:
datasets x models x seeds, grid points on the tuning seed, ablation variants and sensitivity
points, each with its resolved hyper-parameters.

Tuning policy (docs/protocol.md): with `tuning: grid` a model's grid is searched on the first seed,
the point with the best *validation* metric is selected, and that point alone runs on every
seed (`final/`). With `tuning: default` the model's default point runs on every seed.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any

from crane.config import IMAGE_FILE_ENCODERS, ConfigError
from crane import layout, tuning
from crane.tuning import hp_hash

# The `crane` subcommand that trains one run of the plan (the training rules call it, and
# its code inputs are computed from it: crane/code_inputs.py).
TRAIN_COMMAND = "train"


@dataclass(frozen=True)
class ModelSpec:
    """A model's file (crane.tuning.load_model_config) with the study's overrides applied."""

    name: str
    config: dict[str, Any]

    @classmethod
    def load(cls, name: str, models_dir: Path, overrides: dict[str, Any] | None = None,
             grid: dict[str, list[Any]] | None = None) -> "ModelSpec":
        try:
            config = tuning.load_model_config(name, models_dir)
            # A study override fixes a key, so it leaves the grid; a grid override replaces
            # the values a key searches (a key both fix and search is refused).
            both = sorted(set(overrides or {}) & set(grid or {}))
            if both:
                raise ValueError(f"model_overrides.{name} and grid_overrides.{name} both set "
                                 f"{both}: fix a key or search it, not both")
            config = tuning.with_grid(config, grid, f"grid_overrides.{name}")
            config = tuning.with_overrides(config, overrides, f"model_overrides.{name}")
        except (FileNotFoundError, ValueError) as error:
            raise ConfigError(str(error)) from None
        return cls(name, config)

    @property
    def defaults(self) -> dict[str, Any]:
        """The default point: model defaults and the trainer settings the file declares."""
        return tuning.default_point(self.config)

    @property
    def ablations(self) -> dict[str, dict[str, Any]]:
        return self.config.get("ablations") or {}

    @property
    def sensitivity(self) -> dict[str, list[Any]]:
        return self.config.get("sensitivity") or {}

    def grid_points(self) -> list[dict[str, Any]]:
        """Cartesian product of the grid over the default point (crane.tuning.grid_points)."""
        return tuning.grid_points(self.config)


@lru_cache(maxsize=None)
def _model_class(name: str):
    """A registered model's class, for its content flags (imports torch: called only when a
    study's check or its modality ablation needs them)."""
    from crane import models

    try:
        return models.get(name)
    except KeyError as error:
        raise ConfigError(f"invalid config: models: {error.args[0]}") from None


class StudyPlan:
    """Every output path the workflow can produce for one validated config."""

    def __init__(self, config: dict[str, Any]):
        self.config = config
        self.results = config["results"]
        self.models_dir = tuning.model_configs_dir(config.get("models_dir"))
        self.seeds: list[int] = list(config["seeds"])
        self.tuning_seed = self.seeds[0]
        self.datasets: list[str] = list(config["datasets"])
        self.models: list[str] = list(config["models"])

    @cached_property
    def specs(self) -> dict[str, ModelSpec]:
        names = set(self.models)
        if self.ablations_enabled or self.sensitivity_enabled:
            names.add("crane")
        overrides = self.config.get("model_overrides", {})
        grids = self.config.get("grid_overrides", {})
        return {m: ModelSpec.load(m, self.models_dir, overrides.get(m), grids.get(m))
                for m in sorted(names)}

    # ---- hyper-parameters -------------------------------------------------------------
    def check_points(self) -> None:
        """Check every hyper-parameter point the study will train (default or grid points,
        CRANE's ablation variants and sensitivity values) against its model's typed config
        and the trainer settings, so that a misspelt or out-of-range value stops the workflow
        before any job runs (instead of failing inside a training job)."""
        from crane import models
        from crane.engine.settings import TrainingConfig, split_point

        self.check_modalities()
        self.mirror_gradient_models()  # its own checks
        training = TrainingConfig.from_dict(self.config.get("training"))
        for name, spec in self.specs.items():
            points = [("", p) for p in self.grid_points(name).values()]
            if name == "crane" and self.ablations_enabled:
                crane_file = tuning.model_config_path(name, self.models_dir)
                for variant in self.ablation_variants():
                    switches, trainer = self.ablation_switches(variant)
                    points.append((f"ablation {variant!r}", {**spec.defaults, **switches}))
                    try:
                        training.updated(trainer)
                    except (TypeError, ValueError) as error:
                        raise ConfigError(f"invalid config: {crane_file} (ablation {variant!r}): "
                                          f"{error}") from None
            if name == "crane" and self.sensitivity_enabled:
                points += [(f"sensitivity {p}={v!r}", {**spec.defaults, p: v})
                           for p, values in self.sensitivity_points().items() for v in values]
            where = (f"model_overrides.{name} / {tuning.model_config_path(name, self.models_dir)}")
            try:
                config_class = models.get(name).config_class
            except KeyError as error:
                raise ConfigError(f"invalid config: models: {error.args[0]}") from None
            for label, point in points:
                try:
                    model_hp, trainer = split_point(name, point, tuning.training_keys(spec.config))
                    if config_class is not None:
                        config_class.from_hparams(name, model_hp)
                    training.updated(trainer)
                except (TypeError, ValueError) as error:
                    raise ConfigError(f"invalid config: {where}{' (' + label + ')' if label else ''}: "
                                      f"{error}") from None

    def check_modalities(self) -> None:
        """Refuse, before any job runs, a content model on a dataset without the features it
        reads: any modality for most (crane/models/base.py `uses_content`), each of its
        `required_modalities` for a model built on their interplay."""
        for dataset in self.datasets:
            have = self.dataset_modalities(dataset)
            for model in self.models_on(dataset):
                model_class = _model_class(model)
                if model_class.uses_content and not have:
                    raise ConfigError(
                        f"invalid config: datasets.{dataset} has no `features`, and model "
                        f"{model!r} reads item content: give datasets.{dataset}.features (e.g. "
                        f"{{text: <encoder>}}), or run {model!r} in a study without {dataset!r} "
                        f"(models that read no content run on it: mostpop, bpr, lightgcn, ...)")
                missing = [m for m in model_class.required_modalities if m not in have]
                if model_class.uses_content and missing:
                    raise ConfigError(
                        f"invalid config: model {model!r} needs the {' and '.join(missing)} "
                        f"features by construction, and datasets.{dataset}.features has "
                        f"{sorted(have)}: add them, or run {model!r} in a study without "
                        f"{dataset!r}")
        self.modality_ablation_models()  # its own checks

    def models_on(self, dataset: str) -> list[str]:
        """The models the study trains on `dataset`: its models, and CRANE where the ablations
        or the sensitivity sweep run on it."""
        names = list(self.models)
        for section, enabled in (("ablations", self.ablations_enabled),
                                 ("sensitivity", self.sensitivity_enabled)):
            if enabled and dataset in self.section_scope(section)[0] and "crane" not in names:
                names.append("crane")
        return names

    def dataset_modalities(self, dataset: str) -> tuple[str, ...]:
        return tuple(sorted(self.config["datasets"][dataset].get("features") or {}))

    @property
    def grid_search(self) -> bool:
        return self.config.get("tuning", "default") == "grid"

    def grid_points(self, model: str) -> dict[str, dict[str, Any]]:
        """hp-hash -> hyper-parameters of every point searched on the tuning seed."""
        points = self.specs[model].grid_points() if self.grid_search else [self.specs[model].defaults]
        return {hp_hash(p): p for p in points}

    def needs_selection(self, model: str) -> bool:
        return self.grid_search and len(self.grid_points(model)) > 1

    def default_hparams(self, model: str) -> dict[str, Any]:
        return dict(self.specs[model].defaults)

    # ---- paths (crane/layout.py), as strings for Snakemake --------------------------------
    def data_dir(self, dataset: str) -> str:
        return str(layout.data_dir(self.results, dataset))

    def feature_dir(self, dataset: str, modality: str) -> str:
        encoder = self.config["datasets"][dataset]["features"][modality]
        return str(layout.feature_dir(self.results, dataset, modality, encoder))

    def feature_dirs(self, dataset: str, modalities: tuple[str, ...] | None = None
                     ) -> dict[str, str]:
        """Feature folders of the dataset's modalities (or of `modalities` only)."""
        wanted = self.dataset_modalities(dataset) if modalities is None else modalities
        return {m: self.feature_dir(dataset, m) for m in sorted(wanted)}

    def needs_image_fetch(self, dataset: str) -> bool:
        """Real datasets whose image encoder reads image files fetch them after preprocessing
        (the demo generates its images; MMRec folders and pair files bring none)."""
        spec = self.config["datasets"][dataset]
        encoder = spec.get("features", {}).get("image")
        if encoder is None or spec["source"]["type"] in {"demo", "mmrec", "pairs_csv"}:
            return False
        return self.config["encoders"][encoder]["type"] in IMAGE_FILE_ENCODERS

    def images_report(self, dataset: str) -> str:
        return str(layout.raw_dir(self.results, dataset) / "images.json")

    def grid_run(self, dataset: str, model: str, hp: str, seed: int | str) -> str:
        return str(layout.grid_run_dir(self.results, dataset, model, hp, seed))

    def grid_runs_root(self, dataset: str, model: str) -> str:
        return str(layout.grid_runs_root(self.results, dataset, model))

    def selection(self, dataset: str, model: str) -> str:
        return str(layout.selection_path(self.results, dataset, model))

    def final_run(self, dataset: str, model: str, seed: int | str) -> str:
        return str(layout.final_run_dir(self.results, dataset, model, seed))

    def ablation_run(self, dataset: str, variant: str, seed: int | str) -> str:
        return str(layout.ablation_run_dir(self.results, dataset, variant, seed))

    def sensitivity_run(self, dataset: str, param: str, value: Any, seed: int | str) -> str:
        return str(layout.sensitivity_run_dir(self.results, dataset, param, value, seed))

    # ---- the job grid -----------------------------------------------------------------
    def final_runs(self) -> list[str]:
        return [self.final_run(d, m, s) for d in self.datasets for m in self.models for s in self.seeds]

    def tuning_runs(self, dataset: str, model: str) -> list[str]:
        return [self.grid_run(dataset, model, hp, self.tuning_seed) for hp in self.grid_points(model)]

    @property
    def ablations_enabled(self) -> bool:
        return bool(self.config.get("ablations", {}).get("enabled"))

    @property
    def sensitivity_enabled(self) -> bool:
        return bool(self.config.get("sensitivity", {}).get("enabled"))

    def section_scope(self, name: str) -> tuple[list[str], list[int]]:
        """(datasets, seeds) of the `ablations`, `sensitivity` or `modality_ablation` section:
        the study's own unless the section names fewer."""
        section = self.config.get(name, {})
        return list(section.get("datasets", self.datasets)), list(section.get("seeds", self.seeds))

    def ablation_variants(self) -> dict[str, dict[str, Any]]:
        variants = self.specs["crane"].ablations
        wanted = self.config.get("ablations", {}).get("variants")
        if wanted:
            missing = [v for v in wanted if v not in variants]
            if missing:
                raise ConfigError(f"ablations.variants: unknown variant(s) {missing}; "
                                  f"{self.models_dir / 'crane.yaml'} defines {sorted(variants)}")
            variants = {v: variants[v] for v in wanted}
        if variants.get(layout.FULL_MODEL_VARIANT):
            raise ConfigError(f"ablations: variant {layout.FULL_MODEL_VARIANT!r} is the full model "
                              f"(its runs are the final CRANE runs) and takes no overrides, got "
                              f"{variants[layout.FULL_MODEL_VARIANT]}")
        return variants

    def ablation_switches(self, variant: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """(model switches, trainer settings) of an ablation variant: a variant may change
        how the full model trains under `training:` (crane_bf16: {training: {precision: bf16}})."""
        switches = dict(self.ablation_variants()[variant])
        trainer = dict(switches.pop("training", None) or {})
        return switches, trainer

    def ablation_arguments(self, variant: str) -> str:
        """`crane train` arguments of a variant, shell-quoted: --extra for the model switches,
        --set training.KEY=VALUE for each trainer setting."""
        switches, trainer = self.ablation_switches(variant)
        words = ["--extra", json.dumps(switches, sort_keys=True)]
        for key, value in sorted(trainer.items()):
            words += ["--set", f"training.{key}={json.dumps(value)}"]
        return " ".join(shlex.quote(w) for w in words)

    def ablation_runs(self) -> list[str]:
        if not self.ablations_enabled:
            return []
        datasets, seeds = self.section_scope("ablations")
        return [self.ablation_run(d, v, s) for d in datasets for v in self.ablation_variants()
                for s in seeds]

    def sensitivity_points(self) -> dict[str, list[Any]]:
        points = self.specs["crane"].sensitivity
        wanted = self.config.get("sensitivity", {}).get("params")
        if wanted:
            missing = [p for p in wanted if p not in points]
            if missing:
                raise ConfigError(f"sensitivity.params: unknown parameter(s) {missing}; "
                                  f"{self.models_dir / 'crane.yaml'} sweeps {sorted(points)}")
            points = {p: points[p] for p in wanted}
        return points

    def sensitivity_runs(self) -> list[str]:
        if not self.sensitivity_enabled:
            return []
        datasets, seeds = self.section_scope("sensitivity")
        return [self.sensitivity_run(d, p, v, s) for d in datasets
                for p, values in self.sensitivity_points().items() for v in values for s in seeds]

    # ---- modality ablation: content models fed fewer modalities ----------------------------
    @property
    def modality_ablation_enabled(self) -> bool:
        return bool(self.config.get("modality_ablation", {}).get("enabled"))

    def modality_ablation_models(self) -> list[str]:
        """The section's `models`, else every content model of the study; each must be a
        content model the study trains (its selected point and final runs are reused)."""
        if not self.modality_ablation_enabled:
            return []
        wanted = self.config.get("modality_ablation", {}).get("models")
        if wanted is None:
            return [m for m in self.models if _model_class(m).uses_content]
        for model in wanted:
            if model not in self.models:
                raise ConfigError(f"invalid config: modality_ablation.models: {model!r} is not "
                                  f"in `models` ({', '.join(self.models)}): the ablation runs "
                                  f"a model of the study at its selected point")
            if not _model_class(model).uses_content:
                raise ConfigError(f"invalid config: modality_ablation.models: {model!r} reads "
                                  f"no item features, so it has no modality to ablate")
        return list(wanted)

    def modality_sets(self, dataset: str) -> list[tuple[str, ...]]:
        """The modality sets ablated on `dataset`: the section's `sets` that the dataset has
        features for (a set naming a modality it lacks is left out there), else each single
        modality it has; and always all of them (the final runs, the table's reference);
        sorted, each once. None on a dataset without features."""
        have = set(self.dataset_modalities(dataset))
        configured = self.config.get("modality_ablation", {}).get("sets")
        if configured is None:
            configured = [[m] for m in sorted(have)]
        configured = list(configured) + ([sorted(have)] if have else [])
        sets = {tuple(sorted(set(s))) for s in configured if s and set(s) <= have}
        return sorted(sets, key=lambda s: (len(s), s))

    def is_all_modalities(self, dataset: str, modalities: str) -> bool:
        return modalities == layout.modality_set_name(self.dataset_modalities(dataset))

    def modality_set(self, modalities: str) -> tuple[str, ...]:
        """A set's folder name back to its modalities."""
        return tuple(modalities.split(layout.MODALITY_SET_SEPARATOR))

    def modality_ablation_cells(self, dataset: str) -> list[tuple[str, str, str]]:
        """(model, set name, why not run) of every cell of the dataset's table; `why` is empty
        for a cell that runs, else says which modality the model needs by construction."""
        cells = []
        for model in self.modality_ablation_models():
            required = set(_model_class(model).required_modalities)
            for modalities in self.modality_sets(dataset):
                missing = sorted(required - set(modalities))
                why = f"needs {' and '.join(missing)}" if missing else ""
                cells.append((model, layout.modality_set_name(modalities), why))
        return cells

    def modality_ablation_datasets(self) -> list[str]:
        """The section's datasets that have features (a dataset without any has no table)."""
        if not self.modality_ablation_enabled:
            return []
        datasets, _ = self.section_scope("modality_ablation")
        return [d for d in datasets if self.modality_sets(d) and self.modality_ablation_models()]

    def modality_ablation_baselines(self) -> list[str]:
        """The study's models that read no features: the table's ID-only reference rows."""
        return [m for m in self.models if not _model_class(m).uses_content]

    def required_modalities(self, model: str) -> tuple[str, ...]:
        return tuple(_model_class(model).required_modalities)

    def modality_ablation_run(self, dataset: str, model: str, modalities: str,
                              seed: int | str) -> str:
        """The run folder of one cell; the set of all the dataset's modalities is the final run."""
        if self.is_all_modalities(dataset, modalities):
            return self.final_run(dataset, model, seed)
        return str(layout.modality_ablation_run_dir(self.results, dataset, model, modalities, seed))

    def modality_ablation_runs(self) -> list[str]:
        """Every run the modality-ablation tables read (final runs included)."""
        if not self.modality_ablation_enabled:
            return []
        datasets, seeds = self.section_scope("modality_ablation")
        return [self.modality_ablation_run(d, model, modalities, s) for d in datasets
                for model, modalities, why in self.modality_ablation_cells(d) if not why
                for s in seeds]

    # ---- Mirror Gradient: chosen models trained once more with MMRec's `mg` option --------
    @property
    def mirror_gradient_enabled(self) -> bool:
        return bool(self.config.get("mirror_gradient", {}).get("enabled"))

    def mirror_gradient_models(self) -> list[str]:
        """The section's `models`: models of the study that train by gradient steps, each
        run again at its selected point with `training.mirror_gradient` on."""
        if not self.mirror_gradient_enabled:
            return []
        wanted = self.config.get("mirror_gradient", {}).get("models")
        if not wanted:
            raise ConfigError("invalid config: mirror_gradient.models: name the models to train "
                              "with Mirror Gradient as well (each adds a run per dataset and "
                              "seed), e.g. [lightgcn, freedom]")
        if self.config.get("training", {}).get("mirror_gradient"):
            raise ConfigError("invalid config: mirror_gradient is enabled, but "
                              "training.mirror_gradient is already true, so every run uses "
                              "Mirror Gradient: switch one of the two off")
        for model in wanted:
            if model not in self.models:
                raise ConfigError(f"invalid config: mirror_gradient.models: {model!r} is not "
                                  f"in `models` ({', '.join(self.models)}): its Mirror Gradient "
                                  f"runs reuse the model's selected point")
            if not _model_class(model).trainable:
                raise ConfigError(f"invalid config: mirror_gradient.models: {model!r} takes no "
                                  f"gradient step, so Mirror Gradient changes nothing")
        return list(wanted)

    def mirror_gradient_run(self, dataset: str, model: str, seed: int | str) -> str:
        return str(layout.mirror_gradient_run_dir(self.results, dataset, model, seed))

    def mirror_gradient_runs(self) -> list[str]:
        return [self.mirror_gradient_run(d, m, s) for d in self.datasets
                for m in self.mirror_gradient_models() for s in self.seeds]

    def dataset_runs(self, dataset: str) -> list[str]:
        """Every run of one dataset that the tables read (final, ablation, sensitivity,
        modality ablation, Mirror Gradient)."""
        prefix = f"{layout.runs_root(self.results, dataset)}/"
        runs = (self.final_runs() + self.ablation_runs() + self.sensitivity_runs()
                + self.modality_ablation_runs() + self.mirror_gradient_runs())
        return [run for run in dict.fromkeys(runs) if run.startswith(prefix)]

    def sensitivity_value(self, param: str, text: str) -> Any:
        """The configured value whose folder name is `text` (folder names are str(value))."""
        for value in self.sensitivity_points().get(param, []):
            if str(value) == text:
                return value
        raise ConfigError(f"sensitivity: {param}={text} is not a configured point")
