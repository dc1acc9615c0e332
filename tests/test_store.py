"""Workspace store: pragmas, migrations, schema-too-new, transactions, images queries, status."""

from __future__ import annotations

import sqlite3

import pytest

from autolabel.errors import NotFoundError, SchemaTooNewError, WorkspaceError
from autolabel.store import Workspace, latest_version, schema
from autolabel.store import images as store_images
from autolabel.store import runs as store_runs
from autolabel.store.db import DB_NAME, utcnow
from autolabel.store.images import ScannedFile, write_scanned
from tests.support.proposals import mock_proposals


def test_new_workspace_has_latest_schema_wal_and_foreign_keys(tmp_path):
    with Workspace.create(tmp_path / "ws") as ws:
        assert ws.conn.execute("PRAGMA user_version").fetchone()[0] == latest_version()
        assert ws.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert ws.conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        tables = {r[0] for r in ws.conn.execute("SELECT name FROM sqlite_master")}
        for t in ("images", "seed_items", "runs", "proposals", "queue_items", "decisions"):
            assert t in tables
        assert "exports" in tables
        with pytest.raises(sqlite3.IntegrityError):  # foreign keys are enforced
            ws.conn.execute(
                "INSERT INTO proposals(run_id, image_id, x0, y0, x1, y1, score, phrase) "
                "VALUES (999, 999, 0, 0, 1, 1, 0.5, 'x')"
            )


def test_reopen_is_idempotent_and_keeps_data(tmp_path):
    with Workspace.create(tmp_path / "ws") as ws:
        ws.set_setting("k", {"a": [1, 2]})
    with Workspace.open(tmp_path / "ws") as ws:
        assert ws.get_setting("k") == {"a": [1, 2]}
        assert ws.get_setting("missing", 7) == 7
    with Workspace.create(tmp_path / "ws") as ws:  # create on an existing one = open
        assert ws.conn.execute("PRAGMA user_version").fetchone()[0] == latest_version()
        assert ws.get_setting("k") == {"a": [1, 2]}
    with pytest.raises(WorkspaceError, match="already exists"):
        Workspace.create(tmp_path / "ws", exist_ok=False)


def test_schema_too_new_is_a_clear_error(tmp_path):
    with Workspace.create(tmp_path / "ws") as ws:
        ws.conn.execute(f"PRAGMA user_version = {latest_version() + 1}")
    with pytest.raises(SchemaTooNewError) as info:
        Workspace.open(tmp_path / "ws")
    msg = str(info.value)
    assert f"version {latest_version() + 1}" in msg and "upgrade autolabel" in msg


def test_schema_too_new_through_the_cli_exits_2_without_traceback(tmp_path, capsys):
    from autolabel.cli import main

    with Workspace.create(tmp_path / "ws") as ws:
        ws.conn.execute(f"PRAGMA user_version = {latest_version() + 1}")
    with pytest.raises(SystemExit) as info:
        main(["status", str(tmp_path / "ws")])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "newer than this autolabel supports" in err
    assert "Traceback" not in err


def test_registered_migration_runs_once_and_failed_migration_rolls_back(tmp_path, monkeypatch):
    with Workspace.create(tmp_path / "ws"):
        pass
    nxt = latest_version() + 1
    calls = []

    def add_column(conn):
        calls.append(1)
        conn.execute("ALTER TABLE images ADD COLUMN note TEXT")

    monkeypatch.setitem(schema.MIGRATIONS, nxt, add_column)
    with Workspace.open(tmp_path / "ws") as ws:
        assert ws.conn.execute("PRAGMA user_version").fetchone()[0] == nxt
        cols = {r[1] for r in ws.conn.execute("PRAGMA table_info(images)")}
        assert "note" in cols
    with Workspace.open(tmp_path / "ws"):
        pass
    assert calls == [1]

    def broken(conn):
        conn.execute("CREATE TABLE half_done (x)")
        raise RuntimeError("boom")

    monkeypatch.setitem(schema.MIGRATIONS, nxt + 1, broken)
    with pytest.raises(RuntimeError, match="boom"):
        Workspace.open(tmp_path / "ws")
    monkeypatch.delitem(schema.MIGRATIONS, nxt + 1)
    with Workspace.open(tmp_path / "ws") as ws:
        assert ws.conn.execute("PRAGMA user_version").fetchone()[0] == nxt
        names = {r[0] for r in ws.conn.execute("SELECT name FROM sqlite_master")}
        assert "half_done" not in names


def test_migration_registry_rejects_duplicates():
    with pytest.raises(RuntimeError, match="registered twice"):
        schema.migration(1)(lambda conn: None)


@pytest.mark.parametrize(
    ("setup", "match"),
    [
        (lambda p: None, "no such workspace"),
        (lambda p: p.mkdir(), "not an autolabel workspace"),
        (lambda p: (p.mkdir(), (p / DB_NAME).write_text("not sqlite " * 100)), "not a readable"),
    ],
    ids=["missing", "empty-folder", "garbage-db"],
)
def test_open_bad_workspaces(tmp_path, setup, match):
    path = tmp_path / "ws"
    setup(path)
    with pytest.raises(WorkspaceError, match=match):
        Workspace.open(path)


def test_create_on_a_file_is_an_error(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(WorkspaceError, match="expected a folder"):
        Workspace.create(tmp_path / "f")


def test_transaction_rolls_back_on_error(workspace):
    with pytest.raises(ValueError), workspace.transaction() as c:
        c.execute("INSERT INTO settings(key, value) VALUES ('a', '1')")
        raise ValueError("stop")
    assert workspace.get_setting("a") is None
    with workspace.transaction() as c:
        c.execute("INSERT INTO settings(key, value) VALUES ('a', '1')")
    assert workspace.get_setting("a") == 1


def _scanned(path: str, sha: str | None, error: str | None = None) -> ScannedFile:
    return ScannedFile(path, 10, 1, sha, 4, 3, "PNG", error)


def test_write_scanned_marks_duplicates_and_updates_only_replaced_rows(workspace):
    counts = write_scanned(
        workspace,
        [_scanned("/a.png", "h1"), _scanned("/b.png", "h1"), _scanned("/c.png", None, "empty")],
    )
    assert counts == {"added": 3, "updated": 0, "duplicate": 1, "error": 1, "stale": 0}
    a = store_images.find_image(workspace, "/a.png")
    b = store_images.find_image(workspace, "/b.png")
    assert (a.status, b.status, b.duplicate_of) == ("ok", "duplicate", a.id)
    # same path again without replace: left alone
    assert write_scanned(workspace, [_scanned("/a.png", "h2")])["added"] == 0
    assert store_images.find_image(workspace, "/a.png").sha256 == "h1"
    counts = write_scanned(workspace, [_scanned("/a.png", "h2")], replace=[a.id])
    assert counts["updated"] == 1
    assert store_images.get_image(workspace, a.id).sha256 == "h2"
    assert [r.path for r in store_images.find_by_sha256(workspace, "h1")] == ["/b.png"]


def test_files_to_scan_returns_new_changed_and_retried(workspace):
    write_scanned(workspace, [_scanned("/a.png", "h1"), _scanned("/e.png", None, "empty")])
    ids = {r.path: r.id for r in store_images.iter_images(workspace, status=None)}
    items = [("/a.png", 10, 1), ("/a2.png", 10, 1), ("/e.png", 10, 1), ("/a.png", 11, 1)]
    assert store_images.files_to_scan(workspace.conn, items) == [(1, None), (3, ids["/a.png"])]
    assert store_images.files_to_scan(workspace.conn, items, retry_errors=True) == [
        (1, None),
        (2, ids["/e.png"]),
        (3, ids["/a.png"]),
    ]
    assert store_images.files_to_scan(workspace.conn, []) == []


def test_iter_images_streams_in_id_order_with_filters(workspace):
    write_scanned(
        workspace,
        [_scanned(f"/{i}.png", f"h{i}", "bad" if i % 3 == 0 else None) for i in range(20)],
    )
    ok = list(store_images.iter_images(workspace, chunk=4))
    assert len(ok) == 13 and [r.id for r in ok] == sorted(r.id for r in ok)
    assert len(list(store_images.iter_images(workspace, status=None, chunk=3))) == 20
    assert len(list(store_images.iter_images(workspace, status="error"))) == 7
    assert [r.id for r in store_images.iter_images(workspace, after_id=ok[5].id, limit=2)] == [
        ok[6].id,
        ok[7].id,
    ]
    with pytest.raises(ValueError, match="status"):
        list(store_images.iter_images(workspace, status="bogus"))
    with pytest.raises(NotFoundError, match="image 9999"):
        store_images.get_image(workspace, 9999)
    assert store_images.find_image(workspace, "/nope.png") is None


def test_workspace_status_counts_every_stage(workspace):
    write_scanned(
        workspace,
        [
            _scanned("/a.png", "h1"),
            _scanned("/b.png", "h2"),
            _scanned("/c.png", "h1"),
            _scanned("/d.png", None, "not-an-image: no known image format"),
            _scanned("/e.png", None, "not-an-image"),
            _scanned("/f.png", None, "empty-file"),
        ],
    )
    a = store_images.find_image(workspace, "/a.png").id
    b = store_images.find_image(workspace, "/b.png").id
    run = store_runs.create_run(
        workspace,
        detector="d",
        model="m",
        model_version="v",
        refiner=None,
        prompt="p",
        box_threshold=0.3,
        text_threshold=0.2,
    )
    store_runs.write_batch(
        workspace,
        run,
        [(a, mock_proposals([[0, 0, 1, 1], [1, 1, 2, 2]])), (b, mock_proposals([[0, 0, 2, 2]]))],
    )
    store_runs.finish_run(workspace, run)
    now = utcnow()
    with workspace.transaction() as c:
        c.execute("UPDATE proposals SET route = 'review' WHERE id = 1")
        c.execute("UPDATE proposals SET route = 'auto' WHERE id IN (2, 3)")
        c.execute(
            "INSERT INTO queue_items(proposal_id, image_id, reason, status, created_at) "
            "VALUES (1, ?, 'uncertain', 'done', ?)",
            (a, now),
        )
        for action in ("accept", "reject", "undo"):
            c.execute(
                "INSERT INTO decisions(proposal_id, image_id, reviewer, action, created_at) "
                "VALUES (1, ?, 'ann', ?, ?)",
                (a, action, now),
            )
        c.execute(
            "INSERT INTO seed_items(crop_path, status, added_at) VALUES ('/crop.png', "
            "'located', ?)",
            (now,),
        )
        c.execute(
            "INSERT INTO exports(version, out_dir, formats, created_at) "
            "VALUES ('v1', '/out', '[]', ?)",
            (now,),
        )
    st = store_images.workspace_status(workspace)
    assert st["images"] == {"total": 6, "ok": 2, "error": 3, "duplicate": 1}
    assert st["image_errors"] == {"not-an-image": 2, "empty-file": 1}
    assert st["runs"] == {"total": 1, "finished": 1, "unfinished": 0, "image_errors": 0}
    assert st["proposals"]["current"] == 3 and st["proposals"]["all_runs"] == 3
    assert (st["proposals"]["review"], st["proposals"]["auto"]) == (1, 2)
    assert st["queue"]["done"] == 1 and st["queue"]["open"] == 0
    assert st["decisions"] == {
        "total": 3,
        "accept": 1,
        "adjust": 0,
        "reject": 1,
        "caption": 0,
        "skip": 0,
        "undo": 1,
    }
    assert st["seed_items"]["located"] == 1
    assert st["exports"] == {"total": 1, "latest": "v1"}
    assert st["schema_version"] == latest_version()
