"""The boxes that end up in the dataset: auto-accepted, accepted/adjusted by a reviewer, or
seed boxes (the hand crops located in their originals, provenance ``seed``).

Decisions are an append-only log; an ``undo`` row cancels the decision it targets. For
every current proposal the latest effective accept/adjust/reject decides its fate; with no
such decision an ``auto`` or ``audit`` route means auto-accepted.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from typing import Any

from autolabel.constants import AUTO_ROUTES
from autolabel.errors import InputError
from autolabel.store.db import Workspace
from autolabel.types import Label

INCLUDE_CHOICES = ("accepted", "auto", "reviewed", "all")

_EFFECTIVE = """
WITH eff AS (
    SELECT * FROM decisions
    WHERE action != 'undo'{dec_where}
      AND id NOT IN (SELECT target_id FROM decisions
                     WHERE action = 'undo' AND target_id IS NOT NULL{dec_where})
),
last_box AS (
    SELECT proposal_id, MAX(id) AS did FROM eff
    WHERE action IN ('accept', 'adjust', 'reject') GROUP BY proposal_id
),
last_cap AS (
    SELECT proposal_id, MAX(id) AS did FROM eff
    WHERE caption IS NOT NULL GROUP BY proposal_id
)
SELECT p.id AS proposal_id, p.image_id, p.run_id, p.x0, p.y0, p.x1, p.y1, p.score,
       p.phrase, p.route, i.path, i.sha256, i.width, i.height,
       d.action, d.x0 AS dx0, d.y0 AS dy0, d.x1 AS dx1, d.y1 AS dy1,
       d.reviewer, d.created_at AS decided_at, c.caption
FROM current_proposals p
JOIN images i ON i.id = p.image_id
LEFT JOIN last_box lb ON lb.proposal_id = p.id
LEFT JOIN decisions d ON d.id = lb.did
LEFT JOIN last_cap lc ON lc.proposal_id = p.id
LEFT JOIN decisions c ON c.id = lc.did
"""

_CHUNK_SQL = (
    _EFFECTIVE.format(dec_where=" AND image_id >= :lo AND image_id < :hi")
    + """
WHERE p.image_id >= :lo AND p.image_id < :hi{since}
ORDER BY p.image_id, p.id
"""
)

_SINCE_SQL = """
  AND (NOT EXISTS (SELECT 1 FROM exported_items e
                   WHERE e.proposal_id = p.id AND e.export_id <= :export_id)
       OR EXISTS (SELECT 1 FROM decisions dd
                  WHERE dd.proposal_id = p.id AND dd.id > :decision_id))
"""

_LABELS_SQL = _EFFECTIVE.format(dec_where="") + "WHERE p.id > ?\nORDER BY p.id\n"

_SEED_SELECT = """
SELECT p.id AS proposal_id, p.image_id, p.run_id, p.x0, p.y0, p.x1, p.y1, p.score,
       p.phrase, i.path, i.sha256, i.width, i.height, s.added_at
FROM proposals p
JOIN images i ON i.id = p.image_id
JOIN seed_items s ON s.id = json_extract(p.signals, '$.seed_item_id')
WHERE p.run_id = :seed_run AND s.status = 'located'
"""

_SEED_LABELS_SQL = _SEED_SELECT + "  AND p.id > :since_id\nORDER BY p.id\n"

_SEED_CHUNK_SQL = (
    _SEED_SELECT
    + "  AND p.image_id >= :lo AND p.image_id < :hi{since}\nORDER BY p.image_id, p.id\n"
)

_SEED_IMAGES_SQL = (
    "SELECT image_id FROM seed_items WHERE status = 'located' AND image_id IS NOT NULL{where}"
)


def _seed_label(r: Any) -> Label:
    return Label(
        proposal_id=int(r["proposal_id"]),
        image_id=int(r["image_id"]),
        image_path=r["path"],
        image_sha256=r["sha256"],
        width=int(r["width"] or 0),
        height=int(r["height"] or 0),
        box=(float(r["x0"]), float(r["y0"]), float(r["x1"]), float(r["y1"])),
        phrase=r["phrase"],
        caption=None,  # no reviewer caption; export picks the seed item's caption
        score=float(r["score"]),
        route="seed",
        source="seed",
        run_id=int(r["run_id"]),
        reviewer=None,
        decided_at=r["added_at"],
    )


def _seed_labels(ws: Workspace, since_proposal_id: int) -> Iterator[Label]:
    from autolabel.store.select import SEED_RUN_ID, sync_seed_labels

    sync_seed_labels(ws)
    params = {"seed_run": SEED_RUN_ID, "since_id": since_proposal_id}
    for r in ws.conn.execute(_SEED_LABELS_SQL, params):
        yield _seed_label(r)


def _seed_images(conn: Any, lo: int | None = None, hi: int | None = None) -> set[int]:
    """Image ids of located seed boxes: on them the seed box is the label (never auto)."""
    if lo is None:
        return {int(r[0]) for r in conn.execute(_SEED_IMAGES_SQL.format(where=""))}
    sql = _SEED_IMAGES_SQL.format(where=" AND image_id >= ? AND image_id < ?")
    return {int(r[0]) for r in conn.execute(sql, (int(lo), int(hi)))}


def iter_labels(
    ws: Workspace, *, include: str = "accepted", since_proposal_id: int = 0
) -> Iterator[Label]:
    """Yield dataset labels in proposal-id order.

    Args:
        include: ``accepted`` (auto + reviewed + seed boxes), ``auto`` (auto-accepted, not
            reviewed), ``reviewed`` (accepted/adjusted by a person), ``all`` (seed boxes and
            every current proposal a person did not reject, whatever its route).
        since_proposal_id: only proposals with a larger id.
    """
    _check_include(include)
    seed_images = _seed_images(ws.conn)
    proposals = (
        lb
        for lb in (
            _to_label(r, include, seed_images)
            for r in ws.conn.execute(_LABELS_SQL, (since_proposal_id,))
        )
        if lb is not None
    )
    if include in ("accepted", "all"):
        seeds = _seed_labels(ws, since_proposal_id)
        yield from heapq.merge(proposals, seeds, key=lambda lab: lab.proposal_id)
    else:
        yield from proposals


def _check_include(include: str) -> None:
    if include not in INCLUDE_CHOICES:
        raise InputError(f"include: expected one of {', '.join(INCLUDE_CHOICES)}, got {include!r}")


def _to_label(r: Any, include: str, seed_images: set[int]) -> Label | None:
    """One joined row -> a :class:`Label`, or None when ``include`` leaves it out.

    On a seed original (``seed_images``) the seed box is the label: its proposals are never
    auto-accepted.
    """
    action = r["action"]
    if action == "reject":
        return None
    reviewed = action in ("accept", "adjust")
    auto = action is None and r["route"] in AUTO_ROUTES and int(r["image_id"]) not in seed_images
    if include == "accepted" and not (reviewed or auto):
        return None
    if include == "auto" and not auto:
        return None
    if include == "reviewed" and not reviewed:
        return None
    if action == "adjust" and r["dx0"] is not None:
        box = (r["dx0"], r["dy0"], r["dx1"], r["dy1"])
    else:
        box = (r["x0"], r["y0"], r["x1"], r["y1"])
    return Label(
        proposal_id=int(r["proposal_id"]),
        image_id=int(r["image_id"]),
        image_path=r["path"],
        image_sha256=r["sha256"],
        width=int(r["width"] or 0),
        height=int(r["height"] or 0),
        box=tuple(float(v) for v in box),  # type: ignore[arg-type]
        phrase=r["phrase"],
        caption=r["caption"],
        score=float(r["score"]),
        route=r["route"],
        source="reviewed" if reviewed else ("auto" if auto else "unreviewed"),
        run_id=int(r["run_id"]),
        reviewer=r["reviewer"] if reviewed else None,
        decided_at=r["decided_at"] if reviewed else None,
    )


def iter_label_chunks(
    ws: Workspace,
    *,
    include: str = "accepted",
    since: tuple[int, int] | None = None,
    images_per_chunk: int = 1000,
) -> Iterator[list[Label]]:
    """Yield the labels in chunks of whole images, ordered by image id then proposal id.

    Each query covers an image-id range of ``images_per_chunk`` ids (decisions are read for
    that range only, through their image id), so memory is bounded by the chunk, not by the
    number of labels. Empty chunks are not yielded.

    Args:
        include: as :func:`iter_labels`.
        since: ``(export id, max decision id)`` of an earlier export: only labels not
            exported by it (or an earlier one) or with a decision newer than the mark
            (answered through the ``exported_items(proposal_id)`` and ``decisions(proposal_id)``
            indexes).
        images_per_chunk: image ids per query (>= 1).
    """
    _check_include(include)
    if images_per_chunk < 1:
        raise InputError(f"images_per_chunk: expected >= 1, got {images_per_chunk}")
    if include in ("accepted", "all"):
        from autolabel.store.select import sync_seed_labels

        sync_seed_labels(ws)
    for lo, hi in image_id_ranges(ws, images_per_chunk):
        chunk = labels_in_range(ws.conn, lo, hi, include=include, since=since)
        if chunk:
            yield chunk


def image_id_ranges(ws: Workspace, span: int) -> list[tuple[int, int]]:
    """``[(lo, hi), ...]`` half-open image-id ranges of ``span`` ids covering all proposals."""
    lo, hi = ws.conn.execute(
        "SELECT COALESCE(MIN(image_id), 0), COALESCE(MAX(image_id), -1) FROM proposals"
    ).fetchone()
    return [(a, a + span) for a in range(int(lo), int(hi) + 1, span)]


def labels_in_range(
    conn: Any,
    lo: int,
    hi: int,
    *,
    include: str = "accepted",
    since: tuple[int, int] | None = None,
) -> list[Label]:
    """The labels of images with ``lo <= image id < hi``, ordered by image id, proposal id.

    Args:
        conn: a ``sqlite3`` connection with ``row_factory = sqlite3.Row`` (the workspace's,
            or a fresh one from :func:`autolabel.store.db.connect` in a distributed reader).
        include: as :func:`iter_labels`.
        since: as :func:`iter_label_chunks`.

    Seed labels are read as they are stored; :func:`iter_label_chunks` syncs them first.
    """
    _check_include(include)
    sql = _CHUNK_SQL.format(since=_SINCE_SQL if since else "")
    params: dict[str, int] = {"lo": int(lo), "hi": int(hi)}
    if since:
        params.update(export_id=int(since[0]), decision_id=int(since[1]))
    seed_images = _seed_images(conn, lo, hi)
    rows = (_to_label(r, include, seed_images) for r in conn.execute(sql, params))
    labels = [lb for lb in rows if lb is not None]
    if include in ("accepted", "all"):
        from autolabel.store.select import SEED_RUN_ID

        seed_sql = _SEED_CHUNK_SQL.format(since=_SINCE_SQL if since else "")
        seeds = [
            _seed_label(r) for r in conn.execute(seed_sql, {**params, "seed_run": SEED_RUN_ID})
        ]
        if seeds:
            labels = list(
                heapq.merge(labels, seeds, key=lambda lab: (lab.image_id, lab.proposal_id))
            )
    return labels
