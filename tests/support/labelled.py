"""A small labelled workspace (images, one finished run, auto-routed boxes) for store/export
tests that need labels without running a detector."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from tests.support.proposals import mock_proposals, store_finished_run

Box = tuple[float, float, float, float]


def write_image(path: Path, size: tuple[int, int] = (320, 240), seed: int = 0) -> Path:
    """A noisy RGB PNG of ``size`` (w, h) with a red square; distinct content per ``seed``."""
    import numpy as np
    from PIL import Image

    w, h = size
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 255, size=(h, w, 3), dtype=np.uint8)
    arr[h // 4 : 3 * h // 4, w // 4 : 3 * w // 4] = (230, 20, 20)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)
    return path


def labelled_workspace(
    root: Path,
    files: Sequence[str],
    *,
    boxes: Mapping[str, Sequence[Box]] | None = None,
    size: tuple[int, int] = (320, 240),
):
    """Workspace ``root/ws`` with ``root/photos/<f>`` ingested and every box routed ``auto``.

    Args:
        root: parent folder.
        files: image paths relative to ``root/photos`` (``.png``).
        boxes: boxes per relative path (default: the red square of each image).
        size: image size (w, h).

    Returns:
        ``(ws, photos, {relpath: [proposal ids]})``.
    """
    from autolabel.ingest import ingest
    from autolabel.store import Workspace
    from autolabel.store import exports as store_exports

    photos = root / "photos"
    w, h = size
    default = [(w / 4, h / 4, 3 * w / 4, 3 * h / 4)]
    for i, rel in enumerate(files):
        write_image(photos / rel, size, seed=i)
    ws = Workspace.create(root / "ws")
    ingest(ws, [photos], workers=1)
    ids = {r["path"]: int(r["id"]) for r in ws.conn.execute("SELECT id, path FROM images")}
    results = []
    for rel in files:
        bxs = list((boxes or {}).get(rel, default))
        results.append(
            (ids[str((photos / rel).resolve())], mock_proposals(bxs, phrase=["red box"] * len(bxs)))
        )
    store_finished_run(
        ws, results, detector="grounding-dino", model="tiny", model_version="mv-1", refiner=None,
        prompt="red box", box_threshold=0.3, text_threshold=0.25,
    )  # fmt: skip
    pids: dict[str, list[int]] = {}
    for rel in files:
        image_id = ids[str((photos / rel).resolve())]
        pids[rel] = [
            int(r[0])
            for r in ws.conn.execute(
                "SELECT id FROM proposals WHERE image_id = ? ORDER BY id", (image_id,)
            )
        ]
    store_exports.set_routes(ws, [p for v in pids.values() for p in v], "auto")
    return ws, photos, pids
