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


# -- realistic app captures ------------------------------------------------------------------
def test_product_image_is_reproducible_by_id() -> None:
    from autolabel.synth import product_image

    a = np.asarray(product_image(7, (120, 90)), float)
    b = np.asarray(product_image(7, (120, 90)), float)
    other = np.asarray(product_image(8, (120, 90)), float)
    variant = np.asarray(product_image(7, (120, 90), variant=1), float)
    big = np.asarray(product_image(7, (240, 180)).resize((120, 90)), float)
    assert np.array_equal(a, b)
    assert np.abs(a - other).mean() > 10
    assert np.abs(a - variant).mean() > 3  # a colour variant
    assert np.abs(a - big).mean() < np.abs(a - other).mean() / 2  # same product at any size


@pytest.mark.parametrize("seed", range(5))
def test_app_screenshot_layout(seed: int) -> None:
    from autolabel.synth import PHONE_SIZES, make_app_screenshot

    rng = np.random.default_rng(seed)
    size = PHONE_SIZES[seed % 3]
    size = (size[0] // 2, size[1] // 2)
    img, box, meta = make_app_screenshot(rng, product_id=3, size=size)
    W, H = size
    assert img.size == size and meta["product_id"] == 3
    x0, y0, x1, y1 = box
    assert 0 <= x0 < x1 <= W and 0 <= y0 < y1 <= H
    assert 0.59 * W <= x1 - x0 <= W  # 60-100 % of the width
    assert y0 < H * 2 / 3  # upper two thirds
    region = np.asarray(img)[int(y0) : int(y1), int(x0) : int(x1)].astype(float)
    assert region.std() > 8  # a picture, not flat UI
    assert meta["thumbs"], "rows of thumbnails"
    for t in meta["thumbs"]:
        b = t["box"]
        assert b[2] <= x0 or b[0] >= x1 or b[3] <= y0 or b[1] >= y1
    again = make_app_screenshot(np.random.default_rng(seed), product_id=3, size=size)
    assert np.array_equal(np.asarray(img), np.asarray(again[0])) and again[1] == box


def test_desktop_capture_has_side_bars() -> None:
    from autolabel.synth import make_app_screenshot

    img, box, meta = make_app_screenshot(np.random.default_rng(1), desktop=True)
    assert img.size == (1920, 1080) and meta["layout"]["desktop"]
    left = meta["layout"]["content"][0]
    assert left > 0 and box[0] > left


def test_encodings_and_exif_orientation() -> None:
    from autolabel.synth import decode_image, encode_image, make_app_screenshot

    img, _, _ = make_app_screenshot(np.random.default_rng(2), size=(270, 585))
    ref = np.asarray(img).astype(float)
    rng = np.random.default_rng(0)
    suffixes = set()
    for _ in range(30):
        data, suffix = encode_image(img, rng, exif_prob=1.0)
        suffixes.add(suffix)
        arr = decode_image(data)
        assert arr.shape == ref.shape  # EXIF-rotated files read back upright
        assert np.abs(arr - ref).mean() < 6
    assert suffixes == {".jpg", ".png", ".webp"}


def test_app_samples_with_hand_crops(tmp_path) -> None:
    from autolabel.imageio import load_rgb
    from autolabel.synth import encode_image, make_app_samples

    samples = make_app_samples(3, 4, products=[11, 12], with_crops=True, scale=0.4)
    assert [s.product_id for s in samples] == [11, 12, 11]
    for s in samples:
        assert s.crop is not None and s.crop_name.endswith(".png")
        x0, y0, x1, y1 = (int(v) for v in s.box)
        region = Image.fromarray(s.image[y0:y1, x0:x1]).convert("L").resize((64, 64))
        crop = Image.fromarray(s.crop).convert("L").resize((64, 64))
        r = np.corrcoef(np.asarray(region, float).ravel(), np.asarray(crop, float).ravel())[0, 1]
        assert r > 0.8
    # an EXIF-rotated JPEG on disk loads upright through the project's reader
    img = Image.fromarray(samples[0].image)
    rng = np.random.default_rng(5)
    while True:
        data, suffix = encode_image(img, rng, exif_prob=1.0)
        if suffix == ".jpg":
            break
    path = tmp_path / "shot.jpg"
    path.write_bytes(data)
    assert Image.open(path).getexif().get(0x0112) in (3, 6, 8)
    assert load_rgb(path).shape == samples[0].image.shape
