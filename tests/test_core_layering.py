"""Layering of the core, the store and the select stage (checked on the source with ``ast``)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "autolabel"
STAGES = ("ingest", "seed", "propose", "select", "review", "train", "export")
STAGES += ("evaluate", "detect", "pipeline", "commands", "cli", "report")


def _imports(path: Path) -> set[str]:
    """Every ``autolabel.*`` module a file imports (top level, in functions, TYPE_CHECKING)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("autolabel")}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("autolabel"):
            out.add(node.module)
    return out


def test_import_autolabel_loads_no_store_and_no_stage():
    code = (
        "import sys, autolabel\n"
        "bad = sorted(m for m in sys.modules if m.startswith('autolabel.') and m not in "
        "('autolabel.errors', 'autolabel.types'))\n"
        "heavy = sorted(m for m in ('torch', 'transformers', 'sqlite3', 'cv2') if m in "
        "sys.modules)\n"
        "print(bad, heavy)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=PACKAGE
    )
    assert out.stdout.strip() == "[] []"


def test_workspace_is_still_exported_lazily():
    import autolabel
    from autolabel.store import Workspace

    assert autolabel.Workspace is Workspace
    with pytest.raises(AttributeError, match="no attribute"):
        _ = autolabel.NoSuchThing


@pytest.mark.parametrize("path", sorted((PACKAGE / "store").glob("*.py")), ids=lambda p: p.name)
def test_the_store_never_imports_a_stage(path):
    bad = {m for m in _imports(path) if m.split(".")[1] in STAGES}
    assert bad == set()


@pytest.mark.parametrize(
    "name", ["constants.py", "geometry.py", "errors.py", "types.py", "config.py"]
)
def test_core_modules_import_no_stage_and_no_store(name):
    imported = _imports(PACKAGE / name)
    bad = {m for m in imported if m.split(".")[1] in (*STAGES, "store")}
    if name == "config.py":  # the export format names come from the registry (not ours)
        bad.discard("autolabel.export.formats")
    assert bad == set()


def test_select_talks_to_the_store_in_one_module():
    talkers = sorted(
        p.name
        for p in (PACKAGE / "select").glob("*.py")
        if any(m.startswith("autolabel.store") for m in _imports(p))
    )
    assert talkers == ["run.py"]


def test_library_code_does_not_read_the_workspace_config():
    """``ws.config()`` belongs to the commands; the stages take config sections."""
    offenders = []
    for sub in ("select", "seed", "store", "evaluate.py"):
        paths = [PACKAGE / sub] if sub.endswith(".py") else sorted((PACKAGE / sub).glob("*.py"))
        for p in paths:
            if p.name == "captions.py":  # seed prompts: being moved to the Prompt object
                continue
            for node in ast.walk(ast.parse(p.read_text(encoding="utf-8"))):
                if (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "config"
                    and not (p.name == "db.py")
                ):
                    offenders.append(f"{p.relative_to(PACKAGE)}:{node.lineno}")
    assert offenders == []
