"""The package's import order and seams (docs/architecture.md), checked on the source.

1. Imports flow one way: a package imports only packages of lower layers (function-level imports
   included), so there are no import circles and nothing runs against the data flow.
2. No module assigns to another module's attributes, and nothing calls another object's
   underscore methods: extension goes through public seams (hooks, the loss registry, settings).
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "pointformer"

# Bottom to top; the same list is written down in docs/architecture.md.
LAYERS: list[set[str]] = [
    {"config", "timing", "lazy"},
    {"io", "sparse"},
    {"losses", "models", "preprocess"},
    {"evaluation"},
    {"data"},
    {"synthetic"},
    {"export", "vis"},
    {"build"},
    {"inference"},
    {"engine"},
    {"image"},
    {"cli"},
    {"__main__"},
]
LAYER_OF = {name: i for i, layer in enumerate(LAYERS) for name in layer}


def _unit(path: Path) -> str:
    """The top-level unit (sub-package or module) of a file in the package."""
    rel = path.relative_to(PACKAGE)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def _imported_units(tree: ast.AST) -> set[str]:
    units = set()
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names] if node.module == "pointformer" \
                else [node.module]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "pointformer" and len(parts) > 1 and parts[1] in LAYER_OF:
                units.add(parts[1])
    return units


def _sources(*folders: Path) -> list[Path]:
    return sorted(p for folder in folders for p in folder.rglob("*.py") if ".venv" not in p.parts)


def test_every_unit_has_a_layer() -> None:
    units = {_unit(p) for p in _sources(PACKAGE)} - {"__init__"}
    assert units <= set(LAYER_OF), f"add {sorted(units - set(LAYER_OF))} to LAYERS and docs/architecture.md"


@pytest.mark.parametrize("path", _sources(PACKAGE), ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_flow_one_way(path: Path) -> None:
    unit = _unit(path)
    if unit == "__init__":
        return
    tree = ast.parse(path.read_text(), str(path))
    upward = sorted(u for u in _imported_units(tree) if u != unit and LAYER_OF[u] >= LAYER_OF[unit])
    assert not upward, (
        f"{path.relative_to(ROOT)} ({unit}, layer {LAYER_OF[unit]}) imports {upward} of the same or a higher layer"
    )


def _module_aliases(tree: ast.AST) -> set[str]:
    """Names bound to modules by ``import x`` / ``import x.y as z`` in a file."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                names.add(alias.asname or alias.name.split(".")[0])
    return names


def _violations(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    modules = _module_aliases(tree)
    found = []
    for node in ast.walk(tree):
        targets = []
        if isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        for target in targets:
            if isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name) and target.value.id in modules:
                found.append(f"line {node.lineno}: assigns {target.value.id}.{target.attr}")
        if isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Name) and func.id == "setattr" and node.args and \
                    isinstance(node.args[0], ast.Name) and node.args[0].id in modules:
                found.append(f"line {node.lineno}: setattr on module {node.args[0].id}")
            if isinstance(func, ast.Attribute) and func.attr.startswith("_") and not func.attr.startswith("__"):
                owner = func.value
                if not (isinstance(owner, ast.Name) and owner.id in ("self", "cls")):
                    found.append(f"line {node.lineno}: calls {ast.unparse(func)}")
            if isinstance(func, ast.Attribute) and func.attr == "register_optimizer_step_post_hook":
                found.append(f"line {node.lineno}: a process-wide optimizer hook")
    return found


@pytest.mark.parametrize("path", _sources(PACKAGE, ROOT / "benchmarks", ROOT / "scripts"),
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_no_patching_and_no_private_calls(path: Path) -> None:
    assert not _violations(path), f"{path.relative_to(ROOT)}: {_violations(path)}"
