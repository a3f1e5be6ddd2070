# Paper-style tables and plots from whatever runs the config asks for.


def table_inputs(wildcards):
    runs = PLAN.final_runs() + PLAN.ablation_runs() + PLAN.sensitivity_runs()
    return {
        "runs": [f"{run}/metrics.json" for run in runs],
        "stats": [f"{PLAN.data_dir(d)}/stats.md" for d in PLAN.datasets],
        "selected": [PLAN.selection(d, m) for d in PLAN.datasets for m in PLAN.models
                     if PLAN.needs_selection(m)],
    }


rule tables:
    output:
        main=report(f"{R}/tables/main.md", caption="../report/main.rst", category="Results",
                    labels={"table": "main results"}),
        tex=f"{R}/tables/main.tex",
        csv=f"{R}/tables/main.csv",
        metrics=f"{R}/tables/metrics.json",
        convergence=report(f"{R}/tables/convergence.png", caption="../report/convergence.rst",
                           category="Results", labels={"figure": "convergence"}),
    input:
        unpack(table_inputs),
        code=code("crane/report/*.py"),
    params:
        datasets=" ".join(PLAN.datasets),
        models=" ".join(PLAN.models),
        seeds=" ".join(map(str, PLAN.seeds)),
        test=config["report"]["significance_test"],
        out=f"{R}/tables",
    log:
        f"{R}/logs/tables.log",
    localrule: True
    shell:
        "crane tables --results {R} --out {params.out} --datasets {params.datasets}"
        " --models {params.models} --seeds {params.seeds} --test {params.test} > {log} 2>&1"
