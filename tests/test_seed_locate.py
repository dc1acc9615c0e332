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
    """>= 98 % located with IoU >= 0.95 against the region really cropped; no located box
    below IoU 0.9 (a loose seed box poisons calibration, the layout prior and training)."""
    root, truth = seed_set
    pairs = [t for t in truth if t.original is not None]
    good = loose = 0
    for t in pairs:
        m = locate(rgb(root / t.crop), rgb(root / t.original))
        if m.status == "located":
            v = iou(m.box, t.crop_box)
            good += v >= 0.95
            loose += v < 0.9
    assert loose == 0
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


def _framed_photo_case(seed: int, *, square: bool):
    """A colour photo with a black frame pasted into a screenshot; the crop keeps the frame.

    ``square`` resizes the crop to 448 x 448 regardless of its aspect (a FastStone preset),
    which the fixed-aspect template search cannot follow exactly.
    """
    from PIL import ImageOps

    from autolabel.synth import load_photo

    rng = np.random.default_rng(seed)
    shot, _, _ = make_screenshot(rng, size=(360, 640), same_photo_distractors=0)
    photo = Image.fromarray(np.asarray(load_photo("colorwheel")))
    pw = int(360 * rng.uniform(0.5, 0.85))
    ph = round(pw * rng.uniform(0.7, 1.0))
    framed = ImageOps.expand(photo.resize((pw, ph)), border=int(rng.integers(4, 14)), fill=0)
    x = int(rng.integers(0, 360 - framed.width))
    y = int(rng.integers(80, 640 - framed.height - 60))
    shot.paste(framed, (x, y))
    box = (x, y, x + framed.width, y + framed.height)
    crop, cbox, _ = make_crop(rng, shot, box, resize_prob=0.0 if square else 0.8)
    if square:
        crop = crop.resize((448, 448), Image.Resampling.LANCZOS)
    return np.asarray(crop), np.asarray(shot), cbox


@pytest.mark.parametrize("square", [True, False])
def test_framed_photo_is_exact_or_flagged(square: bool) -> None:
    """Cause 10 of issue 19: no confident loose seed box (IoU < 0.9), frame included."""
    found = []
    for seed in range(8):
        crop, shot, cbox = _framed_photo_case(seed, square=square)
        m = locate(crop, shot)
        if m.status == "located":
            found.append((seed, iou(m.box, cbox), m))
        else:
            assert m.box is None
    loose = [(seed, v, m.score) for seed, v, m in found if v < 0.9]
    assert not loose  # (seed, IoU, score) of confident loose boxes
    assert all(m.verify is not None and m.verify >= 0.93 for _, _, m in found)
    assert len(found) >= 3  # the check flags what is loose, not everything


def test_refine_sides_fixes_a_box_off_by_a_few_pixels() -> None:
    from autolabel.seed.locate import full_res_score, refine_sides, to_gray

    rng = np.random.default_rng(3)
    shot, box, _ = make_screenshot(rng, size=(360, 640))
    crop, cbox, _ = make_crop(rng, shot, box, long_side=448, resize_prob=1.0)
    cg, og = to_gray(np.asarray(crop)), to_gray(np.asarray(shot))
    off = (cbox[0] + 5, cbox[1] - 4, cbox[2] - 6, cbox[3] + 3)  # each side a few px off
    score, fixed = refine_sides(cg, og, off)
    assert iou(fixed, cbox) >= 0.98
    assert score > full_res_score(cg, og, off)


def test_loose_box_scores_below_the_strict_bar() -> None:
    """A box that leaves 10 % of each side out cannot pass the full-resolution check."""
    from autolabel.seed.locate import DEFAULT_VERIFY_SCORE, full_res_score, to_gray

    rng = np.random.default_rng(4)
    for _ in range(4):
        shot, box, _ = make_screenshot(rng, size=(360, 640))
        crop, cbox, _ = make_crop(rng, shot, box)
        cg, og = to_gray(np.asarray(crop)), to_gray(np.asarray(shot))
        w, h = cbox[2] - cbox[0], cbox[3] - cbox[1]
        loose = (cbox[0] + 0.1 * w, cbox[1] + 0.1 * h, cbox[2] - 0.1 * w, cbox[3] - 0.1 * h)
        assert full_res_score(cg, og, cbox) >= DEFAULT_VERIFY_SCORE
        assert full_res_score(cg, og, loose) < DEFAULT_VERIFY_SCORE
