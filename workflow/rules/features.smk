# Item images (real datasets), item features per (dataset, modality, encoder), then the kNN
# neighbour caches built from them.


rule fetch_images:
    output:
        f"{R}/{{dataset}}/raw/images.json",
    input:
        item_table=f"{R}/{{dataset}}/data/items.parquet",
        code=code("crane/features/image_fetch.py", "crane/data/download.py"),
    params:
        data=lambda w: PLAN.data_dir(w.dataset),
        raw=lambda w: f"{R}/{w.dataset}/raw",
    log:
        f"{R}/{{dataset}}/logs/fetch_images.log",
    benchmark:
        f"{R}/{{dataset}}/benchmarks/fetch_images.tsv"
    resources:
        mem_mb=2000,
        runtime=720,
    shell:
        "{CRANE} fetch-images --data {params.data} --raw {params.raw} --report {output} > {log} 2>&1"


def fetched_images(wildcards):
    if wildcards.modality == "image" and PLAN.needs_image_fetch(wildcards.dataset):
        return [PLAN.images_report(wildcards.dataset)]
    return []



rule features:
    output:
        npy=f"{R}/{{dataset}}/features/{{modality}}-{{encoder}}/features.npy",
        manifest=f"{R}/{{dataset}}/features/{{modality}}-{{encoder}}/manifest.json",
    input:
        item_table=f"{R}/{{dataset}}/data/items.parquet",
        raw=f"{R}/{{dataset}}/raw/acquired.json",
        images=fetched_images,
        code=code("crane/features/*.py"),
    params:
        spec=lambda w: q(config["encoders"][w.encoder]),
        data=lambda w: f"{R}/{w.dataset}/data",
        raw=lambda w: f"{R}/{w.dataset}/raw",
        out=lambda w: f"{R}/{w.dataset}/features/{w.modality}-{w.encoder}",
    log:
        f"{R}/{{dataset}}/logs/features_{{modality}}-{{encoder}}.log",
    benchmark:
        f"{R}/{{dataset}}/benchmarks/features_{{modality}}-{{encoder}}.tsv"
    threads: 2
    resources:
        mem_mb=8000,
        runtime=240,
    shell:
        "OMP_NUM_THREADS={threads} {CRANE} features --data {params.data} --raw {params.raw} --modality {wildcards.modality}"
        " --encoder {wildcards.encoder} --spec {params.spec} --out {params.out} --device {DEVICE}"
        " > {log} 2>&1"


rule graphs:
    output:
        f"{R}/{{dataset}}/graphs/index.json",
    input:
        features=feature_inputs,
        code=code("crane/graphs/item_knn.py"),
    params:
        features=lambda w: " ".join(f"--feature {d}" for d in PLAN.feature_dirs(w.dataset).values()),
        out=lambda w: f"{R}/{w.dataset}/graphs",
    log:
        f"{R}/{{dataset}}/logs/graphs.log",
    benchmark:
        f"{R}/{{dataset}}/benchmarks/graphs.tsv"
    threads: 2
    resources:
        mem_mb=8000,
        runtime=60,
    shell:
        "OMP_NUM_THREADS={threads} {CRANE} graphs {params.features} --k 10 --out {params.out} --index {output} > {log} 2>&1"
