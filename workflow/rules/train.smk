# Training runs: grid points on the tuning seed, the selection on validation, the selected
# point on every seed, CRANE's ablation variants and sensitivity sweeps, the content
# models' modality ablation, and Mirror Gradient runs.

# The config's own folder of model files, when it names one (else the packaged files).
MODEL_CONFIG = (f"--model-config {shlex.quote(config['models_dir'])}"
                if config.get("models_dir") else "")


def run_inputs(model, graphs, modalities=lambda w: None):
    """Inputs of a training rule: the split, the features (of `modalities(wildcards)`, default
    all of the dataset's), and the kNN graphs the run may read (`graphs(wildcards)`), so a run
    waits for exactly those graph jobs."""

    def inputs(wildcards):
        return {
            "interactions": str(layout.interactions_path(R, wildcards.dataset)),
            "features": feature_matrices(wildcards.dataset, modalities(wildcards)),
            "graphs": graph_records(wildcards.dataset, graphs(wildcards)),
            "code": code(TRAIN_COMMAND, [model(wildcards)]),
        }

    return inputs


def run_mem_mb(wildcards, input):
    """Memory of one training run: a floor for the interpreter and torch, plus room for the
    features, graphs and optimiser state, which scale with the inputs (about 8x their size
    covers Adam on trainable feature tables)."""
    # Sizes from os.path, not `input.size_mb`: Snakemake evaluates resources inside its event
    # loop while building the report, where `size_mb` leaves a coroutine never awaited.
    size_mb = sum(os.path.getsize(f) for f in input if os.path.exists(f)) / 2**20
    return int(max(2000, 1500 + 8 * size_mb))


RUN_RESOURCES = dict(mem_mb=run_mem_mb, runtime=720)
# torch uses as many threads as the job was given: two jobs with two threads each on two
# cores would spin against each other.
RUN_SHELL = (
    "OMP_NUM_THREADS={threads} {CRANE} " + TRAIN_COMMAND + " --dataset {wildcards.dataset:q}"
    " --data {params.data:q} {params.features}"
    " --cache {params.cache:q} --model {params.model:q} --seed {wildcards.seed:q}"
    " --training {params.training} --device {DEVICE:q} {MODEL_CONFIG} {params.hparams}"
    " --out {params.out:q}"
    " > {log:q} 2>&1"
)


def run_params(model, out, hparams, modalities=lambda w: None):
    """Parameters shared by every training rule; `hparams` is the hyper-parameter argument,
    `modalities(wildcards)` the features given (default: all of the dataset's)."""
    return dict(
        data=lambda w: layout.data_dir(R, w.dataset),
        features=lambda w: feature_args(w.dataset, modalities(w)),
        cache=lambda w: layout.graph_dir(R, w.dataset),
        model=model,
        training=q(TRAINING),
        hparams=hparams,
        out=out,
    )


rule train_grid_point:
    output:
        str(layout.run_metrics_path(layout.grid_run_dir(R, "{dataset}", "{model}", "{hp}", "{seed}"))),
    input:
        unpack(run_inputs(lambda w: w.model,
                          lambda w: graph_plan.grid_run_graphs(PLAN, w.dataset, w.model, w.hp))),
    params:
        **run_params(
            model=lambda w: w.model,
            out=lambda w: PLAN.grid_run(w.dataset, w.model, w.hp, w.seed),
            hparams=lambda w: "--hparams " + q(PLAN.grid_points(w.model)[w.hp]),
        ),
    log:
        log_file("runs/{model}_{hp}_seed{seed}"),
    benchmark:
        bench_file("grid_{model}_{hp}_seed{seed}")
    resources:
        **RUN_RESOURCES,
    shell:
        RUN_SHELL


rule select:
    output:
        str(layout.selection_path(R, "{dataset}", "{model}")),
    input:
        runs=lambda w: [str(layout.run_metrics_path(run))
                        for run in PLAN.tuning_runs(w.dataset, w.model)],
        code=code("select"),
    params:
        runs=lambda w: quoted(PLAN.tuning_runs(w.dataset, w.model)),
        metric=TRAINING["valid_metric"],
    log:
        log_file("select_{model}"),
    localrule: True
    shell:
        "{CRANE} select --runs {params.runs} --metric {params.metric:q} --out {output:q} > {log:q} 2>&1"


def selected_hparams(dataset, model):
    """--selected FILE when a grid is searched, else the default point inline."""
    if PLAN.needs_selection(model):
        return f"--selected {shlex.quote(PLAN.selection(dataset, model))}"
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
        return f"--reuse-from {shlex.quote(PLAN.grid_runs_root(wildcards.dataset, wildcards.model))}"
    return ""


rule train_final:
    output:
        report(
            str(layout.run_metrics_path(layout.final_run_dir(R, "{dataset}", "{model}", "{seed}"))),
            caption="../report/run.rst",
            category="Runs",
            subcategory="{dataset}",
            labels={"dataset": "{dataset}", "model": "{model}", "seed": "{seed}"},
        ),
    input:
        unpack(run_inputs(lambda w: w.model,
                          lambda w: graph_plan.final_run_graphs(PLAN, w.dataset, w.model))),
        selected=selection_input(lambda w: w.model),
    params:
        **run_params(
            model=lambda w: w.model,
            out=lambda w: PLAN.final_run(w.dataset, w.model, w.seed),
            hparams=lambda w: f"{selected_hparams(w.dataset, w.model)} {tuning_run(w)}",
        ),
    log:
        log_file("final/{model}_seed{seed}"),
    benchmark:
        str(layout.train_benchmark_path(R, "{dataset}", "{model}", "{seed}"))
    resources:
        **RUN_RESOURCES,
    shell:
        RUN_SHELL


rule train_ablation:
    output:
        str(layout.run_metrics_path(layout.ablation_run_dir(R, "{dataset}", "{variant}", "{seed}"))),
    input:
        unpack(run_inputs(lambda w: "crane",
                          lambda w: graph_plan.ablation_run_graphs(PLAN, w.dataset, w.variant))),
        selected=selection_input(lambda w: "crane"),
    params:
        **run_params(
            model="crane",
            out=lambda w: PLAN.ablation_run(w.dataset, w.variant, w.seed),
            hparams=lambda w: f"{selected_hparams(w.dataset, 'crane')} "
            + PLAN.ablation_arguments(w.variant),
        ),
    log:
        log_file("ablations/{variant}_seed{seed}"),
    benchmark:
        bench_file("ablation_{variant}_seed{seed}")
    resources:
        **RUN_RESOURCES,
    shell:
        RUN_SHELL


rule train_sensitivity:
    output:
        str(layout.run_metrics_path(
            layout.sensitivity_run_dir(R, "{dataset}", "{param}", "{value}", "{seed}"))),
    input:
        unpack(run_inputs(lambda w: "crane", lambda w: graph_plan.sensitivity_run_graphs(
            PLAN, w.dataset, w.param, w.value))),
        selected=selection_input(lambda w: "crane"),
    params:
        **run_params(
            model="crane",
            out=lambda w: PLAN.sensitivity_run(w.dataset, w.param, w.value, w.seed),
            hparams=lambda w: f"{selected_hparams(w.dataset, 'crane')} --extra "
            + q({w.param: PLAN.sensitivity_value(w.param, w.value)}),
        ),
    log:
        log_file("sensitivity/{param}_{value}_seed{seed}"),
    benchmark:
        bench_file("sensitivity_{param}_{value}_seed{seed}")
    resources:
        **RUN_RESOURCES,
    shell:
        RUN_SHELL


# A content model fed the features of fewer modalities, at its selected point (the set of
# all the dataset's modalities is the final run: crane/study.py never asks for it here).
rule train_modality_ablation:
    output:
        str(layout.run_metrics_path(layout.modality_ablation_run_dir(
            R, "{dataset}", "{model}", "{modalities}", "{seed}"))),
    input:
        unpack(run_inputs(lambda w: w.model, lambda w: graph_plan.modality_ablation_run_graphs(
            PLAN, w.dataset, w.model, w.modalities), lambda w: PLAN.modality_set(w.modalities))),
        selected=selection_input(lambda w: w.model),
    params:
        **run_params(
            model=lambda w: w.model,
            out=lambda w: PLAN.modality_ablation_run(w.dataset, w.model, w.modalities, w.seed),
            hparams=lambda w: selected_hparams(w.dataset, w.model),
            modalities=lambda w: PLAN.modality_set(w.modalities),
        ),
    log:
        log_file("modality_ablation/{model}_{modalities}_seed{seed}"),
    benchmark:
        bench_file("modality_ablation_{model}_{modalities}_seed{seed}")
    resources:
        **RUN_RESOURCES,
    shell:
        RUN_SHELL


# A model at its selected point trained once more with Mirror Gradient (config
# `mirror_gradient`); the trainer's other settings are the study's.
rule train_mirror_gradient:
    output:
        str(layout.run_metrics_path(layout.mirror_gradient_run_dir(
            R, "{dataset}", "{model}", "{seed}"))),
    input:
        unpack(run_inputs(lambda w: w.model,
                          lambda w: graph_plan.final_run_graphs(PLAN, w.dataset, w.model))),
        selected=selection_input(lambda w: w.model),
    params:
        **run_params(
            model=lambda w: w.model,
            out=lambda w: PLAN.mirror_gradient_run(w.dataset, w.model, w.seed),
            hparams=lambda w: f"{selected_hparams(w.dataset, w.model)}"
            " --set training.mirror_gradient=true",
        ),
    log:
        log_file("mirror_gradient/{model}_seed{seed}"),
    benchmark:
        bench_file("mirror_gradient_{model}_seed{seed}")
    resources:
        **RUN_RESOURCES,
    shell:
        RUN_SHELL


rule runs_index:
    output:
        str(layout.runs_index_path(R, "{dataset}")),
    input:
        runs=lambda w: [str(layout.run_metrics_path(run)) for run in PLAN.dataset_runs(w.dataset)],
        code=code("runs-index"),
    params:
        runs=lambda w: quoted(PLAN.dataset_runs(w.dataset)),
    log:
        log_file("runs_index"),
    localrule: True
    shell:
        "{CRANE} runs-index --out {output:q} {params.runs} > {log:q} 2>&1"
