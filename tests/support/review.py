"""Workspaces for review tests: a filled review queue; auto-accepted boxes for the gallery."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from autolabel.store import queue as sq
from autolabel.store import runs as store_runs
from autolabel.store.db import utcnow
from tests.support.proposals import mock_proposals


def build_queue(
    ws,
    n_images: int,
    *,
    per_image: int = 1,
    size: tuple[int, int] = (320, 240),
    image_dir: Path | None = None,
    priorities: Sequence[float] | None = None,
    reason: str = "uncertain",
) -> list[int]:
    """Images (PNG files if ``image_dir``), one finished run, queued proposals.

    Returns the proposal ids in queue order of insertion. Box i of image j is
    ``[10 + 20 i, 10 + 5 j % 50, 60 + 20 i, 60 + 5 j % 50]`` with phrase ``"cat"``.
    """
    width, height = size
    rng = np.random.default_rng(0)
    rows = []
    for j in range(n_images):
        path = f"/nonexistent/img_{j}.png"
        digest = hashlib.sha256(path.encode()).hexdigest()
        if image_dir is not None:
            from PIL import Image

            image_dir.mkdir(parents=True, exist_ok=True)
            arr = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
            arr[20:80, 20:120] = (255, 0, 0)
            file = image_dir / f"img_{j}.png"
            Image.fromarray(arr).save(file)
            path = str(file)
            digest = hashlib.sha256(file.read_bytes()).hexdigest()
        rows.append((path, width, height, "ok", digest, utcnow()))
    with ws.transaction() as c:
        c.executemany(
            "INSERT INTO images(path, width, height, status, sha256, added_at) "
            "VALUES (?,?,?,?,?,?)",
            rows,
        )
    image_ids = [r[0] for r in ws.conn.execute("SELECT id FROM images ORDER BY id")][-n_images:]
    run = store_runs.create_run(
        ws,
        detector="test",
        model="m",
        model_version="v1",
        refiner=None,
        prompt="cat",
        box_threshold=0.3,
        text_threshold=0.25,
    )
    batch = []
    for j, image_id in enumerate(image_ids):
        dy = 5 * j % 50
        boxes = [[10 + 20 * i, 10 + dy, 60 + 20 * i, 60 + dy] for i in range(per_image)]
        scores = [0.5 - 0.01 * i for i in range(per_image)]
        batch.append((image_id, mock_proposals(boxes, score=scores, phrase=["cat"] * per_image)))
    store_runs.write_batch(ws, run, batch)
    pids = [r[0] for r in ws.conn.execute("SELECT id FROM proposals WHERE run_id = ?", (run.id,))]
    sq.enqueue(ws, pids, reason, list(priorities) if priorities is not None else 0.0)
    return pids


# (phrase, box, score): one big main photo per image and a small thumbnail on some
BOXES = [
    [("shoe", [100, 200, 900, 1000], 0.9), ("shoe", [50, 1500, 250, 1700], 0.8)],
    [("shoe", [80, 300, 1000, 1100], 0.85)],
    [("bag", [200, 400, 800, 1000], 0.7), ("bag", [600, 1800, 700, 1900], 0.95)],
    [("bag", [100, 100, 980, 900], 0.92)],
]


def auto_workspace(ws, image_dir: Path | None = None, *, audited_ok: int = 3) -> list[int]:
    """Phone-size images, one finished run, every proposal auto-accepted (``p`` 0.97), and
    ``audited_ok`` extra audited boxes that a reviewer accepted; ``select.last`` set as
    ``select`` leaves it. Returns the ids of the auto-accepted, unaudited proposals."""
    from PIL import Image

    rows = []
    for j in range(len(BOXES) + audited_ok):
        path = f"/nonexistent/shot_{j}.png"
        if image_dir is not None:
            image_dir.mkdir(parents=True, exist_ok=True)
            im = Image.new("RGB", (1080, 2340), (240, 240, 240))
            im.paste((30, 90, 200), (100, 200, 900, 1000))
            path = str(image_dir / f"shot_{j}.png")
            im.save(path)
        rows.append((path, 1080, 2340, "ok", f"{j:064x}", utcnow()))
    with ws.transaction() as c:
        c.executemany(
            "INSERT INTO images(path, width, height, status, sha256, added_at) "
            "VALUES (?,?,?,?,?,?)",
            rows,
        )
    image_ids = [r[0] for r in ws.conn.execute("SELECT id FROM images ORDER BY id")]
    run = store_runs.create_run(
        ws,
        detector="test",
        model="m",
        model_version="v1",
        refiner=None,
        prompt="shoe . bag",
        box_threshold=0.3,
        text_threshold=0.25,
    )
    extra = [[("shoe", [100, 200, 900, 1000], 0.9)]] * audited_ok
    batch = []
    for image_id, boxes in zip(image_ids, BOXES + extra, strict=True):
        props = mock_proposals(
            [b for _, b, _ in boxes], score=[s for *_, s in boxes], phrase=[p for p, *_ in boxes]
        )
        batch.append((image_id, props))
    store_runs.write_batch(ws, run, batch)
    pids = [r[0] for r in ws.conn.execute("SELECT id FROM proposals ORDER BY id")]
    audited = pids[len(pids) - audited_ok :]
    with ws.transaction() as c:
        c.execute("UPDATE proposals SET route = 'auto', p_correct = 0.97")
        c.executemany("UPDATE proposals SET route = 'audit' WHERE id = ?", [(p,) for p in audited])
    if audited:
        sq.enqueue(ws, audited, "audit")
        for pid in audited:
            item = sq.item_for_proposal(ws, pid)
            sq.decide(ws, "carl", item, "accept", lease_seconds=60)
    # what `select` leaves: the current detector version (the run key) and its numbers;
    # the estimate may be stated from `audited_ok` audits on (quality.min_audited)
    key = ws.conn.execute("SELECT key FROM runs WHERE id = ?", (run.id,)).fetchone()[0]
    info = {
        "label": "test v1",
        "can_auto": True,
        "auto_cutoff": 0.9,
        "expected_precision": 0.97,
        "calibration": {"method": "test", "n_examples": 20},
    }
    ws.set_setting(
        "select.last",
        {
            "current_version": key,
            "versions": {key: info},
            "quality": {"min_audited": max(1, audited_ok)},
            "auto_cutoff": 0.9,
            "expected_precision": 0.97,
        },
    )
    return pids[: len(pids) - audited_ok]
