"""Fine-tuning test data: noisy images with one red square, a workspace seeded with them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from autolabel.train.data import TrainSample


def red_squares(folder: Path, n: int, *, size: int = 64, seed: int = 0) -> list[TrainSample]:
    """n noisy ``size`` px PNGs with one red square each (the box is the sample's target)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        img = rng.integers(0, 60, (size, size, 3)).astype(np.uint8)
        w = int(rng.integers(size // 4, size // 2))
        x0, y0 = int(rng.integers(0, size - w)), int(rng.integers(0, size - w))
        img[y0 : y0 + w, x0 : x0 + w] = [220, 30, 30]
        path = folder / f"sq_{i:03d}.png"
        Image.fromarray(img).save(path)
        out.append(TrainSample(str(path), [[x0, y0, x0 + w, y0 + w]], ("red square",)))
    return out


def seeded_workspace(ws_path: Path, samples: list[TrainSample], *, n_seed: int) -> dict[str, int]:
    """A workspace with ``samples`` ingested and the first ``n_seed`` as located seed boxes
    without a phrase; returns ``{path: image id}``."""
    from autolabel.store import Workspace
    from autolabel.store.db import utcnow
    from autolabel.store.images import ScannedFile, write_scanned

    with Workspace.create(ws_path) as ws:
        write_scanned(
            ws,
            [ScannedFile(path=s.path, size=1, mtime_ns=0, width=64, height=64) for s in samples],
        )
        ids = {r["path"]: r["id"] for r in ws.conn.execute("SELECT id, path FROM images")}
        with ws.transaction() as c:
            for i, s in enumerate(samples[:n_seed]):
                c.execute(
                    "INSERT INTO seed_items(crop_path, original_path, image_id, x0, y0, x1, y1, "
                    "score, status, phrase, added_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                    (
                        f"c{i}.png",
                        s.path,
                        ids[s.path],
                        *s.boxes[0].tolist(),
                        0.9,
                        "located",
                        None,
                        utcnow(),
                    ),
                )
    return ids
