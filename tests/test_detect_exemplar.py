"""Exemplar detector on generated screenshots: real sample photos amid clutter, JPEG'd."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from autolabel import synth
from autolabel.errors import InputError, ShapeError


def _jpeg(img: Image.Image, quality: int = 70) -> np.ndarray:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    buf.seek(0)
    return np.asarray(Image.open(buf).convert("RGB"))


def _scene(seed: int):
    """A hand crop of a product from one screenshot, and a NEW screenshot (other layout and
    clutter) where that product appears at another size and position, plus the same new
    screenshot without it. Returns (crop, with_product, without_product, true_box, photo)."""
    rng = np.random.default_rng(seed)
    photo = synth.PHOTO_NAMES[seed % len(synth.PHOTO_NAMES)]
    shot, box, _ = synth.make_screenshot(rng, photo)
    crop, _, _ = synth.make_crop(rng, shot, box)
    product = shot.crop(tuple(int(v) for v in box))
    others = [p for p in synth.PHOTO_NAMES if p != photo]
    bg, _, _ = synth.make_screenshot(rng, str(rng.choice(others)))
    s = rng.uniform(0.6, 1.3)
    pw = min(round(product.width * s), bg.width - 10)
    ph = round(pw * product.height / product.width)
    x = int(rng.integers(0, bg.width - pw))
    y = int(rng.integers(60, bg.height - ph - 40))
    new = bg.copy()
    new.paste(product.resize((pw, ph), Image.Resampling.LANCZOS), (x, y))
    return np.asarray(crop), _jpeg(new), _jpeg(bg), (x, y, x + pw, y + ph), photo


def test_finds_seed_product_in_new_screenshots_and_nothing_when_absent():
    from autolabel.detect import build_detector
    from autolabel.geometry import box_iou

    hits, ious, n = 0, [], 6
    for seed in range(n):
        crop, with_p, without_p, box, _ = _scene(seed)
        det = build_detector("exemplar", exemplars=[crop], phrases=["product"])
        found, absent = det.detect([with_p, without_p], ["", ""])
        assert len(absent) == 0, f"seed {seed}: boxes {absent.xyxy} where the product is absent"
        assert len(found) <= 2, "the same-photo match is not repeated"
        if len(found):
            iou = box_iou(found.xyxy[:1], np.asarray([box], np.float32))[0, 0]
            if iou > 0.5:
                hits += 1
                ious.append(iou)
                assert found.phrase[0] == "product"
                assert found.score[0] >= det.box_threshold
    assert hits / n >= 5 / 6
    assert np.mean(ious) > 0.85


def test_several_exemplars_keep_their_phrases():
    from autolabel.detect import build_detector
    from autolabel.geometry import box_iou

    crop_a, with_a, _, box_a, _ = _scene(0)  # astronaut
    crop_b, _, _, _, _ = _scene(1)  # coffee
    det = build_detector("exemplar", exemplars=[crop_a, crop_b], phrases=["suit", "cup"])
    got = det.detect([with_a], ["ignored"])[0]
    assert len(got) >= 1
    best = int(np.argmax(box_iou(got.xyxy, np.asarray([box_a], np.float32))[:, 0]))
    assert got.phrase[best] == "suit"
    assert got.data["exemplar_index"][best] == 0
    assert set(got.data) >= {"match_score", "grad_score", "coarse_score", "second_score", "scale"}
    assert np.all((got.score >= 0) & (got.score <= 1))


def test_phrase_defaults_to_prompt_and_version_tracks_exemplars(tmp_path):
    from autolabel.detect import build_detector

    crop, with_p, _, _, _ = _scene(2)
    path = tmp_path / "crop.png"
    Image.fromarray(crop).save(path)
    det = build_detector("exemplar", exemplars=[path])
    got = det.detect([with_p], ["Orange Cat. toy"])[0]
    assert len(got) >= 1 and got.phrase[0] == "orange cat"
    assert det.model_version == build_detector("exemplar", exemplars=[crop]).model_version
    assert det.model_version != build_detector("exemplar", exemplars=[crop[1:]]).model_version


def test_flat_image_gives_empty():
    from autolabel.detect import build_detector

    crop, _, _, _, _ = _scene(3)
    # the generic options the propose runner passes to every detector are accepted
    det = build_detector(
        "exemplar",
        exemplars=[crop],
        model="ignored",
        device="auto",
        dtype="auto",
        text_threshold=0.25,
    )
    got = det.detect([np.full((300, 200, 3), 255, np.uint8)], ["x"])[0]
    assert len(got) == 0 and "match_score" in got.data


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"exemplars": []}, InputError),
        ({"exemplars": [np.zeros((10, 10), np.uint8)]}, ShapeError),
        ({"exemplars": [np.zeros((2, 2, 3), np.uint8)]}, ShapeError),
        ({"exemplars": [np.zeros((9, 9, 3), np.uint8)] * 2, "phrases": ["a"] * 3}, ShapeError),
        ({"exemplars": [np.zeros((9, 9, 3), np.uint8)], "box_threshold": 2.0}, InputError),
    ],
)
def test_bad_arguments(kwargs, error):
    from autolabel.detect import build_detector

    with pytest.raises(error):
        build_detector("exemplar", **kwargs)


def test_nms_keeps_best_of_overlaps():
    from autolabel.geometry import nms

    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]], np.float32)
    keep = nms(boxes, np.array([0.5, 0.9, 0.7]), 0.3)
    assert keep.tolist() == [1, 2]
