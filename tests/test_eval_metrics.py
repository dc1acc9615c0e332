"""Evaluation helpers: truth files, matching, simulated review, budget curves."""

from __future__ import annotations

import json

import numpy as np
import pytest

from autolabel.errors import InputError
from autolabel.evaluate import budget_curve, load_truth, match_count, review_outcome
from autolabel.store.images import ScannedFile, write_scanned


@pytest.fixture
def ws_images(workspace, tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    paths = [str(folder / f"a{i}.png") for i in range(3)]
    write_scanned(
        workspace, [ScannedFile(p, 1, 1, f"s{i}", 100, 80, "PNG") for i, p in enumerate(paths)]
    )
    return workspace, folder


def test_jsonl_truth_relative_paths_and_unmatched(ws_images, tmp_path):
    ws, folder = ws_images
    truth = folder / "truth.jsonl"
    rows = [
        {"image": "a0.png", "boxes": [[1, 2, 3, 4]]},
        {"image": str(folder / "a1.png"), "boxes": []},
        {"image": "elsewhere/a2.png", "boxes": [[0, 0, 5, 5], [5, 5, 9, 9]]},  # by file name
        {"image": "zzz.png", "boxes": [[0, 0, 1, 1]]},
    ]
    truth.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    t = load_truth(ws, truth)
    assert sorted(b.shape[0] for b in t.boxes.values()) == [0, 1, 2]
    assert t.unmatched == ["zzz.png"]


def test_coco_truth_converts_xywh(ws_images):
    ws, folder = ws_images
    coco = {
        "images": [{"id": 7, "file_name": "a1.png"}],
        "annotations": [{"id": 1, "image_id": 7, "bbox": [10, 20, 30, 40], "category_id": 1}],
        "categories": [{"id": 1, "name": "x"}],
    }
    (folder / "c.json").write_text(json.dumps(coco))
    t = load_truth(ws, folder / "c.json")
    (boxes,) = t.boxes.values()
    assert boxes.tolist() == [[10, 20, 40, 60]]


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ('{"image": "a0.png", "boxes": [[1, 2, 3]]}\n', "expected a JSON row"),
        ("not json\n", "expected a JSON row"),
        ('{"images": [{"file_name": "a0.png"}], "annotations": []}', "needs 'id'"),
        ('{"image": "nope.png", "boxes": []}\n', "none of its 1 images"),
        ("", "at least one truth image"),
    ],
)
def test_bad_truth_files(ws_images, content, match):
    ws, folder = ws_images
    (folder / "bad.jsonl").write_text(content)
    with pytest.raises(InputError, match=match):
        load_truth(ws, folder / "bad.jsonl")


def test_missing_truth_file(ws_images, tmp_path):
    with pytest.raises(InputError, match="cannot read truth file"):
        load_truth(ws_images[0], tmp_path / "absent.jsonl")


def test_match_count_is_one_to_one():
    truth = np.array([[0, 0, 10, 10]], float)
    pred = np.array([[0, 0, 10, 10], [0, 0, 10, 11], [50, 50, 60, 60]], float)
    assert match_count(pred, truth) == 1
    assert match_count(pred[2:], truth) == 0
    assert match_count(np.zeros((0, 4)), truth) == 0


def test_review_outcome_accepts_adjusts_and_rejects():
    truth = np.array([[0, 0, 10, 10], [20, 20, 40, 40]], float)
    pred = np.array([[0, 0, 10, 10], [20, 20, 28, 28], [60, 60, 70, 70], [0, 0, 10, 9]], float)
    tp, kept = review_outcome(pred, truth)
    assert tp == 1  # only one box may claim the first truth box
    assert kept == 2  # the second is adjusted onto truth 2; the far one and duplicate go


def test_budget_curve_known_values():
    # 3 images: boxes, correct, kept after review, truth
    n_boxes = np.array([2, 1, 1])
    tp = np.array([0, 1, 1])
    kept = np.array([1, 1, 1])
    n_truth = np.array([1, 1, 1])
    p, r = budget_curve(n_boxes, tp, kept, n_truth, np.array([0, 1, 2]))
    np.testing.assert_allclose(p, [2 / 4, 3 / 3, 3 / 3, 3 / 3])
    np.testing.assert_allclose(r, [2 / 3, 1, 1, 1])
    p, _ = budget_curve(n_boxes, tp, kept, n_truth, np.array([2, 1, 0]))
    np.testing.assert_allclose(p, [2 / 4, 2 / 4, 2 / 4, 1.0])
