"""Export bookkeeping: versions, exported items, seed captions, and small setters for tests.

``exports`` has one row per finished export (version, folder, formats, high-water marks for
``--since last``); ``exported_items`` records which proposal went into which export.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from autolabel.constants import ROUTES
from autolabel.errors import InputError, NotFoundError
from autolabel.store.db import Workspace, utcnow

_VERSION_RE = re.compile(r"^v(\d+)$")


def version_number(version: str) -> int | None:
    """``'v12'`` -> 12; None for versions not of the ``vN`` form."""
    m = _VERSION_RE.match(version)
    return int(m.group(1)) if m else None


def list_exports(ws: Workspace) -> list[dict[str, Any]]:
    """Every export row (oldest first), with ``formats`` and ``config`` decoded."""
    out = []
    for r in ws.conn.execute("SELECT * FROM exports ORDER BY id"):
        row = dict(r)
        row["formats"] = json.loads(row["formats"])
        row["config"] = json.loads(row["config"])
        out.append(row)
    return out


def next_version(ws: Workspace, existing: Iterable[str] = ()) -> str:
    """The next ``vN`` after every ``vN`` recorded in the workspace or in ``existing``."""
    names = [r["version"] for r in ws.conn.execute("SELECT version FROM exports")]
    nums = [n for n in (version_number(v) for v in [*names, *existing]) if n is not None]
    return f"v{max(nums, default=0) + 1}"


def get_export(ws: Workspace, version: str | None = None) -> dict[str, Any]:
    """The export named ``version``, or the latest one when ``version`` is None.

    Raises:
        NotFoundError: no such export (or none at all).
    """
    if version is None:
        row = ws.conn.execute("SELECT * FROM exports ORDER BY id DESC LIMIT 1").fetchone()
        if row is None:
            raise NotFoundError("--since last: expected an earlier export, found none")
    else:
        row = ws.conn.execute(
            "SELECT * FROM exports WHERE version = ? ORDER BY id DESC LIMIT 1", (version,)
        ).fetchone()
        if row is None:
            known = ", ".join(e["version"] for e in list_exports(ws)) or "none"
            raise NotFoundError(f"export {version!r}: no such export (known: {known})")
    row = dict(row)
    row["formats"] = json.loads(row["formats"])
    row["config"] = json.loads(row["config"])
    return row


def exported_proposal_ids(ws: Workspace, *, up_to_export_id: int) -> set[int]:
    """Proposal ids exported by any export with id <= ``up_to_export_id``."""
    return {
        int(r[0])
        for r in ws.conn.execute(
            "SELECT DISTINCT proposal_id FROM exported_items WHERE export_id <= ?",
            (up_to_export_id,),
        )
    }


def proposals_decided_after(ws: Workspace, decision_id: int) -> set[int]:
    """Proposals with any decision (incl. caption edits and undos) newer than ``decision_id``."""
    return {
        int(r[0])
        for r in ws.conn.execute(
            "SELECT DISTINCT proposal_id FROM decisions WHERE id > ? AND proposal_id IS NOT NULL",
            (decision_id,),
        )
    }


def high_water_marks(ws: Workspace) -> tuple[int, int]:
    """``(max decision id, max proposal id)`` now (0 when empty)."""
    d = ws.conn.execute("SELECT COALESCE(MAX(id), 0) FROM decisions").fetchone()[0]
    p = ws.conn.execute("SELECT COALESCE(MAX(id), 0) FROM proposals").fetchone()[0]
    return int(d), int(p)


def record_export(
    ws: Workspace,
    *,
    version: str,
    out_dir: str,
    formats: Sequence[str],
    items: Iterable[tuple[int, str | None]],
    max_decision_id: int,
    max_proposal_id: int,
    config: Mapping[str, Any],
) -> int:
    """Insert an export row and its items (``(proposal_id, crop_path or None)``) atomically.

    ``items`` may be a generator: it is consumed once, row by row, inside the transaction.
    """
    counted = 0

    def rows(export_id: int) -> Iterator[tuple[int, int, str | None]]:
        nonlocal counted
        for pid, crop in items:
            counted += 1
            yield (export_id, int(pid), crop)

    with ws.transaction() as c:
        cur = c.execute(
            "INSERT INTO exports(version, out_dir, formats, n_items, max_decision_id, "
            "max_proposal_id, config, created_at) VALUES (?,?,?,?,?,?,?,?)",
            (
                version,
                out_dir,
                json.dumps(list(formats)),
                0,
                int(max_decision_id),
                int(max_proposal_id),
                json.dumps(dict(config), sort_keys=True, default=str),
                utcnow(),
            ),
        )
        export_id = int(cur.lastrowid or 0)
        c.executemany(
            "INSERT INTO exported_items(export_id, proposal_id, crop_path) VALUES (?,?,?)",
            rows(export_id),
        )
        c.execute("UPDATE exports SET n_items = ? WHERE id = ?", (counted, export_id))
    return export_id


def seed_captions(ws: Workspace) -> dict[int, list[tuple[tuple[float, float, float, float], str]]]:
    """Captions of located seed crops per image id: ``{image_id: [(box, caption), ...]}``."""
    out: dict[int, list[tuple[tuple[float, float, float, float], str]]] = {}
    for r in ws.conn.execute(
        "SELECT image_id, x0, y0, x1, y1, caption FROM seed_items "
        "WHERE status = 'located' AND image_id IS NOT NULL AND caption IS NOT NULL "
        "AND caption != '' "
        "AND x0 IS NOT NULL ORDER BY id"
    ):
        box = (float(r["x0"]), float(r["y0"]), float(r["x1"]), float(r["y1"]))
        out.setdefault(int(r["image_id"]), []).append((box, str(r["caption"])))
    return out


# -- small setters (used by tests, scripts and the demo) ------------------------------------
def set_routes(ws: Workspace, proposal_ids: Iterable[int], route: str) -> int:
    """Set the route of proposals; returns how many rows changed."""
    if route not in ROUTES:
        raise InputError(f"route: expected one of {', '.join(ROUTES)}, got {route!r}")
    ids = [int(i) for i in proposal_ids]
    with ws.transaction() as c:
        c.executemany("UPDATE proposals SET route = ? WHERE id = ?", [(route, i) for i in ids])
    return len(ids)


def add_decision(
    ws: Workspace,
    proposal_id: int,
    action: str,
    *,
    reviewer: str = "reviewer",
    box: Sequence[float] | None = None,
    caption: str | None = None,
    target_id: int | None = None,
) -> int:
    """Append one decision for a proposal (accept/adjust/reject/caption/undo); returns its id."""
    row = ws.conn.execute("SELECT image_id FROM proposals WHERE id = ?", (proposal_id,)).fetchone()
    if row is None:
        raise NotFoundError(f"proposal {proposal_id}: no such proposal")
    x0, y0, x1, y1 = (None,) * 4 if box is None else (float(v) for v in box)
    with ws.transaction() as c:
        cur = c.execute(
            "INSERT INTO decisions(proposal_id, image_id, reviewer, action, x0, y0, x1, y1, "
            "caption, target_id, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (proposal_id, row[0], reviewer, action, x0, y0, x1, y1, caption, target_id, utcnow()),
        )
    return int(cur.lastrowid or 0)


def labels_changed_since_last_export(ws: Workspace, *, include: str = "accepted") -> bool:
    """Whether a full export now would differ from the latest one in which labels it holds.

    True when there is no export yet, when any decision was made after it, or when the set
    of labels (``include``) differs from the latest export's items. The sets are compared by
    a streaming merge in proposal-id order, so memory stays flat at 10^6 labels.
    """
    from autolabel.store.labels import iter_labels

    row = ws.conn.execute(
        "SELECT id, max_decision_id FROM exports ORDER BY id DESC LIMIT 1"
    ).fetchone()
    if row is None:
        return True
    newer = ws.conn.execute(
        "SELECT 1 FROM decisions WHERE id > ? AND proposal_id IS NOT NULL LIMIT 1",
        (int(row[1] or 0),),
    ).fetchone()
    if newer is not None:
        return True
    exported = (
        int(r[0])
        for r in ws.conn.execute(
            "SELECT proposal_id FROM exported_items WHERE export_id = ? ORDER BY proposal_id",
            (row[0],),
        )
    )
    current = (lab.proposal_id for lab in iter_labels(ws, include=include))
    sentinel = -1
    return any(a != b for a, b in itertools.zip_longest(current, exported, fillvalue=sentinel))
