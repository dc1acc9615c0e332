"""``detect/`` and ``propose/`` import graph: no cycles, no import back up the layers."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "autolabel"
CORE = {"config", "constants", "types", "geometry", "imageio", "errors"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PKG.parent).with_suffix("").parts
    return ".".join(parts).removesuffix(".__init__")


def _graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in PKG.rglob("*.py")}
    edges: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):  # lazy ones too
            targets: list[str] = []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [f"{node.module}.{a.name}" for a in node.names] + [node.module]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            for t in targets:
                if t in modules and t != name:
                    edges[name].add(t)
                    break
    return edges


def _cycle(edges: dict[str, set[str]], nodes: set[str]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in sorted(edges[n] & nodes):
            if state.get(m) == 1:
                return [*stack[stack.index(m) :], m]
            if m not in state and (found := visit(m)):
                return found
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(nodes):
        if n not in state and (found := visit(n)):
            return found
    return None


@pytest.mark.parametrize("package", ["autolabel.detect", "autolabel.propose"])
def test_no_import_cycle(package):
    edges = _graph()
    nodes = {m for m in edges if m == package or m.startswith(package + ".")}
    assert nodes, package
    assert _cycle(edges, nodes) is None


def test_detect_imports_only_itself_the_store_and_the_core():
    edges = _graph()
    allowed = {f"autolabel.{c}" for c in CORE}
    for mod in (m for m in edges if m.startswith("autolabel.detect")):
        for target in edges[mod]:
            ok = (
                target in allowed
                or target.startswith(("autolabel.detect", "autolabel.store"))
                or target == "autolabel"
            )
            assert ok, f"{mod} imports {target}"


def test_propose_does_not_import_a_later_stage():
    edges = _graph()
    later = ("autolabel.select", "autolabel.review", "autolabel.train", "autolabel.export")
    later += ("autolabel.commands", "autolabel.pipeline", "autolabel.cli")
    for mod in (m for m in edges if m.startswith("autolabel.propose")):
        bad = [t for t in edges[mod] if t.startswith(later)]
        assert not bad, f"{mod} imports {bad}"
