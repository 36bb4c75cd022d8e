"""drct's import layering, read from the source with ``ast`` (every import, module-level or inside a function).

Layers, lowest first: geometry and kernels (the maths) <- projector and transform <- recon, calibration, scene
<- torch, cli. A lower package never imports a higher one, scenes/phantoms/meshes build rays through
:mod:`drct.geometry` and never reach into :mod:`drct.kernels`, the packages import each other without cycles,
and the scene package's modules import each other without cycles (its kinds register themselves).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "drct"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in ROOT.rglob("*.py")}


def _is_type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and ast.unparse(node.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING")


def _import_nodes(tree: ast.AST) -> list[tuple[ast.Import | ast.ImportFrom, bool]]:
    """Every import statement outside ``if TYPE_CHECKING:`` blocks, with whether it runs at import time (not
    inside a function)."""
    found: list[tuple[ast.Import | ast.ImportFrom, bool]] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if _is_type_checking(child):
                continue
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                found.append((child, not in_function))
            visit(child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))

    visit(tree, False)
    return found


def imports_of(name: str, function_level: bool = True) -> set[str]:
    """The drct modules ``name`` imports anywhere in its source (with ``function_level``; else only those run
    at import time); ``from pkg import sub`` counts as ``pkg.sub`` alone when ``sub`` is a module, and
    ``if TYPE_CHECKING:`` imports do not count."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node, at_import in _import_nodes(ast.parse(path.read_text(encoding="utf-8"))):
        if not (at_import or function_level):
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
            continue
        if node.level:
            base = package.split(".")[: len(package.split(".")) - node.level + 1]
            source = ".".join(base + ([node.module] if node.module else []))
        else:
            source = node.module or ""
        subs = [f"{source}.{alias.name}" for alias in node.names if f"{source}.{alias.name}" in MODULES]
        found.update(subs if len(subs) == len(node.names) else [source, *subs])
    return {m for m in found if m == "drct" or m.startswith("drct.")}


def function_level_imports(name: str) -> set[str]:
    """The drct modules ``name`` imports only inside functions."""
    return imports_of(name) - imports_of(name, function_level=False)


def unit(module: str) -> str:
    """The package (or top-level module) a module belongs to: ``drct.recon.fbp`` -> ``recon``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "drct"


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_cycle_finder_finds_cycles() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


@pytest.mark.parametrize("low", ["geometry", "kernels"])
def test_lower_packages_never_import_higher_ones(low: str) -> None:
    higher = {"scene", "recon", "calibration", "torch", "cli", "projector", "transform"}
    bad = {
        name: sorted(m for m in imports_of(name) if unit(m) in higher or m == "drct")
        for name in MODULES
        if unit(name) == low
    }
    assert {k: v for k, v in bad.items() if v} == {}


def test_geometry_never_imports_kernels() -> None:
    assert {
        n: imports_of(n) for n in MODULES if unit(n) == "geometry" and any(unit(m) == "kernels" for m in imports_of(n))
    } == {}


@pytest.mark.parametrize("user", ["scene", "phantoms", "meshes"])
def test_scenes_phantoms_and_meshes_do_not_reach_into_kernels(user: str) -> None:
    bad = {
        n: sorted(imports_of(n))
        for n in MODULES
        if unit(n) == user and any(unit(m) == "kernels" for m in imports_of(n))
    }
    assert bad == {}


def test_no_import_cycles_between_packages() -> None:
    graph: dict[str, set[str]] = {}
    for name in MODULES:
        if name == "drct":  # the package's facade re-exports everything
            continue
        graph.setdefault(unit(name), set()).update(
            unit(m) for m in imports_of(name) if m != "drct" and unit(m) != unit(name)
        )
    assert cycles(graph) == []


def test_no_import_cycles_inside_the_scene_package() -> None:
    """Each scene module imports the ones below it only (the package ``__init__`` imports the kinds once)."""
    modules = [n for n in MODULES if n.startswith("drct.scene.")]
    graph = {n: {m for m in imports_of(n) if m in modules} for n in modules}
    assert cycles(graph) == []


def test_the_scene_registry_imports_no_kind() -> None:
    assert {m for m in imports_of("drct.scene.registry") if m.startswith("drct.scene.")} <= {
        "drct.scene.schema",
        "drct.scene.errors",
    }


def test_scenes_import_physics_and_meshes_at_module_level() -> None:
    """No hidden dependencies inside functions (Mitsuba stays lazy: drct.meshes imports it only when a mesh is
    traced)."""
    late = {n: sorted(function_level_imports(n)) for n in MODULES if n.startswith("drct.scene.")}
    assert {n: m for n, m in late.items() if m} == {}


def test_importing_drct_does_not_import_mitsuba() -> None:
    import subprocess
    import sys

    code = "import sys, drct; print('mitsuba' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT.parent)
    assert out.stdout.strip() == "False"
