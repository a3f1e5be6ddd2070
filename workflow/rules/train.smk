# Training runs: grid points on the tuning seed, the selection on validation, the selected
# point on every seed, and CRANE's ablation variants and sensitivity sweeps.


def run_inputs(wildcards):
    return {
        "interactions": f"{PLAN.data_dir(wildcards.dataset)}/interactions.parquet",
        "features": feature_inputs(wildcards),
        "graphs": f"{R}/{wildcards.dataset}/graphs/index.json",
    }


def run_mem_mb(wildcards, input):
    """Memory of one training run: a floor for the interpreter and torch, plus room for the
    features, graphs and optimiser state, which scale with the inputs (about 8x their size
    was measured to cover Adam on trainable feature tables)."""
    return int(max(2000, 1500 + 8 * input.size_mb))


RUN_RESOURCES = dict(mem_mb=run_mem_mb, runtime=720)
# torch uses as many threads as the job was given: two jobs with two threads each on two
# cores spin against each other (measured 3-5x slower epochs on the demo).
RUN_SHELL = (
    "OMP_NUM_THREADS={threads} {CRANE} run --dataset {wildcards.dataset} --data {params.data} {params.features}"
    " --cache {params.cache} --model {params.model} --seed {wildcards.seed}"
    " --training {params.training} --device {DEVICE} {params.hparams} --out {params.out}"
    " > {log} 2>&1"
)


def run_params(model, out, hparams):
    """Parameters shared by every training rule; `hparams` is the hyper-parameter argument."""
    return dict(
        data=lambda w: PLAN.data_dir(w.dataset),
        features=lambda w: feature_args(w.dataset),
        cache=lambda w: f"{R}/{w.dataset}/graphs",
        model=model,
        training=q(TRAINING),
        hparams=hparams,
        out=out,
    )


rule train_grid_point:
    output:
        f"{R}/{{dataset}}/runs/grid/{{model}}/{{hp}}/seed{{seed}}/metrics.json",
    input:
        unpack(run_inputs),
        code=lambda w: ENGINE_CODE + model_code(w.model),
    params:
        **run_params(
            model=lambda w: w.model,
            out=lambda w: PLAN.grid_run(w.dataset, w.model, w.hp, w.seed),
            hparams=lambda w: "--hparams " + q(PLAN.grid_points(w.model)[w.hp]),
        ),
    log:
        f"{R}/{{dataset}}/logs/runs/{{model}}_{{hp}}_seed{{seed}}.log",
    benchmark:
        f"{R}/{{dataset}}/benchmarks/grid_{{model}}_{{hp}}_seed{{seed}}.tsv"
    resources:
        **RUN_RESOURCES,
    shell:
        RUN_SHELL


rule select:
    output:
        f"{R}/{{dataset}}/runs/selected/{{model}}.json",
    input:
        lambda w: [f"{run}/metrics.json" for run in PLAN.tuning_runs(w.dataset, w.model)],
    params:
        runs=lambda w: " ".join(PLAN.tuning_runs(w.dataset, w.model)),
        metric=TRAINING["valid_metric"],
    log:
        f"{R}/{{dataset}}/logs/select_{{model}}.log",
    localrule: True
    shell:
        "{CRANE} select --runs {params.runs} --metric {params.metric} --out {output} > {log} 2>&1"


def selected_hparams(dataset, model):
    """--selected FILE when a grid is searched, else the default point inline."""
    if PLAN.needs_selection(model):
        return f"--selected {PLAN.selection(dataset, model)}"
    return "--hparams " + q(PLAN.default_hparams(model))


def selection_input(model):
    def inputs(wildcards):
        if PLAN.needs_selection(model(wildcards)):
            return [PLAN.selection(wildcards.dataset, model(wildcards))]
        return []

    return inputs


def tuning_run(wildcards):
    """The seed-0 grid run of the selected point is reused, not retrained."""
    if PLAN.needs_selection(wildcards.model) and int(wildcards.seed) == PLAN.tuning_seed:
        return f"--reuse-from {PLAN.grid_runs_root(wildcards.dataset, wildcards.model)}"
    return ""


rule train_final:
    output:
        report(
            f"{R}/{{dataset}}/runs/final/{{model}}/seed{{seed}}/metrics.json",
            caption="../report/run.rst",
            category="Runs",
            subcategory="{dataset}",
            labels={"dataset": "{dataset}", "model": "{model}", "seed": "{seed}"},
        ),
    input:
        unpack(run_inputs),
        selected=selection_input(lambda w: w.model),
        code=lambda w: ENGINE_CODE + model_code(w.model),
    params:
        **run_params(
            model=lambda w: w.model,
            out=lambda w: PLAN.final_run(w.dataset, w.model, w.seed),
            hparams=lambda w: f"{selected_hparams(w.dataset, w.model)} {tuning_run(w)}",
        ),
    log:
        f"{R}/{{dataset}}/logs/final/{{model}}_seed{{seed}}.log",
    benchmark:
        f"{R}/{{dataset}}/benchmarks/train_{{model}}_seed{{seed}}.tsv"
    resources:
        **RUN_RESOURCES,
    shell:
        RUN_SHELL


rule train_ablation:
    output:
        f"{R}/{{dataset}}/runs/ablations/{{variant}}/seed{{seed}}/metrics.json",
    input:
        unpack(run_inputs),
        selected=selection_input(lambda w: "crane"),
        code=ENGINE_CODE + model_code("crane"),
    params:
        **run_params(
            model="crane",
            out=lambda w: PLAN.ablation_run(w.dataset, w.variant, w.seed),
            hparams=lambda w: f"{selected_hparams(w.dataset, 'crane')} --extra "
            + q(PLAN.ablation_variants()[w.variant]),
        ),
    log:
        f"{R}/{{dataset}}/logs/ablations/{{variant}}_seed{{seed}}.log",
    benchmark:
        f"{R}/{{dataset}}/benchmarks/ablation_{{variant}}_seed{{seed}}.tsv"
    resources:
        **RUN_RESOURCES,
    shell:
        RUN_SHELL


rule train_sensitivity:
    output:
        f"{R}/{{dataset}}/runs/sensitivity/{{param}}/{{value}}/seed{{seed}}/metrics.json",
    input:
        unpack(run_inputs),
        selected=selection_input(lambda w: "crane"),
        code=ENGINE_CODE + model_code("crane"),
    params:
        **run_params(
            model="crane",
            out=lambda w: PLAN.sensitivity_run(w.dataset, w.param, w.value, w.seed),
            hparams=lambda w: f"{selected_hparams(w.dataset, 'crane')} --extra "
            + q({w.param: PLAN.sensitivity_value(w.param, w.value)}),
        ),
    log:
        f"{R}/{{dataset}}/logs/sensitivity/{{param}}_{{value}}_seed{{seed}}.log",
    benchmark:
        f"{R}/{{dataset}}/benchmarks/sensitivity_{{param}}_{{value}}_seed{{seed}}.tsv"
    resources:
        **RUN_RESOURCES,
    shell:
        RUN_SHELL


rule runs_index:
    output:
        f"{R}/{{dataset}}/runs/index.json",
    input:
        lambda w: [f"{run}/metrics.json" for run in PLAN.dataset_runs(w.dataset)],
    params:
        runs=lambda w: " ".join(PLAN.dataset_runs(w.dataset)),
    log:
        f"{R}/{{dataset}}/logs/runs_index.log",
    localrule: True
    shell:
        "{CRANE} runs-index --out {output} {params.runs} > {log} 2>&1"
