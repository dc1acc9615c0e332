"""Edge-snap refiner: loose boxes (5-10 % off per side) come back onto picture edges."""

from __future__ import annotations

import numpy as np
import pytest

from autolabel import synth
from autolabel.errors import InputError, ShapeError
from autolabel.types import Proposals


def _iou(a, b) -> np.ndarray:
    from autolabel.seed.calibrate import box_iou

    return box_iou(
        np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    )


def _loose(rng, box, shape) -> np.ndarray:
    b = np.asarray(box, np.float64)
    w, h = b[2] - b[0], b[3] - b[1]
    d = rng.uniform(0.05, 0.10, 4) * rng.choice([-1, 1], 4) * np.array([w, h, w, h])
    out = b + d
    out[[0, 2]] = out[[0, 2]].clip(0, shape[1])
    out[[1, 3]] = out[[1, 3]].clip(0, shape[0])
    return out


@pytest.fixture(scope="module")
def captures():
    return synth.make_app_samples(24, 21, scale=0.5, desktop_prob=0.2)


def test_snap_lifts_loose_boxes(captures):
    from autolabel.detect import build_refiner

    ref = build_refiner("snap")
    rng = np.random.default_rng(0)
    before, after, shifts = [], [], []
    for s in captures:
        loose = _loose(rng, s.box, s.image.shape)
        props = Proposals(xyxy=[loose], score=[0.5], phrase=["p"], data={"x": [1.0]})
        out = ref.refine(s.image, props)
        assert out.score[0] == 0.5 and out.phrase[0] == "p" and out.data["x"][0] == 1.0
        before.append(_iou(loose, s.box)[0, 0])
        after.append(_iou(out.xyxy, s.box)[0, 0])
        shifts.append(float(out.data["snap_shift"][0]))
    assert np.median(before) < 0.85
    assert np.median(after) >= 0.97, sorted(after)[:5]
    assert np.mean(np.array(after) > np.array(before)) >= 0.9
    assert min(shifts) > 0.01  # every loose box moved, and the move is recorded


def test_box_on_edges_stays(captures):
    from autolabel.detect.snap import SnapRefiner

    s = captures[0]
    out = SnapRefiner().refine(s.image, Proposals(xyxy=[s.box], score=[1.0], phrase=["p"]))
    assert _iou(out.xyxy, s.box)[0, 0] > 0.99
    assert out.data["snap_shift"][0] < 0.005
    assert out.data["snap_edge"][0] > 0.5
    assert out.data["snap_sides"][0] == 4


def test_a_side_on_no_edge_is_counted():
    from autolabel.detect.snap import snap_box

    # a dark picture on a light page; the box's bottom runs 40 px past the picture into the
    # page, where no line is within reach of the snap
    img = np.full((300, 400), 235, np.float32)
    img[50:200, 60:340] = 30
    got, _, sides = snap_box(img, np.array([60.0, 50, 340, 240]), max_shift=0.08)
    np.testing.assert_allclose(got, [60, 50, 340, 240], atol=1)
    assert sides == 3
    _, _, sides = snap_box(img, np.array([61.0, 49, 339, 201]), max_shift=0.08)
    assert sides == 4  # every side near an edge moves onto it
    # a side on the image border is confirmed by it: the picture runs off the capture
    img[:, 300:] = 30
    _, _, sides = snap_box(img, np.array([60.0, 50, 400, 200]), max_shift=0.08)
    assert sides == 4


def test_flat_image_leaves_box_and_empty_passes():
    from autolabel.detect.snap import SnapRefiner

    img = np.full((200, 300, 3), 240, np.uint8)
    box = [50.0, 40.0, 250.0, 160.0]
    out = SnapRefiner().refine(img, Proposals(xyxy=[box], score=[1.0], phrase=["p"]))
    np.testing.assert_allclose(out.xyxy[0], box)
    assert out.data["snap_edge"][0] == 0.0 and out.data["snap_sides"][0] == 0
    empty = SnapRefiner().refine(img, Proposals.empty())
    assert len(empty) == 0 and "snap_shift" in empty.data


def test_nearest_keeps_each_side_on_its_own_edge_of_a_frame():
    from autolabel.detect.snap import snap_box

    # dark page, white 10 px frame, light-grey picture: the frame's outer edge is the stronger
    img = np.full((300, 400), 20, np.float32)
    img[40:260, 50:350] = 255
    img[50:250, 60:340] = 215
    inner, outer = np.array([60.0, 50, 340, 250]), np.array([50.0, 40, 350, 260])
    opts = {"max_shift": 0.08, "min_shift_px": 4, "min_coverage": 0.5, "move_penalty": 0.05}
    for truth in (inner, outer):
        for off in (-2, 0, 2):
            got, _, _ = snap_box(img, truth + off, nearest=True, **opts)
            np.testing.assert_allclose(got, truth, atol=1)
    # without it, the stronger outer edge pulls an inner box across the band
    got, _, _ = snap_box(img, inner, nearest=False, **opts)
    assert _iou(got, outer)[0, 0] > 0.97 and _iou(got, inner)[0, 0] < 0.9


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"max_shift": 0.0}, InputError),
        ({"max_shift": 0.9}, InputError),
        ({"min_coverage": 2}, InputError),
    ],
)
def test_bad_options(kwargs, error):
    from autolabel.detect import build_refiner

    with pytest.raises(error):
        build_refiner("snap", **kwargs)


def test_bad_image():
    from autolabel.detect.snap import SnapRefiner

    with pytest.raises(ShapeError):
        SnapRefiner().refine(np.zeros((10, 10)), Proposals.empty())
