"""Seed items: hand crops, where they were found, their captions and prompt phrases.

A crop path is unique; adding the same crop again updates its row (idempotent re-runs).
Box coordinates are in pixels of the EXIF-corrected original.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from autolabel.store.db import Workspace, utcnow
from autolabel.types import SeedItem

SEED_STATUSES = ("located", "not_found", "no_original")
_COLUMNS = (
    "id, crop_path, original_path, image_id, x0, y0, x1, y1, score, status, caption, phrase, info"
)


def _item(row: sqlite3.Row) -> SeedItem:
    box = None
    if row["x0"] is not None:
        box = (float(row["x0"]), float(row["y0"]), float(row["x1"]), float(row["y1"]))
    return SeedItem(
        id=int(row["id"]),
        crop_path=row["crop_path"],
        original_path=row["original_path"],
        image_id=row["image_id"],
        box=box,
        score=None if row["score"] is None else float(row["score"]),
        status=row["status"],
        caption=row["caption"],
        phrase=row["phrase"],
    )


def upsert_seed_items(ws: Workspace, rows: Iterable[Mapping[str, Any]]) -> int:
    """Insert or update seed items in one transaction.

    Args:
        rows: dicts with ``crop_path`` (required), ``crop_sha256``, ``original_path``,
            ``image_id``, ``box`` (4 floats or None), ``score``, ``status`` (one of
            :data:`SEED_STATUSES`), ``caption``, ``info`` (JSON-able dict). An existing
            caption / phrase is kept when the new row has none.

    Returns:
        Number of rows written.
    """
    now = utcnow()
    n = 0
    with ws.transaction() as c:
        for r in rows:
            status = r.get("status", "not_found")
            if status not in SEED_STATUSES:
                raise ValueError(f"status: expected one of {SEED_STATUSES}, got {status!r}")
            box = r.get("box")
            x0, y0, x1, y1 = (None,) * 4 if box is None else (float(v) for v in box)
            c.execute(
                "INSERT INTO seed_items(crop_path, crop_sha256, original_path, image_id, "
                "x0, y0, x1, y1, score, status, caption, phrase, info, added_at) "
                "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?) "
                "ON CONFLICT(crop_path) DO UPDATE SET crop_sha256 = excluded.crop_sha256, "
                "original_path = excluded.original_path, image_id = excluded.image_id, "
                "x0 = excluded.x0, y0 = excluded.y0, x1 = excluded.x1, y1 = excluded.y1, "
                "score = excluded.score, status = excluded.status, "
                "caption = COALESCE(excluded.caption, seed_items.caption), "
                "phrase = COALESCE(excluded.phrase, seed_items.phrase), info = excluded.info",
                (
                    str(r["crop_path"]),
                    r.get("crop_sha256"),
                    r.get("original_path"),
                    r.get("image_id"),
                    x0,
                    y0,
                    x1,
                    y1,
                    r.get("score"),
                    status,
                    r.get("caption"),
                    r.get("phrase"),
                    json.dumps(dict(r.get("info") or {}), sort_keys=True),
                    now,
                ),
            )
            n += 1
    return n


def list_seed_items(ws: Workspace, *, status: str | None = None) -> list[SeedItem]:
    """All seed items in id order (optionally only one status)."""
    if status is not None and status not in SEED_STATUSES:
        raise ValueError(f"status: expected one of {SEED_STATUSES} or None, got {status!r}")
    sql = f"SELECT {_COLUMNS} FROM seed_items"
    params: tuple[Any, ...] = ()
    if status is not None:
        sql += " WHERE status = ?"
        params = (status,)
    return [_item(r) for r in ws.conn.execute(sql + " ORDER BY id", params)]


def seed_item_info(ws: Workspace, item_id: int) -> dict[str, Any]:
    """The JSON ``info`` of one item (scale, method, pairing, ...); {} if none."""
    row = ws.conn.execute("SELECT info FROM seed_items WHERE id = ?", (item_id,)).fetchone()
    return {} if row is None else json.loads(row[0] or "{}")


def seed_verification(ws: Workspace) -> dict[int, dict[str, Any]]:
    """``{item_id: {"verify", "flag", "best_box"}}`` from each item's ``info``.

    ``verify`` is the full-resolution check of the box (higher = exact; None when the crop
    was never located), ``flag`` is ``"loose"`` for a crop found but not exact enough.
    """
    out: dict[int, dict[str, Any]] = {}
    for item_id, raw in ws.conn.execute("SELECT id, info FROM seed_items ORDER BY id"):
        info = json.loads(raw or "{}")
        out[int(item_id)] = {
            "verify": info.get("verify"),
            "flag": info.get("flag"),
            "best_box": info.get("best_box"),
        }
    return out


def known_crops(ws: Workspace) -> dict[str, str | None]:
    """``{crop_path: crop_sha256}`` of every seed item (to skip unchanged crops)."""
    return {r[0]: r[1] for r in ws.conn.execute("SELECT crop_path, crop_sha256 FROM seed_items")}


def set_captions(ws: Workspace, captions: Mapping[int, str | None]) -> None:
    """Set captions by item id (None clears)."""
    with ws.transaction() as c:
        c.executemany(
            "UPDATE seed_items SET caption = ? WHERE id = ?",
            [(v, int(k)) for k, v in captions.items()],
        )


def set_phrases(ws: Workspace, phrases: Mapping[int, str | None]) -> None:
    """Set prompt phrases by item id (None clears)."""
    with ws.transaction() as c:
        c.executemany(
            "UPDATE seed_items SET phrase = ? WHERE id = ?",
            [(v, int(k)) for k, v in phrases.items()],
        )


PHRASE_CAPTIONS = "seed.phrase_captions"
"""Workspace setting: ``{prompt phrase: [seed captions it was derived from]}``."""


def set_phrase_captions(ws: Workspace, mapping: Mapping[str, Iterable[str]]) -> None:
    """Store which seed captions each prompt phrase was derived from (``seed prompts``).

    Args:
        mapping: ``{phrase: captions}``; captions are stripped, deduplicated and sorted.
    """
    clean = {
        str(k): sorted({str(c).strip() for c in v if c and str(c).strip()})
        for k, v in mapping.items()
        if k
    }
    with ws.transaction():
        ws.set_setting(PHRASE_CAPTIONS, {k: v for k, v in clean.items() if v})


def phrase_captions(ws: Workspace) -> dict[str, str]:
    """``{phrase: caption}`` for the prompt phrases derived from exactly one seed caption.

    A phrase made from several different captions ("white sneaker" from two shoes) is left
    out: which product a box found by it shows is not known. Empty before ``seed prompts``.
    """
    stored = ws.get_setting(PHRASE_CAPTIONS) or {}
    return {str(k): str(v[0]) for k, v in stored.items() if isinstance(v, list) and len(v) == 1}


def seed_boxes_by_image(
    ws: Workspace, *, image_ids: Sequence[int] | None = None
) -> dict[int, list[tuple[tuple[float, float, float, float], str | None]]]:
    """Located seed boxes grouped by image id: ``{image_id: [(box, phrase), ...]}``."""
    out: dict[int, list[tuple[tuple[float, float, float, float], str | None]]] = {}
    rows = ws.conn.execute(
        "SELECT image_id, x0, y0, x1, y1, phrase FROM seed_items "
        "WHERE status = 'located' AND image_id IS NOT NULL AND x0 IS NOT NULL ORDER BY id"
    )
    wanted = None if image_ids is None else {int(i) for i in image_ids}
    for r in rows:
        iid = int(r["image_id"])
        if wanted is not None and iid not in wanted:
            continue
        out.setdefault(iid, []).append(
            ((float(r["x0"]), float(r["y0"]), float(r["x1"]), float(r["y1"])), r["phrase"])
        )
    return out


def count_seed_items(ws: Workspace) -> dict[str, int]:
    """``{status: count}`` over seed items (every status listed, 0 if none)."""
    out = dict.fromkeys(SEED_STATUSES, 0)
    for status, n in ws.conn.execute("SELECT status, COUNT(*) FROM seed_items GROUP BY status"):
        out[status] = int(n)
    return out
