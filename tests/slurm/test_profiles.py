"""The Snakemake profiles, checked against the rules without a cluster (fast, runs everywhere).

- no `workflow/profiles/default/` (Snakemake would load it for every plain call, tests too);
- the SLURM profile sizes every rule that becomes a SLURM job, names only real rules, and
  keeps the settings that a cluster without slurmdbd needs (docs/cluster.md);
- the GPU profile is the SLURM profile plus `gpu: 1` on exactly the rules that pass the
  config's `device` to `crane` (a `device: cuda` job without a GPU would fail);
- the local profile runs on every core.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
PROFILES = ROOT / "workflow" / "profiles"
RULE_FILES = [ROOT / "Snakefile", *sorted((ROOT / "workflow" / "rules").glob("*.smk"))]


def load(name: str) -> dict:
    return yaml.safe_load((PROFILES / name / "config.yaml").read_text())


def rule_blocks() -> dict[str, str]:
    """rule name -> its source text, up to the next top-level statement."""
    blocks = {}
    for path in RULE_FILES:
        parts = re.split(r"^rule (\w+):\n", path.read_text(), flags=re.MULTILINE)
        for name, body in zip(parts[1::2], parts[2::2]):
            blocks[name] = re.split(r"^\S", body, maxsplit=1, flags=re.MULTILINE)[0]
    return blocks


RULES = rule_blocks()
# Rules that run where Snakemake runs: marked local, or with nothing to execute (`all`).
LOCAL = {n for n, body in RULES.items()
         if "localrule: True" in body or not re.search(r"^\s+(shell|run|script):", body, re.M)}
CLUSTER = set(RULES) - LOCAL
# Rules whose command gets the config's device (`{DEVICE}`, or quoted `{DEVICE:q}`): their own
# shell, or the shared training one.
DEVICE_RULES = {n for n, body in RULES.items()
                if re.search(r"\{DEVICE(:q)?\}", body) or "RUN_SHELL" in body}


def test_the_rules_were_found():
    assert {"tables", "train_final", "features"} <= set(RULES)
    assert {"train_final", "features"} <= DEVICE_RULES <= CLUSTER
    assert "tables" in LOCAL and "all" in LOCAL


def test_no_default_profile():
    assert not (PROFILES / "default").exists(), \
        "workflow/profiles/default is loaded by every snakemake call, local tests included"


def test_slurm_profile_sizes_every_cluster_rule():
    profile = load("slurm")
    assert profile["executor"] == "slurm"
    resources, threads = profile["set-resources"], profile["set-threads"]
    assert set(resources) == CLUSTER, "set-resources must cover exactly the non-local rules"
    assert set(threads) <= CLUSTER, f"threads for rules that do not exist or run locally: {threads}"
    for rule, values in resources.items():
        assert values.get("mem_mb", 0) > 0 and values.get("runtime", 0) > 0, rule
        assert "gpu" not in values, f"the CPU profile asks for a GPU for {rule}"
    defaults = profile["default-resources"]
    assert defaults["mem_mb"] > 0 and defaults["runtime"] > 0


def test_slurm_profile_settings_for_clusters_without_accounting():
    profile = load("slurm")
    # sacct without slurmdbd fails and the executor then waits forever
    assert profile["slurm-status-command"] == "squeue"
    # squeue mode needs MinJobAge (300 s by default) >= 3 x the first wait
    assert 3 * profile["slurm-init-seconds-before-status-checks"] <= 300
    assert profile["slurm-keep-successful-logs"] is True  # the record of which job ran what
    assert profile["show-failed-logs"] is True and profile["rerun-incomplete"] is True


def test_gpu_profile_is_the_slurm_profile_plus_gpus_for_device_rules():
    cpu, gpu = load("slurm"), load("slurm-gpu")
    gpu_rules = {rule for rule, values in gpu["set-resources"].items() if "gpu" in values}
    assert gpu_rules == DEVICE_RULES
    assert all(gpu["set-resources"][rule]["gpu"] == 1 for rule in gpu_rules)
    stripped = {rule: {k: v for k, v in values.items() if k != "gpu"}
                for rule, values in gpu["set-resources"].items()}
    assert stripped == cpu["set-resources"]
    assert {k: v for k, v in gpu.items() if k != "set-resources"} == \
        {k: v for k, v in cpu.items() if k != "set-resources"}


def test_local_profile_runs_on_every_core():
    profile = load("local")
    assert profile["cores"] == "all"
    assert "executor" not in profile
    assert profile["show-failed-logs"] is True
