"""Pictures inside a thin uniform frame: the regions detector offers both the picture and the
frame and follows the seed (crops without the frame -> the picture; with it -> the frame)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from autolabel import synth

W, H = 540, 1170  # half a phone capture


def _iou(a, b) -> np.ndarray:
    from autolabel.geometry import box_iou

    return box_iou(
        np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    )


def _framed_capture(rng: np.random.Generator, product_id: int):
    """A phone-like page with one framed product photo, text lines and thumbnails.

    Returns:
        ``(image (H, W, 3) uint8, inner box, outer box)``.
    """
    dark = rng.random() < 0.5
    bg = (24, 26, 30) if dark else (255, 255, 255)
    fc = (255, 255, 255) if dark else tuple(int(v) for v in rng.integers(215, 236, 3))
    ink = (230, 230, 230) if dark else (40, 40, 40)
    img = Image.new("RGB", (W, H), bg)
    d = ImageDraw.Draw(img)
    d.rectangle((0, 0, W, 60), fill=(240, 80, 40) if rng.random() < 0.5 else (60, 60, 200))
    pw = int(W * rng.uniform(0.5, 0.75))
    ph = int(pw * float(rng.choice([1.0, 0.75, 1.25])))
    fr = round(pw * rng.uniform(0.03, 0.05))  # 8-20 px: picture vs frame IoU 0.82-0.89
    px = int(rng.integers(fr + 10, W - pw - fr - 10))
    py = int(rng.integers(90, 160))
    d.rectangle((px - fr, py - fr, px + pw + fr - 1, py + ph + fr - 1), fill=fc)
    img.paste(synth.product_image(product_id, (pw, ph)), (px, py))
    y = py + ph + fr + 24
    for _ in range(3):  # title / price lines
        d.rectangle((20, y, 20 + int(rng.integers(150, 480)), y + 14), fill=ink)
        y += 30
    tw = (W - 80) // 3  # a row of other products' thumbnails
    for k in range(3):
        x = 20 + k * (tw + 20)
        img.paste(synth.product_image(product_id + 1000 + k, (tw, tw)), (x, y + 20))
    inner = (px, py, px + pw, py + ph)
    outer = (px - fr, py - fr, px + pw + fr, py + ph + fr)
    return np.asarray(img), inner, outer


@pytest.fixture(scope="module")
def frames_data():
    rng = np.random.default_rng(7)
    seed = [_framed_capture(rng, 100 + k % 6) for k in range(12)]
    test = [_framed_capture(rng, 5000 + k) for k in range(10)]
    return seed, test


def _train(seed, which: int):
    from autolabel.detect.regions import RegionSample, train_regions

    samples = []
    for img, *boxes in seed:
        x0, y0, x1, y1 = boxes[which]
        samples.append(RegionSample(img, [boxes[which]], crops=[img[y0:y1, x0:x1]]))
    return train_regions(samples)


def _top1_rate(model, test, which: int) -> float:
    from autolabel.detect.regions import RegionsDetector

    det = RegionsDetector(model)
    hits = []
    for img, *boxes in test:
        got = det.detect([img], [""])[0]
        hits.append(len(got) > 0 and _iou(got.xyxy[:1], boxes[which])[0, 0] >= 0.9)
    return float(np.mean(hits))


@pytest.mark.parametrize("which", [0, 1], ids=["seed-without-frame", "seed-with-frame"])
def test_top_box_follows_the_seed_crops(frames_data, which):
    seed, test = frames_data
    model = _train(seed, which)
    # the two boxes differ: IoU of picture and frame is below the match IoU
    assert max(_iou(t[1], t[2])[0, 0] for t in test) < 0.9
    assert _top1_rate(model, test, which) >= 0.8


def test_band_boxes_find_the_picture_and_the_frame(frames_data):
    from autolabel.detect import regions_features as rf

    for img, inner, outer in frames_data[1][:4]:
        p = rf.prepare(img)
        o = np.round(np.asarray([outer]) * p.f).astype(np.int64)
        i = np.round(np.asarray([inner]) * p.f).astype(np.int64)
        got_inner, _ = rf.band_boxes(p, o)
        _, got_outer = rf.band_boxes(p, i)
        assert np.abs(got_inner - i).max() <= 2, (got_inner, i)
        assert np.abs(got_outer - o).max() <= 2, (got_outer, o)
        # and the features say which side the band is on
        X, _, _ = rf.base_features(p, np.concatenate([i, o]), np.zeros(2, np.int64))
        bo, bi = rf.FEATURES.index("band_out"), rf.FEATURES.index("band_in")
        assert X[0, bo] >= 0.75 and X[0, bi] < 0.75
        assert X[1, bi] >= 0.75 and X[1, bo] < 0.75


def test_training_rows_hold_the_other_frame_variant_as_a_negative(frames_data):
    from autolabel.detect import regions_features as rf
    from autolabel.detect.regions import RegionSample, _rows_for

    img, inner, outer = frames_data[0][0]
    bo, bi = rf.FEATURES.index("band_out"), rf.FEATURES.index("band_in")
    for truth, own, other in ((inner, bo, bi), (outer, bi, bo)):
        rows, _ = _rows_for(RegionSample(img, [truth]), 0, np.random.default_rng(0))
        assert (rows.X[rows.truth, own] >= 0.75).all()
        # the other variant is 0.8-0.9 IoU from the truth; it must be a negative, not left out
        assert ((rows.y == 0) & (rows.X[:, other] >= 0.75)).any()
        assert not ((rows.y == 1) & (rows.X[:, other] >= 0.75) & (rows.X[:, own] < 0.75)).any()


def test_seed_frame_preference_permutes_scores_within_a_pair_only(frames_data):
    from autolabel.detect import regions_features as rf

    img, inner, outer = frames_data[1][0]
    p = rf.prepare(img)
    i = np.round(np.asarray(inner) * p.f).astype(np.int64)
    o = np.round(np.asarray(outer) * p.f).astype(np.int64)
    far = np.array([5, 5, 60, 40])  # the header bar: in no pair
    boxes = np.stack([i, o, far])
    X, t, h = rf.base_features(p, boxes, np.zeros(3, np.int64))
    prob = np.array([0.3, 0.9, 0.5])
    stats = rf.seed_stats(X[:1], t[:1], h[:1], [0], [0])
    assert stats.frames.tolist() == [1, 0]  # the seed box is a picture inside a frame
    np.testing.assert_allclose(rf.follow_seed_frames(boxes, X, prob, stats), [0.9, 0.3, 0.5])
    stats.frames = np.array([0.0, 2.0])  # a seed of frames: the frame already leads
    np.testing.assert_allclose(rf.follow_seed_frames(boxes, X, prob, stats), prob)
    stats.frames = np.zeros(2)  # no framed seed box: nothing changes
    np.testing.assert_allclose(rf.follow_seed_frames(boxes, X, prob[::-1], stats), prob[::-1])
