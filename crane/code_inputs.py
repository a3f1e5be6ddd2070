"""Which source files a job runs, computed by reading the code, never by importing it.

A job's code inputs are the import closure, inside the `crane` package, of what the job runs,
plus the data files it reads (a model's YAML). The Snakemake rules (workflow/rules/common.smk)
and dvc.yaml (crane/dvc_stages.py) both take them from `CodeIndex.code_inputs`, so editing a
module reruns exactly the jobs that import it, and moving a module needs no list updated.
Parsing with `ast` keeps building the workflow's job graph free of torch and of the models.

What a module brings in (tests/workflow/test_code_inputs.py):
- importing a module runs its module-level code, and that of its parent packages'
  `__init__.py`;
- `import crane.a` or `from crane import a` (a module) may use any of it: every import in it
  counts, at module level or inside a function (a lazy import runs when its function does);
- `from crane.a import f` uses `f`: the module-level imports of `crane.a` count, and those
  inside `f` and inside the functions and classes `f` names, transitively. So a module that
  gathers unrelated helpers (a command module with several subcommands) costs a job only
  what the job calls;
- imports under `if TYPE_CHECKING:` never run and do not count;
- `crane <command>` runs `crane/__main__.py` and the function its subparser sets as `func`
  (found by reading every `add_parser("<command>") ... set_defaults(func=...)`);
- dynamic imports (`importlib.import_module`) are not followed. The model registry discovers
  models that way, so a training job names its model, and the module that carries
  `@register("<model>")` counts in full.
An import of a `crane` module that does not exist is an error: the job would fail on it.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional

PACKAGE_DIR = Path(__file__).resolve().parent
MAIN_MODULE = "__main__"  # `python -m crane` runs the package's __main__.py

# Which names of a module are used: a set of top-level names, or EVERYTHING.
Names = Optional[frozenset]
EVERYTHING: Names = None
MODULE_LEVEL_ONLY: Names = frozenset()


@dataclass(frozen=True)
class _ParsedModule:
    path: Path
    tree: ast.Module
    is_package: bool


class CodeIndex:
    """The modules of one package on disk, parsed once and queried many times.

    One index serves a whole workflow run: files are read when first needed and answers are
    remembered, so asking for hundreds of jobs' inputs stays cheap.
    """

    def __init__(self, package_dir: str | Path = PACKAGE_DIR):
        self.package_dir = Path(package_dir).resolve()
        self.package = self.package_dir.name
        self.root = self.package_dir.parent
        self._parsed: dict[str, _ParsedModule | None] = {}
        self._imports: dict[tuple[str, Names], list[tuple[str, Names]]] = {}
        self._answers: dict[tuple, list[str]] = {}
        self._registry: dict[str, list[str]] | None = None
        self._commands: dict[str, list[tuple[str, str]]] | None = None

    # ---- modules and files ----------------------------------------------------------------
    def module_file(self, module: str) -> Path | None:
        parsed = self._parse(module)
        return parsed.path if parsed else None

    def all_modules(self) -> list[str]:
        names = []
        for path in sorted(self.package_dir.rglob("*.py")):
            parts = path.relative_to(self.root).with_suffix("").parts
            if any(not p.isidentifier() for p in parts):
                continue  # not importable (a scratch file, a folder with a dash)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            names.append(".".join(parts))
        return names

    def files(self, modules: Iterable[str]) -> list[str]:
        """Source files of `modules`, relative to the package's parent, sorted."""
        return sorted(self.module_file(m).relative_to(self.root).as_posix() for m in modules)

    def _parse(self, module: str) -> _ParsedModule | None:
        if module not in self._parsed:
            self._parsed[module] = self._read(module)
        return self._parsed[module]

    def _read(self, module: str) -> _ParsedModule | None:
        parts = module.split(".")
        if parts[0] != self.package or not all(p.isidentifier() for p in parts):
            return None
        base = self.root.joinpath(*parts)
        for path, is_package in ((base / "__init__.py", True), (base.with_suffix(".py"), False)):
            if path.is_file():
                tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
                return _ParsedModule(path, tree, is_package)
        return None

    # ---- the closure ----------------------------------------------------------------------
    def closure(self, requests: dict[str, Names] | Iterable[str]) -> frozenset[str]:
        """Modules that run when `requests` are imported (module -> names used, or a list of
        modules used in full), with their parents and what they import, transitively."""
        if not isinstance(requests, dict):
            requests = {module: EVERYTHING for module in requests}
        used: dict[str, Names] = {}
        todo = list(requests.items())
        while todo:
            module, names = todo.pop()
            if self._parse(module) is None:
                raise ModuleNotFoundError(f"{module}: no such module in {self.package_dir}")
            merged = _union(used[module], names) if module in used else names
            if module in used and merged == used[module]:
                continue
            used[module] = merged
            parts = module.split(".")
            todo += [(".".join(parts[:i]), MODULE_LEVEL_ONLY) for i in range(1, len(parts))]
            todo += self._imports_of(module, merged)
        return frozenset(used)

    def _imports_of(self, module: str, names: Names) -> list[tuple[str, Names]]:
        """(module, names used) for each import that runs when `names` of `module` are used."""
        key = (module, names)
        if key not in self._imports:
            parsed = self._parse(module)
            if names is EVERYTHING:
                nodes: list[ast.AST] = list(parsed.tree.body)
            else:
                top = _module_level(parsed.tree)
                roots = set(names) | {n.id for node in top for n in ast.walk(node)
                                      if isinstance(n, ast.Name)}
                nodes = top + _reachable_definitions(parsed.tree, roots)
            self._imports[key] = [target for node in _import_nodes(nodes)
                                  for target in self._targets(module, parsed.is_package, node)]
        return self._imports[key]

    def _targets(self, module: str, is_package: bool,
                 node: ast.Import | ast.ImportFrom) -> list[tuple[str, Names]]:
        if isinstance(node, ast.Import):
            return [(alias.name, EVERYTHING) for alias in node.names
                    if self._in_package(module, alias.name)]
        if node.level:
            # relative: `from . import x` in a/b.py and in a/__init__.py both mean a.x
            anchor = module.split(".") if is_package else module.split(".")[:-1]
            anchor = anchor[:len(anchor) - (node.level - 1)]
            base = ".".join(anchor + ([node.module] if node.module else []))
        else:
            base = node.module or ""
        if not self._in_package(module, base):
            return []
        targets: list[tuple[str, Names]] = []
        for alias in node.names:
            if alias.name == "*":
                targets.append((base, EVERYTHING))
            elif self._parse(f"{base}.{alias.name}"):  # a submodule, used in full
                targets += [(base, MODULE_LEVEL_ONLY), (f"{base}.{alias.name}", EVERYTHING)]
            else:
                targets.append((base, frozenset({alias.name})))
        return targets

    def _in_package(self, importer: str, module: str) -> bool:
        """True for a module of this package; an import of one that is missing is an error
        (the job would fail on it), not a dependency to drop."""
        if module.split(".")[0] != self.package:
            return False
        if self._parse(module) is None:
            raise ModuleNotFoundError(f"{self.module_file(importer)} imports {module}, which "
                                      f"is not in {self.package_dir}")
        return True

    # ---- commands and models --------------------------------------------------------------
    def command_handler(self, command: str) -> tuple[str, str]:
        """(module, name) of the function that `crane <command>` calls."""
        if self._commands is None:
            self._commands = {}
            for module in self.all_modules():
                for name, handler in _subcommands(self._parse(module).tree):
                    self._commands.setdefault(name, []).append((module, handler))
        found = self._commands.get(command, [])
        if len(found) != 1:
            raise LookupError(f"`{self.package} {command}`: expected one subparser named "
                              f"{command!r} with set_defaults(func=...), found {found or 'none'}")
        return found[0]

    def model_module(self, model: str) -> str:
        """The module that registers `model` (`@register("<model>")` on a class)."""
        if self._registry is None:
            self._registry = {}
            for module in self.all_modules():
                for name in _registered_names(self._parse(module).tree):
                    self._registry.setdefault(name, []).append(module)
        found = self._registry.get(model, [])
        if len(found) != 1:
            raise LookupError(f"model {model!r}: expected one @register({model!r}) in "
                              f"{self.package_dir}, found {found or 'none'}")
        return found[0]

    def workflow_inputs(self, workflow_files: Iterable[str | Path]) -> list[str]:
        """The package files the workflow's own code runs to build its job graph: the closure
        of the package imports in its Snakefile and rule files."""
        requests: dict[str, Names] = {}
        for path in workflow_files:
            for node in _python_imports(Path(path).read_text(encoding="utf-8")):
                for module, names in self._targets(self.package, True, node):
                    requests[module] = _union(requests[module], names) \
                        if module in requests else names
        return self.files(self.closure(requests))

    # ---- the answer -----------------------------------------------------------------------
    def code_inputs(self, command: str, models: Iterable[str] = (),
                    data_files: Iterable[str | Path] = ()) -> list[str]:
        """The files a job `crane <command> [--model M]` runs and reads, sorted.

        The closure of `crane/__main__.py` and of the command's handler, each model's module
        in full, and `data_files` (the YAML files the job reads); paths relative to the
        package's parent folder when under it.
        """
        models = tuple(sorted(set(models)))
        key = (command, models)
        if key not in self._answers:
            handler_module, handler = self.command_handler(command)
            requests: dict[str, Names] = {f"{self.package}.{MAIN_MODULE}": EVERYTHING}
            requests[handler_module] = frozenset({handler})
            for model in models:
                requests[self.model_module(model)] = EVERYTHING
            self._answers[key] = self.files(self.closure(requests))
        data = set()
        for path in data_files:
            path = Path(path).resolve()
            data.add(path.relative_to(self.root).as_posix() if path.is_relative_to(self.root)
                     else str(path))
        return sorted(set(self._answers[key]) | data)


def _python_imports(text: str) -> list[ast.Import | ast.ImportFrom]:
    """The top-level import statements of a Snakemake file (Python with rule blocks): each
    line that starts an import, with the lines that continue it."""
    lines, imports, i = text.splitlines(), [], 0
    while i < len(lines):
        if lines[i].startswith(("import ", "from ")):
            for end in range(i + 1, len(lines) + 1):
                try:
                    tree = ast.parse("\n".join(lines[i:end]))
                except SyntaxError:
                    continue
                imports += [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
                i = end - 1
                break
        i += 1
    return imports


def _union(a: Names, b: Names) -> Names:
    return EVERYTHING if a is EVERYTHING or b is EVERYTHING else a | b


# ---- ast helpers -------------------------------------------------------------------------

def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _import_nodes(nodes: Iterable[ast.AST]) -> Iterable[ast.Import | ast.ImportFrom]:
    """Every import statement under `nodes`, skipping `if TYPE_CHECKING:` bodies."""
    todo = list(nodes)
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, ast.If) and _is_type_checking(node):
            todo.extend(node.orelse)
        else:
            todo.extend(ast.iter_child_nodes(node))


def _module_level(tree: ast.Module) -> list[ast.AST]:
    """What runs on import: everything but the bodies of top-level functions and classes'
    methods (decorators, default values, base classes and class attributes do run)."""
    kept: list[ast.AST] = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            kept += node.decorator_list + node.args.defaults + node.args.kw_defaults
        elif isinstance(node, ast.ClassDef):
            kept += node.decorator_list + node.bases + [k.value for k in node.keywords]
            kept += [n for n in node.body
                     if not isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
        else:
            kept.append(node)
    return [n for n in kept if n is not None]


def _reachable_definitions(tree: ast.Module, roots: Iterable[str]) -> list[ast.AST]:
    """The top-level functions and classes named in `roots`, and those they name, in turn."""
    definitions = {node.name: node for node in tree.body
                   if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}
    reached: dict[str, ast.AST] = {}
    todo = [name for name in roots if name in definitions]
    while todo:
        name = todo.pop()
        if name in reached:
            continue
        reached[name] = definitions[name]
        todo += [n.id for n in ast.walk(definitions[name])
                 if isinstance(n, ast.Name) and n.id in definitions]
    return list(reached.values())


def _subcommands(tree: ast.Module) -> list[tuple[str, str]]:
    """(command, handler) for each `add_parser("<command>")` whose parser gets
    `set_defaults(func=<handler>)`, directly or through the variable it is assigned to."""
    parsers: dict[str, str] = {}  # variable -> the command whose subparser it holds
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and (command := _add_parser_command(node.value)):
            parsers.update({t.id: command for t in node.targets if isinstance(t, ast.Name)})
    found = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr == "set_defaults"):
            continue
        owner = node.func.value
        command = parsers.get(owner.id) if isinstance(owner, ast.Name) else \
            _add_parser_command(owner)
        if command is not None:
            found += [(command, kw.value.id) for kw in node.keywords
                      if kw.arg == "func" and isinstance(kw.value, ast.Name)]
    return found


def _add_parser_command(node: ast.AST) -> str | None:
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and node.func.attr == "add_parser" and node.args
            and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
        return node.args[0].value
    return None


def _registered_names(tree: ast.Module) -> set[str]:
    """Names given to `@register("<name>")` (or `@x.register(...)`) on classes."""
    names = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.ClassDef):
            continue
        for decorator in node.decorator_list:
            if not isinstance(decorator, ast.Call) or not decorator.args:
                continue
            func = decorator.func
            called = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
            first = decorator.args[0]
            if called == "register" and isinstance(first, ast.Constant):
                names.add(first.value)
    return names
