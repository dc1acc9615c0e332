"""Reliability of the workspace database and the CLI's error lines (issue 15, causes 3, 13).

Every failure of the machine (a damaged or emptied database, a full disk, a config that is
not UTF-8, a dropped table) is refused with one ``error: ...`` line, never a traceback and
never a partial result with exit code 0.
"""

from __future__ import annotations

import errno
import sqlite3
from pathlib import Path

import pytest

from autolabel.cli import main
from autolabel.config import ExportConfig
from autolabel.errors import WorkspaceError
from autolabel.export import export_dataset, read_latest
from autolabel.store import Workspace
from tests.support.labelled import labelled_workspace

_LONG = "n" * 150  # long names: the images table spans several pages


def _cli(capsys, *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main([str(a) for a in args])
    out, err = capsys.readouterr()
    return int(info.value.code or 0), out, err


def _one_error_line(code: int, err: str, *needles: str) -> None:
    lines = [ln for ln in err.strip().splitlines() if ln.startswith("error")]
    assert code == 2, err
    assert len(lines) == 1 and err.strip().splitlines()[-1] == lines[0], err
    assert "Traceback" not in err
    for n in needles:
        assert n in lines[0], lines[0]


def _leaf_page_of(db: Path, table: str) -> tuple[int, int]:
    """(page size, a non-root leaf page number of ``table``'s b-tree)."""
    conn = sqlite3.connect(db)
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    root = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = ?", (table,)).fetchone()
    conn.close()
    data = db.read_bytes()
    off = (root[0] - 1) * page_size + (100 if root[0] == 1 else 0)
    assert data[off] == 0x05, "expected an interior table page at the root"
    rightmost = int.from_bytes(data[off + 8 : off + 12], "big")
    return page_size, rightmost


def test_damaged_images_page_is_refused_before_export(tmp_path):
    files = [f"{_LONG}{i:02d}.png" for i in range(21)]
    ws, _, _ = labelled_workspace(tmp_path, files, size=(64, 48))
    ws.close()
    db = tmp_path / "ws" / "autolabel.db"
    page_size, leaf = _leaf_page_of(db, "images")
    with open(db, "r+b") as fh:
        fh.seek((leaf - 1) * page_size)
        fh.write(bytes(range(256)) * (page_size // 256))
    with Workspace.open(tmp_path / "ws") as ws2, pytest.raises(WorkspaceError, match="quick_check"):
        export_dataset(ws2, tmp_path / "out", ExportConfig(min_size=8))
    assert read_latest(tmp_path / "out") is None
    assert not [p for p in (tmp_path / "out").iterdir()] if (tmp_path / "out").exists() else True


def test_cli_export_of_a_damaged_database_is_one_line(tmp_path, capsys):
    files = [f"{_LONG}{i:02d}.png" for i in range(21)]
    ws, _, _ = labelled_workspace(tmp_path, files, size=(64, 48))
    ws.close()
    db = tmp_path / "ws" / "autolabel.db"
    page_size, leaf = _leaf_page_of(db, "images")
    with open(db, "r+b") as fh:
        fh.seek((leaf - 1) * page_size + 8)
        fh.write(b"\xff" * 64)
    code, _, err = _cli(capsys, "export", tmp_path / "ws", "--out", tmp_path / "out")
    _one_error_line(code, err, "damaged")
    assert read_latest(tmp_path / "out") is None


def test_unclean_shutdown_triggers_a_check_at_open(tmp_path, monkeypatch):
    ws = Workspace.create(tmp_path / "ws")
    ws.close()
    db = tmp_path / "ws" / "autolabel.db"
    (tmp_path / "ws" / "autolabel.db-wal").write_bytes(b"x" * 32)  # left by a kill -9
    calls = []
    import autolabel.store.db as dbmod

    real = dbmod.quick_check
    monkeypatch.setattr(
        dbmod, "quick_check", lambda c, path="": calls.append(path) or real(c, path=path)
    )
    Workspace.open(tmp_path / "ws").close()
    assert calls == [db]
    Workspace.open(tmp_path / "ws").close()  # closed cleanly: no WAL, no second check
    assert calls == [db]


def test_zero_byte_database_is_not_a_new_workspace(tmp_path, capsys):
    (tmp_path / "ws").mkdir()
    db = tmp_path / "ws" / "autolabel.db"
    db.write_bytes(b"")
    with pytest.raises(WorkspaceError, match="0-byte"):
        Workspace.open(tmp_path / "ws")
    with pytest.raises(WorkspaceError, match="0-byte"):
        Workspace.create(tmp_path / "ws")
    code, _, err = _cli(capsys, "init", tmp_path / "ws")
    _one_error_line(code, err, "0-byte")
    code, _, err = _cli(capsys, "status", tmp_path / "ws")
    _one_error_line(code, err, "0-byte")
    assert db.stat().st_size == 0  # left as found


def test_init_on_a_garbage_database_is_one_line(tmp_path, capsys):
    (tmp_path / "ws").mkdir()
    (tmp_path / "ws" / "autolabel.db").write_bytes(b"this is not sqlite at all" * 200)
    code, _, err = _cli(capsys, "init", tmp_path / "ws")
    _one_error_line(code, err, "autolabel.db")


@pytest.mark.parametrize(
    ("damage", "named"),
    [("PRAGMA user_version = -1", "got -1"), ("DROP TABLE exported_items", "exported_items")],
    ids=["negative-user-version", "dropped-table"],
)
def test_a_damaged_schema_is_one_line(tmp_path, capsys, damage, named):
    Workspace.create(tmp_path / "ws").close()
    conn = sqlite3.connect(tmp_path / "ws" / "autolabel.db")
    conn.execute(damage)
    conn.close()
    code, _, err = _cli(capsys, "status", tmp_path / "ws")
    _one_error_line(code, err, named)


def test_non_utf8_config_is_one_line(tmp_path, capsys):
    Workspace.create(tmp_path / "ws").close()
    (tmp_path / "ws" / "config.yaml").write_bytes(b"export:\n  size: 448 \xff\xfe\n")
    code, _, err = _cli(capsys, "export", tmp_path / "ws", "--out", tmp_path / "out")
    _one_error_line(code, err, "UTF-8")


def test_autocrop_with_out_dir_a_file_is_one_line(tmp_path, capsys):
    (tmp_path / "in").mkdir()
    (tmp_path / "out").write_text("a file")
    code, _, err = _cli(capsys, "autocrop", tmp_path / "in", tmp_path / "out", "--prompt", "x")
    _one_error_line(code, err, "got a file")


def test_disk_full_during_export_is_one_line_and_leaves_nothing(tmp_path, capsys, monkeypatch):
    ws, _, _ = labelled_workspace(tmp_path, ["a.png", "b.png"])
    export_dataset(ws, tmp_path / "out", ExportConfig(min_size=16))
    ws.close()
    from autolabel.export import registry

    def full(self, name, text):
        raise OSError(errno.ENOSPC, "No space left on device", str(self.root / name))

    monkeypatch.setattr(registry.FileSink, "text", full)
    code, _, err = _cli(
        capsys, "export", tmp_path / "ws", "--out", tmp_path / "out", "--min-size", "16",
        "--workers", "1",
    )  # fmt: skip
    _one_error_line(code, err, "No space left on device", "disk is full")
    assert read_latest(tmp_path / "out") == "v1"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["LATEST", "v1"]


def test_disk_full_on_the_database_is_one_line(tmp_path, capsys, monkeypatch):
    ws, photos, _ = labelled_workspace(tmp_path, ["a.png"])
    ws.close()
    for i in range(30):
        (photos / f"more{i}.png").write_bytes((photos / "a.png").read_bytes() + bytes([i]))
    import autolabel.store.db as dbmod

    real = dbmod.connect

    def tiny(db_path, *, timeout=30.0):
        conn = real(db_path, timeout=timeout)
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        conn.execute(f"PRAGMA max_page_count = {pages}")  # the "disk" is full now
        return conn

    monkeypatch.setattr(dbmod, "connect", tiny)
    code, _, err = _cli(capsys, "ingest", tmp_path / "ws", photos)
    _one_error_line(code, err, "disk is full")
