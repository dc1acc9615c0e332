"""``autolabel report``: one self-contained HTML page (and a JSON twin) about a workspace.

Shows what to do next (items to review, calibration state, the precision estimate and its
interval, or "unknown"), counts per stage and route, each auto-accepted and audited crop
beside its source thumbnail with the box drawn (source size, upscale factor, audit outcome),
throughput of the propose runs, sample crops per route and, when ``autolabel eval`` has been
run, the budget curve.
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from autolabel.store import Workspace

if TYPE_CHECKING:
    from autolabel.config import ExportConfig

ROUTES = ("auto", "audit", "review", "rejected", "pending")
MAX_CROPS = 60
"""Auto-accepted crops shown (most upscaled first); audited crops are all shown up to this."""
UPSCALE_WARN = 1.5


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


def _pair_uris(im: Any, box: Any, side: int) -> tuple[str, str]:
    """PNG data URIs of the crop (long side ``side``, upscaled like export would) and of the
    source thumbnail (long side ``side``) with the box drawn."""
    from PIL import ImageDraw

    x0, y0, x1, y1 = (round(float(v)) for v in box)
    x0, y0 = max(0, x0), max(0, y0)
    x1, y1 = min(im.width, max(x1, x0 + 1)), min(im.height, max(y1, y0 + 1))
    crop = im.crop((x0, y0, x1, y1))
    k = side / max(crop.size)
    crop = crop.resize((max(1, round(crop.width * k)), max(1, round(crop.height * k))))
    thumb = im.copy()
    thumb.thumbnail((side, side))
    t = thumb.width / im.width
    draw = ImageDraw.Draw(thumb)
    draw.rectangle(
        (x0 * t - 1, y0 * t - 1, max(x1 * t, x0 * t + 2) + 1, max(y1 * t, y0 * t + 2) + 1),
        outline=(0, 220, 0),
        width=2,
    )
    return _png(crop), _png(thumb)


def _png(im: Any) -> str:
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _crop_figures(rows: list[dict[str, Any]], side: int) -> str:
    """``<figure>``s of crop + source pairs; each source image is decoded once."""
    from autolabel.errors import ImageError
    from autolabel.imageio import open_image

    cells = []
    cache: dict[str, Any] = {}
    for it in rows:
        path = it["image"]
        if path not in cache:
            cache.clear()  # rows are grouped loosely; keep one decoded image at a time
            try:
                cache[path] = open_image(path)
            except ImageError:
                cache[path] = None
        im = cache[path]
        if im is None:
            pics = "<span>(unreadable)</span>"
        else:
            crop, src = _pair_uris(im, it["box"], side)
            pics = (
                f'<img src="{crop}" alt="crop as exported"><img src="{src}" alt="source with box">'
            )
        bw = it["box"][2] - it["box"][0]
        bh = it["box"][3] - it["box"][1]
        up = it.get("upscale")
        up_txt = "upscale ?" if up is None else f"upscale ×{up:.2f}"
        warn = " class=warn" if up is not None and up > UPSCALE_WARN else ""
        outcome = ""
        if "correct" in it:
            word = "correct" if it["correct"] else "wrong"
            outcome = f' · <b class="{word}">{word}</b> ({html.escape(it["action"])})'
        cap = (
            f"#{it['proposal_id']} {html.escape(it['phrase'])} {it['score']:.2f}<br>"
            f"source {it['width']}×{it['height']} · box {bw:.0f}×{bh:.0f} · "
            f"<span{warn}>{up_txt}</span>{outcome}"
        )
        cells.append(f"<figure><div class=pair>{pics}</div><figcaption>{cap}</figcaption></figure>")
    return "".join(cells)


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


def _upscale(box: Any, export: ExportConfig) -> float | None:
    w, h = float(box[2]) - float(box[0]), float(box[3]) - float(box[1])
    side = min(w, h) if export.resize == "short-side" else max(w, h)
    return round(export.size / side, 3) if side > 0 else None


def _crop_row(
    pid: int, image_id: int, path: str, wh: tuple[int, int], box: Any, phrase: str, score: float
) -> dict[str, Any]:
    return {
        "proposal_id": int(pid),
        "image_id": int(image_id),
        "image": path,
        "width": int(wh[0]),
        "height": int(wh[1]),
        "box": [round(float(v), 1) for v in box],
        "phrase": phrase,
        "score": round(float(score), 4),
    }


def _audited_crops(ws: Workspace, export: ExportConfig) -> list[dict[str, Any]]:
    """Decided audit items with their outcome (correct / wrong), newest first."""
    from autolabel.store import queue as sq
    from autolabel.store.select import decision_correct, load_decisions, load_queue

    q = load_queue(ws)
    audit = {
        int(p): int(i)
        for p, r, i in zip(q.proposal_id, q.reason, q.item_id, strict=True)
        if r == "audit"
    }
    dec = load_decisions(ws)
    out = []
    for k in range(len(dec.proposal_id) - 1, -1, -1):
        pid = int(dec.proposal_id[k])
        if pid not in audit:
            continue
        item = sq.get_item(ws, audit[pid])
        img = sq.image_file(ws, item["image_id"])
        box = (item["x0"], item["y0"], item["x1"], item["y1"])
        row = _crop_row(
            pid,
            item["image_id"],
            img["path"],
            (item["width"] or 0, item["height"] or 0),
            box,
            item["phrase"],
            item["score"],
        )
        action = str(dec.action[k])
        ok = decision_correct(action, tuple(dec.proposal_box[k]), tuple(dec.box[k]))
        row.update(upscale=_upscale(box, export), action=action, correct=bool(ok))
        out.append(row)
        if len(out) >= MAX_CROPS:
            break
    return out


def _auto_crops(labels: list[Any], export: ExportConfig) -> tuple[list[dict[str, Any]], int]:
    """Auto-accepted (unreviewed) crops, most upscaled first; and how many there are."""
    rows = []
    for lab in labels:
        if lab.source != "auto":
            continue
        row = _crop_row(
            lab.proposal_id,
            lab.image_id,
            lab.image_path,
            (lab.width, lab.height),
            lab.box,
            lab.phrase,
            lab.score,
        )
        row["upscale"] = _upscale(lab.box, export)
        rows.append(row)
    rows.sort(key=lambda r: (-(r["upscale"] or 0.0), r["proposal_id"]))
    return rows[:MAX_CROPS], len(rows)


def next_steps(ws: Workspace, precision: dict[str, Any]) -> dict[str, Any]:
    """What to do next: open review items, calibration state, the estimate (or unknown).

    Returns:
        ``{"review_items", "audit_open", "calibration", "estimate", "low", "high",
        "lines": [str, ...]}``; ``estimate`` is None when unknown.
    """
    from autolabel.store import queue as sq
    from autolabel.store.select import load_queue

    stats = sq.queue_stats(ws)
    q = load_queue(ws)
    audit_open = sum(
        1
        for r, st in zip(q.reason, q.status, strict=True)
        if r == "audit" and st in ("open", "claimed")
    )
    from autolabel.select.run import select_state

    state = select_state(ws)
    if not state["ran"]:
        calibration = "unknown: `autolabel select` has not run yet"
    else:
        cal = state["calibration"]
        if cal.get("method") in (None, "none", "raw-score"):
            why = cal.get("reason") or "no labelled boxes of the current detector version"
            calibration = f"not calibrated: {why} (nothing is auto-accepted)"
        else:  # a rate calibrator has a reason too: how it was estimated
            calibration = (
                f"calibrated ({cal.get('method', '?')} on {cal.get('n_examples', '?')} "
                "labelled boxes)"
            )
    known = precision.get("precision") is not None
    if known:
        estimate = (
            f"{precision['precision']:.3f} (95% interval {precision['low']:.3f}-"
            f"{precision['high']:.3f}, {precision['n_correct']}/{precision['n_audited']} "
            "audited boxes correct)"
        )
    else:
        why = precision.get("reason") or (
            f"{precision.get('n_audited', 0)} of {precision.get('n_audit', 0)} audit items reviewed"
        )
        estimate = f"unknown ({why})"
    ws_name = str(ws.path)
    lines = []
    if stats["remaining"]:
        lines.append(
            f"Review {stats['remaining']} items ({audit_open} of them audits): "
            f"`autolabel review {ws_name}`"
        )
    else:
        lines.append("The review queue is empty.")
    lines.append(f"Calibration: {calibration}.")
    weak = state["weak_sides"]  # None (and no warnings) before select has run
    if weak and not weak["can_auto"]:
        lines.append(
            f"{weak['n_current']} boxes have a side on no edge: they are calibrated on "
            f"reviewed boxes of their own kind ({weak['labelled']} so far) and none is "
            "auto-accepted until there are enough."
        )
    lines += [f"Select warned: {w}" for w in state["warnings"]]
    lines.append(f"Precision of the auto-accepted boxes: {estimate}.")
    if not known and audit_open:
        lines.append("Review the audit items to turn the estimate from unknown into a number.")
    if stats["done"] and state["ran"]:
        lines.append(f"After reviewing, run `autolabel select {ws_name}` to recalibrate.")
    return {
        "review_items": int(stats["remaining"]),
        "audit_open": audit_open,
        "calibration": calibration,
        "estimate": precision.get("precision"),
        "low": precision.get("low") if known else None,
        "high": precision.get("high") if known else None,
        "lines": lines,
    }


def build_report(
    ws: Workspace,
    *,
    samples_per_route: int = 12,
    eval_dir: Path | None = None,
    export: ExportConfig | None = None,
) -> dict[str, Any]:
    """Collect everything the report shows, as JSON-friendly data.

    Args:
        ws: the workspace.
        samples_per_route: sample crops per route (chosen evenly over proposal ids).
        eval_dir: folder with ``eval.json`` from ``autolabel eval`` (default
            ``WORKSPACE/eval``); skipped if absent.
        export: the ``export`` section (its size gives the upscale factors; default: its
            defaults).

    Returns:
        ``{"status", "precision", "next", "crops": {"auto", "n_auto", "audited"}, "runs",
        "samples": {route: [{proposal_id, image, box, phrase, score, source}]},
        "eval": dict | None}``.
    """
    from autolabel.config import ExportConfig
    from autolabel.select.run import precision_estimate, status_summary
    from autolabel.store.images import workspace_status
    from autolabel.store.labels import iter_labels
    from autolabel.store.runs import list_runs

    export = export if export is not None else ExportConfig()
    by_route: dict[str, list[Any]] = {r: [] for r in ROUTES}
    labels = list(iter_labels(ws, include="all"))
    for lab in labels:
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
    precision = precision_estimate(ws)
    auto, n_auto = _auto_crops(labels, export)
    return {
        "status": {**workspace_status(ws), "auto_precision": status_summary(ws)},
        "precision": precision,
        "next": next_steps(ws, precision),
        "crops": {"auto": auto, "n_auto": n_auto, "audited": _audited_crops(ws, export)},
        "export_size": export.size,
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
    nxt = data.get("next")
    if nxt:
        items = "".join(f"<li>{html.escape(line)}</li>" for line in nxt["lines"])
        sections.append(f"<h2>What to do next</h2><ul class=next>{items}</ul>")
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

    crops = data.get("crops")
    if crops:
        size = data.get("export_size")
        sections.append(
            f"<h2>Auto-accepted crops ({len(crops['auto'])} of {crops['n_auto']} shown, most "
            f"upscaled first)</h2><p class=muted>Each crop as export cuts it (to {size} px), "
            "beside its source with the box drawn. An upscale above "
            f"{UPSCALE_WARN} often means a thumbnail, not the product photo.</p>"
        )
        sections.append(f"<div class=crops>{_crop_figures(crops['auto'], thumb_side)}</div>")
        sections.append(
            f"<h2>Audited crops ({len(crops['audited'])}, newest first)</h2>"
            f"<div class=crops>{_crop_figures(crops['audited'], thumb_side)}</div>"
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
        ".pair{display:flex;gap:4px;align-items:flex-start}.warn{color:#c40;font-weight:bold}"
        ".correct{color:#080}.wrong{color:#c00}ul.next li{margin:.2em 0}"
    )
    return (
        "<!doctype html><html><head><meta charset=utf-8><title>autolabel report</title>"
        f"<style>{style}</style></head><body>{''.join(sections)}</body></html>"
    )


def write_report(
    ws: Workspace,
    out: Path | None = None,
    *,
    samples_per_route: int = 12,
    export: ExportConfig | None = None,
) -> tuple[Path, Path]:
    """Write ``report.html`` and ``report.json`` (default: inside the workspace).

    ``export`` is the ``export`` config section (for the upscale factors; default: its
    defaults).

    Returns:
        ``(html_path, json_path)``.
    """
    out_dir = Path(out) if out is not None else ws.path
    out_dir.mkdir(parents=True, exist_ok=True)
    data = build_report(ws, samples_per_route=samples_per_route, export=export)
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
