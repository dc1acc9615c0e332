"""Small controlled workspaces for the quality tests (select, audits, estimates, eval).

Every image is ``W x H`` = 200 x 400 with one true box; proposals are given per image as
``(box, score)`` pairs. :func:`oracle_action` is the benchmark's reviewer: accept at
IoU >= 0.9 with the truth, adjust onto the truth when it overlaps, reject otherwise.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from autolabel.geometry import box_iou
from autolabel.store.db import utcnow
from tests.support.proposals import mock_proposals

SIZE = (200, 400)
TRUE_BOX = (20.0, 40.0, 180.0, 240.0)


def shifted(box: Sequence[float], target_iou: float) -> tuple[float, float, float, float]:
    """``box`` shrunk symmetrically so that its IoU with ``box`` is ``target_iou``."""
    x0, y0, x1, y1 = box
    k = float(np.sqrt(target_iou))  # area ratio = k^2 = IoU for a box inside another
    cx, cy, w, h = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) * k, (y1 - y0) * k
    return (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)


def add_images(ws, n: int, *, prefix: str = "img") -> list[int]:
    """``n`` image rows (no files) of size :data:`SIZE`; returns their ids."""
    rows = []
    for j in range(n):
        path = f"/nonexistent/{prefix}_{j}.png"
        rows.append((path, *SIZE, "ok", hashlib.sha256(path.encode()).hexdigest(), utcnow()))
    with ws.transaction() as c:
        c.executemany(
            "INSERT INTO images(path, width, height, status, sha256, added_at) "
            "VALUES (?,?,?,?,?,?)",
            rows,
        )
    return [r[0] for r in ws.conn.execute("SELECT id FROM images ORDER BY id")][-n:]


def add_run(
    ws,
    boxes: dict[int, list[tuple[Sequence[float], float]]],
    *,
    model_version: str = "v1",
    detector: str = "test",
) -> int:
    """One finished propose run with ``{image_id: [(box, score), ...]}``; returns its id."""
    from autolabel.store import runs as store_runs

    run = store_runs.create_run(
        ws,
        detector=detector,
        model="m",
        model_version=model_version,
        refiner=None,
        prompt="product",
        box_threshold=0.1,
        text_threshold=0.25,
    )
    batch = []
    for image_id, items in boxes.items():
        xyxy = [list(b) for b, _ in items]
        scores = [s for _, s in items]
        batch.append((image_id, mock_proposals(xyxy, score=scores, phrase=["product"] * len(xyxy))))
    store_runs.write_batch(ws, run, batch)
    store_runs.finish_run(ws, run)
    return run.id


def add_seed_items(ws, image_ids: Sequence[int], box: Sequence[float] = TRUE_BOX) -> None:
    """A located seed item with ``box`` on each image (as ``autolabel seed add`` leaves it)."""
    from autolabel.store.seed import upsert_seed_items

    rows = []
    for i in image_ids:
        path = ws.conn.execute("SELECT path FROM images WHERE id = ?", (i,)).fetchone()[0]
        rows.append(
            {
                "crop_path": f"/nonexistent/crop_{i}.png",
                "original_path": path,
                "image_id": int(i),
                "box": tuple(box),
                "score": 1.0,
                "status": "located",
                "phrase": "product",
            }
        )
    upsert_seed_items(ws, rows)


def write_truth(ws, path: Path, image_ids: Sequence[int], box: Sequence[float] = TRUE_BOX) -> Path:
    """A truth JSONL with ``box`` on each image."""
    with path.open("w", encoding="utf-8") as fh:
        for i in image_ids:
            p = ws.conn.execute("SELECT path FROM images WHERE id = ?", (i,)).fetchone()[0]
            fh.write(json.dumps({"image": p, "boxes": [list(box)]}) + "\n")
    return path


def oracle_action(box: Sequence[float], truth: Sequence[float] = TRUE_BOX, match_iou: float = 0.9):
    """``(action, box)`` of the benchmark's oracle reviewer for one proposed box."""
    iou = float(box_iou(np.array([box], float), np.array([truth], float))[0, 0])
    if iou >= match_iou:
        return "accept", None
    if iou > 0.1:
        return "adjust", tuple(float(v) for v in truth)
    return "reject", None


def review_open_items(ws, *, reasons: Sequence[str] = ("uncertain", "missing", "audit")) -> int:
    """Decide every open queue item with the oracle; returns how many were decided."""
    from autolabel.store.queue import decide

    rows = ws.conn.execute(
        "SELECT q.id, p.x0, p.y0, p.x1, p.y1, q.reason FROM queue_items q "
        "JOIN proposals p ON p.id = q.proposal_id WHERE q.status = 'open' ORDER BY q.id"
    ).fetchall()
    n = 0
    for item_id, x0, y0, x1, y1, reason in rows:
        if reason not in reasons:
            continue
        action, box = oracle_action((x0, y0, x1, y1))
        decide(ws, "oracle", int(item_id), action, box=box, lease_seconds=60.0)
        n += 1
    return n
