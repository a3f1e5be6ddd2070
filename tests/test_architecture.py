"""Who may import whom inside `crane` (docs/architecture.md, "Import rules").

Each rule names a layer and the only `crane` packages or modules it may import. The imports
are read with `ast` (function-level imports included), so a rule cannot be dodged by
importing lazily.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "crane"

# layer -> crane modules it may import (a name allows itself and everything under it)
ALLOWED = {
    "crane.ops": {"crane.ops"},
    "crane.models": {"crane.models", "crane.ops", "crane.graphs", "crane.modalities"},
    "crane.graphs": {"crane.graphs", "crane.files", "crane.study"},
    "crane.engine": {"crane.engine", "crane.models", "crane.ops", "crane.data", "crane.features",
                     "crane.files", "crane.device", "crane.tuning", "crane.configs",
                     "crane.modalities"},
    "crane.report": {"crane.report", "crane.files", "crane.layout"},
    "crane.data": {"crane.data", "crane.files"},
    "crane.features": {"crane.features", "crane.data", "crane.files", "crane.device",
                       "crane.modalities"},
}


def crane_imports(path: Path) -> set[str]:
    """The `crane...` modules a file imports, at any depth of the file."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module == "crane":
            found.update(f"crane.{alias.name}" for alias in node.names)  # from crane import x
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
    return {name for name in found if name == "crane" or name.startswith("crane.")}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def allowed(target: str, prefixes: set[str]) -> bool:
    if target == "crane":
        return True  # the package root: its docstring and version only
    return any(target == p or target.startswith(p + ".") for p in prefixes)


def layer_files(layer: str) -> list[Path]:
    folder = PACKAGE.joinpath(*layer.split(".")[1:])
    return sorted(folder.rglob("*.py"))


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_layer_imports_only_what_it_may(layer: str):
    files = layer_files(layer)
    assert files, f"{layer} has no modules: the rule names a layer that no longer exists"
    broken = [f"{module_name(path)} imports {target}"
              for path in files for target in sorted(crane_imports(path))
              if not allowed(target, ALLOWED[layer])]
    assert not broken, "\n".join(broken)


def test_only_the_cli_imports_the_commands():
    importers = sorted(module_name(path) for path in PACKAGE.rglob("*.py")
                       if any(t == "crane.commands" or t.startswith("crane.commands.")
                              for t in crane_imports(path))
                       and not allowed(module_name(path), {"crane.commands", "crane.cli"}))
    assert importers == []


def test_the_rules_catch_a_forbidden_import(tmp_path):
    """The scan sees lazy (function-level) imports: a kernel importing a model is caught."""
    kernel = tmp_path / "kernel.py"
    kernel.write_text("def f():\n    from crane.models.base import Recommender\n")
    assert not allowed("crane.models.base", ALLOWED["crane.ops"])
    assert crane_imports(kernel) == {"crane.models.base"}
