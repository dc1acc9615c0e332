"""The Ray engine of export: the same plan and crop work as the local engine, on Ray Data.

image-id ranges -> read + plan tasks (each opens the workspace database and plans its range
with the driver's :class:`~autolabel.export.core.ChunkPlanner`) -> an actor pool cutting the
crops (:func:`autolabel.export.crops.run_task`, one decode per original) -> the driver, which
receives the events in image-id order (``preserve_order``) and writes the dataset files
exactly as the local engine does, so both engines give byte-identical versions.

The crops are written by the actors straight into the temporary version folder, so on a
multi-machine cluster the export folder (and the originals) must be on storage every node
sees. Actors take ``export.ray_cpus_per_actor`` CPUs (0.5 by default: with whole CPUs per
actor on 2 cores the read tasks starve and the job hangs).
"""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from autolabel.config import ExportConfig
    from autolabel.export.chunks import ChunkPlanner, Event
    from autolabel.store.db import Workspace

RANGE_IMAGE_IDS = 256
"""Image ids per Ray read task (small enough to spread a 2k-image workspace over actors)."""
CUT_BATCH = 8
"""Originals per actor call."""


def _dump(obj: Any) -> bytes:
    return pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)


class _RayCutter:
    """Ray Data actor: cuts the crops of the ``image`` rows of a batch (Pillow only)."""

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from autolabel.export.crops import run_task

        results = []
        for kind, payload in zip(batch["kind"], batch["payload"], strict=True):
            if str(kind) == "image":
                results.append(_dump(run_task(pickle.loads(payload).task)))
            else:
                results.append(b"")
        out = dict(batch)
        out["result"] = np.asarray(results, dtype=object)
        return out


def ray_events(
    ws: Workspace,
    planner: ChunkPlanner,
    opts: ExportConfig,
    *,
    include: str,
    since: tuple[int, int] | None,
) -> Iterator[Event]:
    """Plan and cut on Ray Data; yields the engine events in image-id order.

    Args:
        ws: the workspace (its database file is read by the Ray tasks).
        planner: plans one chunk of labels (shipped to the read tasks).
        opts: the export section (``ray_address``, ``ray_actors``, ``ray_cpus_per_actor``).
        include: which labels (as :func:`autolabel.store.labels.iter_labels`).
        since: ``(export id, max decision id)`` of a ``--since`` export, or None.
    """
    import ray

    from autolabel.store.labels import image_id_ranges

    if not ray.is_initialized():
        ray.init(address=opts.ray_address or None, include_dashboard=False)
    ranges = [{"lo": lo, "hi": hi} for lo, hi in image_id_ranges(ws, RANGE_IMAGE_IDS)]
    if not ranges:
        return
    db_path = str(ws.db_path)

    def plan_range(item: dict[str, Any]) -> list[dict[str, Any]]:
        from pathlib import Path

        from autolabel.store.db import connect
        from autolabel.store.labels import labels_in_range

        conn = connect(Path(db_path))
        try:
            labels = labels_in_range(
                conn, int(item["lo"]), int(item["hi"]), include=include, since=since
            )
        finally:
            conn.close()
        plan = planner.plan(labels)
        rows = [{"kind": "rows", "payload": _dump((plan.too_small, plan.skipped))}]
        rows += [{"kind": "image", "payload": _dump(p)} for p in plan.images]
        return rows

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.execution_options.preserve_order = True
    ds = (
        ray.data.from_items(ranges, override_num_blocks=len(ranges))
        .flat_map(plan_range, num_cpus=0.25)
        .map_batches(
            _RayCutter,
            batch_size=CUT_BATCH,
            compute=ray.data.ActorPoolStrategy(size=max(1, opts.ray_actors)),
            num_cpus=opts.ray_cpus_per_actor,
            batch_format="numpy",
        )
    )
    for row in ds.iter_rows():
        if str(row["kind"]) == "rows":
            too_small, skipped = pickle.loads(row["payload"])
            yield ("rows", too_small, skipped)
        else:
            yield ("image", pickle.loads(row["payload"]), pickle.loads(row["result"]))
