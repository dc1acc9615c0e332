"""Queries for fine-tuning: located seed boxes and images a reviewer marked as empty.

The reviewed (accepted / adjusted) boxes come from :func:`autolabel.store.labels.iter_labels`
with ``include="reviewed"``; this module adds what that view does not cover.
"""

from __future__ import annotations

from typing import Any

from autolabel.store.db import Workspace

_SEED_SQL = """
SELECT s.id, s.x0, s.y0, s.x1, s.y1, s.phrase, s.caption, s.image_id,
       COALESCE(i.path, s.original_path) AS path, i.width, i.height
FROM seed_items s
LEFT JOIN images i ON i.id = s.image_id
WHERE s.status = 'located' AND s.x0 IS NOT NULL
  AND COALESCE(i.path, s.original_path) IS NOT NULL
ORDER BY s.id
"""

# effective (not undone) reject decisions, with the image they concern
_REJECTS_SQL = """
SELECT d.id, COALESCE(d.image_id, p.image_id) AS image_id, d.reason, i.path, i.width, i.height
FROM decisions d
LEFT JOIN proposals p ON p.id = d.proposal_id
JOIN images i ON i.id = COALESCE(d.image_id, p.image_id)
WHERE d.action = 'reject'
  AND d.id NOT IN (SELECT target_id FROM decisions
                   WHERE action = 'undo' AND target_id IS NOT NULL)
ORDER BY d.id
"""


def located_seed_boxes(ws: Workspace) -> list[dict[str, Any]]:
    """Seed crops located in their originals.

    Returns:
        One dict per seed item: ``id``, ``image_id`` (or None), ``path`` (the original),
        ``box`` ``(x0, y0, x1, y1)`` in original pixels, ``phrase``, ``caption``, ``width``,
        ``height`` (None when the original is not ingested).
    """
    out = []
    for r in ws.conn.execute(_SEED_SQL):
        out.append(
            {
                "id": int(r["id"]),
                "image_id": r["image_id"],
                "path": r["path"],
                "box": (float(r["x0"]), float(r["y0"]), float(r["x1"]), float(r["y1"])),
                "phrase": r["phrase"],
                "caption": r["caption"],
                "width": r["width"],
                "height": r["height"],
            }
        )
    return out


def rejected_images(ws: Workspace) -> list[dict[str, Any]]:
    """Effective reject decisions (undone ones excluded), newest last.

    Returns:
        One dict per decision: ``decision_id``, ``image_id``, ``path``, ``reason`` (free text
        or None), ``width``, ``height``.
    """
    return [
        {
            "decision_id": int(r["id"]),
            "image_id": int(r["image_id"]),
            "path": r["path"],
            "reason": r["reason"],
            "width": r["width"],
            "height": r["height"],
        }
        for r in ws.conn.execute(_REJECTS_SQL)
    ]


# effective (not undone) rejects of a proposal, with the rejected box
_REJECTED_BOXES_SQL = """
SELECT d.id, p.image_id, i.path, p.x0, p.y0, p.x1, p.y1
FROM decisions d
JOIN proposals p ON p.id = d.proposal_id
JOIN images i ON i.id = p.image_id
WHERE d.action = 'reject'
  AND d.id NOT IN (SELECT target_id FROM decisions
                   WHERE action = 'undo' AND target_id IS NOT NULL)
ORDER BY d.id
"""


def rejected_boxes(ws: Workspace) -> list[dict[str, Any]]:
    """Boxes a reviewer rejected (undone rejects excluded), oldest first.

    Returns:
        One dict per decision: ``decision_id``, ``image_id``, ``path``, ``box``
        ``(x0, y0, x1, y1)`` in original pixels.
    """
    return [
        {
            "decision_id": int(r["id"]),
            "image_id": int(r["image_id"]),
            "path": r["path"],
            "box": (float(r["x0"]), float(r["y0"]), float(r["x1"]), float(r["y1"])),
        }
        for r in ws.conn.execute(_REJECTED_BOXES_SQL)
    ]
