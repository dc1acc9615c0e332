"""Regions detector on generated app captures: unseen products, thumbnails, save/load, retrain.

Seed and test captures differ in layout, size and product (half of the test products never
appear in the seed); QUALITY.md's match IoU (0.9) is the bar.
"""

from __future__ import annotations

import numpy as np
import pytest

from autolabel import synth
from autolabel.errors import InputError, ModelError, ShapeError

SEED_PRODUCTS = list(range(100, 110))


def _iou(a, b) -> np.ndarray:
    from autolabel.seed.calibrate import box_iou

    return box_iou(
        np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    )


def _data(scale: float, n_test: int, desktop_prob: float = 0.0):
    # seed: 20 crops of 10 products at two phone sizes; test: other layouts, all three
    # phone sizes, half the products never seen
    seed = synth.make_app_samples(
        20,
        11,
        products=SEED_PRODUCTS,
        with_crops=True,
        scale=scale,
        sizes=synth.PHONE_SIZES[:2],
        desktop_prob=desktop_prob,
    )
    seen = synth.make_app_samples(
        n_test // 2, 12, products=SEED_PRODUCTS[::-1], scale=scale, desktop_prob=desktop_prob
    )
    new = synth.make_app_samples(
        n_test // 2,
        13,
        products=list(range(5000, 5000 + n_test)),
        scale=scale,
        desktop_prob=desktop_prob,
    )
    return seed, seen + new


def _train(seed):
    from autolabel.detect.regions import RegionSample, train_regions

    return train_regions([RegionSample(s.image, [s.box], crops=[s.crop]) for s in seed])


@pytest.fixture(scope="module")
def small_set():
    seed, test = _data(0.5, 20)
    return seed, test, _train(seed)


def _check_quality(test, det) -> dict[str, float]:
    hits = {"seen": [], "new": []}
    for s in test:
        got = det.detect([s.image], [""])[0]
        kind = "seen" if s.product_id in SEED_PRODUCTS else "new"
        iou = float(_iou(got.xyxy[:1], s.box)[0, 0]) if len(got) else 0.0
        hits[kind].append(iou >= 0.9)
        thumbs = [t["box"] for t in s.meta["thumbs"]]
        if iou >= 0.9 and thumbs:
            # a thumbnail (same product included) never outranks the found main photo
            assert _iou(got.xyxy[:1], thumbs).max() < 0.5
        if len(got):
            assert np.all(np.diff(got.score) <= 1e-6), "best first"
            assert np.all((got.score >= 0) & (got.score <= 1))
    return {k: float(np.mean(v)) for k, v in hits.items()}


def test_top1_finds_main_photo_of_seen_and_unseen_products(small_set):
    from autolabel.detect import build_detector

    _, test, model = small_set
    det = build_detector("regions", model=model, device="auto", dtype="auto", text_threshold=0.2)
    rate = _check_quality(test, det)
    assert rate["seen"] >= 0.95, rate
    assert rate["new"] >= 0.9, rate


@pytest.mark.slow
def test_top1_full_size_captures():
    from autolabel.detect import build_detector

    seed, test = _data(1.0, 60)
    det = build_detector("regions", model=_train(seed))
    rate = _check_quality(test, det)
    assert rate["seen"] >= 0.95, rate
    assert rate["new"] >= 0.9, rate


def test_signals_and_scores_separate_right_from_wrong(small_set):
    _, test, model = small_set
    from autolabel.detect.regions import SIGNALS, RegionsDetector

    det = RegionsDetector(model, phrases="product")
    right, wrong = [], []
    for s in test[:10]:
        got = det.detect([s.image], ["ignored"])[0]
        assert set(SIGNALS) <= set(got.data)
        assert set(got.phrase) == {"product"}
        ok = _iou(got.xyxy, s.box)[:, 0] >= 0.9
        right.extend(got.score[ok])
        wrong.extend(got.score[~ok])
    assert right and wrong
    assert np.mean(right) > 0.5 > np.mean(wrong)


def test_save_load_roundtrip(small_set, tmp_path):
    from autolabel.detect import build_detector
    from autolabel.detect.regions import RegionModel

    _, test, model = small_set
    folder = model.save(tmp_path / "regions-v1")
    assert (folder / "model.joblib").is_file() and (folder / "meta.json").is_file()
    loaded = RegionModel.load(folder)
    assert loaded.version == model.version
    a = build_detector("regions", model=model).detect([test[0].image], ["x"])[0]
    b = build_detector("regions", model=str(folder)).detect([test[0].image], ["x"])[0]
    np.testing.assert_allclose(a.xyxy, b.xyxy)
    np.testing.assert_allclose(a.score, b.score)


def test_retrain_from_review_decisions_lowers_rejected_box(small_set):
    from autolabel.detect.regions import RegionSample, RegionsDetector, train_regions

    _, test, model = small_set
    det = RegionsDetector(model, box_threshold=0.0)
    # a review image: its main photo accepted, the best wrong box rejected
    for s in test:
        got = det.detect([s.image], [""])[0]
        wrong = np.flatnonzero(_iou(got.xyxy, s.box)[:, 0] < 0.5)
        if len(wrong) and got.score[wrong[0]] > 0.01:
            break
    bad = got.xyxy[wrong[0]]
    before = float(got.score[wrong[0]])
    new = train_regions([RegionSample(s.image, [s.box], negatives=[bad] * 3)], base=model)
    assert new.meta["base"] == model.version and new.version != model.version
    assert len(new.rows.y) > len(model.rows.y)
    after = RegionsDetector(new, box_threshold=0.0).detect([s.image], [""])[0]
    ov = _iou(after.xyxy, bad)[:, 0]
    after_score = float(after.score[ov.argmax()]) if ov.max() > 0.8 else 0.0
    assert after_score < before


def test_errors(tmp_path, small_set):
    from autolabel.detect import build_detector
    from autolabel.detect.regions import RegionModel, RegionSample, train_regions

    with pytest.raises(ModelError):
        build_detector("regions")
    with pytest.raises(ModelError):
        RegionModel.load(tmp_path)
    with pytest.raises(InputError):
        train_regions([])
    with pytest.raises(ShapeError):
        train_regions([RegionSample(np.zeros((10, 10), np.uint8), [(0, 0, 5, 5)])])
    det = build_detector("regions", model=small_set[2])
    with pytest.raises(ShapeError):
        det.detect([np.zeros((10, 10), np.float32)], [""])
    with pytest.raises(ShapeError):
        det.detect([np.zeros((10, 10, 3), np.uint8)], ["a", "b"])
    with pytest.raises(InputError):
        build_detector("regions", model=small_set[2], box_threshold=1.5)


def test_flat_image_gives_nothing(small_set):
    from autolabel.detect import build_detector

    det = build_detector("regions", model=small_set[2], box_threshold=0.2)
    got = det.detect([np.full((400, 200, 3), 250, np.uint8)], [""])[0]
    assert len(got) == 0 and "layout" in got.data


def test_exemplar_matches_can_join_the_candidates(small_set):
    from autolabel.detect import build_detector

    seed, test, model = small_set
    plain = build_detector("regions", model=model)
    det = build_detector(
        "regions", model=model, exemplars=[s.crop for s in seed[:2]], exemplar_candidates=True
    )
    assert det.model_version != plain.model_version
    s = test[0]
    got = det.detect([s.image], [""])[0]
    assert len(got) and _iou(got.xyxy[:1], s.box)[0, 0] >= 0.9
