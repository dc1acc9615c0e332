"""Propose with the tiny random-init Grounding DINO: images, registering, comparing runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from autolabel import propose
from autolabel.store import Workspace
from autolabel.store import runs as store_runs

PROMPT = "red square. blue circle"
SHAPES = [(64, 96), (96, 64), (128, 128), (80, 112)]


def make_images(folder: Path, n: int, seed: int = 0) -> list[Path]:
    """n small PNGs (64-128 px, a few shapes) with a coloured square and disc."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        h, w = SHAPES[i % len(SHAPES)]
        arr = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
        im = Image.fromarray(arr)
        d = ImageDraw.Draw(im)
        x, y = int(rng.integers(0, w - 24)), int(rng.integers(0, h - 24))
        d.rectangle([x, y, x + 20, y + 20], fill=(220, 20, 20))
        x, y = int(rng.integers(0, w - 24)), int(rng.integers(0, h - 24))
        d.ellipse([x, y, x + 18, y + 18], fill=(20, 20, 220))
        p = folder / f"im_{i:04d}.png"
        im.save(p)
        out.append(p)
    return out


def register(ws: Workspace, paths: list[Path]) -> None:
    """Add ``paths`` to the images table (unreadable files get a 64x64 placeholder size)."""
    from PIL import Image

    from autolabel.store.images import ScannedFile, write_scanned

    files = []
    for p in paths:
        try:
            with Image.open(p) as im:
                w, h = im.size
        except Exception:
            w, h = 64, 64
        files.append(ScannedFile(path=str(p), size=p.stat().st_size, mtime_ns=0, width=w, height=h))
    write_scanned(ws, files)


def by_path(ws: Workspace, key: str) -> dict[str, list[tuple]]:
    """The results of run ``key`` keyed by image path instead of image id."""
    from autolabel.store.images import get_image

    return {get_image(ws, i).path: v for i, v in store_runs.run_results(ws, key).items()}


def assert_same(a: dict[str, list[tuple]], b: dict[str, list[tuple]], atol: float = 1e-3) -> None:
    """Same images, same number of boxes, boxes/scores equal up to float noise, same phrases.

    At least one box is required: two empty results would prove nothing.
    """
    assert sum(map(len, a.values())) > 0, "no proposals to compare: lower the threshold"
    assert sorted(a) == sorted(b)
    for path in a:
        ra, rb = a[path], b[path]
        assert len(ra) == len(rb), (path, ra, rb)
        if ra:
            na = np.array([r[:5] for r in ra], np.float64)
            nb = np.array([r[:5] for r in rb], np.float64)
            np.testing.assert_allclose(na, nb, atol=atol, err_msg=path)
            assert [r[5] for r in ra] == [r[5] for r in rb]


def settings(tiny_models, **kw) -> propose.ProposeSettings:
    """Propose settings for the tiny Grounding DINO on CPU; ``kw`` overrides fields."""
    base = dict(
        prompt=PROMPT,
        model=str(tiny_models["grounding-dino"]),
        device="cpu",
        box_threshold=0.3,
        text_threshold=0.25,
        batch_size=8,
        workers=2,
    )
    base.update(kw)
    return propose.ProposeSettings.of(**base)


_DETECT_KEYS = frozenset({"detector", "model", "refiner", "refiner_model", "device", "dtype"})


def propose_settings(
    ws: Workspace,
    prompt: str | None = None,
    *,
    box_threshold: float | None = None,
    text_threshold: float | None = None,
    **flat: object,
) -> propose.ProposeSettings:
    """Settings of a propose run the way ``autolabel propose`` builds them.

    ``flat`` names are flags (``model="latest"``, ``batch_size=3``): ``detect.*`` keys go to
    the detect section, the rest to ``propose.*``.
    """
    from autolabel import steps

    flags = {(f"detect.{k}" if k in _DETECT_KEYS else f"propose.{k}"): v for k, v in flat.items()}
    cfg = steps.load_options(ws, None, flags)
    return steps.propose_settings(
        ws, cfg, prompt=prompt, box_threshold=box_threshold, text_threshold=text_threshold
    )


def make_bright_images(folder: Path, n: int, *, seed: int = 0, big_every: int = 0) -> list[Path]:
    """n PNGs of a few sizes, each with one bright square at a random place."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    shapes = [(64, 96), (96, 64), (80, 80)]
    paths = []
    for i in range(n):
        h, w = shapes[i % len(shapes)]
        side = 16
        if big_every and i % big_every == 0:
            h, w, side = h * 4, w * 4, side * 4
        arr = rng.integers(0, 60, (h, w, 3), dtype=np.uint8)
        y, x = int(rng.integers(0, h - side)), int(rng.integers(0, w - side))
        arr[y : y + side, x : x + side] = 250
        arr[0, 0, :] = 40 + (i % 7)
        p = folder / f"img_{i:04d}.png"
        Image.fromarray(arr).save(p)
        paths.append(p)
    return paths
