"""Queries of the select stage: stream current proposals, labelled examples, apply routes.

Routing never touches a proposal that a person decided (an effective accept / adjust /
reject) or whose queue item is claimed or done.
"""

from __future__ import annotations

import itertools
import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from autolabel.constants import (
    MATCH_IOU,
    QUEUE_REASONS,
    QUEUE_STATUSES,
    ROUTES,
    SEED_TRAINED_DETECTORS,
)
from autolabel.errors import InputError
from autolabel.geometry import iou
from autolabel.store.db import Workspace, utcnow

# effective decisions (undo rows cancel their target) -> the latest box decision per proposal
_LAST_DECISION = """
WITH eff AS (
    SELECT * FROM decisions
    WHERE action IN ('accept', 'adjust', 'reject')
      AND id NOT IN (SELECT target_id FROM decisions
                     WHERE action = 'undo' AND target_id IS NOT NULL)
),
last AS (SELECT proposal_id, MAX(id) AS did FROM eff GROUP BY proposal_id)
"""


@dataclass
class CurrentProposals:
    """Current proposals as parallel arrays (``n`` rows, in proposal-id order)."""

    ids: np.ndarray  # (n,) int64
    image_id: np.ndarray  # (n,) int64
    run_id: np.ndarray  # (n,) int64
    xyxy: np.ndarray  # (n, 4) float64 (float32 if loaded compact and exact)
    score: np.ndarray  # (n,) float64 (likewise)
    phrase_code: np.ndarray  # (n,) int64 into phrases
    phrases: list[str]
    signals: dict[str, np.ndarray]  # name -> (n,) float64, NaN = missing
    route: np.ndarray  # (n,) object
    width: np.ndarray  # (n,) float32 image width (NaN unknown)
    height: np.ndarray  # (n,) float32
    p_correct: np.ndarray  # (n,) float64 from the last select (NaN before)

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    def drop_columns(self, *names: str) -> None:
        """Free columns a caller is done with (select: the signals, scores, sizes and runs
        after calibrating, the boxes and phrases before routing): each becomes empty, of
        its dtype; ``len`` (from ``ids``) is kept.

        Raises:
            InputError: ``ids`` or a name that is not a column.
        """
        for name in names:
            if name == "signals":
                self.signals = {}
                continue
            col = getattr(self, name, None)
            if name == "ids" or not isinstance(col, np.ndarray):
                raise InputError(f"drop_columns: expected a column other than ids, got {name!r}")
            setattr(self, name, np.zeros((0, *col.shape[1:]), col.dtype))


def _signal_column(dicts: list[dict[str, Any]], key: str) -> np.ndarray:
    """One signal over a chunk of parsed JSON dicts (NaN where absent or not a number)."""
    nan = float("nan")
    return _number_column([d.get(key, nan) for d in dicts])


def _number_column(vals: list[Any]) -> np.ndarray:
    """``(len(vals),)`` float64 of JSON values: NaN for None and anything not a number."""
    try:
        return np.array(vals, np.float64)  # None -> NaN
    except (TypeError, ValueError):
        nan = float("nan")
        return np.array(
            [v if isinstance(v, (int, float)) and not isinstance(v, bool) else nan for v in vals],
            np.float64,
        )


# route, queue status and reason names -> the constants themselves (see load_current)
_NAMES = {v: v for v in (*ROUTES, *QUEUE_STATUSES, *QUEUE_REASONS)}


def _signal_columns(
    texts: Sequence[str], at: np.ndarray, out: dict[str, np.ndarray], size: int
) -> None:
    """Parse the signals JSON ``texts`` of rows ``at`` into ``out`` (name -> ``(size,)``
    float64, filled in place; a name first seen here gets a NaN column)."""
    dicts = json.loads("[" + ",".join(texts) + "]")  # signals is NOT NULL (JSON)
    for k in set().union(*dicts):
        if k not in out:
            out[k] = np.full(size, np.nan)
        out[k][at] = _signal_column(dicts, k)


def _fetch_array(c: sqlite3.Cursor, sql: str, width: int, dtype: Any) -> np.ndarray:
    """``(rows, width)`` array of a query's numeric rows, streamed (no list of row tuples)."""
    flat = np.fromiter(itertools.chain.from_iterable(c.execute(sql)), dtype)
    return flat.reshape(-1, width)


def load_current(
    ws: Workspace,
    *,
    chunk: int = 2_000,
    signals: Sequence[str] | None = None,
    compact: bool = False,
) -> CurrentProposals:
    """All current proposals (latest finished run per image) with their parsed signals.

    Streams with ``fetchmany`` into preallocated arrays (never concatenated), so a million
    proposals need a few hundred MB at most.

    Args:
        ws: the workspace.
        chunk: rows fetched at a time.
        signals: the stored signals to load (SQLite extracts them; a name no row has is an
            all-NaN column); None = every signal any row has. Select loads only
            ``snap_sides`` and reads the rest a chunk at a time (:func:`read_signals`).
        compact: boxes and scores as float32 while every value is exactly a float32 (what
            detectors store); the caller converts rows to float64 before computing (the
            geometry and calibration functions do). False: float64.
    """
    c = ws.conn.cursor()
    c.row_factory = None  # plain tuples: much faster than sqlite3.Row for 1M rows
    # The current run of each image, and image sizes, as dense lookup arrays: one scan of
    # proposals then beats the current_proposals view's per-row subquery and join.
    # (streamed into arrays: a list of 100k row tuples is ~25 MB of Python objects)
    latest = _fetch_array(
        c, "SELECT image_id, MAX(run_id) FROM run_images WHERE status = 'done' GROUP BY image_id",
        2, np.int64,
    )  # fmt: skip
    sizes = _fetch_array(
        c, "SELECT id, COALESCE(width, -1), COALESCE(height, -1) FROM images", 3, np.float64
    )
    max_id = int(max(latest[:, 0].max(initial=0), sizes[:, 0].max(initial=0)))
    run_of = np.full(max_id + 2, -1, np.int64)
    run_of[latest[:, 0]] = latest[:, 1]
    wh = np.full((max_id + 2, 2), np.nan)
    wh[sizes[:, 0].astype(np.int64)] = np.where(sizes[:, 1:] < 0, np.nan, sizes[:, 1:])
    runs = sorted(set(latest[:, 1].tolist()))
    where = f"run_id IN ({','.join('?' * len(runs))})"
    # the rows of the current runs, an upper bound of the current proposals (an image may
    # have been proposed again by a later run): the arrays are filled in place, chunk by
    # chunk, never concatenated (no second copy at the peak)
    cap = (
        c.execute(f"SELECT COUNT(*) FROM proposals WHERE {where}", runs).fetchone()[0]
        if runs
        else 0
    )
    ints = np.empty((3, cap), np.int64)  # id, image_id, run_id
    # boxes and scores: float32 while every value is exactly one (detectors give float32:
    # select holds 20 instead of 40 bytes a box), else float64
    f32 = np.float32 if compact else np.float64
    xyxy = np.empty((cap, 4), f32)
    score = np.empty(cap, f32)
    num = np.empty((1, cap))  # p_correct
    wh_rows = np.empty((2, cap), np.float32)  # image width, height (whole pixels: exact)
    codes = np.empty(cap, np.int64)
    routes = np.empty(cap, dtype=object)
    named = list(signals) if signals is not None else []
    sig: dict[str, np.ndarray] = {k: np.full(cap, np.nan) for k in named}
    phrase_index: dict[str, int] = {}
    total = 0
    if runs:
        extract = "".join(", json_extract(signals, ?)" for _ in named)
        c.execute(
            "SELECT id, image_id, run_id, x0, y0, x1, y1, score, COALESCE(p_correct, -1), "
            f"phrase, route, {'signals' if signals is None else 'NULL'}{extract} "
            f"FROM proposals WHERE {where}",
            [*(f'$."{k}"' for k in named), *runs],
        )
    while runs:
        rows = c.fetchmany(chunk)
        if not rows:
            break
        cols = list(zip(*rows, strict=True))
        part = np.array(cols[:9], np.float64)
        img = part[1].astype(np.int64)
        keep = run_of[np.clip(img, 0, max_id + 1)] == part[2].astype(np.int64)
        kidx = np.flatnonzero(keep)
        m = int(kidx.size)
        if m == 0:
            continue
        if total + m > cap:  # rows written since the count: room for them
            cap = max(total + m, 2 * cap)
            ints, num, wh_rows = _widened(ints, cap), _widened(num, cap), _widened(wh_rows, cap)
            xyxy, score = np.resize(xyxy, (cap, 4)), np.resize(score, cap)
            codes, routes = np.resize(codes, cap), np.resize(routes, cap)
            sig = {k: np.concatenate([v, np.full(cap - v.size, np.nan)]) for k, v in sig.items()}
        at = slice(total, total + m)
        part = part[:, kidx]
        ints[:, at] = part[:3]
        xyxy, score = _exact_into(xyxy, at, part[3:7].T), _exact_into(score, at, part[7])
        num[0, at] = np.where(part[8] < 0, np.nan, part[8])
        wh_rows[:, at] = wh[img[kidx]].T
        if m < len(rows):
            cols = [[col[k] for k in kidx.tolist()] for col in cols]
        codes[at] = np.fromiter(
            (phrase_index.setdefault(ph, len(phrase_index)) for ph in cols[9]), np.int64, m
        )
        # the route names as the constants, not one new str per row: a str kept from every
        # row pins the memory of its chunk's parsed rows (250k proposals: RSS after loading
        # 248 -> 152 MB)
        routes[at] = [_NAMES.get(r, r) for r in cols[10]]
        if signals is None:
            _signal_columns(cols[11], np.arange(total, total + m), sig, cap)
        for j, k in enumerate(named):
            sig[k][at] = _number_column(list(cols[12 + j]))
        total += m
    order = slice(0, total)
    if total > 1 and not (np.diff(ints[0, :total]) > 0).all():  # rows of several runs
        order = np.argsort(ints[0, :total], kind="stable")
    return CurrentProposals(
        ids=ints[0, order],
        image_id=ints[1, order],
        run_id=ints[2, order],
        xyxy=xyxy[order],
        score=score[order],
        phrase_code=codes[order],
        phrases=list(phrase_index),  # insertion order = code order
        signals={k: v[order] for k, v in sig.items()},
        route=routes[order],
        width=wh_rows[0, order],
        height=wh_rows[1, order],
        p_correct=num[0, order],
    )


def read_signals(ws: Workspace, ids: np.ndarray, *, batch: int = 500) -> dict[str, np.ndarray]:
    """Stored signals of proposals ``ids`` (``(m,)`` int64, any order).

    Ids close together are read with one range scan of the primary key, scattered ones
    ``batch`` at a time.

    Returns:
        name -> ``(m,)`` float64, aligned with ``ids`` (NaN = not stored for that row or no
        such proposal); only names some of these rows have.
    """
    ids = np.asarray(ids, np.int64).reshape(-1)
    out: dict[str, np.ndarray] = {}
    if not ids.size:
        return out
    order = np.argsort(ids, kind="stable")
    srt = ids[order]
    c = ws.conn.cursor()
    c.row_factory = None
    if int(srt[-1] - srt[0]) < 4 * srt.size + 64:  # dense: one range scan
        rows = c.execute(
            "SELECT id, signals FROM proposals WHERE id BETWEEN ? AND ?",
            (int(srt[0]), int(srt[-1])),
        ).fetchall()
    else:
        rows = []
        uniq = np.unique(srt).tolist()
        for a in range(0, len(uniq), batch):
            part = uniq[a : a + batch]
            q = f"SELECT id, signals FROM proposals WHERE id IN ({','.join('?' * len(part))})"
            rows += c.execute(q, part).fetchall()
    if not rows:
        return out
    got = np.fromiter((r[0] for r in rows), np.int64, len(rows))
    lo = np.searchsorted(srt, got, side="left")
    hi = np.searchsorted(srt, got, side="right")
    have = np.flatnonzero(hi > lo)
    if not have.size:
        return out
    # every position of an id asked for more than once gets its row
    reps = (hi - lo)[have]
    src = np.repeat(have, reps)
    at = order[np.repeat(lo[have], reps) + _ranks(reps)]
    _signal_columns([rows[k][1] for k in src.tolist()], at, out, ids.size)
    return out


def _exact_into(out: np.ndarray, at: slice, values: np.ndarray) -> np.ndarray:
    """Write float64 ``values`` into ``out[at]``; ``out`` float32 and a value not exactly a
    float32 -> returns a float64 copy of ``out`` holding them (no value is ever rounded)."""
    if out.dtype == np.float32 and not np.array_equal(
        values.astype(np.float32).astype(np.float64), values, equal_nan=True
    ):
        out = out.astype(np.float64)
    out[at] = values
    return out


def _widened(a: np.ndarray, cap: int) -> np.ndarray:
    """``(k, cap)`` copy of ``(k, m)`` ``a`` (``m <= cap``; the new columns uninitialised)."""
    out = np.empty((a.shape[0], cap), a.dtype)
    out[:, : a.shape[1]] = a
    return out


def _ranks(counts: np.ndarray) -> np.ndarray:
    """``0 .. k-1`` for each ``k`` in ``counts``, concatenated."""
    total = int(counts.sum())
    starts = np.repeat(np.cumsum(counts) - counts, counts)
    return np.arange(total) - starts


@dataclass
class Decisions:
    """Latest effective box decision per proposal (``n`` rows)."""

    proposal_id: np.ndarray  # (n,) int64
    action: np.ndarray  # (n,) object: accept | adjust | reject
    box: np.ndarray  # (n, 4) float64 adjusted box (NaN unless adjust)
    proposal_box: np.ndarray  # (n, 4) float64 the proposal's own box


def load_decisions(ws: Workspace) -> Decisions:
    """The latest effective accept / adjust / reject of every decided proposal."""
    rows = ws.conn.execute(
        _LAST_DECISION
        + "SELECT d.proposal_id, d.action, d.x0, d.y0, d.x1, d.y1, p.x0, p.y0, p.x1, p.y1 "
        "FROM last JOIN decisions d ON d.id = last.did "
        "JOIN proposals p ON p.id = d.proposal_id ORDER BY d.proposal_id"
    ).fetchall()
    n = len(rows)
    box = np.array(
        [[np.nan if v is None else v for v in r[2:6]] for r in rows], np.float64
    ).reshape(n, 4)
    return Decisions(
        proposal_id=np.array([r[0] for r in rows], np.int64),
        action=np.array([r[1] for r in rows], dtype=object),
        box=box,
        proposal_box=np.array([r[6:10] for r in rows], np.float64).reshape(n, 4),
    )


@dataclass
class QueueState:
    """Queue items by proposal (``n`` rows)."""

    proposal_id: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    status: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=object))
    reason: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=object))
    item_id: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    image_id: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))


def load_queue(ws: Workspace, conn: sqlite3.Connection | None = None) -> QueueState:
    """Every queue item's proposal, status, reason and image."""
    c = (conn or ws.conn).cursor()
    c.row_factory = None
    c.execute("SELECT proposal_id, status, reason, id, image_id FROM queue_items ORDER BY id")
    nums: list[np.ndarray] = []
    status: list[np.ndarray] = []
    reason: list[np.ndarray] = []
    while rows := c.fetchmany(10_000):
        cols = list(zip(*rows, strict=True))
        nums.append(np.array([cols[0], cols[3], cols[4]], np.int64).T)
        # the names as shared constants, not one str per row (which pins the parsed rows)
        status.append(np.array([_NAMES.get(v, v) for v in cols[1]], dtype=object))
        reason.append(np.array([_NAMES.get(v, v) for v in cols[2]], dtype=object))
    if not nums:
        return QueueState()
    num = np.concatenate(nums)
    return QueueState(
        proposal_id=num[:, 0].copy(),
        status=np.concatenate(status),
        reason=np.concatenate(reason),
        item_id=num[:, 1].copy(),
        image_id=num[:, 2].copy(),
    )


def run_versions(ws: Workspace) -> dict[int, tuple[str, str]]:
    """``{run_id: (version key, label)}`` of every propose run.

    The version key is the run key: a hash of detector, model version, prompt, thresholds,
    refiner and input size (:func:`autolabel.store.runs.run_key`); the label names them for
    people (``"grounding-dino gdino-v2, box >= 0.35, prompt 'dress'"``).
    """
    out: dict[int, tuple[str, str]] = {}
    for r in ws.conn.execute(
        "SELECT id, key, detector, model_version, refiner, prompt, box_threshold FROM runs"
    ):
        refiner = f" + {r[4]}" if r[4] else ""
        prompt = r[5] if len(r[5]) <= 40 else r[5][:37] + "..."
        out[int(r[0])] = (str(r[1]), f"{r[2]} {r[3]}{refiner}, box >= {r[6]:g}, prompt {prompt!r}")
    return out


def seed_trained_versions(ws: Workspace) -> set[str]:
    """Version keys (run keys) of detectors that learned from the seed boxes.

    ``regions`` and ``exemplar`` are built from the seed crops, and a fine-tuned Grounding
    DINO version of this workspace (``models/gdino-vN``) was trained on them, so their
    proposals on the seed originals are in-sample: they say little about unseen boxes. A
    pretrained model (a hub id, another checkpoint) did not see them.
    """
    out = set()
    for key, detector, model in ws.conn.execute("SELECT key, detector, model FROM runs"):
        name = Path(str(model)).name
        if detector in SEED_TRAINED_DETECTORS or (
            name.startswith("gdino-v") and Path(str(model)).parent.name == "models"
        ):
            out.add(str(key))
    return out


def load_seed_boxes(ws: Workspace) -> dict[str, np.ndarray]:
    """Located seed boxes with their image: ``{"image_id" (k,), "xyxy" (k,4), "wh" (k,2)}``,
    one per object (:func:`_duplicate_seed_items`, the rule :func:`sync_seed_labels` applies
    to labels)."""
    rows = ws.conn.execute(
        "SELECT s.image_id, s.x0, s.y0, s.x1, s.y1, i.width, i.height, s.id, "
        "COALESCE(s.score, 1.0) FROM seed_items s JOIN images i ON i.id = s.image_id "
        "WHERE s.status = 'located' AND s.x0 IS NOT NULL ORDER BY s.id"
    ).fetchall()
    # one box per object: a second seed box of the same picture (two hand crops located
    # in one original) would also teach select that images hold two crops (max_per_image)
    dup = _duplicate_seed_items({r[7]: (r[0], r[1:5], r[8]) for r in rows})
    rows = [r for r in rows if r[7] not in dup]
    k = len(rows)
    return {
        "image_id": np.array([r[0] for r in rows], np.int64),
        "xyxy": np.array([r[1:5] for r in rows], np.float64).reshape(k, 4),
        "wh": np.array(
            [[np.nan if v is None else v for v in r[5:7]] for r in rows], np.float64
        ).reshape(k, 2),
    }


def seed_crop_paths(ws: Workspace) -> list[str]:
    """Crop files of the located seed items (for exemplar similarity)."""
    return [
        r[0]
        for r in ws.conn.execute(
            "SELECT crop_path FROM seed_items WHERE status = 'located' ORDER BY id"
        )
    ]


def image_paths(ws: Workspace, image_ids: Sequence[int]) -> dict[int, str]:
    """``{image_id: path}`` for the given ids."""
    out: dict[int, str] = {}
    ids = [int(i) for i in image_ids]
    for a in range(0, len(ids), 900):
        part = ids[a : a + 900]
        marks = ",".join("?" * len(part))
        for r in ws.conn.execute(f"SELECT id, path FROM images WHERE id IN ({marks})", part):
            out[int(r[0])] = r[1]
    return out


def all_images(ws: Workspace) -> list[tuple[int, str, int | None, int | None]]:
    """``(id, path, width, height)`` of every ``ok`` image."""
    return [
        (int(r[0]), r[1], r[2], r[3])
        for r in ws.conn.execute(
            "SELECT id, path, width, height FROM images WHERE status = 'ok' ORDER BY id"
        )
    ]


def fixed_proposal_ids(conn: sqlite3.Connection) -> np.ndarray:
    """Proposals select must not touch: decided, or with a claimed / done queue item."""
    rows = conn.execute(
        _LAST_DECISION + "SELECT proposal_id FROM last "
        "UNION SELECT proposal_id FROM queue_items WHERE status IN ('claimed', 'done')"
    ).fetchall()
    return np.unique(np.array([r[0] for r in rows], np.int64))


def _newest_status(q: QueueState, pids: np.ndarray) -> np.ndarray:
    """``(m,)`` object: the status of the newest queue item of each of ``pids`` (None where
    the proposal has no item)."""
    out = np.full(pids.size, None, dtype=object)
    if q.proposal_id.size == 0 or pids.size == 0:
        return out
    order = np.lexsort((q.item_id, q.proposal_id))
    pid = q.proposal_id[order]
    last = order[np.r_[pid[1:] != pid[:-1], True]]  # the newest item of each proposal
    known = q.proposal_id[last]
    pos = np.clip(np.searchsorted(known, pids), 0, known.size - 1)
    found = known[pos] == pids
    out[found] = q.status[last[pos[found]]]
    return out


def apply_routes(
    ws: Workspace,
    *,
    ids: np.ndarray,
    image_id: np.ndarray,
    p_correct: np.ndarray,
    route: np.ndarray,
    reason: np.ndarray,
    priority: np.ndarray,
    score_only_ids: np.ndarray | None = None,
    score_only_p: np.ndarray | None = None,
    current_ids: np.ndarray | None = None,
    unchanged: np.ndarray | None = None,
    chunk: int = 10_000,
) -> dict[str, int]:
    """Write a routing plan in one transaction.

    Proposals that became fixed since they were read (decided, or claimed by a reviewer)
    are skipped. Queue items: new ones are inserted; open or withdrawn items are updated
    (reason, priority, reopened); open items whose proposal is no longer queued become
    ``withdrawn``, and so do open items of proposals that are no longer current (not in
    ``current_ids``, e.g. replaced by a newer propose run). ``score_only_*`` updates
    ``p_correct`` of fixed proposals, leaving their route alone. Rows flagged in
    ``unchanged`` (same route and ``p_correct`` as stored) skip the proposals update.

    Returns:
        ``{"updated", "queued_new", "queued_updated", "withdrawn", "skipped"}``.
    """
    ids = np.asarray(ids, np.int64)
    now = utcnow()
    stats = {"updated": 0, "queued_new": 0, "queued_updated": 0, "withdrawn": 0, "skipped": 0}
    with ws.transaction() as c:
        fixed = fixed_proposal_ids(c)
        # (n,) bool masks and one index array at a time: at 10^6 rows each int64 copy is 8 MB
        ok = ~np.isin(ids, fixed) if fixed.size else np.ones(ids.size, bool)
        stats["skipped"] = int(ids.size - np.count_nonzero(ok))
        todo = ok if unchanged is None else ok & ~np.asarray(unchanged, bool)
        write = np.flatnonzero(todo)
        del todo
        for a in range(0, write.size, chunk):
            part = write[a : a + chunk]
            c.executemany(
                "UPDATE proposals SET p_correct = ?, route = ? WHERE id = ?",
                zip(
                    p_correct[part].astype(float).tolist(),
                    route[part].tolist(),
                    ids[part].tolist(),
                    strict=True,
                ),
            )
        stats["updated"] = int(write.size)
        if score_only_ids is not None and score_only_p is not None and len(score_only_ids):
            c.executemany(
                "UPDATE proposals SET p_correct = ? WHERE id = ?",
                zip(
                    np.asarray(score_only_p, float).tolist(),
                    np.asarray(score_only_ids, np.int64).tolist(),
                    strict=True,
                ),
            )
        del write
        q = load_queue(ws, c)
        queued = np.flatnonzero(ok & np.asarray(reason != "", bool))
        # the status of each queued proposal's newest item (None: no item yet); inserts and
        # updates go out 10k rows a statement, in the plan's order (the item ids with them)
        status = _newest_status(q, ids[queued])
        is_new = np.array([st is None for st in status], bool)
        is_upd = np.isin(status, ["open", "withdrawn"])
        img_of, prio = np.asarray(image_id, np.int64), np.asarray(priority, float)
        for a in range(0, queued.size, chunk):
            part = queued[a : a + chunk]
            new_p, upd_p = part[is_new[a : a + chunk]], part[is_upd[a : a + chunk]]
            c.executemany(
                "INSERT INTO queue_items(proposal_id, image_id, reason, priority, status, "
                "created_at) VALUES (?,?,?,?,'open',?)",
                zip(
                    ids[new_p].tolist(), img_of[new_p].tolist(), [str(r) for r in reason[new_p]],
                    prio[new_p].tolist(), itertools.repeat(now), strict=False,
                ),
            )  # fmt: skip
            c.executemany(
                "UPDATE queue_items SET reason = ?, priority = ?, status = 'open' "
                "WHERE proposal_id = ? AND status IN ('open', 'withdrawn')",
                zip(
                    [str(r) for r in reason[upd_p]], prio[upd_p].tolist(), ids[upd_p].tolist(),
                    strict=True,
                ),
            )  # fmt: skip
        # open items no longer queued, or of proposals no longer current (numpy, not a set
        # of every proposal id: at 10^6 proposals that set alone is tens of MB)
        is_open = q.status == "open"
        open_ids = q.proposal_id[is_open].astype(np.int64)
        gone = np.isin(open_ids, ids[ok]) & ~np.isin(open_ids, ids[queued])
        if current_ids is not None:
            gone |= ~np.isin(open_ids, np.asarray(current_ids, np.int64))
        withdraw = [(pid,) for pid in open_ids[gone].tolist()]
        c.executemany(
            "UPDATE queue_items SET status = 'withdrawn' WHERE proposal_id = ? AND status = 'open'",
            withdraw,
        )
        stats["queued_new"] = int(is_new.sum())
        stats["queued_updated"] = int(is_upd.sum())
        stats["withdrawn"] = len(withdraw)
    return stats


def decision_correct(
    action: str,
    proposal_box: Sequence[float],
    box: Sequence[float],
    *,
    match_iou: float = MATCH_IOU,
) -> bool:
    """Outcome of a decision for the proposal: accept, or adjust to a box with IoU >=
    ``match_iou`` (``quality.match_iou``) with the proposal, is correct; a larger adjustment
    or a reject is wrong."""
    if action == "accept":
        return True
    if action == "adjust":
        if any(v is None or v != v for v in box):  # adjust without a box: cannot tell
            return False
        return iou(proposal_box, box) >= match_iou
    return False


@dataclass
class AutoSet:
    """The current auto-accepted set of one detector version (``n`` proposals)."""

    ids: np.ndarray  # (n,) int64
    audit_open: np.ndarray  # (n,) bool: an open or claimed audit item
    audited: np.ndarray  # (n,) bool: a decided audit item
    correct: np.ndarray  # (n,) bool: the audit decision says correct (False unless audited)


def auto_set(
    ws: Workspace, run_key: str, *, min_p: float | None = None, match_iou: float = MATCH_IOU
) -> AutoSet:
    """The auto-accepted set the precision estimate describes, with its audit outcomes.

    Current proposals of runs with key ``run_key`` routed ``auto`` / ``audit`` whose
    ``p_correct`` is at least ``min_p`` (the version's lowest auto-accepted P(correct) at
    the last select: decided audit boxes that fell below it left the set), except those on
    seed originals (images with a located seed box: the seed box is their label).
    """
    rows = ws.conn.execute(
        _LAST_DECISION + "SELECT p.id, q.status, d.action, d.x0, d.y0, d.x1, d.y1, "
        "p.x0, p.y0, p.x1, p.y1 "
        "FROM current_proposals p JOIN runs r ON r.id = p.run_id "
        "LEFT JOIN queue_items q ON q.proposal_id = p.id AND q.reason = 'audit' "
        "LEFT JOIN last ON last.proposal_id = p.id LEFT JOIN decisions d ON d.id = last.did "
        "WHERE p.route IN ('auto', 'audit') AND r.key = ? "
        "AND (? IS NULL OR p.p_correct IS NULL OR p.p_correct >= ? - 1e-9) "
        "AND p.image_id NOT IN (SELECT image_id FROM seed_items "
        "WHERE status = 'located' AND image_id IS NOT NULL) ORDER BY p.id",
        (run_key, min_p, min_p),
    ).fetchall()
    n = len(rows)
    audited = np.array([r[1] == "done" and r[2] is not None for r in rows], bool)
    correct = np.array(
        [
            bool(a) and decision_correct(r[2], tuple(r[7:11]), tuple(r[3:7]), match_iou=match_iou)
            for r, a in zip(rows, audited, strict=True)
        ],
        bool,
    )
    return AutoSet(
        ids=np.array([r[0] for r in rows], np.int64).reshape(n),
        audit_open=np.array([r[1] in ("open", "claimed") for r in rows], bool).reshape(n),
        audited=audited.reshape(n),
        correct=correct.reshape(n),
    )


SEED_RUN_ID = 0
"""The ``runs`` row (id 0, kind ``seed``) holding one proposal per located seed box: the
carrier of seed labels in exports (``exported_items`` needs a proposal id). It has no
``run_images`` rows, so its proposals are never current: select, the queue and the
estimate never see them."""


def sync_seed_labels(ws: Workspace) -> int:
    """Keep the seed-label proposals equal to the located seed boxes; returns rows written.

    One proposal per located seed item (``signals.seed_item_id``), box / phrase / score
    updated in place when the seed item changes (ids stay stable); items no longer
    located are dropped by :func:`autolabel.store.labels.iter_labels`, which joins them;
    a second seed box of one object on one image (:func:`_duplicate_seed_items`) is not a
    label (removed if it was one).
    """
    want = {
        int(r[0]): (int(r[1]), float(r[2]), float(r[3]), float(r[4]), float(r[5]), r[6], r[7])
        for r in ws.conn.execute(
            "SELECT id, image_id, x0, y0, x1, y1, COALESCE(phrase, ''), COALESCE(score, 1.0) "
            "FROM seed_items WHERE status = 'located' AND image_id IS NOT NULL "
            "AND x0 IS NOT NULL"
        )
    }
    dup = _duplicate_seed_items({k: (v[0], v[1:5], v[6]) for k, v in want.items()})
    want = {k: v for k, v in want.items() if k not in dup}
    have = {
        int(r[1]): (int(r[0]), (int(r[2]), r[3], r[4], r[5], r[6], r[7], r[8]))
        for r in ws.conn.execute(
            "SELECT id, json_extract(signals, '$.seed_item_id'), image_id, x0, y0, x1, y1, "
            "phrase, score FROM proposals WHERE run_id = ?",
            (SEED_RUN_ID,),
        )
        if r[1] is not None
    }
    new = [(k, v) for k, v in want.items() if k not in have]
    changed = [(have[k][0], v) for k, v in want.items() if k in have and have[k][1] != v]
    gone = [have[k][0] for k in dup if k in have]
    if not new and not changed and not gone:
        return 0
    now = utcnow()
    with ws.transaction() as c:
        c.execute(
            "INSERT OR IGNORE INTO runs(id, kind, detector, model, model_version, refiner, "
            "prompt, box_threshold, text_threshold, key, started_at, finished_at) "
            "VALUES (?, 'seed', 'seed', 'seed', 'seed', NULL, '', 0, 0, 'seed', ?, ?)",
            (SEED_RUN_ID, now, now),
        )
        c.executemany(
            "INSERT INTO proposals(run_id, image_id, x0, y0, x1, y1, phrase, score, signals) "
            "VALUES (?,?,?,?,?,?,?,?,?)",
            [(SEED_RUN_ID, *v, json.dumps({"seed_item_id": k})) for k, v in new],
        )
        c.executemany(
            "UPDATE proposals SET image_id = ?, x0 = ?, y0 = ?, x1 = ?, y1 = ?, phrase = ?, "
            "score = ? WHERE id = ?",
            [(*v, pid) for pid, v in changed],
        )
        c.executemany(
            "DELETE FROM proposals WHERE id = ? AND run_id = ? AND NOT EXISTS "
            "(SELECT 1 FROM decisions d WHERE d.proposal_id = proposals.id)",
            [(pid, SEED_RUN_ID) for pid in gone],
        )
    return len(new) + len(changed) + len(gone)


def _duplicate_seed_items(items: dict[int, tuple[int, Sequence[float], float]]) -> set[int]:
    """Seed items that box an object another seed item of the same image already boxes
    (IoU >= 0.5; the higher locate score, then the lower id, is kept): two hand crops of
    one picture located in the same original would export the picture twice.

    Args:
        items: ``{seed item id: (image id, box (4,), locate score)}``.
    """
    by_image: dict[int, list[tuple[int, tuple]]] = {}
    for k, v in items.items():
        by_image.setdefault(v[0], []).append((k, v))
    out: set[int] = set()
    for rows in by_image.values():
        if len(rows) < 2:
            continue
        rows.sort(key=lambda kv: (-kv[1][2], kv[0]))
        kept: list[Sequence[float]] = []
        for k, v in rows:
            box = v[1]
            if any(iou(box, b) >= 0.5 for b in kept):
                out.add(k)
            else:
                kept.append(box)
    return out
