"""ingest: streaming walk, dedupe, header sizes, error rows, fast idempotent re-runs."""

from __future__ import annotations

import io
import os
import shutil
import struct
import tempfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from autolabel import ingest as ingest_mod
from autolabel.errors import InputError
from autolabel.ingest import ingest
from autolabel.store import images as store_images

RNG = np.random.default_rng(1)


def _save(path: Path, w: int = 16, h: int = 12, *, exif_orientation: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(RNG.integers(0, 256, (h, w, 3), dtype=np.uint8))
    kwargs = {}
    if exif_orientation:
        exif = Image.Exif()
        exif[0x0112] = exif_orientation
        kwargs["exif"] = exif.tobytes()
    fmt = {"jpg": "JPEG", "jpeg": "JPEG", "tif": "TIFF"}.get(path.suffix[1:].lower())
    im.save(path, format=fmt, **kwargs)
    return path


def _rows(ws) -> dict[str, object]:
    return {Path(r.path).name: r for r in store_images.iter_images(ws, status=None)}


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "photos"
    _save(root / "a.png", 16, 12)
    _save(root / "B.JPG", 20, 10)
    _save(root / "rot.jpg", 30, 10, exif_orientation=6)
    _save(root / "sub" / "c.WebP", 8, 8)
    _save(root / "sub" / "deeper" / "d.tiff", 9, 7)
    _save(root / "sub" / "e.bmp", 5, 6)
    _save(root / "sub" / "红色连衣裙 été.png", 7, 5)  # non-ASCII UTF-8 names are fine
    (root / "notes.txt").write_text("not an image and not an image extension")
    (root / "fake.jpg").write_text("plain text with an image extension")
    (root / "empty.png").write_bytes(b"")
    (root / "sub" / "copy_of_a.png").write_bytes((root / "a.png").read_bytes())
    return root


def test_ingest_records_sizes_statuses_and_duplicates(workspace, tree):
    report = ingest(workspace, [tree], workers=2)
    assert report.seen == 10  # notes.txt has no image extension
    assert report.added == 10 and report.errors == 2 and report.duplicates == 1
    assert report.errors_by_reason == {"not-an-image": 1, "empty-file": 1}
    rows = _rows(workspace)
    assert {n for n, r in rows.items() if r.status == "ok"} == {
        "B.JPG",
        "rot.jpg",
        "c.WebP",
        "d.tiff",
        "e.bmp",
        "红色连衣裙 été.png",
    } | ({"a.png", "copy_of_a.png"} - {n for n, r in rows.items() if r.status == "duplicate"})
    assert (rows["B.JPG"].width, rows["B.JPG"].height, rows["B.JPG"].format) == (20, 10, "JPEG")
    assert (rows["rot.jpg"].width, rows["rot.jpg"].height) == (10, 30)  # EXIF-corrected
    assert (rows["d.tiff"].width, rows["d.tiff"].height) == (9, 7)
    assert (rows["红色连衣裙 été.png"].width, rows["红色连衣裙 été.png"].height) == (7, 5)
    dup = next(r for r in rows.values() if r.status == "duplicate")
    orig = store_images.get_image(workspace, dup.duplicate_of)
    assert orig.status == "ok" and orig.sha256 == dup.sha256
    assert {dup.path, orig.path} == {str(tree / "a.png"), str(tree / "sub" / "copy_of_a.png")}
    assert rows["fake.jpg"].status == "error" and rows["fake.jpg"].error.startswith("not-an-image")
    assert rows["empty.png"].error == "empty-file"
    assert all(os.path.isabs(r.path) for r in rows.values())


def test_rerun_adds_only_new_files_without_reading_known_ones(workspace, tree, monkeypatch):
    ingest(workspace, [tree])
    before = store_images.count_images(workspace)

    def must_not_read(*args, **kwargs):
        raise AssertionError("a known, unchanged file was read again")

    monkeypatch.setattr(ingest_mod, "scan_file", must_not_read)
    monkeypatch.setattr(ingest_mod, "_read_all", must_not_read)
    monkeypatch.setattr(ingest_mod, "file_sha256", must_not_read)
    report = ingest(workspace, [tree])
    assert (report.seen, report.unchanged, report.added, report.updated) == (10, 10, 0, 0)
    assert store_images.count_images(workspace) == before
    monkeypatch.undo()

    _save(tree / "sub" / "new.png")
    report = ingest(workspace, [tree])
    assert (report.added, report.unchanged) == (1, 10)
    assert store_images.count_images(workspace)["total"] == before["total"] + 1


def test_changed_file_is_reread_and_its_row_updated(workspace, tree):
    ingest(workspace, [tree])
    old = store_images.find_image(workspace, str(tree / "B.JPG"))
    _save(tree / "B.JPG", 44, 33)
    st = os.stat(tree / "B.JPG")
    os.utime(tree / "B.JPG", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    report = ingest(workspace, [tree])
    assert (report.updated, report.added) == (1, 0)
    new = store_images.find_image(workspace, str(tree / "B.JPG"))
    assert new.id == old.id and (new.width, new.height) == (44, 33) and new.sha256 != old.sha256


def test_retry_errors_rereads_error_rows(workspace, tree):
    ingest(workspace, [tree])
    assert ingest(workspace, [tree]).updated == 0
    report = ingest(workspace, [tree], retry_errors=True)
    assert report.updated == 2 and report.errors == 2


def test_recursive_glob_and_extension_filters(workspace, tree, tmp_path):
    assert ingest(workspace, [tree], recursive=False).seen == 5
    from autolabel.store import Workspace

    with Workspace.create(tmp_path / "ws2") as ws2:
        report = ingest(ws2, [tree], globs=["sub/*"])  # fnmatch: * also matches "/"
        assert sorted(Path(r.path).name for r in store_images.iter_images(ws2, status=None)) == [
            "c.WebP",
            "copy_of_a.png",
            "d.tiff",
            "e.bmp",
            "红色连衣裙 été.png",
        ]
        assert report.seen == 5
    with Workspace.create(tmp_path / "ws3") as ws3:
        ingest(ws3, [tree], globs=["*.png"], extensions=["PNG"])
        names = {Path(r.path).name for r in store_images.iter_images(ws3, status=None)}
        assert names == {"a.png", "empty.png", "copy_of_a.png", "红色连衣裙 été.png"}


def test_single_file_argument_and_overlapping_roots(workspace, tree):
    report = ingest(workspace, [tree / "a.png", tree, tree / "sub"])
    assert store_images.count_images(workspace)["total"] == 10
    assert report.seen == 11  # a.png reached twice; the sub tree once


def test_symlinks_loops_and_broken_links_are_recorded(workspace, tmp_path):
    root = tmp_path / "links"
    _save(root / "real" / "x.png")
    os.symlink(root, root / "real" / "loop")  # folder link back to an ancestor
    os.symlink(root / "real", root / "alias")  # second path to the same folder
    os.symlink("nowhere.png", root / "broken.png")
    os.symlink("self.jpg", root / "self.jpg")  # a link to itself
    os.symlink(root / "real" / "x.png", root / "x_link.png")
    report = ingest(workspace, [root])
    rows = _rows(workspace)
    assert rows["loop"].error.startswith("symlink-loop")
    assert rows["self.jpg"].error.startswith("symlink-loop")
    assert rows["broken.png"].error.startswith("broken-symlink")
    assert rows["x_link.png"].status == "duplicate"  # same content as real/x.png
    assert sum(1 for r in rows.values() if r.status == "ok") == 1
    assert report.seen == 5
    assert ingest(workspace, [root]).unchanged == 5


def test_no_follow_symlinks_ignores_links(workspace, tmp_path):
    root = tmp_path / "links"
    _save(root / "x.png")
    os.symlink(root / "x.png", root / "y.png")
    os.symlink(root, root / "loop")
    report = ingest(workspace, [root], follow_symlinks=False)
    assert report.seen == 1 and report.errors == 0


def test_non_utf8_name_is_ingested_with_a_reversible_path(workspace, tmp_path):
    root = tmp_path / "names"
    _save(root / "ok.png")
    raw = os.fsencode(root) + b"/caf\xe9.png"
    fd = os.open(raw, os.O_WRONLY | os.O_CREAT, 0o644)
    buf = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buf, format="PNG")
    os.write(fd, buf.getvalue())
    os.close(fd)
    report = ingest(workspace, [root])
    assert report.errors == 0 and report.added == 2
    odd = next(r for r in store_images.iter_images(workspace) if "caf" in r.path)
    assert odd.path.startswith("fsbytes:") and odd.path.endswith("caf\\xe9.png")
    assert (odd.width, odd.height) == (4, 4)
    assert ingest(workspace, [root]).unchanged == 2


def test_unreadable_file_is_an_error_row(workspace, tree, monkeypatch):
    import builtins

    real_open = builtins.open

    def deny(file, *args, **kwargs):  # simulated: root may read anything
        if os.fspath(file).endswith("B.JPG"):
            raise PermissionError(13, "Permission denied")
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", deny)
    ingest(workspace, [tree], workers=1)
    ingest(workspace, [tree / "B.JPG"], hash_bytes=16, retry_errors=True)  # streamed hash path
    monkeypatch.undo()
    row = store_images.find_image(workspace, str(tree / "B.JPG"))
    assert (row.status, row.error) == ("error", "unreadable: Permission denied")
    report = ingest(workspace, [tree], retry_errors=True)
    assert report.updated == 3  # fixed permissions: B.JPG now reads; 2 real errors stay
    assert store_images.find_image(workspace, str(tree / "B.JPG")).status == "ok"


def test_workspace_inside_the_scanned_folder_is_skipped(tmp_path):
    from autolabel.store import Workspace

    root = tmp_path / "data"
    _save(root / "a.png")
    with Workspace.create(root / "ws") as ws:
        _save(ws.path / "crops" / "crop.png")
        report = ingest(ws, [root])
        assert report.seen == 1


def test_interrupted_ingest_keeps_finished_batches_and_resumes(workspace, tmp_path):
    root = tmp_path / "many"
    for i in range(25):
        _save(root / f"{i:03d}.png", 4 + i, 4)
    calls = []

    def stop_after_first(report):
        calls.append(report.seen)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        ingest(workspace, [root], batch_size=10, on_progress=stop_after_first)
    assert store_images.count_images(workspace)["total"] == 10
    seen = []
    report = ingest(workspace, [root], batch_size=10, on_progress=lambda r: seen.append(r.seen))
    assert (report.added, report.unchanged) == (15, 10)
    assert seen == sorted(seen) and seen[-1] == 25
    assert store_images.count_images(workspace)["ok"] == 25


def test_partial_hash_is_marked(workspace, tree):
    ingest(workspace, [tree], hash_bytes=64)
    row = store_images.find_image(workspace, str(tree / "a.png"))
    assert row.sha256.startswith("head64:")


def test_bad_arguments(workspace, tmp_path):
    with pytest.raises(InputError, match="expected an existing folder"):
        ingest(workspace, [tmp_path / "missing"])
    with pytest.raises(InputError, match="at least one folder"):
        ingest(workspace, [])
    with pytest.raises(InputError, match="batch_size"):
        ingest(workspace, [tmp_path], batch_size=0)


def _tiny_png(i: int) -> bytes:
    """A valid 1x1 PNG whose pixel encodes ``i`` (built by hand: Pillow is too slow for 10k)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    pixel = bytes((0, i & 255, (i >> 8) & 255, (i >> 16) & 255))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(pixel))
        + chunk(b"IEND", b"")
    )


@pytest.fixture
def fast_dir(tmp_path: Path):
    """A scratch folder in RAM (/dev/shm) when available: 10k small writes on a shared disk
    are slow, and this test is about ingest, not the disk."""
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        d = Path(tempfile.mkdtemp(prefix="autolabel-test-", dir=shm))
        yield d
        shutil.rmtree(d, ignore_errors=True)
    else:
        yield tmp_path


def test_ten_thousand_tiny_files(workspace, fast_dir):
    root = fast_dir / "10k"
    for d in range(10):
        (root / f"d{d}").mkdir(parents=True)
        for j in range(1000):
            i = d * 1000 + j
            (root / f"d{d}" / f"{i:05d}.png").write_bytes(_tiny_png(i))
    assert Image.open(root / "d3" / "03210.png").getpixel((0, 0)) == (3210 % 256, 3210 // 256, 0)
    report = ingest(workspace, [root], batch_size=500, workers=2)
    assert (report.seen, report.added, report.errors, report.duplicates) == (10000, 10000, 0, 0)
    counts = store_images.count_images(workspace)
    assert counts == {"total": 10000, "ok": 10000, "error": 0, "duplicate": 0}
    again = ingest(workspace, [root])
    assert (again.unchanged, again.added) == (10000, 0)
    ids = [r.id for r in store_images.iter_images(workspace, chunk=777)]
    assert ids == sorted(ids) and len(set(ids)) == 10000
