"""Constants vs the store: the schema's CHECKs are built from autolabel.constants, SQLite
rejects any other value, and the SQL the store writes only names known values."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest

from autolabel import constants as C
from autolabel.store.schema import MIGRATIONS, sql_in

STORE = Path(C.__file__).resolve().parent / "store"


def _check_values(conn: sqlite3.Connection, table: str, column: str) -> tuple[str, ...]:
    sql = conn.execute("SELECT sql FROM sqlite_master WHERE name = ?", (table,)).fetchone()[0]
    m = re.search(rf"CHECK \({column} IN \(([^)]*)\)\)", sql)
    assert m, f"{table}.{column}: no CHECK constraint"
    return tuple(v.strip().strip("'") for v in m.group(1).split(","))


@pytest.mark.parametrize(
    ("table", "column", "values"),
    [
        ("images", "status", C.IMAGE_STATUSES),
        ("seed_items", "status", C.SEED_STATUSES),
        ("run_images", "status", C.RUN_IMAGE_STATUSES),
        ("proposals", "route", C.ROUTES),
        ("queue_items", "reason", C.QUEUE_REASONS),
        ("queue_items", "status", C.QUEUE_STATUSES),
        ("decisions", "action", C.ACTIONS),
    ],
)
def test_schema_checks_are_the_constants(workspace, table, column, values):
    assert _check_values(workspace.conn, table, column) == values


def test_released_schema_values_are_unchanged():
    """Workspaces on disk hold these values; changing one needs a migration."""
    assert C.ROUTES == ("pending", "auto", "review", "audit", "rejected")
    assert C.IMAGE_STATUSES == ("ok", "error", "duplicate")
    assert C.SEED_STATUSES == ("located", "not_found", "no_original")
    assert C.RUN_IMAGE_STATUSES == ("done", "error")
    assert C.QUEUE_REASONS == ("uncertain", "audit", "missing")
    assert C.QUEUE_STATUSES == ("open", "claimed", "done", "withdrawn")
    assert C.ACTIONS == ("accept", "adjust", "reject", "caption", "skip", "undo")
    assert set(C.AUTO_ROUTES) <= set(C.ROUTES)
    assert set(C.ACCEPTING_ACTIONS) <= set(C.ACTIONS)


def _proposal(conn: sqlite3.Connection, route: str) -> None:
    conn.execute(
        "INSERT INTO runs(detector, model, model_version, prompt, box_threshold, "
        "text_threshold, key, started_at) VALUES ('d', 'm', 'v', 'p', 0.3, 0.2, 'k', 'now')"
    )
    conn.execute("INSERT INTO images(path, added_at) VALUES ('/a.png', 'now')")
    conn.execute(
        "INSERT INTO proposals(run_id, image_id, x0, y0, x1, y1, score, phrase, route) "
        "VALUES (1, 1, 0, 0, 1, 1, 0.5, 'x', ?)",
        (route,),
    )


@pytest.mark.parametrize(
    ("route", "error"),
    [(r, None) for r in C.ROUTES]
    + [("accepted", sqlite3.IntegrityError), ("AUTO", sqlite3.IntegrityError)],
)
def test_sqlite_rejects_a_route_outside_the_constants(route, error):
    conn = sqlite3.connect(":memory:")
    MIGRATIONS[1](conn)
    if error:
        with pytest.raises(error, match="CHECK constraint failed"):
            _proposal(conn, route)
    else:
        _proposal(conn, route)
        assert conn.execute("SELECT route FROM proposals").fetchone()[0] == route


def test_sqlite_rejects_an_unknown_action(workspace):
    with pytest.raises(sqlite3.IntegrityError, match="CHECK constraint failed"):
        workspace.conn.execute(
            "INSERT INTO decisions(reviewer, action, created_at) VALUES ('r', 'approve', 'now')"
        )


@pytest.mark.parametrize(
    ("values", "expected", "error"),
    [
        (("a", "b"), "'a', 'b'", None),
        ((), "", None),
        (("it's",), None, ValueError),
    ],
)
def test_sql_in(values, expected, error):
    if error:
        with pytest.raises(error, match="without quotes"):
            sql_in(values)
    else:
        assert sql_in(values) == expected


_SQL_LITERAL = re.compile(
    r"\b(?:\w+\.)?(route|action|status|reason)\s*(?:=|!=|IN\s*\()\s*((?:'[^']*'\s*,?\s*)+)"
)
_KNOWN = {
    "route": set(C.ROUTES),
    "action": set(C.ACTIONS),
    "reason": set(C.QUEUE_REASONS),
    "status": set(C.IMAGE_STATUSES)
    | set(C.SEED_STATUSES)
    | set(C.RUN_IMAGE_STATUSES)
    | set(C.QUEUE_STATUSES),
}


def test_store_sql_names_only_known_values():
    """A literal in the store's SQL (``route IN ('auto', 'audit')``, ``action = 'undo'``)
    must be a value from autolabel.constants, so a renamed constant cannot leave a query
    silently matching nothing."""
    found = 0
    bad = []
    for path in sorted(STORE.glob("*.py")):
        for m in _SQL_LITERAL.finditer(path.read_text(encoding="utf-8")):
            column = m.group(1)
            for value in re.findall(r"'([^']*)'", m.group(2)):
                found += 1
                if value not in _KNOWN[column]:
                    bad.append(f"{path.name}: {column} {value!r}")
    assert bad == []
    assert found > 20  # the scan sees the store's queries


def test_defaults_come_from_the_constants():
    from autolabel.config import DetectConfig, IngestConfig
    from autolabel.ingest import DEFAULT_EXTENSIONS

    assert DetectConfig().model == C.DEFAULT_MODEL
    assert DetectConfig().detector == C.DEFAULT_DETECTOR
    assert tuple(IngestConfig().extensions) == C.IMAGE_EXTENSIONS == DEFAULT_EXTENSIONS
    assert C.IMAGE_SUFFIXES == tuple("." + e for e in C.IMAGE_EXTENSIONS)
    assert 0.5 < C.MATCH_IOU <= 1.0
