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
from tests.support.proposals import mock_proposals, store_finished_run

SIZE = (200, 400)
TRUE_BOX = (20.0, 40.0, 180.0, 240.0)


def shifted(box: Sequence[float], target_iou: float) -> tuple[float, float, float, float]:
    """``box`` shrunk symmetrically so that its IoU with ``box`` is ``target_iou``."""
    x0, y0, x1, y1 = box
    k = float(np.sqrt(target_iou))  # area ratio = k^2 = IoU for a box inside another
    cx, cy, w, h = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) * k, (y1 - y0) * k
    return (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)


def add_images(ws, n: int, *, prefix: str = "img", image_dir: Path | None = None) -> list[int]:
    """``n`` image rows of size :data:`SIZE` (grey PNG files in ``image_dir`` if given, else
    no files); returns their ids."""
    rows = []
    for j in range(n):
        path = f"/nonexistent/{prefix}_{j}.png"
        digest = hashlib.sha256(path.encode()).hexdigest()
        if image_dir is not None:
            from PIL import Image

            image_dir.mkdir(parents=True, exist_ok=True)
            path = str(image_dir / f"{prefix}_{j}.png")
            Image.new("RGB", SIZE, (128, 128, 128)).save(path)
            digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
        rows.append((path, *SIZE, "ok", digest, utcnow()))
    with ws.transaction() as c:
        c.executemany(
            "INSERT INTO images(path, width, height, status, sha256, added_at) "
            "VALUES (?,?,?,?,?,?)",
            rows,
        )
    return [r[0] for r in ws.conn.execute("SELECT id FROM images ORDER BY id")][-n:]


def add_run(
    ws,
    boxes: dict[int, list[tuple]],
    *,
    model_version: str = "v1",
    detector: str = "test",
    signals: dict[str, dict[int, list[float]]] | None = None,
) -> int:
    """One finished propose run with ``{image_id: [(box, score[, tta_iou]), ...]}``;
    returns its id (the optional third value becomes the ``tta_iou`` signal; ``signals``
    adds ``{name: {image_id: values}}``)."""
    batch = []
    for image_id, items in boxes.items():
        xyxy = [list(it[0]) for it in items]
        scores = [it[1] for it in items]
        extra = {}
        if items and len(items[0]) > 2:
            extra["tta_iou"] = [it[2] for it in items]
        for name, per_image in (signals or {}).items():
            extra[name] = per_image[image_id]
        phrases = ["product"] * len(xyxy)
        batch.append((image_id, mock_proposals(xyxy, score=scores, phrase=phrases, **extra)))
    run = store_finished_run(
        ws,
        batch,
        detector=detector,
        model="m",
        model_version=model_version,
        refiner=None,
        prompt="product",
        box_threshold=0.1,
        text_threshold=0.25,
    )
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


def build_world(
    ws,
    n_images: int,
    *,
    seed: int = 0,
    n_seed: int = 0,
    model_version: str = "v1",
    prefix: str = "img",
    loose_share: float = 0.2,
    thumbnails: int = 1,
    image_dir: Path | None = None,
    deceptive_share: float = 0.0,
    detector: str = "test",
) -> list[int]:
    """Images with one true product box each and a detector's proposals for them.

    Per image: the main box, tight (IoU 0.92-0.99, correct) or, with ``loose_share``
    probability, loose (IoU 0.75: right at 0.5, wrong at 0.9), both with high scores; plus
    ``thumbnails`` thumbnail boxes (IoU 0, wrong) with middling scores. The ``tta_iou``
    signal is high for tight boxes and lower for the others, so a calibrator can tell them
    apart while the score alone cannot, except on a ``deceptive_share`` of loose boxes whose
    signal looks tight (errors no calibrator can avoid: only the audit finds them). The
    first ``n_seed`` images get a located seed box (the true box). ``image_dir``: write the
    image files there; ``detector``: the run's detector name. Returns the image ids.
    """
    rng = np.random.default_rng(seed)
    ids = add_images(ws, n_images, prefix=prefix, image_dir=image_dir)
    boxes = {}
    for i in ids:
        if rng.random() < loose_share:
            deceptive = rng.random() < deceptive_share
            signal = rng.uniform(0.9, 1.0) if deceptive else rng.uniform(0.3, 0.6)
            items = [(shifted(TRUE_BOX, 0.75), rng.uniform(0.6, 0.99), signal)]
        else:
            tight = shifted(TRUE_BOX, rng.uniform(0.92, 0.99))
            items = [(tight, rng.uniform(0.6, 0.99), rng.uniform(0.9, 1.0))]
        for k in range(thumbnails):
            x0 = 10 + 60 * k
            thumb = (x0, 290.0, x0 + 50.0, 340.0)
            items.append((thumb, rng.uniform(0.3, 0.85), rng.uniform(0.1, 0.6)))
        boxes[i] = items
    add_run(ws, boxes, model_version=model_version, detector=detector)
    if n_seed:
        add_seed_items(ws, ids[:n_seed])
    return ids
