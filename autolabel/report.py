"""``autolabel report``: one self-contained HTML page (and a JSON twin) about a workspace.

Shows counts per stage and route, the estimated precision of the auto-accepted set with its
Wilson interval, throughput of the propose runs, a grid of sample crops per route and, when
``autolabel eval`` has been run, the budget curve.
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import Any

from autolabel.store import Workspace

ROUTES = ("auto", "audit", "review", "rejected", "pending")


def _thumb_data_uri(path: str, box: tuple[float, float, float, float], side: int) -> str | None:
    """A PNG data URI of ``box`` cut from the EXIF-corrected image, long side <= ``side``."""
    from autolabel.errors import ImageError
    from autolabel.imageio import open_image

    try:
        im = open_image(path)
    except ImageError:
        return None
    x0, y0, x1, y1 = (round(v) for v in box)
    x0, y0 = max(0, x0), max(0, y0)
    x1, y1 = min(im.width, max(x1, x0 + 1)), min(im.height, max(y1, y0 + 1))
    crop = im.crop((x0, y0, x1, y1))
    crop.thumbnail((side, side))
    buf = io.BytesIO()
    crop.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _throughput(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for r in runs[-10:]:
        secs = float(r.get("seconds") or 0.0)
        n = int(r.get("n_images") or 0)
        out.append(
            {
                "run": r["id"],
                "detector": r["detector"],
                "model_version": r["model_version"],
                "prompt": r["prompt"],
                "images": n,
                "proposals": int(r.get("n_proposals") or 0),
                "errors": int(r.get("n_errors") or 0),
                "seconds": round(secs, 3),
                "images_per_s": round(n / secs, 3) if secs > 0 else None,
                "finished": r.get("finished_at") is not None,
            }
        )
    return out


def build_report(
    ws: Workspace, *, samples_per_route: int = 12, eval_dir: Path | None = None
) -> dict[str, Any]:
    """Collect everything the report shows, as JSON-friendly data.

    Args:
        ws: the workspace.
        samples_per_route: sample crops per route (chosen evenly over proposal ids).
        eval_dir: folder with ``eval.json`` from ``autolabel eval`` (default
            ``WORKSPACE/eval``); skipped if absent.

    Returns:
        ``{"status", "precision", "runs", "samples": {route: [{proposal_id, image, box,
        phrase, score, source}]}, "eval": dict | None}``.
    """
    from autolabel.select.run import precision_estimate, status_summary
    from autolabel.store.images import workspace_status
    from autolabel.store.labels import iter_labels
    from autolabel.store.runs import list_runs

    by_route: dict[str, list[Any]] = {r: [] for r in ROUTES}
    for lab in iter_labels(ws, include="all"):
        by_route.setdefault(lab.route, []).append(lab)
    samples: dict[str, list[dict[str, Any]]] = {}
    for route, labs in by_route.items():
        if not labs:
            continue
        step = max(1, len(labs) // samples_per_route)
        samples[route] = [
            {
                "proposal_id": lab.proposal_id,
                "image": lab.image_path,
                "box": [round(v, 1) for v in lab.box],
                "phrase": lab.phrase,
                "score": round(lab.score, 4),
                "source": lab.source,
            }
            for lab in labs[::step][:samples_per_route]
        ]
    eval_dir = eval_dir or ws.path / "eval"
    eval_json = eval_dir / "eval.json"
    evaluation = json.loads(eval_json.read_text(encoding="utf-8")) if eval_json.exists() else None
    return {
        "status": {**workspace_status(ws), "auto_precision": status_summary(ws)},
        "precision": precision_estimate(ws),
        "runs": _throughput(list_runs(ws)),
        "samples": samples,
        "eval": evaluation,
        "eval_dir": str(eval_dir) if evaluation is not None else None,
    }


def _table(rows: list[tuple[str, Any]]) -> str:
    cells = "".join(
        f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows
    )
    return f"<table>{cells}</table>"


def _png_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()


def render_html(data: dict[str, Any], *, thumb_side: int = 160) -> str:
    """Render :func:`build_report` data as one self-contained HTML page (images inlined)."""
    st = data["status"]
    sections = [f"<h1>autolabel report</h1><p class=muted>{html.escape(st['workspace'])}</p>"]
    sections.append("<h2>Counts per stage</h2><div class=grid>")
    for key in ("images", "seed_items", "runs", "proposals", "queue", "decisions", "exports"):
        value = st.get(key)
        if isinstance(value, dict):
            sections.append(f"<div><h3>{key}</h3>{_table(list(value.items()))}</div>")
    if st.get("image_errors"):
        errors = _table(list(st["image_errors"].items()))
        sections.append(f"<div><h3>image errors</h3>{errors}</div>")
    sections.append("</div>")

    p = data["precision"]
    if p.get("precision") is not None:
        line = (
            f"{p['precision']:.3f} (Wilson 95% interval {p['low']:.3f}–{p['high']:.3f}) "
            f"from {p['n_correct']}/{p['n_audited']} audited boxes"
        )
    else:
        line = f"unknown: 0 of {p.get('n_audit', 0)} audit items reviewed yet"
    if p.get("expected") is not None:
        line += f"; calibrated expectation {p['expected']:.3f}"
    sections.append(
        f"<h2>Estimated precision of auto-accepted boxes</h2><p>{html.escape(line)}</p>"
    )

    if data["runs"]:
        head = "".join(f"<th>{html.escape(k)}</th>" for k in data["runs"][0])
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in r.values()) + "</tr>"
            for r in data["runs"]
        )
        sections.append(f"<h2>Propose runs</h2><table><tr>{head}</tr>{body}</table>")

    sections.append("<h2>Sample crops per route</h2>")
    for route, items in data["samples"].items():
        cells = []
        for it in items:
            uri = _thumb_data_uri(it["image"], tuple(it["box"]), thumb_side)
            img = f'<img src="{uri}" alt="crop">' if uri else "<span>(unreadable)</span>"
            cap = html.escape(f"#{it['proposal_id']} {it['phrase']} {it['score']:.2f}")
            cells.append(f"<figure>{img}<figcaption>{cap}</figcaption></figure>")
        sections.append(f"<h3>{html.escape(route)} ({len(items)} shown)</h3>")
        sections.append(f"<div class=crops>{''.join(cells)}</div>")

    ev = data.get("eval")
    if ev:
        sections.append("<h2>Evaluation against ground truth</h2>")
        flat = [(k, v) for k, v in ev.items() if not isinstance(v, (dict, list))]
        sections.append(_table(flat))
        eval_dir = Path(data["eval_dir"])
        for png in sorted(eval_dir.glob("*.png")):
            sections.append(
                f'<figure><img class=plot src="{_png_uri(png)}" alt="{png.name}">'
                f"<figcaption>{html.escape(png.name)}</figcaption></figure>"
            )
    style = (
        "body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px;color:#222}"
        "table{border-collapse:collapse;margin:.3em 0}th,td{border:1px solid #ddd;"
        "padding:2px 8px;text-align:left;font-size:13px}.grid{display:flex;flex-wrap:wrap;"
        "gap:1em}.crops{display:flex;flex-wrap:wrap;gap:8px}figure{margin:0;font-size:11px}"
        f"figure img{{max-width:{thumb_side}px;max-height:{thumb_side}px;display:block;"
        "border:1px solid #ccc}img.plot{max-width:600px;max-height:none}.muted{color:#777}"
    )
    return (
        "<!doctype html><html><head><meta charset=utf-8><title>autolabel report</title>"
        f"<style>{style}</style></head><body>{''.join(sections)}</body></html>"
    )


def write_report(
    ws: Workspace, out: Path | None = None, *, samples_per_route: int = 12
) -> tuple[Path, Path]:
    """Write ``report.html`` and ``report.json`` (default: inside the workspace).

    Returns:
        ``(html_path, json_path)``.
    """
    out_dir = Path(out) if out is not None else ws.path
    out_dir.mkdir(parents=True, exist_ok=True)
    data = build_report(ws, samples_per_route=samples_per_route)
    html_path, json_path = out_dir / "report.html", out_dir / "report.json"
    tmp_html, tmp_json = html_path.with_suffix(".html.tmp"), json_path.with_suffix(".json.tmp")
    tmp_html.write_text(render_html(data), encoding="utf-8")
    tmp_json.write_text(
        json.dumps(data, indent=1, sort_keys=True, ensure_ascii=False, default=str),
        encoding="utf-8",
    )
    tmp_html.replace(html_path)
    tmp_json.replace(json_path)
    return html_path, json_path
