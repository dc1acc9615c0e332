"""Export-at-scale workspaces filled by direct store inserts (one tiny PNG linked under many
names), so thousands of labels take well under a second to create."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from PIL import Image

from autolabel.store import Workspace
from autolabel.store.db import utcnow
from tests.support.proposals import mock_proposals, store_finished_run

W, H = 64, 48
PHRASES = ("red box", "blue box", "shoe")


def fake_workspace(root: Path, n_images: int, per_image: int) -> Workspace:
    """``n_images`` originals (links to one PNG), ``per_image`` auto-routed boxes each."""
    photos = root / "photos"
    photos.mkdir(parents=True)
    src = photos / "src.png"
    arr = [(x * 4 % 256, y * 5 % 256, (x + y) % 256) for y in range(H) for x in range(W)]
    im = Image.new("RGB", (W, H))
    im.putdata(arr)
    im.save(src)
    sha = hashlib.sha256(src.read_bytes()).hexdigest()
    ws = Workspace.create(root / "ws")
    rows = []
    for i in range(n_images):
        p = photos / f"shot_{i:06d}.png"
        os.link(src, p)
        rows.append((str(p), sha, W, H, "PNG", "ok", utcnow()))
    with ws.transaction() as c:
        c.executemany(
            "INSERT INTO images(path, sha256, width, height, format, status, added_at) "
            "VALUES (?,?,?,?,?,?,?)",
            rows,
        )
    ids = [int(r[0]) for r in ws.conn.execute("SELECT id FROM images ORDER BY id")]
    boxes = [(1 + k, 1 + k, 40 + k, 30 + k) for k in range(per_image)]
    results = [
        (
            image_id,
            mock_proposals(
                boxes, phrase=[PHRASES[(image_id + k) % len(PHRASES)] for k in range(per_image)]
            ),
        )
        for image_id in ids
    ]
    store_finished_run(
        ws, results, detector="exemplar", model="m", model_version="mv", refiner=None,
        prompt="box", box_threshold=0.3, text_threshold=0.25,
    )  # fmt: skip
    with ws.transaction() as c:
        c.execute("UPDATE proposals SET route = 'auto'")
    return ws
