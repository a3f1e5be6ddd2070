# Shared state of the rules: the validated config, the study plan, small helpers.
import json
import shlex
import sys
from pathlib import Path

from crane.config import validate_config
from crane.study import StudyPlan
from crane.tuning import model_config_path

# Validate once, fill defaults; a wrong key stops here with a message naming it.
_resolved = validate_config(config)
config.clear()
config.update(_resolved)

PLAN = StudyPlan(config)
R = PLAN.results
DEVICE = config["device"]
TRAINING = config["training"]
# The interpreter running Snakemake runs the steps too: no PATH or activated venv needed.
CRANE = f"{shlex.quote(sys.executable)} -m crane"


wildcard_constraints:
    dataset="[A-Za-z0-9_]+",
    model="[a-z0-9_]+",
    modality="text|image",
    seed="[0-9]+",
    hp="[0-9a-f]{12}",


def q(obj):
    """Shell-quoted JSON: how a rule hands a config subset to a `crane` command."""
    return shlex.quote(json.dumps(obj, sort_keys=True))


def code(*paths):
    """Source files a rule depends on, so that editing one reruns exactly what it affects."""
    return sorted(str(p) for pattern in paths for p in Path(workflow.basedir).glob(pattern))


def feature_args(dataset):
    return " ".join(f"--feature {m}={d}" for m, d in PLAN.feature_dirs(dataset).items())


def feature_inputs(wildcards):
    return [f"{d}/features.npy" for d in PLAN.feature_dirs(wildcards.dataset).values()]


def model_code(model):
    return code("crane/models/base.py", "crane/models/layers.py", "crane/graphs/*.py",
                f"crane/models/{model}.py") + [str(model_config_path(model, config.get("models_dir")))]


ENGINE_CODE = code("crane/train.py", "crane/evaluate.py", "crane/metrics.py",
                   "crane/sampling.py", "crane/runs.py")
