"""Box math: every function checked on data with a known answer, bad shapes rejected, and
one IoU implementation in the whole package."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import numpy as np
import pytest

from autolabel import geometry as G
from autolabel.errors import ShapeError

PACKAGE = Path(G.__file__).resolve().parent


@pytest.mark.parametrize(
    ("a", "b", "expected", "error"),
    [
        ([[0, 0, 10, 10]], [[0, 0, 10, 10]], [[1.0]], None),
        ([[0, 0, 10, 10]], [[5, 0, 15, 10]], [[50 / 150]], None),
        ([[0, 0, 10, 10]], [[20, 20, 30, 30]], [[0.0]], None),
        ([[0, 0, 10, 10]], [[10, 0, 20, 10]], [[0.0]], None),  # touching edges
        ([[0, 0, 10, 10]], [[2, 2, 4, 4]], [[4 / 100]], None),  # contained
        ([[0, 0, 10, 10]], [[0, 0, 0, 0]], [[0.0]], None),  # empty box
        ([[0, 0, 0, 0]], [[0, 0, 0, 0]], [[0.0]], None),  # empty union
        ([[10, 10, 0, 0]], [[0, 0, 10, 10]], [[0.0]], None),  # inverted box has no area
        ([[0, 0, 10, 10], [5, 0, 15, 10]], [[0, 0, 10, 10]], [[1.0], [50 / 150]], None),
        ([], [[0, 0, 1, 1]], np.zeros((0, 1)), None),
        ([[0, 0, 10, 10]], np.zeros((0, 4)), np.zeros((1, 0)), None),
        ([[0, 0, 10]], [[0, 0, 1, 1]], None, ShapeError),
        ([0, 0, 10, 10], [[0, 0, 1, 1]], None, ShapeError),
        ([[0, 0, 1, 1]], [[[0, 0, 1, 1]]], None, ShapeError),
    ],
)
def test_box_iou(a, b, expected, error):
    if error:
        with pytest.raises(error, match=r"expected shape \(n, 4\)"):
            G.box_iou(a, b)
        return
    got = G.box_iou(a, b)
    assert got.shape == np.asarray(expected).shape
    np.testing.assert_allclose(got, expected)


def test_box_iou_is_symmetric_and_matches_a_loop():
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 80, (30, 2))
    a = np.c_[xy, xy + rng.uniform(0, 30, (30, 2))]
    b = a[::-1] + rng.normal(0, 4, a.shape)
    m = G.box_iou(a, b)
    np.testing.assert_allclose(m, G.box_iou(b, a).T)
    loop = np.array([[G.iou(x, y) for y in b] for x in a])
    np.testing.assert_allclose(m, loop)
    assert (m >= 0).all() and (m <= 1).all()


def test_paired_iou_matches_pairwise_diagonal_and_propagates_nan():
    rng = np.random.default_rng(1)
    xy = rng.uniform(0, 50, (20, 2))
    a = np.c_[xy, xy + rng.uniform(1, 30, (20, 2))]
    b = a + rng.normal(0, 5, a.shape)
    np.testing.assert_allclose(G.paired_iou(a, b), np.diag(G.box_iou(a, b)))
    b[3] = np.nan
    out = G.paired_iou(a, b)
    assert np.isnan(out[3]) and np.isfinite(np.delete(out, 3)).all()
    with pytest.raises(ShapeError, match="expected equal shapes"):
        G.paired_iou(a, b[:5])


@pytest.mark.parametrize(
    ("a", "b", "expected", "error"),
    [
        ((0, 0, 10, 10), (5, 0, 15, 10), 50 / 150, None),
        ([0.0, 0.0, 2.0, 2.0], (1.0, 1.0, 3.0, 3.0), 1 / 7, None),
        ((0, 0, 10, 10), (20, 20, 30, 30), 0.0, None),
        ((0, 0, 0, 0), (0, 0, 0, 0), 0.0, None),
        ((0, 0, 10), (0, 0, 1, 1), None, ShapeError),
        ([[0, 0, 1, 1]], (0, 0, 1, 1), None, ShapeError),
    ],
)
def test_scalar_iou(a, b, expected, error):
    if error:
        with pytest.raises(error, match=r"expected two boxes of shape \(4,\)"):
            G.iou(a, b)
        return
    got = G.iou(a, b)
    assert isinstance(got, float)
    assert got == pytest.approx(expected)


@pytest.mark.parametrize(
    ("xyxy", "expected", "error"),
    [
        ([[0, 0, 10, 5], [3, 3, 3, 9], [5, 5, 0, 0]], [50, 0, 0], None),
        (np.zeros((0, 4)), np.zeros(0), None),
        ([[1, 2, 3]], None, ShapeError),
    ],
)
def test_box_area(xyxy, expected, error):
    if error:
        with pytest.raises(error):
            G.box_area(xyxy)
        return
    np.testing.assert_allclose(G.box_area(xyxy), expected)


def test_clip_and_rescale_keep_float32_and_stay_in_the_image():
    boxes = np.array([[-5, 10, 120, 60], [10, 20, 30, 40]], np.float32)
    clipped = G.clip_boxes(boxes, 100, 50)
    assert clipped.dtype == np.float32
    np.testing.assert_allclose(clipped, [[0, 10, 100, 50], [10, 20, 30, 40]])
    # fed at half width, quarter height -> back in original pixels, clipped
    back = G.rescale_boxes(np.array([[10, 10, 60, 30]], np.float32), 0.5, 0.25, 100, 100)
    assert back.dtype == np.float32
    np.testing.assert_allclose(back, [[20, 40, 100, 100]])
    np.testing.assert_allclose(G.rescale_boxes(boxes, 1.0, 1.0, 100, 50), clipped)
    np.testing.assert_allclose(G.clip_boxes([[1, 2, 3, 4]], 10, 10), [[1, 2, 3, 4]])


def test_scale_flip_and_normalised_round_trip():
    rng = np.random.default_rng(0)
    x = np.sort(rng.uniform(0, 100, (20, 2)), axis=1)
    y = np.sort(rng.uniform(0, 90, (20, 2)), axis=1)
    xy = np.c_[x[:, 0], y[:, 0], x[:, 1], y[:, 1]]
    norm = G.xyxy_to_cxcywh_norm(xy, 100, 90)
    assert norm.dtype == np.float32 and (norm >= 0).all() and (norm <= 1).all()
    np.testing.assert_allclose(G.cxcywh_norm_to_xyxy(norm, 100, 90), xy, atol=1e-3)
    np.testing.assert_allclose(G.flip_boxes(G.flip_boxes(xy, 100), 100), xy, atol=1e-9)
    np.testing.assert_allclose(G.flip_boxes([[10, 5, 30, 25]], 100), [[70, 5, 90, 25]])
    np.testing.assert_allclose(G.scale_boxes([[10, 5, 30, 25]], 2, 0.5), [[20, 2.5, 60, 12.5]])
    # a box sticking out of the image is clipped before normalising
    np.testing.assert_allclose(
        G.xyxy_to_cxcywh_norm([[-10, 0, 50, 90]], 100, 90), [[0.25, 0.5, 0.5, 1.0]]
    )


@pytest.mark.parametrize(
    ("wh", "max_size", "expected"),
    [
        ((640, 480), 800, (480, 640, 1.0)),
        ((800, 400), 800, (400, 800, 1.0)),
        ((1600, 400), 800, (200, 800, 0.5)),
        ((1080, 2340), 1333, (1333, 615, 1333 / 2340)),
        ((5000, 1), 100, (1, 100, 0.02)),
    ],
)
def test_input_shape(wh, max_size, expected):
    h, w, scale = G.input_shape(*wh, max_size)
    assert (h, w) == expected[:2]
    assert scale == pytest.approx(expected[2])


# -- one implementation ------------------------------------------------------------------------
def _functions(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            yield node


def _assigned_names(fn: ast.AST) -> set[str]:
    names = set()
    for node in ast.walk(fn):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id.lower())
    return names


def _geometry_names(tree: ast.AST) -> set[str]:
    """Names a module imports from autolabel.geometry (or the module itself)."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "autolabel.geometry":
            names |= {a.asname or a.name for a in node.names}
        if isinstance(node, ast.ImportFrom) and node.module == "autolabel":
            names |= {a.asname or a.name for a in node.names if a.name == "geometry"}
    return names


def test_exactly_one_iou_implementation_in_the_package():
    """Outside autolabel/geometry.py no function may compute an IoU itself: a function whose
    name contains ``iou`` must call into autolabel.geometry, and no function may hold both an
    intersection and a union (the shape of every copy this replaced)."""
    offenders = []
    kernels = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).as_posix()
        tree = ast.parse(path.read_text(encoding="utf-8"))
        from_geometry = _geometry_names(tree)
        for fn in _functions(tree):
            assigned = _assigned_names(fn)
            computes = any(n.startswith("inter") for n in assigned) and any(
                "union" in n for n in assigned
            )
            name = getattr(fn, "name", "<lambda>")
            if rel == "autolabel/geometry.py":
                if computes:
                    kernels.append(name)
                continue
            if computes:
                offenders.append(f"{rel}:{fn.lineno} {name} computes intersection/union")
            if re.search(r"(^|_)iou(_|$)", name.lower()):  # not "suspicious_upscale"
                called = {
                    n.func.id if isinstance(n.func, ast.Name) else getattr(n.func, "attr", "")
                    for n in ast.walk(fn)
                    if isinstance(n, ast.Call)
                }
                if not called & from_geometry:
                    offenders.append(f"{rel}:{fn.lineno} {name} does not use autolabel.geometry")
    assert offenders == []
    assert kernels == ["_iou_kernel"]


def test_the_scan_catches_a_copy(tmp_path):
    """The scan above is not blind: a pasted IoU is found by its intersection and union."""
    copy = (
        "def overlap(a, b):\n"
        "    inter = max(0, min(a[2], b[2]) - max(a[0], b[0]))\n"
        "    union = (a[2] - a[0]) + (b[2] - b[0]) - inter\n"
        "    return inter / union\n"
    )
    fn = next(_functions(ast.parse(copy)))
    names = _assigned_names(fn)
    assert any(n.startswith("inter") for n in names) and "union" in names


def test_mask_boxes_use_pixel_edges_and_nan_for_empty_masks():
    masks = np.zeros((3, 40, 50), bool)
    masks[0, 10:20, 5:25] = True
    masks[1, 7, 9] = True  # one pixel
    got = G.mask_boxes(masks)
    np.testing.assert_allclose(got[:2], [[5, 10, 25, 20], [9, 7, 10, 8]])
    assert np.isnan(got[2]).all()
    with pytest.raises(ShapeError, match=r"expected shape \(n, H, W\)"):
        G.mask_boxes(masks[0])
