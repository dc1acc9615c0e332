"""Synthetic screenshots and crops: deterministic, boxes inside, the photo really at the box."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from autolabel.synth import (
    PHOTO_NAMES,
    load_photo,
    make_crop,
    make_screenshot,
    make_seed_set,
)


def test_screenshot_is_deterministic() -> None:
    a, box_a, meta_a = make_screenshot(np.random.default_rng(3))
    b, box_b, meta_b = make_screenshot(np.random.default_rng(3))
    c, box_c, _ = make_screenshot(np.random.default_rng(4))
    assert np.array_equal(np.asarray(a), np.asarray(b))
    assert box_a == box_b and meta_a == meta_b
    assert not np.array_equal(np.asarray(a), np.asarray(c)) or box_a != box_c


@pytest.mark.parametrize("seed", range(6))
def test_box_inside_and_photo_present(seed: int) -> None:
    rng = np.random.default_rng(seed)
    img, box, meta = make_screenshot(rng, size=(360, 640))
    assert img.size == (360, 640) and img.mode == "RGB"
    x0, y0, x1, y1 = box
    assert 0 <= x0 < x1 <= 360 and 0 <= y0 < y1 <= 640
    assert x1 - x0 >= 0.4 * 360 * 0.5  # a sizeable product photo
    assert meta["photo"] in PHOTO_NAMES
    # the region holds the (resized) photo: its colours come from the sample photo, and
    # its contents differ from the plain background just outside the status bar
    region = np.asarray(img)[int(y0) : int(y1), int(x0) : int(x1)].astype(float)
    assert region.std() > 10
    # distractors and clutter never overlap the product photo
    for item in meta["distractors"] + meta["clutter"]:
        b = item["box"]
        assert b[2] <= x0 or b[0] >= x1 or b[3] <= y0 or b[1] >= y1


def test_named_photo_is_pasted() -> None:
    img, box, meta = make_screenshot(np.random.default_rng(0), photo="coffee")
    assert meta["photo"] == "coffee"
    region = np.asarray(img)[int(box[1]) : int(box[3]), int(box[0]) : int(box[2])]
    photo = load_photo("coffee")
    # mean colour of the pasted region is close to that of some part of the photo
    assert np.abs(region.mean(axis=(0, 1)) - photo.mean(axis=(0, 1))).max() < 60


def test_crop_matches_region() -> None:
    rng = np.random.default_rng(1)
    shot, box, _ = make_screenshot(rng)
    crop, cbox, meta = make_crop(rng, shot, box, jitter=3, long_side=448, resize_prob=1.0)
    assert max(crop.size) == 448 and meta["resized"]
    assert all(abs(a - b) <= 3 for a, b in zip(cbox, box, strict=True))
    # undo the resize: the crop is the region up to brightness/contrast (high correlation)
    region = np.asarray(shot.crop(cbox).convert("L"), float)
    back = np.asarray(crop.convert("L").resize(shot.crop(cbox).size), float)
    r = np.corrcoef(region.ravel(), back.ravel())[0, 1]
    assert r > 0.9


def test_seed_set_files(tmp_path) -> None:
    truth = make_seed_set(tmp_path / "s", 3, seed=5, n_unrelated=1)
    assert len(truth) == 4
    for t in truth[:3]:
        assert (tmp_path / "s" / t.original).suffix == ".jpg"
        assert Image.open(tmp_path / "s" / t.original).format == "JPEG"
        crop = Image.open(tmp_path / "s" / t.crop)
        assert crop.format == "PNG"
        stem = t.original.split("/")[-1][:-4]
        assert t.crop.split("/")[-1].startswith(stem)
    assert truth[3].original is None and truth[3].crop_box is None
    rows = [json.loads(x) for x in (tmp_path / "s" / "captions.jsonl").read_text().splitlines()]
    assert [r["image"] for r in rows] == [t.crop for t in truth]
    again = make_seed_set(tmp_path / "t", 3, seed=5, n_unrelated=1)
    assert again == truth


def test_unique_mark_changes_only_the_product_photo() -> None:
    plain, box, _ = make_screenshot(np.random.default_rng(8), photo="rocket")
    marked, box_m, _ = make_screenshot(np.random.default_rng(8), photo="rocket", unique_mark=True)
    again, _, _ = make_screenshot(np.random.default_rng(8), photo="rocket", unique_mark=True)
    assert np.array_equal(np.asarray(marked), np.asarray(again))
    assert box == box_m
    x0, y0, x1, y1 = (int(v) for v in box)
    a = np.asarray(plain)[y0:y1, x0:x1].astype(int)
    b = np.asarray(marked)[y0:y1, x0:x1].astype(int)
    assert (np.abs(a - b).sum(axis=2) > 30).mean() > 0.02  # a visible label was drawn
