"""Consumer tests (tests/consumers): the workspace with coloured squares where the boxes
are, and how to reach the consumers (their venvs, the CLI).

Every object is a solid square of its phrase's colour on a grey, colour-free background, so a
consumer's box can be checked against the pixels the consumer loads: the share of the box that
has the colour (``inside``) and the share of the colour that the boxes cover (``coverage``).

Originals (sizes are upright, i.e. after EXIF orientation)::

    plain.jpg                    640x480  red (auto) + green (reviewed: adjusted, captioned)
    rot6.jpg                     480x640  stored landscape with EXIF Orientation 6; red
    ünï cödé with space.jpg      500x400  green square touching the right and bottom border
    a.jpg                        400x300  red
    sub dir/a.jpg                400x300  red (reviewed: accepted) - same stem as a.jpg
    extra/b.png                  320x240  green
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
CONSUMERS_DIR = REPO / "tests" / "consumers"
"""Where the consumer tests and their driver scripts live."""

RED = (230, 20, 20)
GREEN = (20, 200, 20)
COLOURS = {"red box": RED, "green box": GREEN}
REVIEWER_ADJUST = "ann"
REVIEWER_ACCEPT = "bob"
GREEN_CAPTION = "a green tile"


@dataclass(frozen=True)
class Obj:
    """One ground-truth object (box in upright pixels)."""

    phrase: str
    box: tuple[int, int, int, int]
    reviewer: str | None = None
    caption: str | None = None


@dataclass(frozen=True)
class Original:
    """One original file and its objects."""

    rel: str
    size: tuple[int, int]  # upright (w, h)
    objects: tuple[Obj, ...]
    orientation: int = 1


ORIGINALS = (
    Original(
        "plain.jpg",
        (640, 480),
        (
            Obj("red box", (100, 80, 300, 240)),
            Obj("green box", (380, 200, 600, 420), REVIEWER_ADJUST, GREEN_CAPTION),
        ),
    ),
    Original("rot6.jpg", (480, 640), (Obj("red box", (60, 300, 300, 600)),), orientation=6),
    Original("ünï cödé with space.jpg", (500, 400), (Obj("green box", (380, 250, 500, 400)),)),
    Original("a.jpg", (400, 300), (Obj("red box", (50, 50, 200, 150)),)),
    Original("sub dir/a.jpg", (400, 300), (Obj("red box", (150, 100, 350, 250), REVIEWER_ACCEPT),)),
    Original("extra/b.png", (320, 240), (Obj("green box", (20, 30, 180, 200)),)),
)


@dataclass
class Exported:
    """Result of :func:`build_and_export`.

    Attributes:
        photos: folder of the originals.
        workspace: the workspace folder.
        version: the version folder ``OUT/vN``.
        stdout: what ``autolabel export`` printed.
        by_path: absolute original path -> :class:`Original`.
    """

    photos: Path
    workspace: Path
    version: Path
    stdout: str
    by_path: dict[str, Original] = field(default_factory=dict)


def _upright_pixels(orig: Original, seed: int) -> np.ndarray:
    w, h = orig.size
    rng = np.random.default_rng(seed)
    grey = rng.integers(70, 170, size=(h, w, 1), dtype=np.uint8)
    arr = np.repeat(grey, 3, axis=2)  # equal channels: no red, no green anywhere
    for ob in orig.objects:
        x0, y0, x1, y1 = ob.box
        arr[y0:y1, x0:x1] = COLOURS[ob.phrase]
    return arr


def _save(path: Path, upright: np.ndarray, orientation: int) -> None:
    """Store ``upright`` so that applying the EXIF orientation gives it back."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(upright)
    if orientation == 6:  # viewer rotates the stored pixels 90 degrees clockwise
        im = im.transpose(Image.Transpose.ROTATE_90)
    elif orientation != 1:
        raise ValueError(f"orientation: expected 1 or 6, got {orientation}")
    if path.suffix == ".png":
        im.save(path)
        return
    exif = Image.Exif()
    if orientation != 1:
        exif[0x0112] = orientation
    im.save(path, quality=95, exif=exif.tobytes())


def build_workspace(root: Path):
    """Write the originals, ingest them, store one run's boxes, routes and decisions."""
    from autolabel.ingest import ingest
    from autolabel.store import Workspace
    from autolabel.store import exports as store
    from tests.support.proposals import mock_proposals, store_finished_run

    photos = root / "photos"
    for i, orig in enumerate(ORIGINALS):
        _save(photos / orig.rel, _upright_pixels(orig, i), orig.orientation)
    ws = Workspace.create(root / "ws")
    ingest(ws, [photos], workers=1)
    ids = {r["path"]: r["id"] for r in ws.conn.execute("SELECT id, path FROM images")}
    results = []
    for orig in ORIGINALS:
        boxes = []
        for ob in orig.objects:  # the adjusted box starts 5 px off
            off = 5 if ob.reviewer == REVIEWER_ADJUST else 0
            x0, y0, x1, y1 = ob.box
            boxes.append((x0 + off, y0 + off, x1 - off, y1 - off))
        phrases = [ob.phrase for ob in orig.objects]
        image_id = ids[str((photos / orig.rel).resolve())]
        results.append((image_id, mock_proposals(boxes, phrase=phrases)))
    store_finished_run(
        ws,
        results,
        detector="grounding-dino",
        model="tiny",
        model_version="mv-consumers",
        refiner=None,
        prompt="red box . green box",
        box_threshold=0.3,
        text_threshold=0.25,
    )
    pids: dict[tuple[str, int], int] = {}
    for orig in ORIGINALS:
        image_id = ids[str((photos / orig.rel).resolve())]
        rows = ws.conn.execute(
            "SELECT id FROM proposals WHERE image_id = ? ORDER BY id", (image_id,)
        ).fetchall()
        for k, r in enumerate(rows):
            pids[(orig.rel, k)] = r[0]
    store.set_routes(ws, list(pids.values()), "auto")
    for orig in ORIGINALS:
        for k, ob in enumerate(orig.objects):
            pid = pids[(orig.rel, k)]
            if ob.reviewer == REVIEWER_ADJUST:
                store.set_routes(ws, [pid], "review")
                store.add_decision(ws, pid, "adjust", reviewer=ob.reviewer, box=ob.box)
                store.add_decision(ws, pid, "caption", reviewer=ob.reviewer, caption=ob.caption)
            elif ob.reviewer == REVIEWER_ACCEPT:
                store.set_routes(ws, [pid], "review")
                store.add_decision(ws, pid, "accept", reviewer=ob.reviewer)
    return ws, photos


def build_and_export(root: Path, run_cli: Callable[..., Any]) -> Exported:
    """Build the workspace, then ``autolabel export WS --out OUT --formats all`` via the CLI."""
    ws, photos = build_workspace(root)
    ws.close()
    out = root / "out"
    res = run_cli(
        "export", str(root / "ws"), "--out", str(out), "--formats", "all",
        "--min-size", "32", "--workers", "1", "--quiet",
    )  # fmt: skip
    if res.returncode != 0:
        raise AssertionError(f"autolabel export failed:\n{res.stdout}\n{res.stderr}")
    version = out / (out / "LATEST").read_text().strip()
    by_path = {str((photos / o.rel).resolve()): o for o in ORIGINALS}
    return Exported(
        photos=photos,
        workspace=root / "ws",
        version=version,
        stdout=res.stdout + res.stderr,
        by_path=by_path,
    )


# -- reading helpers -----------------------------------------------------------------------
def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def colour_mask(rgb: np.ndarray, colour: Sequence[int]) -> np.ndarray:
    """``(H, W)`` bool: pixels close to ``colour`` (JPEG and resizing tolerant)."""
    diff = np.abs(rgb[..., :3].astype(np.int16) - np.asarray(colour, np.int16)).max(axis=-1)
    return diff < 70


def box_scores(
    rgb: np.ndarray, boxes: Sequence[tuple[str, Sequence[float]]]
) -> list[tuple[float, float]]:
    """Per box ``(inside, coverage)`` in the pixels ``rgb`` ``(H, W, 3)`` a consumer loaded.

    ``inside``: share of the box's pixels that have the phrase's colour. ``coverage``: share
    of that colour's pixels in the image that fall inside any box of the same phrase.
    """
    h, w = rgb.shape[:2]
    out = []
    for phrase, box in boxes:
        mask = colour_mask(rgb, COLOURS[phrase])
        union = np.zeros_like(mask)
        for p, b in boxes:
            if p == phrase:
                x0, y0, x1, y1 = (round(float(v)) for v in b)
                union[max(0, y0) : min(h, y1), max(0, x0) : min(w, x1)] = True
        x0, y0, x1, y1 = (round(float(v)) for v in box)
        region = mask[max(0, y0) : min(h, y1), max(0, x0) : min(w, x1)]
        inside = float(region.mean()) if region.size else 0.0
        coverage = float((mask & union).sum() / max(1, mask.sum()))
        out.append((inside, coverage))
    return out


def assert_on_object(
    rgb: np.ndarray, boxes: Sequence[tuple[str, Sequence[float]]], what: str
) -> None:
    """Every box lies on its coloured square in ``rgb`` and the boxes cover the squares."""
    assert boxes, f"{what}: no boxes"
    for (phrase, box), (inside, coverage) in zip(boxes, box_scores(rgb, boxes), strict=True):
        assert inside >= 0.8 and coverage >= 0.9, (
            f"{what}: {phrase} box {list(box)} on an image of {rgb.shape[1]}x{rgb.shape[0]}: "
            f"expected >= 80% of the box {phrase.split()[0]} and >= 90% of the colour covered, "
            f"got {inside:.0%} and {coverage:.0%}"
        )


def load_rgb_no_exif(path: str | Path) -> np.ndarray:
    """Pixels as PIL gives them without ``exif_transpose`` (torchvision, Open-GroundingDino)."""
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def local_files_path(url: str) -> str:
    """The ``d`` parameter of a Label Studio ``/data/local-files/?d=...`` URL, unquoted."""
    from urllib.parse import parse_qs, urlparse

    m = re.match(r"^/data/local-files/\?", url)
    assert m, f"expected a Label Studio local-files URL, got {url!r}"
    return parse_qs(urlparse(url).query)["d"][0]


# -- reaching the consumers ----------------------------------------------------------------
def _skip_or_fail(msg: str) -> None:
    if os.environ.get("AUTOLABEL_REQUIRE_CONSUMERS") == "1":
        pytest.fail(msg + "; AUTOLABEL_REQUIRE_CONSUMERS=1 makes this a failure")
    pytest.skip(msg)


def require(module: str, extra: str = "dev") -> None:
    """Skip (fail under AUTOLABEL_REQUIRE_CONSUMERS=1) when a consumer package is missing."""
    import importlib.util

    if importlib.util.find_spec(module) is None:
        _skip_or_fail(f"{module} is not installed (pip install -e '.[{extra}]')")


def venv_python(name: str) -> Path:
    """The python of consumer venv ``name`` (``swift`` or ``labelstudio``), or skip/fail."""
    env = f"AUTOLABEL_{name.upper()}_VENV"
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "autolabel"
    venv = Path(os.environ.get(env) or cache / f"{name}-venv")
    py = venv / "bin" / "python"
    if not py.is_file():
        _skip_or_fail(
            f"{name} venv missing at {venv}: build it with "
            f"`tests/consumers/setup_venvs.sh {name}` (or set {env})"
        )
    return py


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """``autolabel ARGS`` in a subprocess, with this checkout's package first on the path."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-c", "from autolabel.cli import main; main()", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=600,
        check=False,
    )


def yolo_split_images(data: dict, split: str) -> list[str]:
    """Image paths of a split of an ultralytics ``check_det_dataset`` dict (folder or list)."""
    from ultralytics.data.utils import IMG_FORMATS

    src = data[split]
    paths = []
    for entry in src if isinstance(src, list) else [src]:
        p = Path(entry)
        if p.is_dir():
            paths += [str(q) for q in sorted(p.rglob("*")) if q.suffix[1:].lower() in IMG_FORMATS]
        else:  # a txt file listing images, relative to the dataset path
            for line in p.read_text(encoding="utf-8").splitlines():
                q = Path(line.strip())
                paths.append(str(q if q.is_absolute() else Path(data["path"]) / q))
    return paths
