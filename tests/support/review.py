"""A workspace with a filled review queue."""

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
