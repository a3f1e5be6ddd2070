# Paper-style tables and plots from the runs the config asks for (and only those: variants
# and sensitivity points are passed explicitly, so stale folders on disk are never read).


def table_inputs(wildcards):
    runs = (PLAN.final_runs() + PLAN.ablation_runs() + PLAN.sensitivity_runs()
            + PLAN.mirror_gradient_runs())
    return {
        "runs": [str(layout.run_metrics_path(run)) for run in runs],
        "stats": [str(layout.stats_table_path(R, d)) for d in PLAN.datasets],
        "selected": [PLAN.selection(d, m) for d in PLAN.datasets for m in PLAN.models
                     if PLAN.needs_selection(m)],
        # built by their own rule; listed here so that the study's target builds them too
        "modality_ablation": [str(layout.modality_ablation_table_path(R, d, "md"))
                              for d in PLAN.modality_ablation_datasets()],
    }


def report_parts():
    parts = ["main", "datasets", "hyperparameters", "user_activity", "efficiency", "convergence"]
    if PLAN.ablations_enabled:
        parts.append("ablation")
    if PLAN.sensitivity_enabled:
        parts.append("sensitivity")
    return parts


def report_options():
    options = [f"--parts {' '.join(report_parts())}"]
    if PLAN.mirror_gradient_enabled:
        options.append(f"--mirror-gradient {quoted(PLAN.mirror_gradient_models())}")
    if PLAN.ablations_enabled:
        options.append(f"--variants {' '.join(PLAN.ablation_variants())}")
        options.append(scope_options("ablation", *PLAN.section_scope("ablations")))
    if PLAN.sensitivity_enabled:
        options.append(scope_options("sensitivity", *PLAN.section_scope("sensitivity")))
        grid = [f"{p}={','.join(map(str, v))}" for p, v in PLAN.sensitivity_points().items()]
        options.append(f"--grid {' '.join(grid)}")
    return " ".join(options)


def scope_options(part, datasets, seeds):
    return f"--{part}-datasets {' '.join(datasets)} --{part}-seeds {' '.join(map(str, seeds))}"


T = str(layout.tables_dir(R))


def table(name):
    """A file of the tables rule that is not shown in the report (Markdown, LaTeX, CSV)."""
    return str(layout.table_path(R, name))


def shown(name, category, label, caption=None):
    """A table (its standalone .html page) or plot (.png) shown inline in the Snakemake
    report, under `category`, labelled for browsing. The report shows .html and .png results
    in the page; .md results could only be downloaded. One label only: the report turns a
    second label with two values into a toggle, which breaks a category of two results."""
    return report(str(layout.table_path(R, name)),
                  caption=f"../report/{caption or name.split('.')[0]}.rst",
                  category=category, labels={"table": label})


def seeds_text(seeds):
    """Seeds as the report captions read them (space separated)."""
    return " ".join(map(str, seeds))


rule tables:
    output:
        main=table("main.md"),
        main_html=shown("main.html", "Results", "main results"),
        tex=table("main.tex"),
        csv=table("main.csv"),
        metrics=table("metrics.json"),
        # One file per (dataset, model), so `dvc metrics show` prints a row per model; files,
        # not a directory(), which would hold Snakemake's timestamp file.
        headline_metrics=[table(layout.headline_metrics_name(d, m))
                          for d in PLAN.datasets for m in PLAN.models],
        datasets=table("datasets.md"),
        datasets_html=shown("datasets.html", "Datasets", "dataset statistics"),
        hyperparameters=table("hyperparameters.md"),
        hyperparameters_html=shown("hyperparameters.html", "Results",
                                   "selected hyper-parameters"),
        user_activity=table("user_activity.md"),
        user_activity_html=shown("user_activity.html", "Results", "by user activity"),
        efficiency=table("efficiency.md"),
        efficiency_html=shown("efficiency.html", "Efficiency", "training efficiency"),
        convergence=shown("convergence.png", "Efficiency", "convergence curves"),
        convergence_csv=table("convergence.csv"),
        extra=([table("ablation.md"), shown("ablation.html", "Ablations", "ablation study")]
               if PLAN.ablations_enabled else [])
        + ([table("sensitivity.md"), shown("sensitivity.png", "Ablations", "sensitivity")]
           if PLAN.sensitivity_enabled else []),
    input:
        unpack(table_inputs),
        code=code("tables"),
    params:
        datasets=" ".join(PLAN.datasets),
        models=" ".join(PLAN.models),
        seeds=" ".join(map(str, PLAN.seeds)),
        test=config["report"]["significance_test"],
        options=report_options(),
        # read by the report captions (workflow/report/*.rst), which word one seed and
        # several seeds differently
        ablation_seeds=(seeds_text(PLAN.section_scope("ablations")[1])
                        if PLAN.ablations_enabled else ""),
        sensitivity_seeds=(seeds_text(PLAN.section_scope("sensitivity")[1])
                           if PLAN.sensitivity_enabled else ""),
    log:
        str(layout.study_log_path(R, "tables")),
    localrule: True
    shell:
        "{CRANE} tables --results {R:q} --out {T:q} --datasets {params.datasets}"
        " --models {params.models} --seeds {params.seeds} --test {params.test}"
        " {params.options} > {log:q} 2>&1"


# The modality ablation (config `modality_ablation`): one table per dataset, model x modality
# set, from the modality-ablation runs and the final runs (the set of all modalities).
def modality_table_inputs(wildcards):
    runs = [run for run in PLAN.modality_ablation_runs()
            if run.startswith(f"{layout.runs_root(R, wildcards.dataset)}/")]
    runs += [PLAN.final_run(wildcards.dataset, m, s)
             for m in PLAN.modality_ablation_baselines()
             for s in PLAN.section_scope("modality_ablation")[1]]
    return [str(layout.run_metrics_path(run)) for run in runs]


def modality_table_options(wildcards):
    d = wildcards.dataset
    sets = [layout.modality_set_name(s) for s in PLAN.modality_sets(d)]
    requires = [f"{m}={layout.modality_set_name(PLAN.required_modalities(m))}"
                for m in PLAN.modality_ablation_models() if PLAN.required_modalities(m)]
    options = [f"--models {quoted(PLAN.modality_ablation_models())}",
               f"--sets {quoted(sets)}",
               f"--all-set {shlex.quote(layout.modality_set_name(PLAN.dataset_modalities(d)))}",
               f"--seeds {quoted(PLAN.section_scope('modality_ablation')[1])}"]
    if requires:
        options.append(f"--requires {quoted(requires)}")
    if PLAN.modality_ablation_baselines():
        options.append(f"--baselines {quoted(PLAN.modality_ablation_baselines())}")
    return " ".join(options)


rule modality_ablation_table:
    output:
        md=str(layout.modality_ablation_table_path(R, "{dataset}", "md")),
        tex=str(layout.modality_ablation_table_path(R, "{dataset}", "tex")),
        csv=str(layout.modality_ablation_table_path(R, "{dataset}", "csv")),
        html=report(str(layout.modality_ablation_table_path(R, "{dataset}", "html")),
                    caption="../report/modality_ablation.rst", category="Ablations",
                    labels={"table": "modality ablation {dataset}"}),
    input:
        runs=modality_table_inputs,
        code=code("modality-table"),
    params:
        out=lambda w: layout.modality_ablation_table_path(R, w.dataset, "md").parent,
        options=modality_table_options,
    log:
        str(layout.study_log_path(R, "modality_ablation_{dataset}")),
    localrule: True
    shell:
        "{CRANE} modality-table --results {R:q} --out {params.out:q} --dataset {wildcards.dataset:q}"
        " {params.options} > {log:q} 2>&1"
