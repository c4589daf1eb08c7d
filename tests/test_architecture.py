"""The layout keeps its promises (docs/ARCHITECTURE.md): imports point one way,
no cycles (function-level imports included), the library face stays light,
and modules and functions stay small enough to read."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "python" / "grokspec"

#: Layers from the bottom up; a module may import only from its own layer or below.
LAYERS = [
    {
        "_core",
        "errors",
        "cpu",
        "events",
        "io_atomic",
        "spectral",
        "approx",
        "slq",
        "block_products",
        "quadrature",
        "intervals",
        "gpu",
        "alarms",
        "batching",
    },
    {"lab"},
    {"scan", "monitor", "integrations"},
    {"repro", "bench"},
    {"cli", "_entry", "_extras", "__main__"},
]

#: Functions allowed over the size limit, each with the reason.
LONG_FUNCTION_REASONS: dict[str, str] = {}
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 80


def _modules() -> dict[str, Path]:
    out = {}
    # The extension module is known by its stub.
    for path in [*PACKAGE.rglob("*.py"), *PACKAGE.rglob("*.pyi")]:
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(("grokspec", *parts))] = path
    return out


def _imports(path: Path, module: str, known: set[str]) -> set[str]:
    """Every grokspec module that `module` imports, at any depth of its code."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            # `from pkg import module` depends on the module; `from pkg import name`
            # on pkg itself.
            submodules = [f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in known]
            names = submodules if len(submodules) == len(node.names) else [base, *submodules]
        for name in names:
            if name in known and name != module:
                found.add(name)
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    return {name: _imports(path, name, known) for name, path in modules.items()}


def _layer(module: str) -> int:
    top = module.split(".")[1] if "." in module else ""
    for index, names in enumerate(LAYERS):
        if top in names:
            return index
    raise AssertionError(f"{module} belongs to no layer of docs/ARCHITECTURE.md; add it to LAYERS and the doc")


def test_every_module_belongs_to_a_layer_and_imports_point_down():
    wrong = []
    for module, imported in _graph().items():
        if module == "grokspec":
            continue
        for target in imported:
            if target != "grokspec" and _layer(target) > _layer(module):
                wrong.append(f"{module} -> {target}")
    assert not wrong, "imports that point up a layer:\n" + "\n".join(sorted(wrong))


def test_no_import_cycles_even_through_function_level_imports():
    graph = _graph()
    # Importing a package runs its __init__, which imports nothing of its
    # submodules here; so edges to a package are edges to its __init__ only.
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                cycles.append([*stack[stack.index(target) :], target])
            elif target not in state:
                visit(target, [*stack, target])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_importing_grokspec_imports_no_heavy_library():
    code = (
        "import sys, numpy, grokspec; grokspec.spectral_entropy(numpy.eye(3)); "
        "print(','.join(m for m in ('torch', 'pandas', 'matplotlib', 'scipy') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert result.stdout.strip() == "", f"import grokspec loaded {result.stdout.strip()}"


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_modules_and_functions_stay_small(path: Path):
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= MAX_MODULE_LINES, f"{path.name} has {len(lines)} lines (limit {MAX_MODULE_LINES}); split it by concern"
    tree = ast.parse("\n".join(lines))
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            length = (node.end_lineno or node.lineno) - node.lineno + 1
            key = f"{path.relative_to(PACKAGE)}:{node.name}"
            if key in LONG_FUNCTION_REASONS:
                continue
            assert length <= MAX_FUNCTION_LINES, f"{key} has {length} lines (limit {MAX_FUNCTION_LINES})"
