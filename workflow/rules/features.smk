# Item images (real datasets), item features per (dataset, modality, encoder), then the kNN
# graphs that the study's runs read (crane/graphs/plan.py), one job per graph.


rule fetch_images:
    output:
        str(layout.images_report_path(R, "{dataset}")),
    input:
        item_table=str(layout.items_path(R, "{dataset}")),
        code=code("fetch-images"),
    params:
        data=lambda w: layout.data_dir(R, w.dataset),
        raw=lambda w: layout.raw_dir(R, w.dataset),
    log:
        log_file("fetch_images"),
    benchmark:
        bench_file("fetch_images")
    resources:
        mem_mb=2000,
        runtime=720,
    shell:
        "{CRANE} fetch-images --data {params.data:q} --raw {params.raw:q} --report {output:q} > {log:q} 2>&1"


def fetched_images(wildcards):
    if wildcards.modality == "image" and PLAN.needs_image_fetch(wildcards.dataset):
        return [str(layout.images_report_path(R, wildcards.dataset))]
    return []


rule features:
    output:
        npy=str(layout.feature_matrix_path(R, "{dataset}", "{modality}", "{encoder}")),
        manifest=str(layout.feature_manifest_path(R, "{dataset}", "{modality}", "{encoder}")),
    input:
        item_table=str(layout.items_path(R, "{dataset}")),
        raw=str(layout.acquired_path(R, "{dataset}")),
        images=fetched_images,
        code=code("features"),
    params:
        spec=lambda w: q(config["encoders"][w.encoder]),
        data=lambda w: layout.data_dir(R, w.dataset),
        raw=lambda w: layout.raw_dir(R, w.dataset),
        out=lambda w: layout.feature_dir(R, w.dataset, w.modality, w.encoder),
    log:
        log_file("features_{modality}-{encoder}"),
    benchmark:
        bench_file("features_{modality}-{encoder}")
    threads: 2
    resources:
        mem_mb=8000,
        runtime=240,
    shell:
        "OMP_NUM_THREADS={threads} {CRANE} features --data {params.data:q} --raw {params.raw:q}"
        " --modality {wildcards.modality:q} --encoder {wildcards.encoder:q} --spec {params.spec}"
        " --out {params.out:q} --device {DEVICE:q} > {log:q} 2>&1"


def planned_graph(wildcards):
    """The planned KnnGraph whose record this job writes (an unplanned name is an error)."""
    for graph in graph_plan.dataset_graphs(PLAN, wildcards.dataset):
        if graph.name == wildcards.graph:
            return graph
    raise ValueError(f"{wildcards.dataset}: no run of the study reads the kNN graph "
                     f"{wildcards.graph!r}")


def graph_modalities(wildcards):
    """The modalities the graph is computed from (a mean-cosine graph: all of the dataset's,
    or the subset a modality-ablation run reads)."""
    return planned_graph(wildcards).modalities(PLAN.dataset_modalities(wildcards.dataset))


def is_mean_cosine(wildcards):
    return planned_graph(wildcards).source == graph_plan.MEAN_COSINE


# The graph is computed on the training device: a cached graph and one computed in memory
# are then the same bits.
rule knn_graph:
    output:
        str(layout.graph_record_path(R, "{dataset}", "{graph}")),
    input:
        features=lambda w: feature_matrices(w.dataset, graph_modalities(w)),
        code=code("graphs"),
    params:
        features=lambda w: feature_args(w.dataset, graph_modalities(w)),
        k=lambda w: planned_graph(w).k,
        mean_cosine=lambda w: "--mean-cosine" if is_mean_cosine(w) else "",
        out=lambda w: layout.graph_dir(R, w.dataset),
    log:
        log_file("graph_{graph}"),
    benchmark:
        bench_file("graph_{graph}")
    threads: 2
    resources:
        mem_mb=8000,
        runtime=60,
    shell:
        "OMP_NUM_THREADS={threads} {CRANE} graphs {params.features} --k {params.k:q} {params.mean_cosine}"
        " --device {DEVICE:q} --out {params.out:q} --index {output:q} > {log:q} 2>&1"

