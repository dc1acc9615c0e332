"""Reliability of ingest (issue 15, causes 2 and 5): a changed original's labels become stale
and the image is proposed again; file names that are not UTF-8 are ingested and round-trip."""

from __future__ import annotations

import json
import os
import sys

import pytest

from autolabel.config import ExportConfig
from autolabel.export import export_dataset
from autolabel.ingest import ingest
from autolabel.store import exports as store_exports
from autolabel.store import runs as store_runs
from autolabel.store.labels import iter_labels
from tests.support.labelled import labelled_workspace, write_image


def _image_id(ws, path) -> int:
    row = ws.conn.execute("SELECT id FROM images WHERE path = ?", (str(path.resolve()),))
    return int(row.fetchone()[0])


def test_changed_original_makes_its_labels_stale_and_is_proposed_again(tmp_path):
    ws, photos, pids = labelled_workspace(tmp_path, ["a.png", "b.png"])
    store_exports.add_decision(ws, pids["a.png"][0], "accept", reviewer="ann")
    run = store_runs.get_run(ws, 1)
    assert store_runs.count_pending_images(ws, run.key) == 0
    a_id = _image_id(ws, photos / "a.png")
    before = {lb.image_id for lb in iter_labels(ws, include="all")}
    assert a_id in before
    # replace a.png by another picture of another size (new hash, new size)
    write_image(photos / "a.png", size=(400, 300), seed=99)
    report = ingest(ws, [photos], workers=1)
    assert report.updated == 1 and report.stale == 1
    labels = list(iter_labels(ws, include="all"))
    assert a_id not in {lb.image_id for lb in labels} and len(labels) == 1
    # history is kept: proposals and the decision are still there
    assert ws.conn.execute("SELECT COUNT(*) FROM proposals WHERE image_id=?", (a_id,)).fetchone()[0]
    assert ws.conn.execute("SELECT COUNT(*) FROM decisions WHERE image_id=?", (a_id,)).fetchone()[0]
    # the image is proposed again (the human decision was on the old picture)
    pending = [r["id"] for r in store_runs.iter_pending_images(ws, run.key)]
    assert pending == [a_id]
    assert store_runs.count_pending_images(ws, run.key) == 1
    # export leaves the old box out (it would be cut out of the new picture)
    res = export_dataset(ws, tmp_path / "out", ExportConfig(min_size=16))
    manifest = [
        json.loads(x) for x in (res.path / "meta" / "manifest.jsonl").read_text().splitlines()
    ]
    assert [m["image_id"] for m in manifest] == [_image_id(ws, photos / "b.png")]
    ws.close()


def test_touched_but_unchanged_original_keeps_its_labels(tmp_path):
    ws, photos, _ = labelled_workspace(tmp_path, ["a.png"])
    st = os.stat(photos / "a.png")
    os.utime(photos / "a.png", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    report = ingest(ws, [photos], workers=1)
    assert report.updated == 1 and report.stale == 0
    assert len(list(iter_labels(ws, include="all"))) == 1
    ws.close()


@pytest.mark.skipif(sys.platform != "linux", reason="bytes file names: Linux file systems")
def test_non_utf8_file_names_are_ingested_and_round_trip(tmp_path):
    from autolabel.imageio import fs_path, open_image

    photos = tmp_path / "photos"
    write_image(photos / "plain.png", seed=1)
    raw = os.fsencode(str(photos)) + b"/caf\xe9-\\x41.png"  # Latin-1 byte, and a backslash
    write_image(photos / "tmp.png", seed=2)
    os.rename(photos / "tmp.png", raw)
    from autolabel.store import Workspace

    ws = Workspace.create(tmp_path / "ws")
    report = ingest(ws, [photos], workers=2)
    assert report.errors == 0 and report.added == 2, report.as_dict()
    rows = {r["path"]: r for r in ws.conn.execute("SELECT * FROM images")}
    assert all(r["status"] == "ok" for r in rows.values())
    stored = next(p for p in rows if "plain" not in p)
    assert os.fsencode(fs_path(stored)) == raw  # the stored text maps back to the bytes
    assert open_image(stored).size == (320, 240)
    again = ingest(ws, [photos], workers=1)  # the re-run recognises it as known
    assert again.unchanged == 2 and again.added == 0
    ws.close()
