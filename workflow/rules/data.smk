# Acquire raw files (download, or generate the demo), then k-core, ids and split.


rule acquire:
    output:
        f"{R}/{{dataset}}/raw/acquired.json",
    input:
        code=code("crane/data/sources/*.py", "crane/data/download.py", "crane/data/checksums.py",
                  "crane/data/demo.py", "crane/data/image_features_b.py"),
    params:
        spec=lambda w: q(config["datasets"][w.dataset]),
        raw=lambda w: f"{R}/{w.dataset}/raw",
    log:
        f"{R}/{{dataset}}/logs/acquire.log",
    benchmark:
        f"{R}/{{dataset}}/benchmarks/acquire.tsv"
    resources:
        mem_mb=2000,
        runtime=240,
    shell:
        "{CRANE} acquire --dataset {wildcards.dataset} --spec {params.spec} --out {params.raw} > {log} 2>&1"


rule preprocess:
    output:
        interactions=f"{R}/{{dataset}}/data/interactions.parquet",
        item_table=f"{R}/{{dataset}}/data/items.parquet",
        stats=f"{R}/{{dataset}}/data/stats.json",
    input:
        raw=f"{R}/{{dataset}}/raw/acquired.json",
        code=code("crane/data/sources/*.py", "crane/data/parse.py", "crane/data/kcore.py",
                  "crane/data/ids.py", "crane/data/split.py", "crane/data/mmrec_format.py",
                  "crane/data/prepare.py", "crane/data/processed.py", "crane/data/stats.py"),
    params:
        spec=lambda w: q(config["datasets"][w.dataset]),
        raw=lambda w: f"{R}/{w.dataset}/raw",
        out=lambda w: f"{R}/{w.dataset}/data",
    log:
        f"{R}/{{dataset}}/logs/preprocess.log",
    benchmark:
        f"{R}/{{dataset}}/benchmarks/preprocess.tsv"
    resources:
        mem_mb=8000,
        runtime=60,
    shell:
        "{CRANE} preprocess --dataset {wildcards.dataset} --spec {params.spec} --raw {params.raw}"
        " --out {params.out} > {log} 2>&1"


rule dataset_stats:
    output:
        f"{R}/{{dataset}}/data/stats.md",
    input:
        stats=f"{R}/{{dataset}}/data/stats.json",
        code=code("crane/data/stats.py"),
    params:
        data=lambda w: f"{R}/{w.dataset}/data",
    log:
        f"{R}/{{dataset}}/logs/stats.log",
    localrule: True
    shell:
        "{CRANE} stats --data {params.data} --out {output} > {log} 2>&1"
