"""Review queue, decisions log and reviewers: every SQL statement of the review area.

Queue items are claimed with a lease (unix time in ``lease_until``); an item whose lease
ran out is free again. Claims and decisions run in ``BEGIN IMMEDIATE`` transactions, so two
connections (threads or processes) never claim the same item. Decisions are an append-only
log; an ``undo`` row names the undone decision in ``target_id`` and re-opens the item for
the reviewer who undid it.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import sqlite3
import time
from collections.abc import Iterable, Sequence
from typing import Any

from autolabel.constants import QUEUE_REASONS
from autolabel.errors import ConflictError, InputError, NotFoundError
from autolabel.store.db import Workspace, utcnow

FINAL_ACTIONS = ("accept", "adjust", "reject")
ACTIONS = (*FINAL_ACTIONS, "caption", "skip")
REVIEWER_NAME_RE = re.compile(r"^[\w.@-]{1,64}$")

_ITEM_SQL = """
SELECT q.id AS item_id, q.proposal_id, q.image_id, q.reason, q.priority, q.status,
       q.claimed_by, q.lease_until, p.x0, p.y0, p.x1, p.y1, p.score, p.p_correct, p.phrase,
       p.route, i.width, i.height
FROM queue_items q
JOIN proposals p ON p.id = q.proposal_id
JOIN images i ON i.id = q.image_id
WHERE q.id = ?
"""

_EXPIRE_SQL = (
    "UPDATE queue_items SET status = 'open', claimed_by = NULL, lease_until = NULL "
    "WHERE status = 'claimed' AND lease_until < ?"
)

_NEXT_SQL = """
SELECT q.id FROM queue_items q
WHERE q.status = 'open'
  AND NOT EXISTS (SELECT 1 FROM decisions d
                  WHERE d.proposal_id = q.proposal_id AND d.action = 'skip' AND d.reviewer = ?)
ORDER BY q.priority DESC, q.id
LIMIT 1
"""

_LAST_UNDOABLE_SQL = """
SELECT d.* FROM decisions d
WHERE d.reviewer = ? AND d.action != 'undo'
  AND NOT EXISTS (SELECT 1 FROM decisions u
                  WHERE u.proposal_id IS d.proposal_id AND u.action = 'undo'
                    AND u.target_id = d.id)
ORDER BY d.id DESC
LIMIT 1
"""


def _c(ws: Workspace, conn: sqlite3.Connection | None) -> sqlite3.Connection:
    return conn or ws.conn


def check_reviewer_name(name: str) -> str:
    """Validate a reviewer name (1-64 letters, digits, ``_.@-``); returns it unchanged."""
    if not isinstance(name, str) or not REVIEWER_NAME_RE.match(name):
        raise InputError(
            f"reviewer name: expected 1-64 letters, digits or _.@- characters, got {name!r}"
        )
    return name


# -- reviewers -------------------------------------------------------------------------------
def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def add_reviewer(ws: Workspace, name: str) -> str:
    """Create a reviewer and return its new access token (only its hash is stored).

    Raises:
        InputError: bad name.
        ConflictError: a reviewer with this name exists.
    """
    check_reviewer_name(name)
    token = secrets.token_urlsafe(24)
    try:
        with ws.transaction() as c:
            c.execute(
                "INSERT INTO reviewers(name, token_sha256, created_at) VALUES (?,?,?)",
                (name, hash_token(token), utcnow()),
            )
    except sqlite3.IntegrityError:
        raise ConflictError(f"reviewer {name!r} already exists") from None
    return token


def remove_reviewer(ws: Workspace, name: str) -> None:
    cur = ws.conn.execute("DELETE FROM reviewers WHERE name = ?", (name,))
    if cur.rowcount == 0:
        raise NotFoundError(f"reviewer {name!r}: no such reviewer")


def list_reviewers(ws: Workspace, conn: sqlite3.Connection | None = None) -> list[dict[str, Any]]:
    """Reviewers with their number of (non-undo) decisions."""
    rows = _c(ws, conn).execute(
        "SELECT r.name, r.created_at, (SELECT COUNT(*) FROM decisions d "
        "WHERE d.reviewer = r.name AND d.action != 'undo') AS n_decisions "
        "FROM reviewers r ORDER BY r.name"
    )
    return [dict(r) for r in rows]


def count_reviewers(ws: Workspace, conn: sqlite3.Connection | None = None) -> int:
    return int(_c(ws, conn).execute("SELECT COUNT(*) FROM reviewers").fetchone()[0])


def reviewer_for_token(
    ws: Workspace, token: str, conn: sqlite3.Connection | None = None
) -> str | None:
    """The reviewer name owning ``token``, or None."""
    row = (
        _c(ws, conn)
        .execute("SELECT name FROM reviewers WHERE token_sha256 = ?", (hash_token(token),))
        .fetchone()
    )
    return None if row is None else str(row[0])


# -- queue -----------------------------------------------------------------------------------
def enqueue(
    ws: Workspace,
    proposal_ids: Sequence[int],
    reason: str,
    priority: float | Sequence[float] = 0.0,
    *,
    conn: sqlite3.Connection | None = None,
) -> int:
    """Put proposals in the review queue (one item per proposal).

    An already-queued proposal that is still open (or withdrawn) gets the new reason and
    priority; one that is claimed or done is left alone.

    Args:
        proposal_ids: (n,) proposal ids.
        reason: ``uncertain``, ``audit`` or ``missing``.
        priority: one value, or (n,) values; higher = reviewed first.

    Returns:
        The number of items inserted or updated.

    Raises:
        InputError: unknown reason or a priority list of the wrong length.
        NotFoundError: some proposal ids do not exist.
    """
    if reason not in QUEUE_REASONS:
        raise InputError(
            f"queue reason: expected one of {', '.join(QUEUE_REASONS)}, got {reason!r}"
        )
    ids = [int(p) for p in proposal_ids]
    if isinstance(priority, (int, float)):
        prios = [float(priority)] * len(ids)
    else:
        prios = [float(p) for p in priority]
        if len(prios) != len(ids):
            raise InputError(
                f"priority: expected {len(ids)} values (one per proposal), got {len(prios)}"
            )
    now = utcnow()
    with ws.transaction(conn) as c:
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            sql = f"SELECT id FROM proposals WHERE id IN ({marks})"
            found = {r[0] for r in c.execute(sql, chunk)}
            if len(found) != len(set(chunk)):
                missing = sorted(set(chunk) - found)[:10]
                raise NotFoundError(f"enqueue: no such proposal ids {missing}")
        cur = c.executemany(
            "INSERT INTO queue_items(proposal_id, image_id, reason, priority, created_at) "
            "SELECT id, image_id, ?, ?, ? FROM proposals WHERE id = ? "
            "ON CONFLICT(proposal_id) DO UPDATE SET reason = excluded.reason, "
            "priority = excluded.priority, status = 'open' "
            "WHERE queue_items.status IN ('open', 'withdrawn')",
            ((reason, prio, now, pid) for pid, prio in zip(ids, prios, strict=True)),
        )
        changed = max(cur.rowcount, 0)
    return changed


def withdraw(
    ws: Workspace, proposal_ids: Iterable[int], *, conn: sqlite3.Connection | None = None
) -> int:
    """Take open items out of the queue (e.g. select re-routed them); returns how many."""
    n = 0
    with ws.transaction(conn) as c:
        for pid in proposal_ids:
            n += c.execute(
                "UPDATE queue_items SET status = 'withdrawn' WHERE proposal_id = ? "
                "AND status = 'open'",
                (int(pid),),
            ).rowcount
    return n


def get_item(
    ws: Workspace, item_id: int, *, conn: sqlite3.Connection | None = None
) -> dict[str, Any]:
    """One queue item joined with its proposal and image size.

    Raises:
        NotFoundError: no such item.
    """
    row = _c(ws, conn).execute(_ITEM_SQL, (int(item_id),)).fetchone()
    if row is None:
        raise NotFoundError(f"queue item {item_id}: no such item")
    return dict(row)


def current_caption(
    ws: Workspace, proposal_id: int, *, conn: sqlite3.Connection | None = None
) -> str | None:
    """The latest caption a reviewer gave this proposal (undone ones ignored)."""
    row = (
        _c(ws, conn)
        .execute(
            "SELECT d.caption FROM decisions d WHERE d.proposal_id = ? AND d.caption IS NOT NULL "
            "AND d.action != 'undo' AND NOT EXISTS (SELECT 1 FROM decisions u "
            "WHERE u.proposal_id = d.proposal_id AND u.action = 'undo' AND u.target_id = d.id) "
            "ORDER BY d.id DESC LIMIT 1",
            (int(proposal_id),),
        )
        .fetchone()
    )
    return None if row is None else str(row[0])


_IMAGE_BOXES_SQL = """
SELECT p.id AS proposal_id, p.x0, p.y0, p.x1, p.y1, p.score, p.phrase, p.route
FROM proposals p
WHERE p.image_id = ?
  AND +p.run_id = (SELECT MAX(ri.run_id) FROM runs r CROSS JOIN run_images ri
                   WHERE ri.run_key = r.key AND ri.image_id = ? AND ri.status = 'done')
ORDER BY p.score DESC, p.id
"""


def image_boxes(
    ws: Workspace, image_id: int, *, conn: sqlite3.Connection | None = None
) -> list[dict[str, Any]]:
    """All current proposals of an image (id, box, score, phrase, route), by score.

    Same rows as the ``current_proposals`` view, but planned for one image: proposals by
    ``image_id`` and the latest finished run through the run_images primary key, so it
    stays ~0.1 ms with millions of rows (the view's plan scans run_images).
    """
    rows = _c(ws, conn).execute(_IMAGE_BOXES_SQL, (int(image_id), int(image_id)))
    return [dict(r) for r in rows]


def claim_next(
    ws: Workspace,
    reviewer: str,
    *,
    lease_seconds: float,
    now: float | None = None,
    conn: sqlite3.Connection | None = None,
) -> int | None:
    """Claim the highest-priority free item for ``reviewer``; returns its id or None.

    Free = open, or claimed with an expired lease. Items this reviewer skipped are not
    offered to them again. Atomic across connections (one ``BEGIN IMMEDIATE``).
    """
    now = time.time() if now is None else now
    with ws.transaction(conn) as c:
        c.execute(_EXPIRE_SQL, (now,))
        row = c.execute(_NEXT_SQL, (reviewer,)).fetchone()
        if row is None:
            return None
        item_id = int(row[0])
        c.execute(
            "UPDATE queue_items SET status = 'claimed', claimed_by = ?, lease_until = ? "
            "WHERE id = ?",
            (reviewer, now + lease_seconds, item_id),
        )
    return item_id


def held_items(
    ws: Workspace,
    reviewer: str,
    *,
    now: float | None = None,
    conn: sqlite3.Connection | None = None,
) -> list[int]:
    """Ids of the items ``reviewer`` holds with a live lease (highest priority first)."""
    now = time.time() if now is None else now
    rows = _c(ws, conn).execute(
        "SELECT id FROM queue_items WHERE status = 'claimed' AND claimed_by = ? "
        "AND lease_until >= ? ORDER BY priority DESC, id",
        (reviewer, now),
    )
    return [int(r[0]) for r in rows]


def renew(
    ws: Workspace,
    reviewer: str,
    *,
    lease_seconds: float,
    item_ids: Sequence[int] | None = None,
    now: float | None = None,
    conn: sqlite3.Connection | None = None,
) -> int:
    """Extend the leases ``reviewer`` still holds (all, or ``item_ids``); returns how many.

    A lease that already expired but that nobody else took is renewed too.
    """
    now = time.time() if now is None else now
    with ws.transaction(conn) as c:
        if item_ids is None:
            return c.execute(
                "UPDATE queue_items SET lease_until = ? WHERE status = 'claimed' "
                "AND claimed_by = ?",
                (now + lease_seconds, reviewer),
            ).rowcount
        n = 0
        for item_id in item_ids:
            n += c.execute(
                "UPDATE queue_items SET lease_until = ? WHERE id = ? AND status = 'claimed' "
                "AND claimed_by = ?",
                (now + lease_seconds, int(item_id), reviewer),
            ).rowcount
        return n


def release(
    ws: Workspace,
    reviewer: str,
    item_ids: Sequence[int],
    *,
    conn: sqlite3.Connection | None = None,
) -> int:
    """Give claimed items back to the queue (the page closed); returns how many."""
    n = 0
    with ws.transaction(conn) as c:
        for item_id in item_ids:
            n += c.execute(
                "UPDATE queue_items SET status = 'open', claimed_by = NULL, lease_until = NULL "
                "WHERE id = ? AND status = 'claimed' AND claimed_by = ?",
                (int(item_id), reviewer),
            ).rowcount
    return n


def _decided_by(c: sqlite3.Connection, item_id: int) -> str:
    row = c.execute(
        "SELECT reviewer, action, created_at FROM decisions WHERE queue_item_id = ? "
        "AND action IN ('accept', 'adjust', 'reject') ORDER BY id DESC LIMIT 1",
        (item_id,),
    ).fetchone()
    return "someone" if row is None else f"{row[0]} ({row[1]} at {row[2]})"


def _check_can_act(c: sqlite3.Connection, row: sqlite3.Row, reviewer: str, now: float) -> None:
    item_id = int(row["id"])
    status = row["status"]
    if status == "done":
        raise ConflictError(
            f"item {item_id}: expected an undecided item, but it was already decided by "
            f"{_decided_by(c, item_id)}"
        )
    if status == "withdrawn":
        raise ConflictError(f"item {item_id}: withdrawn from the review queue by select")
    if (
        status == "claimed"
        and row["claimed_by"] != reviewer
        and row["lease_until"] is not None
        and row["lease_until"] >= now
    ):
        raise ConflictError(
            f"item {item_id}: your lease on it expired and {row['claimed_by']} holds it now "
            f"(until {time.strftime('%H:%M:%S', time.localtime(row['lease_until']))}); "
            "your decision was not saved"
        )


def _queue_row(c: sqlite3.Connection, item_id: int) -> sqlite3.Row:
    row = c.execute(
        "SELECT id, proposal_id, image_id, status, claimed_by, lease_until FROM queue_items "
        "WHERE id = ?",
        (int(item_id),),
    ).fetchone()
    if row is None:
        raise NotFoundError(f"queue item {item_id}: no such item")
    return row


def decide(
    ws: Workspace,
    reviewer: str,
    item_id: int,
    action: str,
    *,
    box: Sequence[float] | None = None,
    caption: str | None = None,
    reason: str | None = None,
    lease_seconds: float,
    now: float | None = None,
    conn: sqlite3.Connection | None = None,
) -> int:
    """Log a decision on a queue item and update the item; returns the decision id.

    ``accept``/``adjust``/``reject`` finish the item, ``skip`` gives it back to the queue
    (not offered to this reviewer again), ``caption`` keeps it claimed and renews the lease.
    A reviewer whose lease ran out may still decide as long as nobody else took the item.

    Raises:
        NotFoundError: no such item.
        ConflictError: the item is decided, withdrawn, or held by another reviewer.
        InputError: unknown action, or ``adjust`` without a box.
    """
    if action not in ACTIONS:
        raise InputError(f"action: expected one of {', '.join(ACTIONS)}, got {action!r}")
    if action == "adjust" and box is None:
        raise InputError("adjust: expected a box [x0, y0, x1, y1], got none")
    if action == "caption" and caption is None:
        raise InputError("caption: expected a caption text, got none")
    now = time.time() if now is None else now
    x0, y0, x1, y1 = (float(v) for v in box) if box is not None else (None,) * 4
    with ws.transaction(conn) as c:
        row = _queue_row(c, item_id)
        _check_can_act(c, row, reviewer, now)
        cur = c.execute(
            "INSERT INTO decisions(queue_item_id, proposal_id, image_id, reviewer, action, "
            "x0, y0, x1, y1, caption, reason, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                row["id"],
                row["proposal_id"],
                row["image_id"],
                reviewer,
                action,
                x0,
                y0,
                x1,
                y1,
                caption,
                reason,
                utcnow(),
            ),
        )
        decision_id = int(cur.lastrowid or 0)
        if action in FINAL_ACTIONS:
            c.execute(
                "UPDATE queue_items SET status = 'done', claimed_by = ?, lease_until = NULL "
                "WHERE id = ?",
                (reviewer, row["id"]),
            )
        elif action == "skip":
            c.execute(
                "UPDATE queue_items SET status = 'open', claimed_by = NULL, lease_until = NULL "
                "WHERE id = ?",
                (row["id"],),
            )
        else:
            c.execute(
                "UPDATE queue_items SET status = 'claimed', claimed_by = ?, lease_until = ? "
                "WHERE id = ?",
                (reviewer, now + lease_seconds, row["id"]),
            )
    return decision_id


def undo(
    ws: Workspace,
    reviewer: str,
    *,
    decision_id: int | None = None,
    lease_seconds: float,
    now: float | None = None,
    conn: sqlite3.Connection | None = None,
) -> dict[str, Any]:
    """Undo ``reviewer``'s latest not-yet-undone decision (or ``decision_id``, if theirs).

    Undoing accept/adjust/reject re-opens the item and claims it for the reviewer, so it is
    shown again. Undoing a skip claims the item back if it is still free; undoing a caption
    only cancels the caption.

    Returns:
        ``{"undo_id", "target_id", "action", "item_id"}``; ``item_id`` is the item now held
        by the reviewer because of the undo, or None.

    Raises:
        NotFoundError: nothing to undo / no such decision.
        ConflictError: not the reviewer's decision, already undone, or the item was taken
            by someone else since.
    """
    now = time.time() if now is None else now
    with ws.transaction(conn) as c:
        if decision_id is None:
            target = c.execute(_LAST_UNDOABLE_SQL, (reviewer,)).fetchone()
            if target is None:
                raise NotFoundError(f"undo: {reviewer} has no decision left to undo")
        else:
            target = c.execute(
                "SELECT * FROM decisions WHERE id = ?", (int(decision_id),)
            ).fetchone()
            if target is None:
                raise NotFoundError(f"undo: no such decision {decision_id}")
            if target["reviewer"] != reviewer:
                raise ConflictError(
                    f"undo: decision {decision_id} was made by {target['reviewer']}; "
                    "you can only undo your own decisions"
                )
            if target["action"] == "undo":
                raise ConflictError(f"undo: decision {decision_id} is itself an undo")
            if c.execute(
                "SELECT 1 FROM decisions WHERE action = 'undo' AND target_id = ?",
                (target["id"],),
            ).fetchone():
                raise ConflictError(f"undo: decision {decision_id} was already undone")
        held_item: int | None = None
        item_id = target["queue_item_id"]
        if item_id is not None:
            row = _queue_row(c, item_id)
            taken_by_other = (
                row["status"] == "claimed"
                and row["claimed_by"] != reviewer
                and (row["lease_until"] or 0) >= now
            )
            if target["action"] in FINAL_ACTIONS:
                if taken_by_other:  # pragma: no cover - a done item is never claimed
                    raise ConflictError(f"undo: item {item_id} is held by {row['claimed_by']}")
                if (
                    row["status"] == "done"
                    and c.execute(
                        "SELECT 1 FROM decisions WHERE queue_item_id = ? AND id > ? "
                        "AND action IN ('accept', 'adjust', 'reject')",
                        (item_id, target["id"]),
                    ).fetchone()
                ):
                    raise ConflictError(
                        f"undo: item {item_id} was decided again after decision {target['id']}"
                    )
                held_item = int(item_id)
            elif target["action"] == "skip":
                if row["status"] == "open" or (row["status"] == "claimed" and not taken_by_other):
                    held_item = int(item_id)
            elif row["status"] == "claimed" and row["claimed_by"] == reviewer:
                held_item = int(item_id)
            if held_item is not None:
                c.execute(
                    "UPDATE queue_items SET status = 'claimed', claimed_by = ?, lease_until = ? "
                    "WHERE id = ?",
                    (reviewer, now + lease_seconds, held_item),
                )
        cur = c.execute(
            "INSERT INTO decisions(queue_item_id, proposal_id, image_id, reviewer, action, "
            "target_id, created_at) VALUES (?,?,?,?,?,?,?)",
            (
                target["queue_item_id"],
                target["proposal_id"],
                target["image_id"],
                reviewer,
                "undo",
                target["id"],
                utcnow(),
            ),
        )
        return {
            "undo_id": int(cur.lastrowid or 0),
            "target_id": int(target["id"]),
            "action": target["action"],
            "item_id": held_item,
        }


def queue_stats(
    ws: Workspace, reviewer: str | None = None, *, conn: sqlite3.Connection | None = None
) -> dict[str, int]:
    """Counts of items by status (open includes expired claims) and ``mine`` done."""
    c = _c(ws, conn)
    now = time.time()
    out = {"open": 0, "claimed": 0, "done": 0, "withdrawn": 0}
    for status, n in c.execute("SELECT status, COUNT(*) FROM queue_items GROUP BY status"):
        out[status] = int(n)
    expired = int(
        c.execute(
            "SELECT COUNT(*) FROM queue_items WHERE status = 'claimed' AND lease_until < ?",
            (now,),
        ).fetchone()[0]
    )
    out["claimed"] -= expired
    out["open"] += expired
    out["remaining"] = out["open"] + out["claimed"]
    out["total"] = out["remaining"] + out["done"]
    if reviewer is not None:
        out["mine"] = reviewer_done(ws, reviewer, conn=c)
    return out


def reviewer_done(ws: Workspace, reviewer: str, *, conn: sqlite3.Connection | None = None) -> int:
    """How many accept/adjust/reject decisions of ``reviewer`` stand (not undone).

    Reads only the reviewer's own rows (``decisions_reviewer`` index), so it stays cheap
    however long the queue is.
    """
    c = _c(ws, conn)
    made = c.execute(
        "SELECT COUNT(*) FROM decisions WHERE reviewer = ? "
        "AND action IN ('accept', 'adjust', 'reject')",
        (reviewer,),
    ).fetchone()[0]
    undone = c.execute(
        "SELECT COUNT(*) FROM decisions u JOIN decisions t ON t.id = u.target_id "
        "WHERE u.reviewer = ? AND u.action = 'undo' "
        "AND t.action IN ('accept', 'adjust', 'reject')",
        (reviewer,),
    ).fetchone()[0]
    return int(made) - int(undone)


def iter_decisions(
    ws: Workspace, *, since_id: int = 0, conn: sqlite3.Connection | None = None
) -> list[dict[str, Any]]:
    """The decision log after ``since_id``, oldest first (for select/finetune/export)."""
    return [
        dict(r)
        for r in _c(ws, conn).execute(
            "SELECT * FROM decisions WHERE id > ? ORDER BY id", (int(since_id),)
        )
    ]


def image_file(
    ws: Workspace, image_id: int, *, conn: sqlite3.Connection | None = None
) -> dict[str, Any]:
    """Path, content hash and size of an image, for serving it by id.

    Raises:
        NotFoundError: no such image.
    """
    row = (
        _c(ws, conn)
        .execute(
            "SELECT id, path, sha256, mtime_ns, width, height, status FROM images WHERE id = ?",
            (int(image_id),),
        )
        .fetchone()
    )
    if row is None:
        raise NotFoundError(f"image {image_id}: no such image")
    return dict(row)


def item_for_proposal(
    ws: Workspace, proposal_id: int, *, conn: sqlite3.Connection | None = None
) -> int | None:
    """The queue item id of a proposal, or None when it was never queued."""
    row = (
        _c(ws, conn)
        .execute("SELECT id FROM queue_items WHERE proposal_id = ?", (int(proposal_id),))
        .fetchone()
    )
    return None if row is None else int(row[0])
