"""Export at scale: memory flat in the label count, --since through the index, Ray == local.

Workspaces here are filled by direct store inserts (one tiny PNG linked under many names),
so thousands of labels take well under a second to create.
"""

from __future__ import annotations

import filecmp
import os
import tracemalloc
from pathlib import Path

import pytest

from autolabel.config import ExportConfig
from autolabel.export import core, export_dataset, stream
from autolabel.store import Workspace
from autolabel.store import exports as store
from tests.support.export_scale import fake_workspace

OPTS = ExportConfig(formats=["all"], size=32, min_size=8, workers=1)


def _peak_bytes(ws: Workspace, out: Path) -> int:
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        export_dataset(ws, out, OPTS)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.slow
def test_export_peak_memory_does_not_grow_with_label_count(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(core, "CHUNK_IMAGE_IDS", 25)
    monkeypatch.setattr(stream, "CHUNK_IMAGES", 25)
    peaks = {}
    per_image = 16
    for n_images in (125, 500):  # 2k and 8k labels, the same chunk size
        root = tmp_path / str(n_images)
        ws = fake_workspace(root, n_images, per_image=per_image)
        try:
            peaks[n_images] = _peak_bytes(ws, root / "out")
            counts = store.list_exports(ws)[-1]["n_items"]
            assert counts == per_image * n_images
        finally:
            ws.close()
        lines = (root / "out" / "v1" / "meta" / "manifest.jsonl").read_text().count("\n")
        assert lines == per_image * n_images
    assert peaks[500] <= 1.2 * peaks[125], peaks


def test_since_export_takes_only_new_and_changed_labels(tmp_path: Path):
    ws = fake_workspace(tmp_path, 30, per_image=2)
    try:
        first = export_dataset(ws, tmp_path / "out", OPTS)
        assert first.counts["labels"] == 60
        pid = int(ws.conn.execute("SELECT MIN(id) FROM proposals").fetchone()[0])
        store.add_decision(ws, pid, "adjust", box=(4, 4, 40, 40), caption="edited")
        again = export_dataset(ws, tmp_path / "out", OPTS, since="last")
        assert again.counts["labels"] == 1
        assert (tmp_path / "out" / "v2" / "meta" / "manifest.jsonl").read_text().count("\n") == 1
        none = export_dataset(ws, tmp_path / "out", OPTS, since="last")
        assert none.counts["labels"] == 0
        plan = ws.conn.execute(
            "EXPLAIN QUERY PLAN SELECT 1 FROM exported_items e "
            "WHERE e.proposal_id = ? AND e.export_id <= ?",
            (1, 1),
        ).fetchall()
        assert any("exported_items_proposal" in str(tuple(r)) for r in plan)
    finally:
        ws.close()


def test_result_lists_per_image_folders_once_and_export_json_every_file(tmp_path: Path):
    ws = fake_workspace(tmp_path, 5, per_image=2)
    try:
        res = export_dataset(ws, tmp_path / "out", OPTS)
    finally:
        ws.close()
    assert {"crops", "images", "coco.json", "yolo/data.yaml", "TRAINING.md"} <= set(res.files)
    import json

    listed = json.loads((res.path / "export.json").read_text())["files"]
    on_disk = sorted(
        str(p.relative_to(res.path))
        for p in res.path.rglob("*")
        if (p.is_file() or p.is_symlink()) and p.name != "export.json"
    )
    assert listed == on_disk
    assert not list((tmp_path / "out").glob(".tmp-*"))  # spill and temp folders are gone


def _same_tree(a: Path, b: Path) -> list[str]:
    """Relative paths that differ between two folders (content, links, presence)."""
    diff = []
    names_a = sorted(str(p.relative_to(a)) for p in a.rglob("*"))
    names_b = sorted(str(p.relative_to(b)) for p in b.rglob("*"))
    if names_a != names_b:
        return sorted(set(names_a) ^ set(names_b))
    for rel in names_a:
        pa, pb = a / rel, b / rel
        if pa.is_symlink() or pb.is_symlink():
            if os.readlink(pa) != os.readlink(pb):
                diff.append(rel)
        elif pa.is_file() and not filecmp.cmp(pa, pb, shallow=False):
            diff.append(rel)
    return diff


@pytest.mark.ray
@pytest.mark.slow
def test_ray_export_is_byte_identical_to_local(tmp_path: Path, monkeypatch):
    ray = pytest.importorskip("ray")
    from autolabel.export import ray_engine

    monkeypatch.setattr(ray_engine, "RANGE_IMAGE_IDS", 8)  # 5 read tasks, 2 actors
    ws = fake_workspace(tmp_path, 40, per_image=3)
    try:
        # a label whose original is gone -> skipped.jsonl; a reviewed caption
        gone = ws.conn.execute("SELECT path FROM images ORDER BY id LIMIT 1").fetchone()[0]
        Path(gone).unlink()
        pid = int(ws.conn.execute("SELECT MAX(id) FROM proposals").fetchone()[0])
        store.add_decision(ws, pid, "accept", caption="a reviewed caption")
        local = export_dataset(ws, tmp_path / "local", OPTS.model_copy(update={"version": "v1"}))
        ray.init(
            address="local",
            num_cpus=2,
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
            _node_ip_address="127.0.0.1",
        )
        try:
            opts = OPTS.model_copy(update={"version": "v1", "engine": "ray", "ray_actors": 2})
            remote = export_dataset(ws, tmp_path / "ray", opts)
        finally:
            ray.shutdown()
    finally:
        ws.close()
    assert local.counts == remote.counts
    assert local.counts["skipped"] == 3 and local.counts["crops"] == 117
    assert _same_tree(local.path, remote.path) == []


def _tree(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_chunk_size_does_not_change_the_bundle(tmp_path: Path, monkeypatch):
    """One image per chunk (names, splits and categories resolved across chunks) writes the
    same bytes as one chunk for the whole export: EXIF-rotated bundle copies, colliding stems
    (``a`` in two folders), reviewed + auto boxes, a train/val split, every format."""
    from tests.support.consumers import build_workspace

    ws, _ = build_workspace(tmp_path / "w")
    opts = ExportConfig(formats=["all"], min_size=32, workers=1, val_fraction=0.5, version="v1")
    try:
        whole = export_dataset(ws, tmp_path / "whole", opts)
        monkeypatch.setattr(core, "CHUNK_IMAGE_IDS", 1)
        monkeypatch.setattr(stream, "CHUNK_IMAGES", 1)
        chunked = export_dataset(ws, tmp_path / "chunked", opts.model_copy(update={"workers": 2}))
    finally:
        ws.close()
    a, b = _tree(whole.path), _tree(chunked.path)
    assert sorted(a) == sorted(b)
    assert [k for k in a if a[k] != b[k]] == []
    assert whole.counts["val_images"] >= 1 and whole.counts["train_images"] >= 1
    assert any(k.startswith("val/") for k in a) and "odvg/coco_val.json" in a
    stems = [Path(k).stem for k in a if k.startswith("images/")]
    assert len(stems) == len({s.casefold() for s in stems})  # unique across chunks
