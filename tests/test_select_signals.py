"""Signals: pure functions over arrays, each checked on data with a known answer."""

from __future__ import annotations

import numpy as np
import pytest

from autolabel.errors import ShapeError
from autolabel.select import signals as S


def test_group_competition_margin_and_count():
    score = np.array([0.9, 0.5, 0.7, 0.4, 0.8])
    group = np.array([0, 0, 0, 1, 2])
    margin, comp = S.group_competition(score, group)
    # group 0: best 0.9 (second 0.7) -> +0.2; others minus the best
    np.testing.assert_allclose(margin, [0.2, -0.4, -0.2, 0.4, 0.8])
    np.testing.assert_array_equal(comp, [2, 2, 2, 0, 0])
    with pytest.raises(ShapeError):
        S.group_competition(score, group[:3])


def test_group_codes_combines_keys():
    img = np.array([1, 1, 2, 2, 1])
    phrase = np.array([0, 1, 0, 0, 0])
    codes = S.group_codes(img, phrase)
    assert codes[0] == codes[4] and codes[2] == codes[3]
    assert len({codes[0], codes[1], codes[2]}) == 3


def test_mask_box_iou_high_for_agreeing_mask_zero_for_empty():
    masks = np.zeros((3, 40, 40), bool)
    masks[0, 10:20, 5:25] = True  # exactly the box
    masks[1, 0:5, 0:5] = True  # elsewhere
    boxes = np.array([[5, 10, 25, 20], [20, 20, 40, 40], [0, 0, 10, 10]], float)
    np.testing.assert_allclose(S.mask_boxes(masks)[0], [5, 10, 25, 20])
    iou = S.mask_box_iou(boxes, masks)
    assert iou[0] == pytest.approx(1.0)
    assert iou[1] == 0.0
    assert iou[2] == 0.0  # empty mask


def test_tta_agreement():
    boxes = np.array([[10, 5, 30, 25], [60, 0, 90, 10]], float)
    # the augmented prediction found box 0 (same phrase) but box 1 only under another phrase
    aug = np.array([[11, 5, 31, 25], [60, 0, 90, 10]], float)
    agree = S.tta_agreement(boxes, ["cat", "dog"], aug, ["cat", "bird"])
    assert agree[0] > 0.85 and agree[1] == 0.0
    assert S.tta_agreement(boxes, ["cat", "dog"], np.zeros((0, 4)), []).tolist() == [0, 0]


def test_tta_signal_runs_detector_on_flipped_image(mock_proposals):
    class MirrorDetector:
        """Finds the bright square wherever it is."""

        def detect(self, images, prompts):
            img = images[0]
            ys, xs = np.nonzero(img[..., 0] > 128)
            box = [[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]]
            return [mock_proposals(box, phrase=["obj"])]

    img = np.zeros((50, 80, 3), np.uint8)
    img[10:20, 5:25] = 255
    props = mock_proposals([[5, 10, 25, 20], [50, 30, 70, 45]])
    out = S.tta_signal(MirrorDetector(), img, "obj", props)
    assert out[0] == pytest.approx(1.0) and out[1] == 0.0


def test_crop_embedding_similarity_prefers_the_same_object():
    rng = np.random.default_rng(1)
    obj = rng.integers(0, 255, (30, 30, 3), dtype=np.uint8)
    other = np.full((30, 30, 3), 200, np.uint8)
    other[:, :15] = 20
    img = np.full((100, 100, 3), 128, np.uint8)
    img[10:40, 10:40] = obj
    img[60:90, 60:90] = other
    emb = S.crop_embedding(img, np.array([[10, 10, 40, 40], [60, 60, 90, 90], [5, 5, 5, 5]]))
    assert emb.shape == (3, S.EMBED_DIM)
    assert not emb[2].any()  # empty crop
    seed = S.image_embedding(obj)[None, :]
    sim = S.exemplar_similarity(emb[:2], seed)
    assert sim[0] > 0.99 and sim[1] < 0.5
    assert np.isnan(S.exemplar_similarity(emb, np.zeros((0, S.EMBED_DIM)))).all()


def test_size_aspect_outliers_flag_unusual_boxes():
    rng = np.random.default_rng(2)
    # seed boxes: about 100x100 in 400x800 images
    seed = np.array([[0, 0, 100 + d, 100 - d] for d in rng.integers(-10, 10, 20)], float)
    seed_wh = np.tile([400, 800], (20, 1))
    boxes = np.array([[0, 0, 100, 100], [0, 0, 400, 400], [0, 0, 300, 30]], float)
    size_z, aspect_z = S.size_aspect_outliers(boxes, np.tile([400, 800], (3, 1)), seed, seed_wh)
    assert size_z[0] < 1 and aspect_z[0] < 1
    assert size_z[1] > 3  # 16x the area
    assert aspect_z[2] > 3  # 10:1
    # too few seed boxes: unknown
    size_z, _ = S.size_aspect_outliers(boxes, np.tile([400, 800], (3, 1)), seed[:2], seed_wh[:2])
    assert np.isnan(size_z).all()


def test_every_signal_documents_its_direction():
    for name, text in S.SIGNALS.items():
        assert "higher =" in text, name
