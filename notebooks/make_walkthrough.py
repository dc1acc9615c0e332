"""Writes notebooks/walkthrough.ipynb (run: python notebooks/make_walkthrough.py)."""

from __future__ import annotations

from pathlib import Path

import nbformat as nbf

CELLS = [
    (
        "md",
        """# autolabel walkthrough: the whole loop through the Python API

This notebook builds a small demo workspace (generated phone screenshots with product photos
amid clutter, plus hand-crop imitations with captions), then walks through every stage with
the library: look at proposals, review a few items, re-select, export, evaluate and report.
It runs offline; the detectors are the weight-free regions detector (no Grounding DINO
weights on the machine) and tiny random-init Grounding DINO / SAM, so quality is not the
point — the data flow is.

Set `AUTOLABEL_NOTEBOOK_DIR` to keep the outputs; otherwise a temporary folder is used.""",
    ),
    (
        "code",
        """import json
import os
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # figures are shown with display(), so no GUI backend is needed
import matplotlib.pyplot as plt
from IPython.display import Image as IPImage
from IPython.display import display
from matplotlib.patches import Rectangle

from autolabel.pipeline import run_demo


def show(fig):
    \"\"\"Display a figure as PNG (works in any kernel/back-end) and close it.\"\"\"
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80, bbox_inches="tight")
    plt.close(fig)
    display(IPImage(data=buf.getvalue()))


root = Path(os.environ.get("AUTOLABEL_NOTEBOOK_DIR") or tempfile.mkdtemp()) / "walkthrough"
summary = run_demo(root, n_images=6, n_seed=4, tiny_images=1, log=print)
[s["stage"] for s in summary["stages"]]""",
    ),
    (
        "md",
        """## 1. The workspace

Everything lives in one SQLite database; `workspace_status` is what `autolabel status`
prints.""",
    ),
    (
        "code",
        """from autolabel.store import Workspace
from autolabel.store.images import workspace_status

ws = Workspace.open(summary["workspace"])
status = workspace_status(ws)
{k: status[k] for k in ("images", "seed_items", "proposals", "queue")}""",
    ),
    (
        "md",
        """## 2. Seed boxes found from hand crops

`seed add` located each crop in its original screenshot; the box is in original pixels.""",
    ),
    (
        "code",
        """from autolabel.imageio import load_rgb
from autolabel.store.seed import list_seed_items

items = [it for it in list_seed_items(ws) if it.box is not None][:3]
fig, axes = plt.subplots(1, len(items), figsize=(4 * len(items), 5))
for ax, it in zip(list(axes) if len(items) > 1 else [axes], items, strict=True):
    ax.imshow(load_rgb(it.original_path))
    x0, y0, x1, y1 = it.box
    ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, color="lime", lw=2))
    ax.set_title(f"{it.phrase} (match {it.score:.2f})", fontsize=9)
    ax.axis("off")
show(fig)""",
    ),
    (
        "md",
        """## 3. Proposals and their routes

`propose` stored boxes with signals; `select` routed them: auto-accepted, review, audit or
rejected. Colours: green auto, orange review, blue audit, red rejected.""",
    ),
    (
        "code",
        """from autolabel.store.images import iter_images
from autolabel.store.runs import load_proposals

colors = {"auto": "lime", "review": "orange", "audit": "deepskyblue", "rejected": "red"}
routes = dict(ws.conn.execute("SELECT id, route FROM current_proposals").fetchall())
images = [im for im in iter_images(ws) if im.status == "ok"][:3]
fig, axes = plt.subplots(1, len(images), figsize=(4 * len(images), 5))
for ax, im in zip(axes, images, strict=True):
    ids, props = load_proposals(ws, im.id)
    ax.imshow(load_rgb(im.path))
    for pid, (x0, y0, x1, y1), score in zip(ids, props.xyxy, props.score, strict=True):
        c = colors.get(routes.get(pid), "white")
        ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, color=c, lw=2))
        ax.text(x0, y0, f"{score:.2f}", color=c, fontsize=8)
    ax.set_title(Path(im.path).name, fontsize=9)
    ax.axis("off")
show(fig)""",
    ),
    (
        "md",
        """## 4. Review (simulated)

A real reviewer uses `autolabel review`. Here a simulated reviewer works the same queue
through the library (`ReviewQueue`): it accepts a box when it overlaps the generated truth by
IoU >= 0.5 and rejects it otherwise.""",
    ),
    (
        "code",
        """from autolabel.review.queue import ReviewQueue


def iou(a, b):
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    area = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / area if area > 0 else 0.0


truth_path = root / "data" / "truth.jsonl"
truth = {}
for line in truth_path.read_text().splitlines():
    row = json.loads(line)
    truth[str(Path(row["image"]).resolve())] = row["boxes"]
paths = dict(ws.conn.execute("SELECT id, path FROM images").fetchall())

queue = ReviewQueue(ws)
done = {"accept": 0, "reject": 0}
while (item := queue.next("notebook")) is not None:
    boxes = truth.get(str(Path(paths[item["image_id"]]).resolve()), [])
    ok = any(iou(item["box"], t) >= 0.5 for t in boxes)
    queue.decide("notebook", item["item_id"], "accept" if ok else "reject")
    done["accept" if ok else "reject"] += 1
done""",
    ),
    (
        "md",
        """## 5. Select again, export, look at the crops

The decisions feed back: `run_select` refits the calibration and re-routes undecided boxes;
accepted boxes are exportable immediately.""",
    ),
    (
        "code",
        """from autolabel.config import ExportConfig
from autolabel.export import export_dataset
from autolabel.select.run import precision_estimate, run_select
from autolabel.select.stats import format_estimate

sel = run_select(ws, ws.config().select)
print("routes:", sel["routes"])
print(format_estimate(precision_estimate(ws)))
result = export_dataset(ws, root / "export", ExportConfig(size=224, min_size=48))
print(result.version, result.counts)
rows = [json.loads(x) for x in (result.path / "swift.jsonl").read_text().splitlines()]
rows[:3]""",
    ),
    (
        "code",
        """from PIL import Image

shown = rows[:8]
if shown:
    fig, axes = plt.subplots(1, len(shown), figsize=(2.2 * len(shown), 2.6), squeeze=False)
    for ax, row in zip(axes[0], shown, strict=True):
        ax.imshow(Image.open(result.path / row["image"]))
        ax.set_title(row["text"][:18], fontsize=7)
        ax.axis("off")
    show(fig)
else:
    print("no crops in this version")""",
    ),
    (
        "md",
        """## 6. Evaluate against the truth: the budget curve

`evaluate` compares the workspace with ground truth and simulates reviewing in the
selector's order vs random order vs plain score order.""",
    ),
    (
        "code",
        """from autolabel.evaluate import evaluate

ev = evaluate(ws, truth_path)
print({k: ev[k] for k in ("ap50", "auto_precision", "selector_auc", "random_auc")})
display(IPImage(filename=str(ws.path / "eval" / "budget_curve.png")))""",
    ),
    (
        "md",
        """## 7. Report

One self-contained HTML page with counts, the precision estimate, throughput, sample crops
per route and the budget curve (`autolabel report`).""",
    ),
    (
        "code",
        """from autolabel.report import write_report

html_path, json_path = write_report(ws)
ws.close()
print(html_path, html_path.stat().st_size, "bytes")""",
    ),
]


def main() -> None:
    nb = nbf.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nb.cells = [
        nbf.v4.new_markdown_cell(src) if kind == "md" else nbf.v4.new_code_cell(src)
        for kind, src in CELLS
    ]
    out = Path(__file__).with_name("walkthrough.ipynb")
    nbf.write(nb, out)
    print(out)


if __name__ == "__main__":
    main()
