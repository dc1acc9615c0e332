"""The walkthrough notebook is executed, so it cannot rot; what it shows matches what it wrote."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _texts(cell) -> list[str]:
    """Printed text and plain-text results of one executed code cell."""
    out = []
    for o in cell.get("outputs", []):
        if o.get("output_type") == "stream":
            out.append(o.get("text", ""))
        elif "text/plain" in o.get("data", {}):
            out.append(o["data"]["text/plain"])
    return out


def _cell(nb, needle: str):
    cells = [c for c in nb.cells if c.cell_type == "code" and needle in c.source]
    assert len(cells) == 1, f"expected one code cell with {needle!r}, got {len(cells)}"
    return cells[0]


@pytest.mark.slow
def test_walkthrough_notebook_executes(tmp_path: Path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    monkeypatch.setenv("AUTOLABEL_NOTEBOOK_DIR", str(tmp_path))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(REPO / "notebooks" / "walkthrough.ipynb", as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 3, "boxes, crops and the budget curve are drawn"

    root = tmp_path / "walkthrough"
    from autolabel.store import Workspace

    # the review the notebook reports is the review stored in the workspace
    done = ast.literal_eval(_texts(_cell(nb, "queue.decide("))[-1])
    with Workspace.open(root / "workspace") as ws:
        stored = dict(
            ws.conn.execute(
                "SELECT action, COUNT(*) FROM decisions WHERE reviewer = 'notebook' GROUP BY action"
            ).fetchall()
        )
    assert sum(done.values()) > 0, "the demo leaves items to review"
    assert stored == {k: v for k, v in done.items() if v}

    # the export version it printed is on disk, with one crop file per dataset row
    printed = "".join(_texts(_cell(nb, "export_dataset(")))
    versions = [p for p in (root / "export").iterdir() if p.is_dir() and p.name in printed]
    assert len(versions) == 1, (printed, sorted(p.name for p in (root / "export").iterdir()))
    folder = versions[0]
    # train rows at the top, validation rows under val/ (a grouped split, docs/export.md)
    rows = [
        json.loads(x)
        for f in (folder / "swift.jsonl", folder / "val" / "swift.jsonl")
        if f.exists()
        for x in f.read_text().splitlines()
    ]
    manifest = json.loads((folder / "export.json").read_text())
    assert rows and len(rows) == manifest["counts"]["crops"]
    assert all((folder / r["image"]).is_file() for r in rows)
    assert len([p for p in (folder / "crops").iterdir() if p.is_file()]) == len(rows)

    # the evaluation plot and the report exist, the report with the size it printed
    assert (root / "workspace" / "eval" / "budget_curve.png").stat().st_size > 0
    m = re.search(r"(\S+report\.html) (\d+) bytes", "".join(_texts(_cell(nb, "write_report("))))
    assert m, "the report cell prints the report path and size"
    report = Path(m.group(1))
    assert report.resolve() == (root / "workspace" / "report.html").resolve()
    assert report.stat().st_size == int(m.group(2)) > 0
