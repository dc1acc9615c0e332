"""Opening, creating and migrating a workspace database."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from autolabel.errors import DatabaseDamagedError, SchemaTooNewError, WorkspaceError
from autolabel.store.schema import MIGRATIONS, latest_version, required_tables

DB_NAME = "autolabel.db"
CONFIG_NAME = "config.yaml"


def utcnow() -> str:
    """Current UTC time as ISO-8601 with microseconds (sortable text)."""
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def connect(db_path: Path, *, timeout: float = 30.0) -> sqlite3.Connection:
    """Open a connection with the workspace pragmas (WAL, foreign keys, autocommit mode)."""
    conn = sqlite3.connect(
        str(db_path), timeout=timeout, isolation_level=None, check_same_thread=False
    )
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
    return conn


def migrate(conn: sqlite3.Connection, *, path: Path | str = "") -> int:
    """Bring the schema to :func:`latest_version`; returns the version found before.

    Raises:
        SchemaTooNewError: the database was written by a newer autolabel.
    """
    found = int(conn.execute("PRAGMA user_version").fetchone()[0])
    latest = latest_version()
    if found < 0:
        raise DatabaseDamagedError(
            f"{path}: expected a workspace schema version >= 0, got {found} (the database was "
            "changed outside autolabel; restore it from a backup)"
        )
    if found > latest:
        raise SchemaTooNewError(
            f"{path}: workspace schema version {found} is newer than this autolabel "
            f"supports ({latest}); upgrade autolabel"
        )
    for version in range(found + 1, latest + 1):
        conn.execute("BEGIN IMMEDIATE")
        try:
            MIGRATIONS[version](conn)
            conn.execute(f"PRAGMA user_version = {version}")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
    return found


def quick_check(conn: sqlite3.Connection, *, path: Path | str = "") -> None:
    """``PRAGMA quick_check``: refuse a damaged database with one line.

    Raises:
        DatabaseDamagedError: SQLite reports damage (the first problem is named).
    """
    try:
        rows = [str(r[0]) for r in conn.execute("PRAGMA quick_check(5)").fetchall()]
    except sqlite3.DatabaseError as exc:
        rows = [str(exc)]
    if rows != ["ok"]:
        raise DatabaseDamagedError(
            f"{path}: database damaged (PRAGMA quick_check: {rows[0]}); nothing was "
            "written. Restore autolabel.db from a backup"
        )


def check_tables(conn: sqlite3.Connection, *, path: Path | str = "") -> None:
    """Refuse a database whose schema lacks a table or view of the current version.

    Raises:
        DatabaseDamagedError: a table or view is missing (e.g. dropped by hand).
    """
    have = {
        str(r[0]) for r in conn.execute("SELECT name FROM sqlite_master WHERE type IN "
                                        "('table', 'view')")
    }  # fmt: skip
    missing = sorted(required_tables() - have)
    if missing:
        raise DatabaseDamagedError(
            f"{path}: expected the table(s) {', '.join(missing)} in the workspace database, "
            "got none (the database was changed outside autolabel; restore it from a backup)"
        )


def _unclean(db: Path) -> bool:
    """A ``-wal`` file next to the database: the last writer did not close it cleanly
    (or another process has it open, in which case the check below is merely extra)."""
    wal = db.with_name(db.name + "-wal")
    try:
        return wal.stat().st_size > 0
    except OSError:
        return False


def _open_db(path: Path, db: Path) -> sqlite3.Connection:
    """Connect, check (after an unclean shutdown) and migrate; one-line errors."""
    if db.exists() and db.stat().st_size == 0:
        raise DatabaseDamagedError(
            f"{db}: expected an autolabel database, got an empty (0-byte) file; it is not "
            "treated as a new workspace. Restore it from a backup, or delete it to start over"
        )
    existed = db.exists()
    unclean = existed and _unclean(db)
    conn = None
    try:
        conn = connect(db)
        if unclean:
            quick_check(conn, path=db)
        migrate(conn, path=path)
        if existed:
            check_tables(conn, path=db)
    except sqlite3.DatabaseError as exc:
        if conn is not None:
            conn.close()
        raise DatabaseDamagedError(f"{db}: not a readable SQLite database ({exc})") from None
    except BaseException:
        if conn is not None:
            conn.close()
        raise
    return conn


class Workspace:
    """A workspace folder: ``autolabel.db`` (SQLite, WAL) plus the files stages write.

    One ``Workspace`` holds one connection; threads that write concurrently should each
    call :meth:`connect` for their own.
    """

    def __init__(self, path: Path, conn: sqlite3.Connection) -> None:
        self.path = path
        self.conn = conn

    # -- lifecycle -------------------------------------------------------------------------
    @classmethod
    def create(cls, path: str | Path, *, exist_ok: bool = True) -> Workspace:
        """Create (or open, if ``exist_ok``) a workspace folder."""
        path = Path(path).expanduser().resolve()
        if path.exists() and not path.is_dir():
            raise WorkspaceError(f"{path}: expected a folder for the workspace, got a file")
        db = path / DB_NAME
        if db.exists() and not exist_ok:
            raise WorkspaceError(f"{path}: a workspace already exists here")
        path.mkdir(parents=True, exist_ok=True)
        return cls(path, _open_db(path, db))

    @classmethod
    def open(cls, path: str | Path) -> Workspace:
        """Open an existing workspace; clear errors if it is missing or too new."""
        path = Path(path).expanduser().resolve()
        db = path / DB_NAME
        if not path.exists():
            raise WorkspaceError(
                f"{path}: no such workspace (create it with `autolabel init {path}`)"
            )
        if not db.exists():
            raise WorkspaceError(
                f"{path}: not an autolabel workspace (expected {DB_NAME} inside it)"
            )
        return cls(path, _open_db(path, db))

    def connect(self) -> sqlite3.Connection:
        """A new connection to the same database (for another thread)."""
        return connect(self.path / DB_NAME)

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def db_path(self) -> Path:
        return self.path / DB_NAME

    @property
    def config_path(self) -> Path:
        return self.path / CONFIG_NAME

    def check_integrity(self) -> None:
        """``PRAGMA quick_check`` plus the schema's tables (before an export, for example).

        Raises:
            DatabaseDamagedError: the database is damaged or a table is missing.
        """
        check_tables(self.conn, path=self.db_path)
        quick_check(self.conn, path=self.db_path)

    # -- transactions ----------------------------------------------------------------------
    @contextmanager
    def transaction(self, conn: sqlite3.Connection | None = None) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT`` (``ROLLBACK`` on any exception)."""
        c = conn or self.conn
        for attempt in range(50):
            try:
                c.execute("BEGIN IMMEDIATE")
                break
            except sqlite3.OperationalError as exc:  # pragma: no cover - heavy contention
                if "locked" not in str(exc) or attempt == 49:
                    raise
                time.sleep(0.05)
        try:
            yield c
        except BaseException:
            if c.in_transaction:  # SQLite already rolled back on SQLITE_FULL and the like
                c.execute("ROLLBACK")
            raise
        else:
            c.execute("COMMIT")

    # -- settings (JSON values) --------------------------------------------------------------
    def get_setting(self, key: str, default: Any = None) -> Any:
        row = self.conn.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
        return default if row is None else json.loads(row[0])

    def set_setting(self, key: str, value: Any) -> None:
        self.conn.execute(
            "INSERT INTO settings(key, value) VALUES (?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, json.dumps(value, sort_keys=True)),
        )

    def config(self, overrides: dict[str, Any] | None = None) -> Any:
        """The effective :class:`autolabel.config.Config` of this workspace."""
        from autolabel.config import load_config

        return load_config(self.config_path if self.config_path.exists() else None, overrides)
