"""Proposals: validation messages, indexing, merge, signals."""

from __future__ import annotations

import numpy as np
import pytest

from autolabel.errors import ShapeError
from autolabel.types import Proposals
from tests.support.proposals import mock_proposals

ONE = dict(xyxy=[[0, 0, 1, 1]], score=[0.5], phrase=["a"])


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        ({}, None, None),
        ({"xyxy": [0, 0, 1, 1]}, ShapeError, r"xyxy: expected shape \(n, 4\), got \(4,\)"),
        ({"xyxy": [[0, 0, 1]]}, ShapeError, r"got \(1, 3\)"),
        ({"score": [0.5, 0.6]}, ShapeError, r"score: expected shape \(1,\), got \(2,\)"),
        ({"phrase": []}, ShapeError, "phrase: expected 1 strings, got 0"),
        ({"xyxy": [["a", 0, 1, 1]]}, ShapeError, "xyxy: expected values convertible"),
        (
            {"mask": np.zeros((2, 4, 4))},
            ShapeError,
            r"mask: expected shape \(1, H, W\), got \(2, 4, 4\)",
        ),
        (
            {"data": {"iou": [1, 2]}},
            ShapeError,
            r"data\['iou'\]: expected first dimension 1, got shape \(2,\)",
        ),
        ({"data": {"iou": 3.0}}, ShapeError, "data"),
    ],
)
def test_validation(change, error, message):
    kwargs = {**ONE, **change}
    if error is None:
        p = Proposals(**kwargs)
        assert len(p) == 1 and p.xyxy.dtype == np.float32 and p.score.dtype == np.float32
        assert p.phrase.dtype == object
        return
    with pytest.raises(error, match=message):
        Proposals(**kwargs)


def test_shape_error_is_a_value_error():
    with pytest.raises(ValueError):
        Proposals(xyxy=[[0, 0, 1, 1]], score=[], phrase=["a"])


def test_empty_and_with_keys():
    e = Proposals.empty(data_keys=["iou"])
    assert len(e) == 0 and e.xyxy.shape == (0, 4) and e.data["iou"].shape == (0,)
    assert Proposals(xyxy=[], score=[], phrase=[]).xyxy.shape == (0, 4)


@pytest.fixture
def three():
    return mock_proposals(
        [[0, 0, 10, 10], [5, 5, 20, 20], [1, 2, 3, 4]],
        score=[0.9, 0.2, 0.5],
        phrase=["cat", "dog", "cat"],
        iou=[0.8, 0.1, 0.4],
    )


def test_indexing_int_slice_bool_and_arrays(three):
    one = three[1]
    assert len(one) == 1 and one.phrase[0] == "dog" and one.data["iou"][0] == pytest.approx(0.1)
    assert three[np.int64(2)].score[0] == pytest.approx(0.5)
    np.testing.assert_array_equal(three[1:].score, np.float32([0.2, 0.5]))
    sel = three[three.score > 0.4]
    assert list(sel.phrase) == ["cat", "cat"] and sel.data["iou"].tolist() == pytest.approx(
        [0.8, 0.4]
    )
    assert list(three[[2, 0]].phrase) == ["cat", "cat"]
    assert three[[2, 0]].xyxy[0].tolist() == [1, 2, 3, 4]
    assert len(three[[]]) == 0 and len(three[np.zeros(3, bool)]) == 0
    with pytest.raises(ShapeError, match=r"boolean index: expected shape \(3,\), got \(2,\)"):
        three[np.array([True, False])]
    with pytest.raises(ShapeError, match="expected int or bool array"):
        three[np.array([0.5])]


def test_indexing_keeps_masks():
    mask = np.zeros((2, 4, 5), bool)
    mask[1, 1:3, 1:4] = True
    p = Proposals(xyxy=[[0, 0, 1, 1], [1, 1, 4, 3]], score=[0.1, 0.2], phrase=["a", "b"], mask=mask)
    assert p[1].mask.shape == (1, 4, 5) and p[1].mask.sum() == 6


def test_merge_concatenates_and_fills_missing_signals_with_nan(three):
    other = mock_proposals([[7, 7, 8, 8]], score=[0.7], phrase=["bird"], area=[64.0])
    m = Proposals.merge([three, Proposals.empty(), other])
    assert len(m) == 4
    assert list(m.phrase) == ["cat", "dog", "cat", "bird"]
    assert m.xyxy[-1].tolist() == [7, 7, 8, 8]
    assert np.isnan(m.data["iou"][3]) and m.data["iou"][0] == pytest.approx(0.8)
    assert np.isnan(m.data["area"][:3]).all() and m.data["area"][3] == 64
    assert len(Proposals.merge([])) == 0
    assert len(Proposals.merge([Proposals.empty(), Proposals.empty()])) == 0


def test_merge_masks_kept_only_when_all_have_them_and_shapes_agree():
    def masked(h, w):
        return Proposals(
            xyxy=[[0, 0, 1, 1]], score=[0.5], phrase=["a"], mask=np.ones((1, h, w), bool)
        )

    assert Proposals.merge([masked(4, 4), masked(4, 4)]).mask.shape == (2, 4, 4)
    assert Proposals.merge([masked(4, 4), mock_proposals([[0, 0, 1, 1]])]).mask is None
    with pytest.raises(ShapeError, match="masks must share"):
        Proposals.merge([masked(4, 4), masked(5, 4)])


def test_with_data_and_signals_row(three):
    p = three.with_data(iou=np.float32([1, 2, np.nan]), rank=np.arange(3))
    assert three.data["iou"][0] == pytest.approx(0.8)  # original unchanged (frozen)
    assert p.signals_row(0) == {"iou": 1.0, "rank": 0.0}
    assert p.signals_row(2) == {"rank": 2.0}  # NaN omitted
    with pytest.raises(ShapeError):
        three.with_data(bad=np.zeros(2))
    with pytest.raises(AttributeError):
        three.score = np.zeros(3)  # type: ignore[misc]
