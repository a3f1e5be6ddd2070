# Paper-style tables and plots from the runs the config asks for (and only those: variants
# and sensitivity points are passed explicitly, so stale folders on disk are never read).


def table_inputs(wildcards):
    runs = PLAN.final_runs() + PLAN.ablation_runs() + PLAN.sensitivity_runs()
    return {
        "runs": [str(layout.run_metrics_path(run)) for run in runs],
        "stats": [str(layout.stats_table_path(R, d)) for d in PLAN.datasets],
        "selected": [PLAN.selection(d, m) for d in PLAN.datasets for m in PLAN.models
                     if PLAN.needs_selection(m)],
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


def table(name, category, caption=None):
    """A table or plot of the Snakemake report, labelled for browsing."""
    return report(str(layout.table_path(R, name)),
                  caption=f"../report/{caption or name.split('.')[0]}.rst",
                  category=category, labels={"output": name})


rule tables:
    output:
        main=table("main.md", "Results"),
        tex=str(layout.table_path(R, "main.tex")),
        csv=str(layout.table_path(R, "main.csv")),
        metrics=str(layout.table_path(R, "metrics.json")),
        datasets=table("datasets.md", "Datasets"),
        hyperparameters=table("hyperparameters.md", "Results"),
        user_activity=table("user_activity.md", "Results"),
        efficiency=table("efficiency.md", "Efficiency"),
        convergence=table("convergence.png", "Efficiency"),
        convergence_csv=str(layout.table_path(R, "convergence.csv")),
        extra=([table("ablation.md", "Ablations")] if PLAN.ablations_enabled else [])
        + ([table("sensitivity.png", "Ablations")] if PLAN.sensitivity_enabled else []),
    input:
        unpack(table_inputs),
        code=code("tables"),
    params:
        datasets=" ".join(PLAN.datasets),
        models=" ".join(PLAN.models),
        seeds=" ".join(map(str, PLAN.seeds)),
        test=config["report"]["significance_test"],
        options=report_options(),
    log:
        str(layout.study_log_path(R, "tables")),
    localrule: True
    shell:
        "{CRANE} tables --results {R} --out {T} --datasets {params.datasets}"
        " --models {params.models} --seeds {params.seeds} --test {params.test}"
        " {params.options} > {log} 2>&1"
