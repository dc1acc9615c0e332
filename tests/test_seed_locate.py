"""Locating hand crops in their originals: accuracy on a generated seed set, no wrong boxes."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from autolabel.seed.locate import chroma_distance, locate
from autolabel.synth import make_crop, make_screenshot, make_seed_set, unrelated_crop


def iou(a, b) -> float:
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def rgb(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


@pytest.fixture(scope="module")
def seed_set(tmp_path_factory):
    root = tmp_path_factory.mktemp("seedset")
    truth = make_seed_set(root, 50, seed=7, n_unrelated=4)
    return root, truth


def test_seed_set_located_accurately(seed_set) -> None:
    """>= 98 % located with IoU >= 0.95 against the region really cropped; no box < 0.5."""
    root, truth = seed_set
    pairs = [t for t in truth if t.original is not None]
    good = wrong = 0
    for t in pairs:
        m = locate(rgb(root / t.crop), rgb(root / t.original))
        if m.status == "located":
            v = iou(m.box, t.crop_box)
            good += v >= 0.95
            wrong += v < 0.5
    assert wrong == 0
    assert good / len(pairs) >= 0.98


def test_unrelated_crops_are_not_found(seed_set) -> None:
    root, truth = seed_set
    originals = [t.original for t in truth if t.original][:4]
    for t in truth:
        if t.original is not None:
            continue
        crop = rgb(root / t.crop)
        for o in originals:
            m = locate(crop, rgb(root / o))
            assert m.status == "not_found", (t.crop, o, m.score)
            assert m.box is None and m.score < 0.7


@pytest.mark.parametrize(
    ("options", "size"),
    [
        ({"brightness": (1.4, 1.4), "contrast": (1.5, 1.5), "resize_prob": 0.0}, (360, 640)),
        ({"brightness": (0.8, 0.8), "contrast": (0.8, 0.8), "resize_prob": 1.0}, (360, 640)),
        # a large screenshot: the crop is *downscaled* to 448
        ({"jitter": 4, "resize_prob": 1.0}, (1080, 1920)),
        # a small crop upscaled a lot
        ({"jitter": 1, "long_side": 900, "resize_prob": 1.0}, (270, 480)),
    ],
)
def test_robust_to_edits_and_scale(options, size, tmp_path) -> None:
    rng = np.random.default_rng(21)
    for _ in range(3):
        shot, box, _ = make_screenshot(rng, size=size)
        crop, cbox, _ = make_crop(rng, shot, box, **options)
        shot.save(tmp_path / "o.jpg", quality=80)
        m = locate(np.asarray(crop), rgb(tmp_path / "o.jpg"))
        assert m.status == "located"
        assert iou(m.box, cbox) >= 0.95


def test_full_size_photo_beats_its_thumbnails() -> None:
    """Two smaller copies of the same photo sit in the clutter; the full-size one must win."""
    rng = np.random.default_rng(5)
    for photo in ("chelsea", "coffee", "moon"):
        shot, box, meta = make_screenshot(rng, photo=photo, same_photo_distractors=2)
        assert any(d["photo"] == photo for d in meta["distractors"])
        crop, cbox, _ = make_crop(rng, shot, box)
        m = locate(np.asarray(crop), np.asarray(shot))
        assert m.status == "located" and iou(m.box, cbox) >= 0.95, photo


def test_flat_crop_gets_no_box() -> None:
    shot, _, _ = make_screenshot(np.random.default_rng(2))
    flat = np.full((100, 120, 3), 200, np.uint8)
    m = locate(flat, np.asarray(shot))
    assert m.status == "not_found" and m.box is None


def test_chroma_distance_separates_colours() -> None:
    rng = np.random.default_rng(0)
    red = unrelated_crop(rng, name="retina")
    img = np.asarray(red)
    grey = np.repeat(img.mean(axis=2, keepdims=True), 3, axis=2).astype(np.uint8)
    box = (0, 0, img.shape[1], img.shape[0])
    assert chroma_distance(img, img, box) < 1e-6
    brighter = np.clip(img.astype(float) * 1.2, 0, 255).astype(np.uint8)
    assert chroma_distance(brighter, img, box) < 0.1
    assert chroma_distance(img, grey, box) > 0.3
