"""Review previews (issue 15, cause 8): fixed sizes, small decodes, bounded concurrency and cache.

The memory tests run the app in a subprocess under ``resource.RLIMIT_AS``, so a regression
fails the test instead of taking the machine down.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient

from autolabel.review import previews
from autolabel.review.app import create_app
from autolabel.review.previews import PreviewCache, preview_side
from tests.support.review import build_queue

REPO = Path(__file__).resolve().parents[1]
ANN = {"X-Reviewer": "ann"}


@pytest.mark.parametrize(
    ("requested", "max_side", "expected"),
    [
        (None, 1600, 1600),
        (16, 1600, 256),
        (256, 1600, 256),
        (257, 1600, 768),
        (769, 1600, 1024),
        (1025, 1600, 1600),
        (1599, 1600, 1600),
        (10_000, 1600, 1600),
        (0, 1600, 1600),
        (300, 500, 500),
        (100, 500, 256),
        (100, 200, 200),
    ],
)
def test_requested_sides_round_up_to_a_few_fixed_sizes(requested, max_side, expected):
    assert preview_side(requested, max_side) == expected


def test_any_max_side_leaves_at_most_four_cache_files_per_image(workspace, tmp_path):
    from PIL import Image

    build_queue(workspace, 1, image_dir=tmp_path / "img", size=(2000, 1000))
    with TestClient(create_app(workspace.path), base_url="http://127.0.0.1:8765") as c:
        sizes = set()
        for side in range(16, 1600, 53):
            r = c.get(f"/api/images/1?max_side={side}", headers=ANN)
            assert r.status_code == 200
            sizes.add(Image.open(io.BytesIO(r.content)).size)
        assert c.get("/api/images/1?max_side=-5", headers=ANN).status_code == 422
    files = list((workspace.path / "cache" / "review").glob("*.jpg"))
    assert len(files) <= 4, [f.name for f in files]
    assert sizes == {(256, 128), (768, 384), (1024, 512), (1600, 800)}


def _images(folder: Path, n: int, size=(900, 600)) -> list[Path]:
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        p = folder / f"im{i}.png"
        Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(p)
        out.append(p)
    return out


def test_cache_keeps_at_most_max_files_and_max_bytes(tmp_path):
    srcs = _images(tmp_path / "src", 6)
    cache = PreviewCache(tmp_path / "cache", max_side=768, max_files=3)
    for i, src in enumerate(srcs):
        assert cache.get(str(src), f"{i}_v", 768).exists()
    assert len(list((tmp_path / "cache").glob("*.jpg"))) == 3
    assert cache.stats()["files"] == 3
    one = (tmp_path / "cache" / "5_v_768.jpg").stat().st_size
    small = PreviewCache(tmp_path / "cache2", max_side=768, max_bytes=int(2.5 * one))
    for i, src in enumerate(srcs):
        small.get(str(src), f"{i}_v", 768)
    on_disk = sum(f.stat().st_size for f in (tmp_path / "cache2").glob("*.jpg"))
    assert on_disk <= 2.5 * one * 1.2 and small.stats()["bytes"] == on_disk
    # a new server over the same folder applies the bound to what it finds
    again = PreviewCache(tmp_path / "cache", max_side=768, max_files=1)
    assert again.stats()["files"] == 1
    assert len(list((tmp_path / "cache").glob("*.jpg"))) == 1


def test_concurrent_decodes_are_limited_by_a_semaphore(tmp_path, monkeypatch):
    srcs = _images(tmp_path / "src", 6, size=(64, 64))
    real = previews.decode_preview
    lock = threading.Lock()
    running = {"now": 0, "max": 0}

    def slow_decode(path: str, side: int):
        with lock:
            running["now"] += 1
            running["max"] = max(running["max"], running["now"])
        time.sleep(0.15)
        try:
            return real(path, side)
        finally:
            with lock:
                running["now"] -= 1

    monkeypatch.setattr(previews, "decode_preview", slow_decode)
    cache = PreviewCache(tmp_path / "cache", max_side=256, max_decodes=2)
    threads = [
        threading.Thread(target=cache.get, args=(str(s), f"{i}_v", 256)) for i, s in enumerate(srcs)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert running["max"] == 2
    assert len(list((tmp_path / "cache").glob("*.jpg"))) == 6


@pytest.mark.parametrize("mode", ["RGB", "L", "P", "1", "RGBA", "I;16"])
def test_small_decode_matches_the_full_decode(tmp_path, mode):
    import numpy as np
    from PIL import Image

    from autolabel.imageio import open_image

    arr = np.zeros((600, 900, 3), np.uint8)
    arr[100:300, 200:500] = (250, 30, 30)
    im = Image.fromarray(arr)
    im = im.convert(mode) if mode != "I;16" else im.convert("L").convert("I;16")
    src = tmp_path / "x.png"
    im.save(src)
    small = previews.decode_preview(str(src), 256)
    full = open_image(str(src))
    full.thumbnail((256, 256))
    assert small.mode == "RGB" and small.size == full.size == (256, 171)
    diff = np.abs(np.asarray(small, float) - np.asarray(full, float)).mean()
    assert diff < 12, diff


def test_exif_rotated_jpeg_preview_is_upright(tmp_path):
    from PIL import Image

    im = Image.new("RGB", (1200, 400), (0, 90, 200))
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, shown portrait
    src = tmp_path / "r.jpg"
    im.save(src, exif=exif.tobytes())
    w, h = previews.decode_preview(str(src), 256).size
    assert h == 256 and w in (85, 86)


MEMORY_SCRIPT = r"""
import os, resource, sys
from pathlib import Path
from fastapi.testclient import TestClient
from autolabel.config import ReviewConfig
from autolabel.review.app import create_app

def vm_kb():
    for line in open("/proc/self/status"):
        if line.startswith("VmSize:"):
            return int(line.split()[1])

ws, budget_mb, sides = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(",")
app = create_app(ws, ReviewConfig())
with TestClient(app, base_url="http://127.0.0.1:8765") as c:
    c.get("/api/config", headers={"X-Reviewer": "ann"})  # warm the thread pool
    limit = vm_kb() * 1024 + budget_mb * (1 << 20)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    for side in sides:
        r = c.get(f"/api/images/1?max_side={side}", headers={"X-Reviewer": "ann"})
        print(side, r.status_code, len(r.content), flush=True)
        if r.status_code != 200:
            sys.exit(3)
print("OK")
"""


def _memory_run(ws_path: Path, budget_mb: int, sides: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "MALLOC_ARENA_MAX": "1", "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-c", MEMORY_SCRIPT, str(ws_path), str(budget_mb), sides],
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
        cwd=str(REPO),
    )


def _workspace_with(workspace, path: Path) -> None:
    import hashlib

    from autolabel.store.db import utcnow

    with workspace.transaction() as c:
        c.execute(
            "INSERT INTO images(id, path, width, height, status, sha256, added_at) "
            "VALUES (1, ?, 14000, 14000, 'ok', ?, ?)",
            (str(path), hashlib.sha256(path.read_bytes()).hexdigest(), utcnow()),
        )


@pytest.mark.slow
def test_a_24kb_14000px_png_preview_fits_in_400mb(workspace, tmp_path):
    """The attack of issue 15: a 24 KB bilevel 14000x14000 PNG cost ~950 MB per request."""
    from PIL import Image

    src = tmp_path / "bomb.png"
    im = Image.new("1", (14000, 14000))
    im.save(src)
    del im
    assert src.stat().st_size < 30_000
    _workspace_with(workspace, src)
    out = _memory_run(workspace.path, 400, "1599,700,100,16")
    assert out.returncode == 0, out.stdout[-500:] + out.stderr[-1500:]
    assert out.stdout.strip().endswith("OK")


@pytest.mark.slow
def test_a_large_jpeg_preview_decodes_in_draft_mode(workspace, tmp_path):
    """An 8000x6000 JPEG (144 MB as RGB) previews within 100 MB: the DCT scales it down."""
    from PIL import Image

    src = tmp_path / "big.jpg"
    Image.new("RGB", (8000, 6000), (20, 120, 220)).save(src, quality=80)
    _workspace_with(workspace, src)
    out = _memory_run(workspace.path, 100, "1600,256")
    assert out.returncode == 0, out.stdout[-500:] + out.stderr[-1500:]
