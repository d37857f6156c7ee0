"""The import graph: layers point one way, and no module imports itself back (docs/design.md, "Layers").

Every ``.py`` file of ``invdiff/``, ``operators/`` and ``datasets/`` is parsed (``operators/`` and
``datasets/`` as the ``invdiff.operators`` and ``invdiff.datasets`` they install as); every import is
an arrow, lazy ones inside functions and ``TYPE_CHECKING`` blocks included. A *unit* is the first
name under ``invdiff`` (``invdiff.samplers.dps`` is in unit ``samplers``).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: top to bottom; a unit imports only units of later groups (or of its own group, without a cycle)
LAYERS = [
    ["cli", "__main__"],
    ["benchmark"],
    ["reconstruct", "training"],
    ["problems"],
    ["active", "plots"],
    ["samplers", "metrics"],
    ["priors", "posterior"],
    ["measurement", "particles"],
    ["linalg", "rng", "schedule", "io", "normal_solvers", "timing", "testing", "operators", "datasets"],
]
RANK = {unit: rank for rank, group in enumerate(LAYERS) for unit in group}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[0] in ("operators", "datasets"):
        parts.insert(0, "invdiff")
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_module(name: str) -> bool:
    """Whether ``name`` (``invdiff...``) is a module or package of this tree."""
    parts = name.split(".")[1:]
    base = ROOT / ("/".join(parts) if parts and parts[0] in ("operators", "datasets") else "/".join(["invdiff", *parts]))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def import_graph() -> dict[str, dict[str, str]]:
    """module -> {imported invdiff module: "file:line" of the first such import}."""
    graph: dict[str, dict[str, str]] = {}
    for base in ("invdiff", "operators", "datasets"):
        for path in sorted((ROOT / base).rglob("*.py")):
            module = _module_name(path)
            package = module if path.name == "__init__.py" else module.rpartition(".")[0]
            arrows = graph.setdefault(module, {})
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    targets = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom):
                    if node.level:
                        anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                        source = ".".join(anchor + ([node.module] if node.module else []))
                    else:
                        source = node.module or ""
                    # `from package import submodule` imports the submodule
                    targets = [f"{source}.{a.name}" if _is_module(f"{source}.{a.name}") else source for a in node.names]
                else:
                    continue
                for target in targets:
                    if target.split(".")[0] == "invdiff" and target != module:
                        arrows.setdefault(target, f"{path.relative_to(ROOT)}:{node.lineno}")
    return graph


def unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "invdiff"


GRAPH = import_graph()


def _unit_arrows() -> dict[tuple[str, str], str]:
    arrows = {}
    for module, targets in GRAPH.items():
        for target, where in targets.items():
            a, b = unit(module), unit(target)
            if a != b and a != "invdiff":
                arrows.setdefault((a, b), where)
    return arrows


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan)."""
    index, low, on_stack, stack, out = {}, {}, set(), [], []

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
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_graph_sees_the_whole_tree():
    assert {"invdiff.measurement", "invdiff.operators.mri", "invdiff.datasets.fastmri", "invdiff.cli"} <= set(GRAPH)
    assert "invdiff.samplers.base" in GRAPH["invdiff.samplers.dps"]  # a plain import
    assert "invdiff.operators.fft" in GRAPH["invdiff.datasets.fastmri"]  # the operators/ mapping


def test_every_unit_has_a_layer():
    units = {unit(m) for m in GRAPH} - {"invdiff"}
    assert sorted(units - set(RANK)) == []


@pytest.mark.parametrize("arrow", sorted(_unit_arrows()), ids=lambda a: f"{a[0]}->{a[1]}")
def test_no_unit_imports_a_higher_layer(arrow):
    a, b = arrow
    assert RANK[b] >= RANK[a], f"{a} imports {b}, a layer above it ({_unit_arrows()[arrow]})"


def test_no_cycle_between_units():
    graph: dict[str, set[str]] = {}
    for a, b in _unit_arrows():
        graph.setdefault(a, set()).add(b)
    assert _cycles(graph) == []


def test_no_cycle_between_modules():
    graph = {m: {t for t in targets if t in GRAPH} for m, targets in GRAPH.items()}
    assert _cycles(graph) == []


def test_the_cycle_finder_finds_cycles():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []
