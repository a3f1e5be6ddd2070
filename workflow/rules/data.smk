# Acquire raw files (download, or generate the demo), then k-core, ids and split.


rule acquire:
    output:
        str(layout.acquired_path(R, "{dataset}")),
    input:
        code=code("acquire"),
    params:
        spec=lambda w: q(config["datasets"][w.dataset]),
        raw=lambda w: layout.raw_dir(R, w.dataset),
    log:
        log_file("acquire"),
    benchmark:
        bench_file("acquire")
    resources:
        mem_mb=2000,
        runtime=240,
    shell:
        "{CRANE} acquire --dataset {wildcards.dataset:q} --spec {params.spec} --out {params.raw:q} > {log:q} 2>&1"


rule preprocess:
    output:
        interactions=str(layout.interactions_path(R, "{dataset}")),
        item_table=str(layout.items_path(R, "{dataset}")),
        stats=str(layout.stats_path(R, "{dataset}")),
    input:
        raw=str(layout.acquired_path(R, "{dataset}")),
        code=code("preprocess"),
    params:
        spec=lambda w: q(config["datasets"][w.dataset]),
        raw=lambda w: layout.raw_dir(R, w.dataset),
        out=lambda w: layout.data_dir(R, w.dataset),
    log:
        log_file("preprocess"),
    benchmark:
        bench_file("preprocess")
    resources:
        mem_mb=8000,
        runtime=60,
    shell:
        "{CRANE} preprocess --dataset {wildcards.dataset:q} --spec {params.spec} --raw {params.raw:q}"
        " --out {params.out:q} > {log:q} 2>&1"


rule dataset_stats:
    output:
        str(layout.stats_table_path(R, "{dataset}")),
    input:
        stats=str(layout.stats_path(R, "{dataset}")),
        code=code("stats"),
    params:
        data=lambda w: layout.data_dir(R, w.dataset),
    log:
        log_file("stats"),
    localrule: True
    shell:
        "{CRANE} stats --data {params.data:q} --out {output:q} > {log:q} 2>&1"
