"""Images table queries, and the workspace status summary.

Paths are stored absolute, as ``str`` (``os.fsdecode``). ``status`` is ``ok``, ``error``
(``error`` = ``reason`` or ``reason: detail``) or ``duplicate`` (``duplicate_of`` = the id
of the first ``ok`` image with the same content hash).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from autolabel.constants import ACTIONS, QUEUE_STATUSES, ROUTES, SEED_STATUSES
from autolabel.errors import NotFoundError
from autolabel.store.db import Workspace, utcnow
from autolabel.types import ImageRecord

IMAGE_STATUSES = ("ok", "error", "duplicate")
_COLUMNS = "id, path, sha256, width, height, status, error, format, size, duplicate_of"


@dataclass
class ScannedFile:
    """One file ready to be written: stat facts, content hash and header facts or an error.

    ``error`` is ``None`` for a usable image, otherwise ``reason`` or ``reason: detail``.
    """

    path: str
    size: int | None
    mtime_ns: int | None
    sha256: str | None = None
    width: int | None = None
    height: int | None = None
    format: str | None = None
    error: str | None = None


def _record(row: sqlite3.Row) -> ImageRecord:
    return ImageRecord(
        id=int(row["id"]),
        path=row["path"],
        sha256=row["sha256"],
        width=row["width"],
        height=row["height"],
        status=row["status"],
        error=row["error"],
        format=row["format"],
        size=row["size"],
        duplicate_of=row["duplicate_of"],
    )


def files_to_scan(
    conn: sqlite3.Connection,
    items: Sequence[Sequence[Any]],
    *,
    retry_errors: bool = False,
) -> list[tuple[int, int | None]]:
    """Which of ``items`` need reading: new, changed, or retried.

    Each item starts with ``(path, size, mtime_ns, ...)`` (a :class:`WalkItem` or a tuple of
    JSON-serialisable values; fields after the third are ignored).

    The comparison runs inside SQLite (one query per batch, no row per known file comes back
    to Python), which is what keeps a re-run over 100k known files within seconds.

    Returns:
        ``(index into items, existing row id or None)`` for every item that is not an
        unchanged known file (unchanged known error rows are included if ``retry_errors``).
    """
    if not items:
        return []
    payload = json.dumps(items if isinstance(items, list) else list(items))
    rows = conn.execute(
        "SELECT CAST(j.key AS INTEGER), i.id FROM json_each(?) AS j "
        "LEFT JOIN images AS i ON i.path = json_extract(j.value, '$[0]') "
        "WHERE i.id IS NULL OR i.size IS NOT json_extract(j.value, '$[1]') "
        "OR i.mtime_ns IS NOT json_extract(j.value, '$[2]') OR (? AND i.status = 'error')",
        (payload, 1 if retry_errors else 0),
    ).fetchall()
    return sorted((int(r[0]), None if r[1] is None else int(r[1])) for r in rows)


def write_scanned(
    ws: Workspace, files: Iterable[ScannedFile], *, replace: Sequence[int] = ()
) -> dict[str, int]:
    """Insert scanned files in one transaction, marking content duplicates.

    Args:
        files: scanned files; a path already in the table is updated only if its row id is
            in ``replace``, otherwise left alone (e.g. another ingest added it meanwhile).
        replace: ids of existing rows that these files update (changed size/mtime, or a
            retried error); rows are matched by path.

    A replaced row whose content changed (other sha256 or size) has its labels retired
    (:func:`retire_labels`): they stay in the history but are no longer current, and the
    image is proposed again.

    Returns:
        Counts ``{"added", "updated", "duplicate", "error", "stale"}`` for this batch
        (``stale``: proposals retired because their original changed).
    """
    counts = {"added": 0, "updated": 0, "duplicate": 0, "error": 0, "stale": 0}
    replace_ids = set(replace)
    now = utcnow()
    with ws.transaction() as c:
        for f in files:
            status, dup = "ok", None
            if f.error is not None:
                status = "error"
            elif f.sha256 is not None:
                row = c.execute(
                    # unary + keeps the planner on the sha256 index, not the status one
                    "SELECT id FROM images WHERE sha256 = ? AND +status = 'ok' AND path != ? "
                    "ORDER BY id LIMIT 1",
                    (f.sha256, f.path),
                ).fetchone()
                if row is not None:
                    status, dup = "duplicate", int(row[0])
            values = (
                f.size,
                f.mtime_ns,
                f.sha256,
                f.width,
                f.height,
                f.format,
                status,
                f.error,
                dup,
            )
            existing = None
            if replace_ids:
                existing = c.execute(
                    "SELECT id, sha256, width, height FROM images WHERE path = ?", (f.path,)
                ).fetchone()
            if existing is not None and int(existing[0]) in replace_ids:
                if (existing[1], existing[2], existing[3]) != (f.sha256, f.width, f.height):
                    counts["stale"] += retire_labels(c, int(existing[0]))
                c.execute(
                    "UPDATE images SET size=?, mtime_ns=?, sha256=?, width=?, height=?, format=?, "
                    "status=?, error=?, duplicate_of=? WHERE id = ?",
                    (*values, int(existing[0])),
                )
                counts["updated"] += 1
            else:
                cur = c.execute(
                    "INSERT OR IGNORE INTO images(path, size, mtime_ns, sha256, width, height, "
                    "format, status, error, duplicate_of, added_at) "
                    "VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                    (f.path, *values, now),
                )
                if cur.rowcount == 0:
                    continue
                counts["added"] += 1
            if status == "duplicate":
                counts["duplicate"] += 1
            elif status == "error":
                counts["error"] += 1
    return counts


INGEST_ROOTS_KEY = "ingest.roots"
"""settings key: the folders ingest has scanned (absolute), so exports can stay out of them."""


def record_ingest_roots(ws: Workspace, roots: Iterable[str]) -> None:
    """Remember folders that were ingested (merged with the ones already recorded)."""
    known = set(ws.get_setting(INGEST_ROOTS_KEY, []) or [])
    new = known | {str(r) for r in roots}
    if new != known:
        ws.set_setting(INGEST_ROOTS_KEY, sorted(new))


def _inside(path: str, folder: str) -> bool:
    folder = folder.rstrip("/") or "/"
    return path == folder or path.startswith(folder if folder == "/" else folder + "/")


def ingested_root_of(ws: Workspace, path: str) -> str | None:
    """The ingested folder that contains (or is) ``path``, else None.

    Checks the recorded ingest roots, and (for workspaces ingested before they were
    recorded) whether any image row lies under ``path``.
    """
    for root in sorted(ws.get_setting(INGEST_ROOTS_KEY, []) or []):
        if _inside(path, root):
            return str(root)
    prefix = path.rstrip("/") + "/"
    row = ws.conn.execute(
        # a range on the unique path index: every path starting with prefix
        "SELECT path FROM images WHERE path >= ? AND path < ? LIMIT 1",
        (prefix, prefix[:-1] + "0"),
    ).fetchone()
    return None if row is None else path


def export_dirs(ws: Workspace) -> list[str]:
    """Every folder an export was written to (ingest never enters them)."""
    return [str(r[0]) for r in ws.conn.execute("SELECT DISTINCT out_dir FROM exports")]


def retire_labels(c: sqlite3.Connection, image_id: int) -> int:
    """Make an image's boxes stale because its file changed (inside the caller's transaction).

    The proposals and decisions stay (history), but the image's ``run_images`` marks are
    removed, so no proposal of it is current any more (``current_proposals``, labels,
    export, select and the review queue skip them) and every run key proposes it again.
    Open or claimed review items of the image are withdrawn.

    Returns:
        The number of proposals that were current and are now stale.
    """
    n = int(
        c.execute(
            "SELECT COUNT(*) FROM proposals p WHERE p.image_id = ? AND p.run_id = ("
            "SELECT MAX(ri.run_id) FROM run_images ri WHERE ri.image_id = ? "
            "AND ri.status = 'done')",
            (image_id, image_id),
        ).fetchone()[0]
    )
    # an unfinished run that already proposed the old picture is not resumed (its old boxes
    # would be current again next to the new ones): the next propose starts a new run
    c.execute(
        "UPDATE runs SET finished_at = ? WHERE finished_at IS NULL AND id IN "
        "(SELECT run_id FROM run_images WHERE image_id = ?)",
        (utcnow(), image_id),
    )
    c.execute("DELETE FROM run_images WHERE image_id = ?", (image_id,))
    c.execute(
        "UPDATE queue_items SET status = 'withdrawn', claimed_by = NULL, lease_until = NULL "
        "WHERE image_id = ? AND status IN ('open', 'claimed')",
        (image_id,),
    )
    return n


def get_image(ws: Workspace, image_id: int) -> ImageRecord:
    """One image by id.

    Raises:
        NotFoundError: no image with that id.
    """
    row = ws.conn.execute(f"SELECT {_COLUMNS} FROM images WHERE id = ?", (image_id,)).fetchone()
    if row is None:
        raise NotFoundError(f"image {image_id}: no such image in {ws.path}")
    return _record(row)


def find_image(ws: Workspace, path: str) -> ImageRecord | None:
    """The image stored under an absolute path, or None."""
    row = ws.conn.execute(f"SELECT {_COLUMNS} FROM images WHERE path = ?", (path,)).fetchone()
    return None if row is None else _record(row)


def find_by_sha256(ws: Workspace, sha256: str) -> list[ImageRecord]:
    """Every image with this content hash, ``ok`` first then by id."""
    rows = ws.conn.execute(
        f"SELECT {_COLUMNS} FROM images WHERE sha256 = ? ORDER BY status != 'ok', id", (sha256,)
    ).fetchall()
    return [_record(r) for r in rows]


def iter_images(
    ws: Workspace,
    *,
    status: str | None = "ok",
    after_id: int = 0,
    limit: int | None = None,
    chunk: int = 1000,
) -> Iterator[ImageRecord]:
    """Images in id order, streamed in chunks (safe over millions of rows).

    Args:
        status: only this status (``None`` = every status).
        after_id: only ids greater than this.
        limit: stop after this many.
    """
    if status is not None and status not in IMAGE_STATUSES:
        raise ValueError(f"status: expected one of {IMAGE_STATUSES} or None, got {status!r}")
    where = "id > ?" + (" AND status = ?" if status is not None else "")
    yielded = 0
    last = after_id
    while True:
        params: list[Any] = [last] + ([status] if status is not None else [])
        rows = ws.conn.execute(
            f"SELECT {_COLUMNS} FROM images WHERE {where} ORDER BY id LIMIT ?",
            (*params, chunk),
        ).fetchall()
        if not rows:
            return
        for row in rows:
            yield _record(row)
            yielded += 1
            if limit is not None and yielded >= limit:
                return
        last = int(rows[-1]["id"])


def count_images(ws: Workspace) -> dict[str, int]:
    """``{"total", "ok", "error", "duplicate"}``."""
    counts = dict.fromkeys(IMAGE_STATUSES, 0)
    for status, n in ws.conn.execute("SELECT status, COUNT(*) FROM images GROUP BY status"):
        counts[status] = int(n)
    return {"total": sum(counts.values()), **counts}


def image_errors_by_reason(ws: Workspace) -> dict[str, int]:
    """Error images counted by reason (the text before ``:`` in the error column)."""
    rows = ws.conn.execute(
        "SELECT substr(error, 1, instr(error || ':', ':') - 1) AS reason, COUNT(*) "
        "FROM images WHERE status = 'error' GROUP BY reason ORDER BY COUNT(*) DESC, reason"
    )
    return {str(r[0] or "unknown"): int(r[1]) for r in rows}


def _group_count(ws: Workspace, sql: str, keys: Sequence[str] = ()) -> dict[str, int]:
    out = dict.fromkeys(keys, 0)
    for key, n in ws.conn.execute(sql):
        out[str(key)] = int(n)
    return out


def workspace_status(ws: Workspace) -> dict[str, Any]:
    """Counts per stage, for ``autolabel status`` (text and ``--json``).

    The store's own counts only (one aggregate query per key); the status command adds
    the stages' summaries, e.g. ``auto_precision`` from
    :func:`autolabel.select.run.status_summary`.

    Returns:
        ``{"workspace", "schema_version", "images", "image_errors", "seed_items", "runs",
        "proposals", "queue", "decisions", "exports"}``; each value a dict of counts.
    """
    conn = ws.conn
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    runs_row = conn.execute(
        "SELECT COUNT(*), COUNT(finished_at), COALESCE(SUM(n_errors), 0) FROM runs"
    ).fetchone()
    proposals = _group_count(
        ws,
        "SELECT route, COUNT(*) FROM current_proposals GROUP BY route",
        ROUTES,
    )
    proposals = {
        "current": sum(proposals.values()),
        "all_runs": int(conn.execute("SELECT COUNT(*) FROM proposals").fetchone()[0]),
        **proposals,
    }
    seed = _group_count(
        ws,
        "SELECT status, COUNT(*) FROM seed_items GROUP BY status",
        SEED_STATUSES,
    )
    queue = _group_count(
        ws,
        "SELECT status, COUNT(*) FROM queue_items GROUP BY status",
        QUEUE_STATUSES,
    )
    decisions = _group_count(
        ws,
        "SELECT action, COUNT(*) FROM decisions GROUP BY action",
        ACTIONS,
    )
    latest = conn.execute("SELECT version FROM exports ORDER BY id DESC LIMIT 1").fetchone()
    return {
        "workspace": str(ws.path),
        "schema_version": version,
        "images": count_images(ws),
        "image_errors": image_errors_by_reason(ws),
        "seed_items": {"total": sum(seed.values()), **seed},
        "runs": {
            "total": int(runs_row[0]),
            "finished": int(runs_row[1]),
            "unfinished": int(runs_row[0]) - int(runs_row[1]),
            "image_errors": int(runs_row[2]),
        },
        "proposals": proposals,
        "queue": {"total": sum(queue.values()), **queue},
        "decisions": {"total": sum(decisions.values()), **decisions},
        "exports": {
            "total": int(conn.execute("SELECT COUNT(*) FROM exports").fetchone()[0]),
            "latest": None if latest is None else latest[0],
        },
    }
