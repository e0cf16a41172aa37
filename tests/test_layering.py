"""The package's layering: no import cycle inside src/lanmsff, and every layer imports only the layers below;
the benchmark suite outside it (``benchmarks/``) uses only the package's public names.

Imports are read from the source (``ast``), including those inside functions, so a cycle hidden in a
function body counts too. The layers, from the bottom (docs/architecture.md draws them):

0. ``errors``, ``utils``, ``runtime`` (hardware, precision), ``records`` (what runs write), ``plots``
1. ``models``
2. ``data``
3. ``training``
4. ``checkpoints``, ``onnx_export``
5. ``inference``
6. ``prediction``
7. ``tasks``, ``analysis``, ``api``
8. ``entrypoints`` (the glue of train.py, eval.py, predict.py, export.py)
"""

from __future__ import annotations

import ast
import functools
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

from .conftest import ROOT

PACKAGE = ROOT / "src" / "lanmsff"
BENCHMARKS = ROOT / "benchmarks"
LAYERS = [
    (
        "lanmsff",
        "lanmsff.errors",
        "lanmsff.utils",
        "lanmsff.runtime",
        "lanmsff.records",
        "lanmsff.plots",
        "lanmsff.heatmaps",
    ),
    ("lanmsff.models",),
    ("lanmsff.data",),
    ("lanmsff.training",),
    ("lanmsff.checkpoints", "lanmsff.onnx_export"),
    ("lanmsff.inference",),
    ("lanmsff.prediction",),
    ("lanmsff.tasks", "lanmsff.analysis", "lanmsff.api"),
    ("lanmsff.entrypoints", "lanmsff.config_check", "lanmsff.cli"),
]


def module_names(package: Path = PACKAGE) -> dict[str, Path]:
    """``{dotted module name: file}`` of every module of the package (``__init__`` as the package)."""
    modules = {}
    for path in sorted(package.rglob("*.py")):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def imported_modules(name: str, path: Path, known: Iterable[str]) -> set[str]:
    """The package modules that ``name`` imports anywhere in its file (functions included)."""
    known = set(known)
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".")[: len(name.split(".")) - node.level + (1 if is_package else 0)]
                base = ".".join([*anchor, *([base] if base else [])])
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:  # `import lanmsff.data.kdef` -> the module itself
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


@functools.cache
def import_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    modules = module_names(package)
    return {name: imported_modules(name, path, modules) for name, path in modules.items()}


def cycles(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for child in graph.get(node, ()):
            if child not in index:
                visit(child)
                low[node] = min(low[node], low[child])
            elif child in on_stack:
                low[node] = min(low[node], index[child])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def layer_of(module: str) -> int:
    """The layer of a module: that of the longest package prefix named in :data:`LAYERS`."""
    best, depth = None, -1
    for level, names in enumerate(LAYERS):
        for prefix in names:
            if (module == prefix or module.startswith(prefix + ".")) and prefix.count(".") > depth:
                best, depth = level, prefix.count(".")
    if best is None:
        raise KeyError(f"{module} is in no layer of tests/test_layering.py: add it to LAYERS")
    return best


def test_the_cycle_finder_finds_cycles() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_imports_inside_functions_count(tmp_path: Path) -> None:
    package = tmp_path / "lanmsff"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("from .one import f\n")
    (package / "sub" / "one.py").write_text("def f():\n    from lanmsff.two import g\n    return g\n")
    (package / "two.py").write_text("from lanmsff.sub.one import f\n")
    graph = import_graph(package)
    assert graph["lanmsff.sub"] == {"lanmsff.sub.one"}
    assert cycles(graph) == [["lanmsff.sub.one", "lanmsff.two"]]


def test_no_import_cycle_inside_the_package() -> None:
    found = cycles(import_graph())
    assert not found, "import cycles: " + "; ".join(" <-> ".join(c) for c in found)


def test_every_module_is_in_a_layer() -> None:
    for module in module_names():
        layer_of(module)


@pytest.mark.parametrize("module", sorted(import_graph()))
def test_layers_import_only_layers_below(module: str) -> None:
    graph = import_graph()
    upward = sorted(target for target in graph[module] if layer_of(target) > layer_of(module))
    assert not upward, f"{module} (layer {layer_of(module)}) imports a higher layer: {upward}"


def test_face_geometry_and_the_haar_pipeline_load_without_torch() -> None:
    """Boxes, landmarks, alignment and the Haar path are numpy + OpenCV: importing them loads no torch
    (the CNN detector imports it when one is made)."""
    code = "import sys, lanmsff.data.faces, lanmsff.data.face_geometry; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "False"


# ----------------------------------------------------------------------------- code outside the package
def private_package_imports(path: Path, root: Path = ROOT) -> list[str]:
    """Imports of ``path`` that reach past the package's public names: a module or package of ``lanmsff`` whose
    name starts with ``_`` (``lanmsff.x._y``), or a name starting with ``_`` imported from ``lanmsff``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
            names: list[str] = []
        elif isinstance(node, ast.ImportFrom) and not node.level:
            modules, names = [node.module or ""], [alias.name for alias in node.names]
        else:
            continue
        for module in modules:
            if module.split(".")[0] != "lanmsff":
                continue
            private = [part for part in module.split(".") if part.startswith("_")]
            private += [name for name in names if name.startswith("_")]
            if private:
                found.append(f"{path.relative_to(root)}:{node.lineno}: {module} ({', '.join(private)})")
    return found


def test_the_private_import_check_finds_private_names(tmp_path: Path) -> None:
    (tmp_path / "x.py").write_text(
        "import lanmsff.models._blocks\nfrom lanmsff.models import LANMSFF, _pwfs\n"
        "from lanmsff.models.blocks import pwfs\nfrom ._local import _ok\nimport _thread\n"
    )
    found = private_package_imports(tmp_path / "x.py", root=tmp_path)
    assert found == ["x.py:1: lanmsff.models._blocks (_blocks)", "x.py:2: lanmsff.models (_pwfs)"]


def test_the_benchmarks_use_only_public_names_of_the_package() -> None:
    files = sorted(BENCHMARKS.rglob("*.py"))
    assert files, f"no benchmark code in {BENCHMARKS}"
    found = [hit for path in files for hit in private_package_imports(path)]
    assert not found, "benchmarks/ imports private names of lanmsff:\n" + "\n".join(found)
