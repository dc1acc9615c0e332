"""Schema migrations, registered as functions keyed by ``PRAGMA user_version``.

Add a migration by writing a new ``@migration(N)`` function; never edit a released one.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable

from autolabel.constants import (
    ACTIONS,
    IMAGE_STATUSES,
    QUEUE_REASONS,
    QUEUE_STATUSES,
    ROUTES,
    RUN_IMAGE_STATUSES,
    SEED_STATUSES,
)

Migration = Callable[[sqlite3.Connection], None]
MIGRATIONS: dict[int, Migration] = {}


def migration(version: int) -> Callable[[Migration], Migration]:
    """Register ``fn`` as the step that brings the schema to ``version``."""

    def register(fn: Migration) -> Migration:
        if version in MIGRATIONS:
            raise RuntimeError(f"migration {version} registered twice")
        MIGRATIONS[version] = fn
        return fn

    return register


def run_script(conn: sqlite3.Connection, script: str) -> None:
    """Execute several statements inside the caller's transaction.

    ``executescript`` would COMMIT first, so statements are split with
    ``sqlite3.complete_statement`` and executed one by one.
    """
    buf = ""
    for line in script.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            conn.execute(buf)
            buf = ""
    if buf.strip():
        raise ValueError(f"incomplete SQL statement in migration: {buf.strip()[:80]}")


def sql_in(values: Iterable[str]) -> str:
    """``('a', 'b')`` -> ``"'a', 'b'"``: the list of an SQL ``IN (...)`` built from constants."""
    out = []
    for v in values:
        if "'" in v:
            raise ValueError(f"sql_in: expected values without quotes, got {v!r}")
        out.append(f"'{v}'")
    return ", ".join(out)


def required_tables() -> set[str]:
    """Tables and views every migrated workspace has (checked at open)."""
    return {
        "settings", "images", "seed_items", "runs", "run_images", "proposals",
        "current_proposals", "reviewers", "queue_items", "decisions", "exports",
        "exported_items",
    }  # fmt: skip


def latest_version() -> int:
    """The schema version this code writes."""
    return max(MIGRATIONS)


@migration(1)
def _initial(conn: sqlite3.Connection) -> None:
    run_script(
        conn,
        f"""
        CREATE TABLE settings (
            key TEXT PRIMARY KEY,
            value TEXT NOT NULL                       -- JSON
        );

        CREATE TABLE images (
            id INTEGER PRIMARY KEY,
            path TEXT NOT NULL UNIQUE,                -- absolute, os.fsdecode'd
            size INTEGER,
            mtime_ns INTEGER,
            sha256 TEXT,
            width INTEGER,                            -- after EXIF orientation
            height INTEGER,
            format TEXT,
            status TEXT NOT NULL DEFAULT 'ok'
                CHECK (status IN ({sql_in(IMAGE_STATUSES)})),
            error TEXT,                               -- reason when status = 'error'
            duplicate_of INTEGER REFERENCES images(id),
            added_at TEXT NOT NULL
        );
        CREATE INDEX images_sha256 ON images(sha256);
        CREATE INDEX images_status ON images(status);

        CREATE TABLE seed_items (
            id INTEGER PRIMARY KEY,
            crop_path TEXT NOT NULL UNIQUE,
            crop_sha256 TEXT,
            original_path TEXT,
            image_id INTEGER REFERENCES images(id),
            x0 REAL, y0 REAL, x1 REAL, y1 REAL,       -- box in original pixels
            score REAL,                               -- match score, higher = better
            status TEXT NOT NULL
                CHECK (status IN ({sql_in(SEED_STATUSES)})),
            caption TEXT,
            phrase TEXT,
            info TEXT NOT NULL DEFAULT '{{}}',          -- JSON: scale, method, ...
            added_at TEXT NOT NULL
        );

        CREATE TABLE runs (
            id INTEGER PRIMARY KEY,
            kind TEXT NOT NULL DEFAULT 'propose',
            detector TEXT NOT NULL,
            model TEXT NOT NULL,
            model_version TEXT NOT NULL,
            refiner TEXT,
            prompt TEXT NOT NULL,
            box_threshold REAL NOT NULL,
            text_threshold REAL NOT NULL,
            key TEXT NOT NULL,                        -- hash of what makes results equal
            config TEXT NOT NULL DEFAULT '{{}}',        -- JSON
            started_at TEXT NOT NULL,
            finished_at TEXT,
            n_images INTEGER NOT NULL DEFAULT 0,
            n_proposals INTEGER NOT NULL DEFAULT 0,
            n_errors INTEGER NOT NULL DEFAULT 0,
            seconds REAL NOT NULL DEFAULT 0
        );
        CREATE INDEX runs_key ON runs(key);

        -- one row per (run key, image) once the image is fully processed (even with 0 boxes)
        CREATE TABLE run_images (
            run_id INTEGER NOT NULL REFERENCES runs(id),
            image_id INTEGER NOT NULL REFERENCES images(id),
            run_key TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN ({sql_in(RUN_IMAGE_STATUSES)})),
            error TEXT,
            n_proposals INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (run_key, image_id)
        );
        -- latest finished run per image (current_proposals, select) without a table scan
        CREATE INDEX run_images_image ON run_images(image_id, status, run_id);

        CREATE TABLE proposals (
            id INTEGER PRIMARY KEY,
            run_id INTEGER NOT NULL REFERENCES runs(id),
            image_id INTEGER NOT NULL REFERENCES images(id),
            x0 REAL NOT NULL, y0 REAL NOT NULL, x1 REAL NOT NULL, y1 REAL NOT NULL,
            score REAL NOT NULL,                      -- higher = more likely correct
            phrase TEXT NOT NULL,
            signals TEXT NOT NULL DEFAULT '{{}}',       -- JSON of per-box signals
            p_correct REAL,                           -- calibrated, set by select
            route TEXT NOT NULL DEFAULT 'pending'
                CHECK (route IN ({sql_in(ROUTES)}))
        );
        CREATE INDEX proposals_image ON proposals(image_id);
        CREATE INDEX proposals_run ON proposals(run_id);
        CREATE INDEX proposals_route ON proposals(route);

        -- the proposals that count for an image: those of the latest run that finished it
        CREATE VIEW current_proposals AS
            SELECT p.* FROM proposals p
            WHERE p.run_id = (
                SELECT MAX(ri.run_id) FROM run_images ri
                WHERE ri.image_id = p.image_id AND ri.status = 'done'
            );

        CREATE TABLE reviewers (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            token_sha256 TEXT NOT NULL,
            created_at TEXT NOT NULL
        );

        CREATE TABLE queue_items (
            id INTEGER PRIMARY KEY,
            proposal_id INTEGER NOT NULL UNIQUE REFERENCES proposals(id),
            image_id INTEGER NOT NULL REFERENCES images(id),
            reason TEXT NOT NULL CHECK (reason IN ({sql_in(QUEUE_REASONS)})),
            priority REAL NOT NULL DEFAULT 0,         -- higher = reviewed first
            status TEXT NOT NULL DEFAULT 'open'
                CHECK (status IN ({sql_in(QUEUE_STATUSES)})),
            claimed_by TEXT,
            lease_until REAL,                         -- unix time
            created_at TEXT NOT NULL
        );
        CREATE INDEX queue_open ON queue_items(status, priority DESC, id);

        -- append-only log; an undo is a new row whose target_id names the undone decision
        CREATE TABLE decisions (
            id INTEGER PRIMARY KEY,
            queue_item_id INTEGER REFERENCES queue_items(id),
            proposal_id INTEGER REFERENCES proposals(id),
            image_id INTEGER REFERENCES images(id),
            reviewer TEXT NOT NULL,
            action TEXT NOT NULL
                CHECK (action IN ({sql_in(ACTIONS)})),
            x0 REAL, y0 REAL, x1 REAL, y1 REAL,
            caption TEXT,
            reason TEXT,
            target_id INTEGER REFERENCES decisions(id),
            created_at TEXT NOT NULL
        );
        CREATE INDEX decisions_proposal ON decisions(proposal_id);
        CREATE INDEX decisions_reviewer ON decisions(reviewer, id);

        CREATE TABLE exports (
            id INTEGER PRIMARY KEY,
            version TEXT NOT NULL,
            out_dir TEXT NOT NULL,
            formats TEXT NOT NULL,                    -- JSON list
            n_items INTEGER NOT NULL DEFAULT 0,
            max_decision_id INTEGER,                  -- for --since last
            max_proposal_id INTEGER,
            config TEXT NOT NULL DEFAULT '{{}}',
            created_at TEXT NOT NULL
        );

        CREATE TABLE exported_items (
            export_id INTEGER NOT NULL REFERENCES exports(id),
            proposal_id INTEGER NOT NULL REFERENCES proposals(id),
            crop_path TEXT,
            PRIMARY KEY (export_id, proposal_id)
        );
        """,
    )


@migration(2)
def _export_scale_indexes(conn: sqlite3.Connection) -> None:
    """Indexes for streaming exports: labels by image-id range, ``--since`` at 10^6 labels."""
    run_script(
        conn,
        """
        CREATE INDEX IF NOT EXISTS decisions_image ON decisions(image_id);
        CREATE INDEX IF NOT EXISTS exported_items_proposal
            ON exported_items(proposal_id, export_id);
        """,
    )
