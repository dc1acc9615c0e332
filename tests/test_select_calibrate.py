"""Calibration on synthetic data with known structure; Wilson interval against known values."""

from __future__ import annotations

import numpy as np
import pytest

from autolabel.errors import InputError, ShapeError
from autolabel.select.calibrate import (
    FEATURES,
    LazyFeatures,
    feature_matrix,
    fit_calibrator,
    reliability,
)
from autolabel.select.stats import wilson_interval


def _data(n: int, seed: int = 0):
    """Half correct, half wrong; the raw score is weak, token_score is informative."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    score = np.clip(0.6 + 0.05 * y + rng.normal(0, 0.15, n), 0, 1)
    token = np.clip(np.where(y == 1, 0.8, 0.3) + rng.normal(0, 0.1, n), 0, 1)
    sam = np.where(rng.random(n) < 0.3, np.nan, rng.random(n))  # noise with holes
    X = feature_matrix(score, {"token_score": token, "sam_iou": sam})
    return X, y


def test_feature_matrix_layout_and_missing():
    X = feature_matrix(np.array([0.5, 0.7]), {"n_competing": np.array([0, 3]), "foo": [1, 2]})
    assert X.shape == (2, len(FEATURES))
    assert X[:, FEATURES.index("score")].tolist() == [0.5, 0.7]
    assert X[1, FEATURES.index("n_competing")] == pytest.approx(np.log1p(3))
    assert np.isnan(X[:, FEATURES.index("sam_iou")]).all()
    with pytest.raises(ShapeError, match="expected 2 values"):
        feature_matrix(np.array([0.5, 0.7]), {"token_score": np.array([1.0])})


def test_logistic_separates_the_wrong_half_and_is_calibrated():
    X, y = _data(400)
    cal = fit_calibrator(X, y)
    assert cal.fitted and cal.method == "logistic"
    assert "token_score" in cal.columns and "sam_iou" in cal.columns
    Xt, yt = _data(2000, seed=1)
    p = cal.predict(Xt)
    assert p[yt == 0].mean() < 0.3 < 0.7 < p[yt == 1].mean()
    assert np.median(p[yt == 1]) > 0.9
    rel = reliability(p, yt)
    assert rel["ece"][0] < 0.08
    # better than the raw score at ranking correct above wrong
    from sklearn.metrics import roc_auc_score

    assert roc_auc_score(yt, p) > roc_auc_score(yt, Xt[:, 0]) + 0.2
    info = cal.describe()
    assert info["coefficients"]["token_score"] > 0
    assert info["n_examples"] == 400 and info["n_correct"] == 200


def test_isotonic_is_monotone_in_score():
    X, y = _data(300)
    cal = fit_calibrator(X, y, method="isotonic")
    s = np.linspace(0, 1, 50)
    p = cal.predict(feature_matrix(s, {}))
    assert np.all(np.diff(p) >= -1e-12)
    assert cal.columns == ["score"]


@pytest.mark.parametrize(
    ("n", "positives", "reason"),
    [(10, 5, "only 10 labelled examples"), (100, 1, "almost all one class"), (50, 50, "one class")],
)
def test_fallback_to_raw_score_says_why(n, positives, reason):
    X, _ = _data(n)
    y = np.zeros(n, int)
    y[:positives] = 1
    cal = fit_calibrator(X, y)
    assert not cal.fitted and cal.method == "raw-score"
    assert reason in cal.reason
    np.testing.assert_allclose(cal.predict(X), np.clip(X[:, 0], 0, 1))


def test_bad_inputs():
    X, y = _data(40)
    with pytest.raises(InputError, match="calibration method"):
        fit_calibrator(X, y, method="magic")
    with pytest.raises(ShapeError):
        fit_calibrator(X[:, :3], y)
    cal = fit_calibrator(X, y)
    with pytest.raises(ShapeError):
        cal.predict(X[:, :3])


@pytest.mark.parametrize(
    ("k", "n", "low", "high"),
    [
        # reference values (Wilson 1927; e.g. statsmodels proportion_confint method="wilson")
        (81, 263, 0.2553, 0.3662),
        (0, 10, 0.0, 0.2775),
        (10, 10, 0.7225, 1.0),
        (5, 10, 0.2366, 0.7634),
        (95, 100, 0.8882, 0.9785),
    ],
)
def test_wilson_interval_known_values(k, n, low, high):
    lo, hi = wilson_interval(k, n)
    assert lo == pytest.approx(low, abs=1e-4)
    assert hi == pytest.approx(high, abs=1e-4)


def test_wilson_interval_edges():
    assert wilson_interval(0, 0) == (0.0, 1.0)
    with pytest.raises(InputError):
        wilson_interval(5, 3)


def test_wilson_covers_the_truth_about_95_percent():
    rng = np.random.default_rng(0)
    p, n, trials = 0.93, 60, 2000
    ks = rng.binomial(n, p, trials)
    covered = np.mean([lo <= p <= hi for lo, hi in (wilson_interval(int(k), n) for k in ks)])
    assert 0.92 <= covered <= 0.985


def test_lazy_features_give_the_feature_matrix_rows() -> None:
    rng = np.random.default_rng(2)
    n = 70
    score = rng.random(n)
    sig = {
        "token_score": rng.random(n),
        "n_competing": rng.integers(0, 5, n),
        "other": rng.random(n),
    }
    X = feature_matrix(score, sig)
    lazy = LazyFeatures(score, sig)
    idx = np.array([3, 0, 69, 3])
    assert len(lazy) == n
    np.testing.assert_array_equal(lazy.rows(idx), X[idx])
    got = [(r, x) for r, x in lazy.chunks(size=32)]
    assert [r.size for r, _ in got] == [32, 32, 6]
    np.testing.assert_array_equal(np.concatenate([x for _, x in got]), X)
    with pytest.raises(ShapeError, match="token_score"):
        LazyFeatures(score, {"token_score": np.zeros(n - 1)})
