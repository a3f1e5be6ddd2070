"""crane/code_inputs.py: a job's code inputs are the static import closure of what it runs.

A tiny package written into tmp_path pins each rule of the closure; the last tests ask the
real `crane` package the questions the workflow asks.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from crane.code_inputs import CodeIndex
from crane.study import TRAIN_COMMAND

ROOT = Path(__file__).resolve().parents[2]

FAKE = {
    "__init__.py": "",
    "__main__.py": "from pkg.cli import main\nmain()\n",
    "cli.py": """
        import importlib
        import pkg.commands

        def main():
            for name in ("study", "report"):
                importlib.import_module(f"pkg.commands.{name}").register(None)
        """,
    "commands/__init__.py": "",
    "commands/study.py": """
        from pkg import files
        from pkg.commands._args import parse_pairs

        def register(subparsers):
            run = subparsers.add_parser("run", help="train one run")
            run.set_defaults(func=run_command)
            subparsers.add_parser("dvc-yaml").set_defaults(func=dvc_command)

        def run_command(args):
            return _train(parse_pairs(args.pairs))

        def _train(pairs):
            from pkg.engine import runner  # lazy: only when training
            return runner.train(pairs)

        def dvc_command(args):
            from pkg import dvc_stages
            return dvc_stages.write()
        """,
    "commands/_args.py": """
        def parse_pairs(pairs):
            return dict(p.split("=") for p in pairs)

        def unused_here():
            from pkg.report import tables
            return tables
        """,
    "commands/report.py": """
        def register(subparsers):
            tables = subparsers.add_parser("tables")
            tables.set_defaults(func=_tables)

        def _tables(args):
            from pkg.report.tables import write
            write()
        """,
    "files.py": "import json\n",
    "dvc_stages.py": "from pkg import files\n",
    "engine/__init__.py": "",
    "engine/runner.py": """
        from typing import TYPE_CHECKING

        from ..models import get

        if TYPE_CHECKING:
            from pkg.report.tables import write

        def train(pairs):
            return get(pairs["model"])
        """,
    "models/__init__.py": """
        import importlib
        from .base import Recommender

        _REGISTRY = {}

        def register(name):
            def decorate(cls):
                _REGISTRY[name] = cls
                return cls
            return decorate

        def get(name):
            importlib.import_module(f"pkg.models.{name}")
            return _REGISTRY[name]
        """,
    "models/base.py": "class Recommender:\n    pass\n",
    "models/alpha.py": """
        from pkg.models import register
        from pkg.models.base import Recommender
        from pkg.ops.kernel import propagate

        @register("alpha")
        class Alpha(Recommender):
            def forward(self, x):
                return propagate(x)
        """,
    "models/beta.py": """
        from . import base
        from pkg.models import register

        @register("beta")
        class Beta(base.Recommender):
            pass
        """,
    "ops/__init__.py": "",
    "ops/kernel.py": "def propagate(x):\n    return x\n",
    "report/__init__.py": "",
    "report/tables.py": "from pkg import files\n\ndef write():\n    pass\n",
}


def write_package(root: Path, sources: dict[str, str]) -> Path:
    for name, text in sources.items():
        path = root / "pkg" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip())
    return root / "pkg"


@pytest.fixture
def package(tmp_path) -> Path:
    return write_package(tmp_path, FAKE)


ENTRY = ["pkg/__init__.py", "pkg/__main__.py", "pkg/cli.py", "pkg/commands/__init__.py"]
RUN = ENTRY + ["pkg/commands/_args.py", "pkg/commands/study.py", "pkg/engine/__init__.py",
               "pkg/engine/runner.py", "pkg/files.py", "pkg/models/__init__.py",
               "pkg/models/base.py"]


def test_a_training_job_runs_the_command_closure_and_its_model_module(package):
    index = CodeIndex(package)
    assert index.code_inputs("run") == sorted(RUN)
    assert index.code_inputs("run", ["alpha"]) == sorted(
        RUN + ["pkg/models/alpha.py", "pkg/ops/__init__.py", "pkg/ops/kernel.py"])
    # beta does not import the kernel: editing it cannot change a beta run
    assert index.code_inputs("run", ["beta"]) == sorted(RUN + ["pkg/models/beta.py"])


def test_only_what_the_handler_reaches_counts_in_a_module_of_several_commands(package):
    index = CodeIndex(package)
    # dvc_command's lazy import, parse_pairs's neighbour's lazy import, and the import under
    # TYPE_CHECKING are not part of a run
    for absent in ("pkg/dvc_stages.py", "pkg/report/tables.py", "pkg/report/__init__.py"):
        assert absent not in index.code_inputs("run", ["alpha"])
    assert "pkg/dvc_stages.py" in index.code_inputs("dvc-yaml")
    assert index.code_inputs("tables") == sorted(
        ENTRY + ["pkg/commands/report.py", "pkg/files.py", "pkg/report/__init__.py",
                 "pkg/report/tables.py"])


def test_a_module_imported_as_a_whole_counts_in_full(package):
    (package / "commands" / "study.py").write_text(
        (package / "commands" / "study.py").read_text().replace(
            "from pkg.commands._args import parse_pairs", "from pkg.commands import _args")
        .replace("parse_pairs(args.pairs)", "_args.parse_pairs(args.pairs)"))
    assert "pkg/report/tables.py" in CodeIndex(package).code_inputs("run")


def test_the_result_follows_a_moved_module(package):
    (package / "ops" / "kernel.py").rename(package / "ops" / "propagation.py")
    alpha = package / "models" / "alpha.py"
    alpha.write_text(alpha.read_text().replace("pkg.ops.kernel", "pkg.ops.propagation"))
    inputs = CodeIndex(package).code_inputs("run", ["alpha"])
    assert "pkg/ops/propagation.py" in inputs and "pkg/ops/kernel.py" not in inputs


def test_data_files_are_listed_relative_to_the_checkout(package):
    yaml_file = package / "configs" / "alpha.yaml"
    yaml_file.parent.mkdir()
    yaml_file.write_text("defaults: {}\n")
    inputs = CodeIndex(package).code_inputs("run", ["alpha"], [yaml_file])
    assert "pkg/configs/alpha.yaml" in inputs and inputs == sorted(inputs)


def test_broken_or_ambiguous_sources_are_errors(package):
    (package / "ops" / "kernel.py").unlink()
    with pytest.raises(ModuleNotFoundError, match="imports pkg.ops.kernel"):
        CodeIndex(package).code_inputs("run", ["alpha"])
    index = CodeIndex(package)
    with pytest.raises(LookupError, match="'nope'"):
        index.code_inputs("nope")
    with pytest.raises(LookupError, match="model 'gamma'"):
        index.code_inputs("run", ["gamma"])
    (package / "models" / "gamma.py").write_text(
        'from pkg.models import register\n\n@register("beta")\nclass Other:\n    pass\n')
    with pytest.raises(LookupError, match="found .*beta.*gamma"):
        CodeIndex(package).code_inputs("run", ["beta"])


# ---- the real package -------------------------------------------------------------------

def test_the_real_package_gives_every_job_existing_files_without_importing_torch():
    script = textwrap.dedent(f"""
        import sys
        from crane.code_inputs import CodeIndex
        index = CodeIndex()
        crane = index.code_inputs({TRAIN_COMMAND!r}, ["crane"])
        bpr = index.code_inputs({TRAIN_COMMAND!r}, ["bpr"])
        tables = index.code_inputs("tables")
        print(repr((crane, bpr, tables, sorted(m for m in sys.modules if m.split(".")[0] in
                                                ("torch", "numpy", "crane")))))
    """)
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout
    crane, bpr, tables, loaded = eval(out)
    assert not [m for m in loaded if not m.startswith("crane")], loaded
    assert set(loaded) == {"crane", "crane.code_inputs"}
    for path in crane + bpr + tables:
        assert (ROOT / path).is_file(), path
    assert "crane/models/crane.py" in crane and "crane/models/crane.py" not in bpr
    assert "crane/models/bpr.py" in bpr and "crane/cli.py" in bpr
    # what CRANE runs beyond BPR includes more than its own file (its kernels, graphs)
    assert len(set(crane) - set(bpr) - {"crane/models/crane.py"}) > 0
    assert not any(p.startswith("crane/report/") for p in crane + bpr)
    assert not any(p.startswith("crane/models/") for p in tables)


def test_a_run_imports_nothing_outside_its_computed_inputs():
    """Dynamic check of the static closure: import the handler's module and the model's
    module as a run does, and compare with what the index says (the registry's discovery of
    the other models is the one dynamic import, so it is not triggered here)."""
    index = CodeIndex()
    module, _ = index.command_handler(TRAIN_COMMAND)
    model_module = index.model_module("crane")
    script = (f"import sys, importlib\nimportlib.import_module('crane.cli')\n"
              f"importlib.import_module({module!r})\nimportlib.import_module({model_module!r})\n"
              "print(sorted(m for m in sys.modules if m.split('.')[0] == 'crane'))\n")
    loaded = eval(subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                                 text=True, check=True).stdout)
    computed = set(index.code_inputs(TRAIN_COMMAND, ["crane"]))
    assert set(index.files(loaded)) <= computed, set(index.files(loaded)) - computed
