# Shared state of the rules: the validated config, the study plan, small helpers.
# Every output pattern comes from crane/layout.py (wildcards passed as arguments), and every
# rule's code inputs are computed from the imports of what it runs (crane/code_inputs.py).
import json
import os
import shlex
import sys
from pathlib import Path

from crane import layout, results_lock
from crane.code_inputs import CodeIndex
from crane.config import validate_config
from crane.graphs import plan as graph_plan
from crane.study import TRAIN_COMMAND, StudyPlan
from crane.tuning import model_config_path

# Validate once, fill defaults; a wrong key stops here with a message naming it.
_resolved = validate_config(config)
config.clear()
config.update(_resolved)

PLAN = StudyPlan(config)
# Every hyper-parameter point the study trains is checked now, before any job runs.
PLAN.check_points()
R = PLAN.results
DEVICE = config["device"]
TRAINING = config["training"]
# The interpreter running Snakemake runs the steps too: no PATH or activated venv needed.
CRANE = f"{shlex.quote(sys.executable)} -m crane"
BASEDIR = Path(workflow.basedir)
CODE = CodeIndex(BASEDIR / "crane")


wildcard_constraints:
    dataset="[A-Za-z0-9_]+",
    model="[a-z0-9_]+",
    modality="text|image",
    seed="[0-9]+",
    hp="[0-9a-f]{12}",
    graph="[a-z_]+-k[0-9]+",
    encoder="[A-Za-z0-9_]+",
    variant="[a-z0-9_]+",
    modalities="[a-z]+(\\+[a-z]+)*",
    param="[a-z0-9_]+",


# Every value that reaches a shell command is quoted: paths and names with `:q` in the rule's
# command, and values built here (JSON, argument lists) with shlex.quote, so a results folder
# with a space or a `;` in it is a folder name, never a command.
def q(obj):
    """Shell-quoted JSON: how a rule hands a config subset to a `crane` command."""
    return shlex.quote(json.dumps(obj, sort_keys=True))


def quoted(values):
    """Values as shell words, each quoted."""
    return " ".join(shlex.quote(str(v)) for v in values)


def args(flag, values):
    """`flag v1 flag v2 ...`, each value quoted."""
    return " ".join(f"{flag} {shlex.quote(str(v))}" for v in values)


def code(command, models=()):
    """The files a `crane <command>` job runs (its import closure in the checkout's `crane`
    package) and, per model, the model module's closure and the model's YAML: editing any
    of them reruns exactly the jobs that run it."""
    yamls = [model_config_path(m, config.get("models_dir")) for m in models]
    return [str(BASEDIR / p) for p in CODE.code_inputs(command, models, yamls)]


def log_file(job, dataset="{dataset}"):
    return str(layout.log_path(R, dataset, job))


def bench_file(job, dataset="{dataset}"):
    return str(layout.benchmark_path(R, dataset, job))


def feature_args(dataset, modalities=None):
    """`--feature MODALITY=DIR` of the dataset's modalities, or of `modalities` only (none
    on a dataset without features: ID-only models need none)."""
    dirs = PLAN.feature_dirs(dataset, modalities)
    return args("--feature", [f"{m}={dirs[m]}" for m in dirs])


def feature_matrices(dataset, modalities=None):
    encoders = config["datasets"][dataset].get("features") or {}
    wanted = PLAN.dataset_modalities(dataset) if modalities is None else modalities
    return [str(layout.feature_matrix_path(R, dataset, m, encoders[m])) for m in sorted(wanted)]


def graph_records(dataset, graphs):
    """The records of the kNN graphs a job reads (the graph jobs' outputs)."""
    return [str(layout.graph_record_path(R, dataset, g.name)) for g in graphs]
