"""The layout in /work/shared/ARCHITECTURE.md (README "where things go"), checked with ``ast``.

- imports run one way: cli -> commands/pipeline -> stages -> detect -> store -> core, a stage
  only uses earlier stages, and no two modules import each other (directly or in a loop);
- no function is longer than 150 lines (the schema's SQL text does not count);
- IoU is computed in one place (``autolabel/geometry.py``);
- only the command layer reads the workspace config; library code gets config sections;
- ``python -m autolabel --help`` works.

Every import counts, including lazy ones inside functions and ``TYPE_CHECKING`` blocks: a lazy
import still ties the two modules together. The tables below are the layout; adjust them (not
the checks) when the layout changes.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "autolabel"

LAYERS: dict[str, tuple[str, ...]] = {
    "cli": ("autolabel.cli", "autolabel.__main__"),
    "commands": ("autolabel.commands", "autolabel.steps", "autolabel.pipeline", "autolabel.report"),
    "stages": (
        "autolabel.ingest",
        "autolabel.seed",
        "autolabel.propose",
        "autolabel.select",
        "autolabel.review",
        "autolabel.train",
        "autolabel.export",
        "autolabel.evaluate",
    ),
    "detect": ("autolabel.detect",),
    "store": ("autolabel.store",),
    "core": (
        "autolabel",  # the package __init__ only (exact match): public re-exports, no store
        "autolabel.config",
        "autolabel.constants",
        "autolabel.types",
        "autolabel.geometry",
        "autolabel.imageio",
        "autolabel.errors",
        "autolabel.synth",
    ),
}
"""Layer name -> module prefixes, top layer first. A module may import its own layer or any
layer below it, never one above. The longest matching prefix decides."""

STAGE_ORDER = LAYERS["stages"]
"""A stage may import an earlier stage (train uses seed data), never a later one."""

FUNCTION_MAX_LINES = 150
SQL_FILES = ("autolabel/store/schema.py",)
"""Files whose string literals (DDL) do not count towards a function's length."""

IOU_HOME = "autolabel/geometry.py"
IOU_IMPLEMENTATIONS = 1

CONFIG_READERS = (
    "autolabel/commands/",
    "autolabel/steps.py",
    "autolabel/pipeline.py",
    "autolabel/cli.py",
    "autolabel/__main__.py",
    "autolabel/config.py",
    "autolabel/store/db.py",
)
"""Files (or folders, ending in /) allowed to read the workspace config."""


# --------------------------------------------------------------------------------- parsing


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _sources() -> dict[str, tuple[Path, ast.Module]]:
    """Module name -> (file, parsed tree) for every ``.py`` file of the package."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        out[_module_name(path)] = (path, ast.parse(path.read_text(encoding="utf-8"), str(path)))
    return out


SOURCES = _sources()


def _rel(path: Path) -> str:
    return path.relative_to(REPO).as_posix()


@dataclass(frozen=True)
class Edge:
    src: str
    dst: str
    where: str  # "file:line"


def _resolve(module: str, node: ast.Import | ast.ImportFrom, is_pkg: bool) -> Iterator[str]:
    """The autolabel modules one import statement reaches (``from pkg import submodule``
    reaches the submodule; ``from pkg import name`` reaches the package)."""
    if isinstance(node, ast.Import):
        for alias in node.names:
            if alias.name == "autolabel" or alias.name.startswith("autolabel."):
                yield alias.name
        return
    if node.level:
        base = module.split(".") if is_pkg else module.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        target = ".".join([*base, node.module] if node.module else base)
    else:
        target = node.module or ""
    if not (target == "autolabel" or target.startswith("autolabel.")):
        return
    for alias in node.names:
        sub = f"{target}.{alias.name}"
        yield sub if sub in SOURCES else target


def import_graph() -> list[Edge]:
    """Every import between two autolabel modules, lazy ones included."""
    edges: dict[tuple[str, str, str], Edge] = {}
    for module, (path, tree) in SOURCES.items():
        is_pkg = path.name == "__init__.py"
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                for dst in _resolve(module, node, is_pkg):
                    # a missing module is someone else's ImportError; keep the nearest package
                    while dst not in SOURCES and "." in dst:
                        dst = dst.rsplit(".", 1)[0]
                    if dst != module:
                        e = Edge(module, dst, f"{_rel(path)}:{node.lineno}")
                        edges[e.src, e.dst, e.where] = e
    return sorted(edges.values(), key=lambda e: (e.src, e.dst, e.where))


def layer_of(module: str) -> tuple[str, str] | None:
    """(layer, matched prefix) for a module, or None when no layer claims it."""
    best = None
    for layer, prefixes in LAYERS.items():
        for prefix in prefixes:
            exact_only = prefix == "autolabel"
            hit = module == prefix or (not exact_only and module.startswith(prefix + "."))
            if hit and (best is None or len(prefix) > len(best[1])):
                best = (layer, prefix)
    return best


def layering_violations(edges: list[Edge]) -> list[str]:
    order = list(LAYERS)
    out = []
    for e in edges:
        src, dst = layer_of(e.src), layer_of(e.dst)
        if src is None or dst is None:
            continue  # reported by test_every_module_has_a_layer
        (ls, ps), (ld, pd) = src, dst
        if order.index(ld) < order.index(ls):
            out.append(f"{e.where}: {e.src} ({ls}) imports {e.dst} ({ld}), a layer above")
        elif ls == ld == "stages" and STAGE_ORDER.index(pd) > STAGE_ORDER.index(ps):
            out.append(f"{e.where}: stage {ps} imports {pd}, a later stage")
    return out


def cycles(edges: list[Edge]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    graph: dict[str, set[str]] = {m: set() for m in SOURCES}
    for e in edges:
        graph[e.src].add(e.dst)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    m = stack.pop()
                    on_stack.discard(m)
                    comp.append(m)
                    if m == node:
                        break
                if len(comp) > 1:
                    found.append(sorted(comp))
    return found


# ---------------------------------------------------------------------------------- layering


def test_every_module_has_a_layer():
    missing = sorted(m for m in SOURCES if layer_of(m) is None)
    assert not missing, f"modules with no layer (add them to LAYERS): {missing}"


LAZY_REEXPORTS = {("autolabel", "autolabel.store")}
"""Allowed upward edges: ``autolabel.Workspace`` is re-exported lazily (module
``__getattr__``), so ``import autolabel`` loads no store (checked in test_core_layering)."""


def test_imports_run_down_the_layers():
    edges = [e for e in import_graph() if (e.src, e.dst) not in LAZY_REEXPORTS]
    violations = layering_violations(edges)
    assert not violations, "imports against the layering:\n" + "\n".join(violations)


def test_no_import_cycles():
    edges = import_graph()
    found = cycles(edges)
    lines = []
    for comp in found:
        inside = [e for e in edges if e.src in comp and e.dst in comp]
        lines.append(" <-> ".join(comp))
        lines.extend(f"    {e.where}: {e.src} -> {e.dst}" for e in inside)
    assert not found, "import cycles:\n" + "\n".join(lines)


def test_the_checker_sees_lazy_relative_and_upward_imports(tmp_path):
    """The graph builder itself: a lazy relative import of a later stage is an edge and a
    violation; a cycle of two modules is found."""
    tree = ast.parse(
        "def f():\n    from ..export import core\n    from autolabel.store import db\n"
    )
    node_export, node_store = (n for n in ast.walk(tree) if isinstance(n, ast.ImportFrom))
    assert list(_resolve("autolabel.seed.locate", node_export, False)) == ["autolabel.export.core"]
    assert list(_resolve("autolabel.seed.locate", node_store, False)) == ["autolabel.store.db"]
    edges = [
        Edge("autolabel.seed.locate", "autolabel.export.core", "x:2"),
        Edge("autolabel.store.db", "autolabel.select.run", "x:3"),
        Edge("autolabel.export.core", "autolabel.seed.locate", "x:4"),
    ]
    bad = layering_violations(edges)
    assert len(bad) == 2 and "later stage" in bad[0] and "layer above" in bad[1]
    assert cycles(edges) == [["autolabel.export.core", "autolabel.seed.locate"]]


# ----------------------------------------------------------------------------- function size


def _functions(tree: ast.AST) -> Iterator[ast.FunctionDef | ast.AsyncFunctionDef]:
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield node


def _string_lines(node: ast.AST) -> int:
    """Lines spanned by multi-line string literals inside ``node`` (SQL text)."""
    n = 0
    for sub in ast.walk(node):
        if isinstance(sub, ast.Constant) and isinstance(sub.value, str):
            n += (sub.end_lineno or sub.lineno) - sub.lineno
    return n


def test_no_function_over_150_lines():
    long = []
    for path, tree in SOURCES.values():
        for fn in _functions(tree):
            n = (fn.end_lineno or fn.lineno) - fn.lineno
            if _rel(path) in SQL_FILES:
                n -= _string_lines(fn)
            if n > FUNCTION_MAX_LINES:
                long.append(f"{_rel(path)}:{fn.lineno} {fn.name}: {n} lines")
    assert not long, f"functions over {FUNCTION_MAX_LINES} lines:\n" + "\n".join(long)


# ------------------------------------------------------------------------------------- IoU


def _names(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}


def computes_iou(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    """True when the function divides an intersection (a name starting with ``inter``) by
    something, or is named like IoU and does min/max box arithmetic with a division itself."""
    divides = [n for n in ast.walk(fn) if isinstance(n, ast.BinOp) and isinstance(n.op, ast.Div)]
    if any(any(x.lower().startswith("inter") for x in _names(d.left)) for d in divides):
        return True
    if "iou" not in fn.name.lower() or not divides:
        return False
    called = {
        (c.func.attr if isinstance(c.func, ast.Attribute) else getattr(c.func, "id", ""))
        for c in ast.walk(fn)
        if isinstance(c, ast.Call)
    }
    return bool(called & {"maximum", "minimum", "max", "min", "clip"})


def iou_implementations() -> list[str]:
    return [
        f"{_rel(path)}:{fn.lineno} {fn.name}"
        for path, tree in SOURCES.values()
        for fn in _functions(tree)
        if computes_iou(fn)
    ]


def test_one_iou_implementation():
    found = iou_implementations()
    elsewhere = [f for f in found if not f.startswith(IOU_HOME + ":")]
    assert not elsewhere, f"IoU computed outside {IOU_HOME} (call it instead):\n" + "\n".join(
        elsewhere
    )
    assert len(found) == IOU_IMPLEMENTATIONS, f"expected one IoU implementation, got {found}"


def test_the_iou_finder_tells_copies_from_wrappers():
    tree = ast.parse(
        "def pairwise_iou(a, b):\n"
        "    lt = np.maximum(a[:, None, :2], b[None, :, :2])\n"
        "    inter = area(lt)\n"
        "    return inter / (area(a) + area(b) - inter)\n"
        "def _iou(a, b):\n"
        "    iw = max(0, min(a[2], b[2]) - max(a[0], b[0]))\n"
        "    return iw * iw / ((a[2] - a[0]) * (a[3] - a[1]))\n"
        "def mask_box_iou(xyxy, masks):\n"
        "    return geometry.paired_iou(xyxy, mask_boxes(masks))\n"
        "def scale(xyxy, s):\n"
        "    return np.minimum(xyxy / s, 1)\n"
    )
    assert [fn.name for fn in _functions(tree) if computes_iou(fn)] == ["pairwise_iou", "_iou"]


# ---------------------------------------------------------------------------------- config


def _allowed_to_read_config(rel: str) -> bool:
    return any(rel == a or (a.endswith("/") and rel.startswith(a)) for a in CONFIG_READERS)


def config_reads(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """Places that read the workspace config: ``<x>.config(...)`` (``Workspace.config``),
    ``load_config(...)``, and the config file itself (``<x>.config_path``, ``CONFIG_NAME``)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            if isinstance(f, ast.Attribute) and f.attr in ("config", "load_config"):
                yield node.lineno, ast.unparse(node)[:60]
            elif isinstance(f, ast.Name) and f.id == "load_config":
                yield node.lineno, ast.unparse(node)[:60]
        elif isinstance(node, ast.Attribute) and node.attr in ("config_path", "CONFIG_NAME"):
            yield node.lineno, ast.unparse(node)
        elif isinstance(node, ast.alias) and node.name in ("load_config", "CONFIG_NAME"):
            yield getattr(node, "lineno", 0), f"import {node.name}"


def test_library_code_never_reads_the_workspace_config():
    bad = [
        f"{_rel(path)}:{line} {what}"
        for path, tree in SOURCES.values()
        if not _allowed_to_read_config(_rel(path))
        for line, what in config_reads(tree)
    ]
    assert not bad, (
        "library code reads the workspace config (take the config section as an argument):\n"
        + "\n".join(bad)
    )


def test_the_config_finder_sees_the_ways_config_is_read():
    tree = ast.parse(
        "from autolabel.config import load_config\n"
        "cfg = ws.config().select\n"
        "raw = load_config(p)\n"
        "text = ws.config_path.read_text()\n"
        "ok = cfg.config_value\n"
    )
    assert sorted(line for line, _ in config_reads(tree)) == [1, 2, 3, 4]


# ----------------------------------------------------------------------------------- tests


def test_tests_take_shared_helpers_from_support():
    """A test file imports helpers from ``tests.support``, never from another test file or
    from conftest (fixtures are found by pytest; importing them runs a test module twice)."""
    bad = []
    for path in sorted((REPO / "tests").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.ImportFrom):
                base = ("." * node.level) + (node.module or "")
                names = [base] + [f"{base}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            for name in names:
                parts = name.lstrip(".").split(".")
                if any(p.startswith("test_") or p == "conftest" for p in parts):
                    bad.append(f"{_rel(path)}:{node.lineno} imports {name}")
    assert not bad, "move shared helpers to tests/support:\n" + "\n".join(bad)


def test_tiny_model_cache_lives_outside_the_checkout(monkeypatch, tmp_path):
    from tests.support.models import tiny_cache_root

    monkeypatch.delenv("AUTOLABEL_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert tiny_cache_root() == tmp_path / "xdg" / "autolabel" / "tiny-models"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert not tiny_cache_root().resolve().is_relative_to(REPO)
    monkeypatch.setenv("AUTOLABEL_CACHE", str(tmp_path / "mine"))
    assert tiny_cache_root() == tmp_path / "mine" / "tiny-models"


# ------------------------------------------------------------------------------ entry point


def test_python_dash_m_autolabel_help():
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "PYTHONPATH": path}
    r = subprocess.run(
        [sys.executable, "-m", "autolabel", "--help"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert "Usage:" in r.stdout and "propose" in r.stdout


if __name__ == "__main__":  # pragma: no cover - print the current violations
    sys.exit(pytest.main([__file__, "-q"]))
