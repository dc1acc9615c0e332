"""The boxes that end up in the dataset: auto-accepted, accepted/adjusted by a reviewer, or
seed boxes (the hand crops located in their originals, provenance ``seed``).

Decisions are an append-only log; an ``undo`` row cancels the decision it targets. For
every current proposal the latest effective accept/adjust/reject decides its fate; with no
such decision an ``auto`` or ``audit`` route means auto-accepted.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator

from autolabel.constants import AUTO_ROUTES
from autolabel.errors import InputError
from autolabel.store.db import Workspace
from autolabel.types import Label

INCLUDE_CHOICES = ("accepted", "auto", "reviewed", "all")

_LABELS_SQL = """
WITH eff AS (
    SELECT * FROM decisions
    WHERE action != 'undo'
      AND id NOT IN (SELECT target_id FROM decisions
                     WHERE action = 'undo' AND target_id IS NOT NULL)
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
WHERE p.id > ?
ORDER BY p.id
"""

_SEED_LABELS_SQL = """
SELECT p.id AS proposal_id, p.image_id, p.run_id, p.x0, p.y0, p.x1, p.y1, p.score,
       p.phrase, i.path, i.sha256, i.width, i.height, s.added_at
FROM proposals p
JOIN images i ON i.id = p.image_id
JOIN seed_items s ON s.id = json_extract(p.signals, '$.seed_item_id')
WHERE p.run_id = ? AND s.status = 'located' AND p.id > ?
ORDER BY p.id
"""


def _seed_labels(ws: Workspace, since_proposal_id: int) -> Iterator[Label]:
    from autolabel.store.select import SEED_RUN_ID, sync_seed_labels

    sync_seed_labels(ws)
    for r in ws.conn.execute(_SEED_LABELS_SQL, (SEED_RUN_ID, since_proposal_id)):
        yield Label(
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
    if include not in INCLUDE_CHOICES:
        raise InputError(f"include: expected one of {', '.join(INCLUDE_CHOICES)}, got {include!r}")
    proposals = _proposal_labels(ws, include, since_proposal_id)
    if include in ("accepted", "all"):
        seeds = _seed_labels(ws, since_proposal_id)
        yield from heapq.merge(proposals, seeds, key=lambda lab: lab.proposal_id)
    else:
        yield from proposals


def _proposal_labels(ws: Workspace, include: str, since_proposal_id: int) -> Iterator[Label]:
    # on a seed original the seed box is the label: its proposals are never auto-accepted
    seed_images = {
        int(r[0])
        for r in ws.conn.execute(
            "SELECT image_id FROM seed_items WHERE status = 'located' AND image_id IS NOT NULL"
        )
    }
    for r in ws.conn.execute(_LABELS_SQL, (since_proposal_id,)):
        action = r["action"]
        if action == "reject":
            continue
        reviewed = action in ("accept", "adjust")
        auto = (
            action is None and r["route"] in AUTO_ROUTES and int(r["image_id"]) not in seed_images
        )
        if include == "accepted" and not (reviewed or auto):
            continue
        if include == "auto" and not auto:
            continue
        if include == "reviewed" and not reviewed:
            continue
        if action == "adjust" and r["dx0"] is not None:
            box = (r["dx0"], r["dy0"], r["dx1"], r["dy1"])
        else:
            box = (r["x0"], r["y0"], r["x1"], r["y1"])
        yield Label(
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
