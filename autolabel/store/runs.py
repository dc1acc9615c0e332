"""Runs and proposals: create a run, find pending images, write a batch atomically."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from autolabel.errors import NotFoundError
from autolabel.store.db import Workspace, utcnow
from autolabel.types import Proposals, Run

_DECIDED = (
    # a human decision on a current proposal of the image (decisions on boxes of a file that
    # changed since, see store.images.retire_labels, no longer keep the image from a run)
    "AND NOT EXISTS (SELECT 1 FROM decisions d JOIN proposals dp ON dp.id = d.proposal_id "
    "JOIN run_images dr ON dr.image_id = dp.image_id AND dr.run_id = dp.run_id "
    "WHERE d.image_id = i.id AND d.action IN ('accept','adjust','reject'))"
)


def run_key(
    *,
    detector: str,
    model_version: str,
    refiner: str | None,
    prompt: str,
    box_threshold: float,
    text_threshold: float,
    extra: Mapping[str, Any] | None = None,
) -> str:
    """Hash of everything that makes two runs' proposals equal (used for resume)."""
    payload = json.dumps(
        {
            "detector": detector,
            "model_version": model_version,
            "refiner": refiner,
            "prompt": prompt,
            "box_threshold": round(float(box_threshold), 6),
            "text_threshold": round(float(text_threshold), 6),
            "extra": dict(extra or {}),
        },
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _run_from_row(row: sqlite3.Row) -> Run:
    return Run(
        id=row["id"],
        detector=row["detector"],
        model=row["model"],
        model_version=row["model_version"],
        refiner=row["refiner"],
        prompt=row["prompt"],
        box_threshold=row["box_threshold"],
        text_threshold=row["text_threshold"],
        key=row["key"],
        config=json.loads(row["config"]),
        started_at=row["started_at"],
        finished_at=row["finished_at"],
    )


def create_run(
    ws: Workspace,
    *,
    detector: str,
    model: str,
    model_version: str,
    refiner: str | None,
    prompt: str,
    box_threshold: float,
    text_threshold: float,
    config: Mapping[str, Any] | None = None,
    kind: str = "propose",
    key_extra: Mapping[str, Any] | None = None,
    resume: bool = False,
) -> Run:
    """Insert a new run row (each invocation of propose is one run; resume shares the key).

    With ``resume`` the latest *unfinished* run of the same kind and key (an interrupted or
    killed propose) is continued instead: its row, and so the ``run_id`` of every proposal
    and of the export manifest, is the one an uninterrupted run would have had. When no
    image is pending for the key, the latest run of the key is returned (a re-run of a
    finished propose records no empty run).
    """
    key = run_key(
        detector=detector,
        model_version=model_version,
        refiner=refiner,
        prompt=prompt,
        box_threshold=box_threshold,
        text_threshold=text_threshold,
        extra=key_extra,
    )
    with ws.transaction() as c:
        if resume:
            row = c.execute(
                "SELECT id FROM runs WHERE key = ? AND kind = ? AND finished_at IS NULL "
                "ORDER BY id DESC LIMIT 1",
                (key, kind),
            ).fetchone()
            if row is None and count_pending_images(ws, key) == 0:
                row = c.execute(  # nothing left to do: a re-run adds no empty run
                    "SELECT id FROM runs WHERE key = ? AND kind = ? ORDER BY id DESC LIMIT 1",
                    (key, kind),
                ).fetchone()
            if row is not None:
                return get_run(ws, int(row[0]))
        cur = c.execute(
            "INSERT INTO runs(kind, detector, model, model_version, refiner, prompt, "
            "box_threshold, text_threshold, key, config, started_at) "
            "VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (
                kind,
                detector,
                model,
                model_version,
                refiner,
                prompt,
                float(box_threshold),
                float(text_threshold),
                key,
                json.dumps(dict(config or {}), sort_keys=True, default=str),
                utcnow(),
            ),
        )
        run_id = int(cur.lastrowid or 0)
    return get_run(ws, run_id)


def get_run(ws: Workspace, run_id: int) -> Run:
    row = ws.conn.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
    if row is None:
        raise NotFoundError(f"run {run_id}: no such run")
    return _run_from_row(row)


def list_runs(ws: Workspace) -> list[dict[str, Any]]:
    """All runs as dicts (newest last), with their counters."""
    return [dict(r) for r in ws.conn.execute("SELECT * FROM runs ORDER BY id")]


def iter_pending_images(
    ws: Workspace,
    key: str,
    *,
    limit: int | None = None,
    skip_decided: bool = True,
    chunk: int = 2000,
) -> Iterator[sqlite3.Row]:
    """Yield ``ok`` images (id, path, width, height) not yet finished for run ``key``.

    Streams in id order with keyset pagination, so memory stays flat. With
    ``skip_decided`` images that already carry a human decision are skipped (a new model
    version never overrides reviewers).
    """
    last = 0
    emitted = 0
    decided = _DECIDED if skip_decided else ""
    while True:
        rows = ws.conn.execute(
            "SELECT i.id, i.path, i.width, i.height FROM images i "
            "WHERE i.status = 'ok' AND i.id > ? "
            "AND NOT EXISTS (SELECT 1 FROM run_images r WHERE r.run_key = ? AND r.image_id = i.id) "
            f"{decided} ORDER BY i.id LIMIT ?",
            (last, key, chunk),
        ).fetchall()
        if not rows:
            return
        for row in rows:
            if limit is not None and emitted >= limit:
                return
            emitted += 1
            yield row
        last = rows[-1]["id"]


def count_pending_images(ws: Workspace, key: str, *, skip_decided: bool = True) -> int:
    decided = _DECIDED if skip_decided else ""
    return int(
        ws.conn.execute(
            "SELECT COUNT(*) FROM images i WHERE i.status = 'ok' AND NOT EXISTS "
            f"(SELECT 1 FROM run_images r WHERE r.run_key = ? AND r.image_id = i.id) {decided}",
            (key,),
        ).fetchone()[0]
    )


def write_batch(
    ws: Workspace,
    run: Run,
    results: Sequence[tuple[int, Proposals]],
    errors: Sequence[tuple[int, str]] = (),
    *,
    seconds: float = 0.0,
    conn: sqlite3.Connection | None = None,
) -> int:
    """Store one batch in a single transaction: proposals plus a done/error mark per image.

    Images already finished under the same run key (a resumed run racing an old one) are
    skipped, so a batch is never written twice. Returns the number of proposals written.
    """
    written = 0
    with ws.transaction(conn) as c:
        for image_id, props in results:
            cur = c.execute(
                "INSERT OR IGNORE INTO run_images(run_id, image_id, run_key, status, n_proposals) "
                "VALUES (?,?,?,?,?)",
                (run.id, image_id, run.key, "done", len(props)),
            )
            if cur.rowcount == 0:
                continue
            rows = [
                (
                    run.id,
                    image_id,
                    *[float(v) for v in props.xyxy[i]],
                    float(props.score[i]),
                    str(props.phrase[i]),
                    json.dumps(props.signals_row(i), sort_keys=True),
                )
                for i in range(len(props))
            ]
            c.executemany(
                "INSERT INTO proposals(run_id, image_id, x0, y0, x1, y1, score, phrase, signals) "
                "VALUES (?,?,?,?,?,?,?,?,?)",
                rows,
            )
            written += len(rows)
        for image_id, reason in errors:
            c.execute(
                "INSERT OR IGNORE INTO run_images(run_id, image_id, run_key, status, error) "
                "VALUES (?,?,?,?,?)",
                (run.id, image_id, run.key, "error", reason),
            )
        c.execute(
            "UPDATE runs SET n_images = n_images + ?, n_proposals = n_proposals + ?, "
            "n_errors = n_errors + ?, seconds = seconds + ? WHERE id = ?",
            (len(results), written, len(errors), float(seconds), run.id),
        )
    return written


def finish_run(ws: Workspace, run: Run) -> None:
    ws.conn.execute("UPDATE runs SET finished_at = ? WHERE id = ?", (utcnow(), run.id))


def load_proposals(
    ws: Workspace, image_id: int, *, current_only: bool = True
) -> tuple[list[int], Proposals]:
    """Proposals of one image as (proposal ids, Proposals with signals in ``data``)."""
    table = "current_proposals" if current_only else "proposals"
    rows = ws.conn.execute(
        f"SELECT id, x0, y0, x1, y1, score, phrase, signals FROM {table} "
        "WHERE image_id = ? ORDER BY id",
        (image_id,),
    ).fetchall()
    return _rows_to_proposals(rows)


def _rows_to_proposals(rows: Sequence[sqlite3.Row]) -> tuple[list[int], Proposals]:
    if not rows:
        return [], Proposals.empty()
    signals = [json.loads(r["signals"]) for r in rows]
    keys = sorted({k for s in signals for k in s})
    data = {k: np.array([s.get(k, np.nan) for s in signals], np.float32) for k in keys}
    props = Proposals(
        xyxy=np.array([[r["x0"], r["y0"], r["x1"], r["y1"]] for r in rows], np.float32),
        score=np.array([r["score"] for r in rows], np.float32),
        phrase=[r["phrase"] for r in rows],
        data=data,
    )
    return [int(r["id"]) for r in rows], props


def run_results(ws: Workspace, key: str) -> dict[int, list[tuple[float, ...]]]:
    """Every image's proposals for a run key, as ``{image_id: [(x0,y0,x1,y1,score), ...]}``.

    Meant for comparing runs (tests, resume checks); rows are sorted for stable equality.
    """
    out: dict[int, list[tuple[float, ...]]] = {}
    for r in ws.conn.execute(
        "SELECT ri.image_id, p.x0, p.y0, p.x1, p.y1, p.score, p.phrase FROM run_images ri "
        "LEFT JOIN proposals p ON p.run_id = ri.run_id AND p.image_id = ri.image_id "
        "WHERE ri.run_key = ? AND ri.status = 'done'",
        (key,),
    ):
        lst = out.setdefault(int(r["image_id"]), [])
        if r["x0"] is not None:
            lst.append((r["x0"], r["y0"], r["x1"], r["y1"], r["score"], r["phrase"]))
    for lst in out.values():
        lst.sort()
    return out


def image_id_bounds(ws: Workspace) -> tuple[int, int]:
    """Smallest and largest image id (``(1, 0)`` for an empty workspace)."""
    row = ws.conn.execute("SELECT MIN(id), MAX(id) FROM images").fetchone()
    return (1, 0) if row[0] is None else (int(row[0]), int(row[1]))


def pending_in_range(
    db_path: str, key: str, lo: int, hi: int, *, skip_decided: bool = True
) -> list[dict[str, Any]]:
    """Pending images with ``lo <= id < hi`` as dicts, read through a fresh connection.

    Meant for distributed readers (Ray tasks) that cannot share the driver's connection;
    same filter as :func:`iter_pending_images`.
    """
    from autolabel.store.db import connect

    decided = _DECIDED if skip_decided else ""
    conn = connect(Path(db_path))
    try:
        rows = conn.execute(
            "SELECT i.id, i.path, i.width, i.height FROM images i "
            "WHERE i.status = 'ok' AND i.id >= ? AND i.id < ? "
            "AND NOT EXISTS (SELECT 1 FROM run_images r WHERE r.run_key = ? AND r.image_id = i.id) "
            f"{decided} ORDER BY i.id",
            (lo, hi, key),
        ).fetchall()
        return [dict(r) for r in rows]
    finally:
        conn.close()


def run_errors(ws: Workspace, key: str) -> dict[int, str]:
    """``{image_id: reason}`` of the images a run key recorded as failed."""
    return {
        int(r[0]): str(r[1])
        for r in ws.conn.execute(
            "SELECT image_id, error FROM run_images WHERE run_key = ? AND status = 'error' "
            "ORDER BY image_id",
            (key,),
        )
    }
