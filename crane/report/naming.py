"""How models, metrics and variants are named and ordered in tables.

Row order inside a group follows the order of the `models` list the caller gives (the config's
order); groups come in the fixed order general, multimodal, (other), ours.
"""

from __future__ import annotations

from typing import Sequence

MAIN_METRICS: tuple[str, ...] = ("recall@10", "recall@20", "ndcg@10", "ndcg@20")
# Choices the command line offers; kept here, in a module without heavy imports, so that
# `crane --help` does not load scipy and matplotlib.
TESTS: tuple[str, ...] = ("wilcoxon", "ttest")
PAIRINGS: tuple[str, ...] = ("user_mean", "concat")
DEFAULT_EDGES: tuple[int, ...] = (5, 10, 20)
PARTS: tuple[str, ...] = ("main", "datasets", "hyperparameters", "user_activity", "efficiency",
                          "convergence", "ablation", "sensitivity")

GENERAL = "general"
MULTIMODAL = "multimodal"
OTHER = "other"
OURS = "ours"

MODEL_GROUPS: dict[str, tuple[str, ...]] = {
    GENERAL: ("mostpop", "bpr", "lightgcn", "selfcf", "layergcn", "xsimgcl"),
    MULTIMODAL: ("itemknn_cbf", "vbpr", "mmgcn", "grcn", "mvgae", "dualgnn", "lattice", "slmrec",
                 "freedom", "bm3", "dragon", "mgcn", "lgmrec", "smore", "pgl", "mmgcf", "damrs",
                 "mentor", "cohesion", "msca"),
    # the project's own models: CRANE and its presets
    OURS: ("crane", "crane_scalable"),
}
GROUP_ORDER: tuple[str, ...] = (GENERAL, MULTIMODAL, OTHER, OURS)
GROUP_LABELS = {GENERAL: "General", MULTIMODAL: "Multimodal", OTHER: "Other", OURS: "CRANE"}

MODEL_LABELS = {
    "mostpop": "MostPop",
    "bpr": "BPR",
    "lightgcn": "LightGCN",
    "selfcf": "SelfCF",
    "layergcn": "LayerGCN",
    "xsimgcl": "XSimGCL",
    "mmgcn": "MMGCN",
    "grcn": "GRCN",
    "slmrec": "SLMRec",
    "mvgae": "MVGAE",
    "dualgnn": "DualGNN",
    "dragon": "DRAGON",
    "itemknn_cbf": "ItemKNN-CBF",
    "vbpr": "VBPR",
    "lattice": "LATTICE",
    "freedom": "FREEDOM",
    "bm3": "BM3",
    "mgcn": "MGCN",
    "lgmrec": "LGMRec",
    "smore": "SMORE",
    "pgl": "PGL",
    "mmgcf": "MMGCF",
    "damrs": "DA-MRS",
    "mentor": "MENTOR",
    "cohesion": "COHESION",
    "msca": "MSCA",
    "crane": "CRANE",
    "crane_scalable": "CRANE (scalable)",
}

# Ablation variants in the order of the method description (docs/crane-method.md, section 9);
# variants not listed here follow in alphabetical order.
ABLATION_ORDER: tuple[str, ...] = (
    "crane", "crane_concat", "crane_rca1", "crane_no_profiles", "crane_no_item_graph",
    "crane_no_cl", "crane_prototype", "crane_neighbour_cache", "crane_cl_rows", "crane_pca",
    "crane_bf16",
)
ABLATION_LABELS = {
    "crane": "CRANE (full)",
    "crane_concat": "w/o RCA (concatenation)",
    "crane_rca1": "RCA without recursion",
    "crane_no_profiles": "w/o user profiles",
    "crane_no_item_graph": "w/o item-item graph",
    "crane_no_cl": "w/o contrastive loss",
    "crane_prototype": "prototype-faithful",
    "crane_neighbour_cache": "historical neighbours (approx.)",
    "crane_cl_rows": "InfoNCE on 512 rows (approx.)",
    "crane_pca": "PCA input, 256 (approx.)",
    "crane_bf16": "bf16 autocast (approx.)",
}


# A model trained with Mirror Gradient (config `mirror_gradient`) is a row of its own in the
# main table, named after its model: "lightgcn+mg" reads "LightGCN + MG".
MIRROR_GRADIENT_SUFFIX = "+mg"


def with_mirror_gradient(model: str) -> str:
    return model + MIRROR_GRADIENT_SUFFIX


def base_model(name: str) -> str:
    """The model a row name was trained from ("lightgcn+mg" -> "lightgcn")."""
    return name.removesuffix(MIRROR_GRADIENT_SUFFIX)


def model_label(model: str) -> str:
    if model.endswith(MIRROR_GRADIENT_SUFFIX):
        return f"{model_label(base_model(model))} + MG"
    return MODEL_LABELS.get(model, model)


def ablation_label(variant: str) -> str:
    return ABLATION_LABELS.get(variant, variant)


def metric_label(metric: str) -> str:
    """`recall@20` -> `Recall@20`, `ndcg@10` -> `NDCG@10`."""
    name, _, k = metric.partition("@")
    pretty = {"recall": "Recall", "ndcg": "NDCG", "precision": "Precision", "map": "MAP"}
    label = pretty.get(name, name)
    return f"{label}@{k}" if k else label


def seeds_spread(seeds: Sequence[int]) -> str:
    """How a table's cells summarise its seeds, worded right for one seed and for several."""
    listed = ", ".join(map(str, seeds))
    if len(seeds) == 1:
        return f"one seed ({listed}), so no standard deviation"
    return f"mean ± sample std (ddof=1) over {len(seeds)} seeds ({listed})"


def test_label(test: str, pairing: str, first: str, second: str) -> str:
    """How a table note names the paired test of `first` against `second`."""
    name = ("two-sided Wilcoxon signed-rank test" if test == "wilcoxon"
            else "two-sided paired t-test")
    pairs = ("each user's metric averaged over the seeds both models ran (one pair per user)"
             if pairing == "user_mean" else "one pair per (seed, user), pairs of all seeds pooled")
    return f"{name} on per-user test metrics of {first} and {second}, {pairs}"


def group_label(group: str, ours: str = "crane") -> str:
    """Section title of a group; the "ours" group is named after our model."""
    return model_label(ours) if group == OURS else GROUP_LABELS[group]


def group_of(model: str, ours: str = "crane") -> str:
    """The group of a model; a Mirror Gradient row sits in its model's group, and CRANE's
    presets in CRANE's."""
    model = base_model(model)
    if model == ours or (ours in MODEL_GROUPS[OURS] and model in MODEL_GROUPS[OURS]):
        return OURS
    for group, members in MODEL_GROUPS.items():
        if group != OURS and model in members:
            return group
    return OTHER


def grouped_models(models: Sequence[str], ours: str = "crane") -> list[tuple[str, list[str]]]:
    """[(group, [models in the caller's order])] for the non-empty groups, in GROUP_ORDER."""
    groups: list[tuple[str, list[str]]] = []
    for group in GROUP_ORDER:
        members = [m for m in models if group_of(m, ours) == group]
        if members:
            groups.append((group, members))
    return groups


def order_variants(variants: Sequence[str]) -> list[str]:
    known = [v for v in ABLATION_ORDER if v in variants]
    return known + sorted(set(variants) - set(known))
