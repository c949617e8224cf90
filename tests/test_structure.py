"""The shape of the package: one public pipeline (archdsl/api.py) that the tools go through, and no
module reaching into another's private names. Read from the source, without importing it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "archdsl"
MODULES = sorted(p for p in PACKAGE.rglob("*.py"))


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _resolve(path: Path, node: ast.ImportFrom) -> str:
    """The absolute module an ImportFrom reads from."""
    if node.level == 0:
        return node.module or ""
    package = _module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    base = package[:len(package) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _imports(path: Path) -> list[tuple[str, list[str]]]:
    """(module, names) of each `from X import names` in a file whose X is in archdsl."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            module = _resolve(path, node)
            if module == "archdsl" or module.startswith("archdsl."):
                out.append((module, [a.name for a in node.names]))
    return out


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_uses_another_modules_private_names(path):
    """Neither `from .x import _name` nor `x._name` on an archdsl module imported under a name."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    me = _module_name(path)
    aliases = set()  # local names bound to archdsl modules: `from . import graph as G`
    problems = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            module = _resolve(path, node)
            if not (module == "archdsl" or module.startswith("archdsl.")) or module == me:
                continue
            for alias in node.names:
                if _private(alias.name):
                    problems.append(f"line {node.lineno}: from {module} import {alias.name}")
                submodule = f"{module}.{alias.name}"
                if (PACKAGE.parent / Path(*submodule.split("."))).with_suffix(".py").exists() or \
                        (PACKAGE.parent / Path(*submodule.split(".")) / "__init__.py").exists():
                    aliases.add(alias.asname or alias.name)
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases \
                and _private(node.attr):
            problems.append(f"line {node.lineno}: {node.value.id}.{node.attr}")
    assert not problems, f"{path.relative_to(PACKAGE)} uses private names of other modules: {problems}"


@pytest.mark.parametrize("tool", ["cli.py", "tools/sweep.py", "tools/zoo.py", "editor/lsp/analysis.py"])
def test_the_tools_go_through_the_public_pipeline(tool):
    """The command line, sweep, the zoo and the language server load, expand and generate through
    archdsl.api: none of them runs the expander or a backend itself, nor the former archdsl.compiler."""
    imports = _imports(PACKAGE / tool)
    assert any(module == "archdsl.api" for module, _ in imports), f"{tool} does not use archdsl.api"
    for module, names in imports:
        assert module != "archdsl.compiler", f"{tool} imports the former name of archdsl.api"
        assert not module.startswith("archdsl.backends"), f"{tool} imports a backend: {module}"
        assert "Expander" not in names, f"{tool} runs the expander itself ({module})"


def test_the_compiler_module_is_the_api_under_its_former_name():
    from archdsl import api, compiler

    for name in ("load", "generate", "verify", "check", "compile_spec", "TARGETS", "OPTIMIZATIONS"):
        assert getattr(compiler, name) is getattr(api, name)


# The folders in pipeline order: a module imports only from its own folder and the folders before it.
LAYERS = [
    {"language", "util"},  # the syntax tree, parser, token table, errors, limits; file and stack helpers
    {"core"},  # the layer catalog, elaboration, the typed graph, expansion
    {"backends", "reports"},  # code from an expansion (each backend's per-layer emitters beside it); reports
    {"runtime"},  # what generated models run with: Keras layers, weight transfer (by the emitters' rules)
    {"api"},  # the pipeline
    {"compiler", "tools", "editor"},  # the programs built on the pipeline
    {"cli"},
    {"__main__"},
]


def _layer(module: str) -> int | None:
    parts = module.split(".")
    top = parts[1] if len(parts) > 1 else None
    return next((i for i, group in enumerate(LAYERS) if top in group), None)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_point_down_the_pipeline(path):
    """No module imports from a folder later in the pipeline than its own (language -> core ->
    backends/reports -> runtime -> api -> tools/editor -> cli), nor from a sibling folder of its layer."""
    me = _module_name(path)
    mine = _layer(me)
    if mine is None:  # archdsl/__init__.py
        return
    for module, names in _imports(path):
        if module == "archdsl":  # `from archdsl import __version__`, or a submodule by name
            targets = [f"archdsl.{n}" for n in names if n != "__version__"]
        else:
            targets = [module]
        for target in targets:
            layer = _layer(target)
            if layer is None or target.split(".")[1] == me.split(".")[1]:
                continue
            assert layer < mine, f"{me} imports {target}, which comes after it in the pipeline"


def test_every_module_is_in_a_folder_of_the_pipeline():
    """archdsl/ holds the folders of the pipeline and its entry points, nothing else side by side."""
    loose = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert loose == ["__init__.py", "__main__.py", "api.py", "cli.py", "compiler.py"]
    for path in MODULES:
        assert _layer(_module_name(path)) is not None or path.name == "__init__.py" and path.parent == PACKAGE, path
