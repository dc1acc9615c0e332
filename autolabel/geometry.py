"""The one home of box math: IoU, area, clipping, scaling, flipping, box formats, input shape.

Boxes are ``xyxy`` (``x0, y0, x1, y1``) in pixels unless a function says otherwise. Every
IoU in the package comes from :func:`box_iou` (pairwise), :func:`paired_iou` (row-wise) or
:func:`iou` (two single boxes), which share one kernel, so all stages agree on edge cases:
a degenerate box (zero or negative width or height) has area 0 and IoU 0 with everything.
Export-specific crop math (margins, resize plans, EXIF maps) lives in
:mod:`autolabel.export.geometry`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from autolabel.errors import ShapeError

__all__ = [
    "as_boxes",
    "box_area",
    "box_iou",
    "clip_boxes",
    "cxcywh_norm_to_xyxy",
    "flip_boxes",
    "input_shape",
    "iou",
    "mask_boxes",
    "paired_iou",
    "rescale_boxes",
    "scale_boxes",
    "xyxy_to_cxcywh_norm",
]


def as_boxes(xyxy: Any, name: str = "xyxy", dtype: Any = np.float64) -> np.ndarray:
    """Validate and convert boxes to an ``(n, 4)`` array.

    Args:
        xyxy: anything array-like of shape ``(n, 4)``; an empty input gives ``(0, 4)``.
        name: argument name for the error message.
        dtype: dtype of the result.

    Returns:
        ``(n, 4)`` array of ``dtype``.

    Raises:
        ShapeError: the input is not empty and not of shape ``(n, 4)``.
    """
    arr = np.asarray(xyxy, dtype=dtype)
    if arr.size == 0:
        return arr.reshape(0, 4)
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise ShapeError(f"{name}: expected shape (n, 4), got {arr.shape}")
    return arr


def box_area(xyxy: Any) -> np.ndarray:
    """Areas of ``(n, 4)`` boxes (0 for degenerate boxes); returns ``(n,) float64``."""
    b = as_boxes(xyxy)
    return np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)


def mask_boxes(masks: np.ndarray) -> np.ndarray:
    """Tight ``(n, 4)`` xyxy boxes of ``(n, H, W)`` boolean masks (NaN for empty masks).

    Boxes use the pixel-edge convention: a single pixel at (x, y) gives [x, y, x+1, y+1].
    """
    m = np.asarray(masks).astype(bool, copy=False)
    if m.ndim != 3:
        raise ShapeError(f"masks: expected shape (n, H, W), got {m.shape}")
    n = m.shape[0]
    out = np.full((n, 4), np.nan)
    rows = m.any(axis=2)
    cols = m.any(axis=1)
    for i in range(n):
        ys = np.flatnonzero(rows[i])
        xs = np.flatnonzero(cols[i])
        if ys.size and xs.size:
            out[i] = (xs[0], ys[0], xs[-1] + 1, ys[-1] + 1)
    return out


def _iou_kernel(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of broadcast-compatible ``(..., 4)`` float64 box arrays (the one implementation)."""
    lt = np.maximum(a[..., :2], b[..., :2])
    rb = np.minimum(a[..., 2:], b[..., 2:])
    wh = np.clip(rb - lt, 0, None)
    inter = wh[..., 0] * wh[..., 1]
    area_a = np.clip(a[..., 2] - a[..., 0], 0, None) * np.clip(a[..., 3] - a[..., 1], 0, None)
    area_b = np.clip(b[..., 2] - b[..., 0], 0, None) * np.clip(b[..., 3] - b[..., 1], 0, None)
    union = area_a + area_b - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / union, 0.0)


def box_iou(a: Any, b: Any) -> np.ndarray:
    """IoU of every box in ``a`` with every box in ``b``.

    Args:
        a: ``(n, 4)`` boxes.
        b: ``(m, 4)`` boxes.

    Returns:
        ``(n, m) float64`` in ``[0, 1]``; 0 where the union is empty or a box has NaN.

    Raises:
        ShapeError: an input is not of shape ``(k, 4)``.
    """
    a = as_boxes(a, "a")
    b = as_boxes(b, "b")
    return _iou_kernel(a[:, None, :], b[None, :, :])


def paired_iou(a: Any, b: Any) -> np.ndarray:
    """Row-wise IoU of ``a (n, 4)`` and ``b (n, 4)``; returns ``(n,)``, NaN where either box
    has NaN.

    Raises:
        ShapeError: an input is not ``(n, 4)`` or the two shapes differ.
    """
    a = as_boxes(a, "a")
    b = as_boxes(b, "b")
    if a.shape != b.shape:
        raise ShapeError(f"paired_iou: expected equal shapes, got {a.shape} and {b.shape}")
    out = _iou_kernel(a, b)
    out[np.isnan(a).any(axis=1) | np.isnan(b).any(axis=1)] = np.nan
    return out


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    """IoU of two single ``(x0, y0, x1, y1)`` boxes (0 when the union is empty).

    Raises:
        ShapeError: a box does not have 4 numbers.
    """
    aa = np.asarray(a, np.float64)
    bb = np.asarray(b, np.float64)
    if aa.shape != (4,) or bb.shape != (4,):
        raise ShapeError(f"iou: expected two boxes of shape (4,), got {aa.shape} and {bb.shape}")
    return float(_iou_kernel(aa, bb))


def clip_boxes(xyxy: Any, width: float, height: float) -> np.ndarray:
    """Clip ``(n, 4)`` boxes to ``[0, width] x [0, height]``; keeps a float input's dtype."""
    arr = np.asarray(xyxy)
    dtype = arr.dtype if np.issubdtype(arr.dtype, np.floating) else np.float64
    b = as_boxes(arr, dtype=dtype)
    return np.clip(b, 0, np.array([width, height, width, height], dtype))


def rescale_boxes(
    xyxy: Any, scale_x: float, scale_y: float, width: float, height: float
) -> np.ndarray:
    """Map ``(n, 4)`` boxes from a resized image back to the original and clip them to it.

    Args:
        xyxy: ``(n, 4)`` boxes in pixels of the resized image.
        scale_x: resized width / original width.
        scale_y: resized height / original height.
        width: original width in pixels.
        height: original height in pixels.

    Returns:
        ``(n, 4)`` boxes in original pixels (a float input keeps its dtype).
    """
    arr = np.asarray(xyxy)
    dtype = arr.dtype if np.issubdtype(arr.dtype, np.floating) else np.float64
    b = as_boxes(arr, dtype=dtype)
    if scale_x != 1.0 or scale_y != 1.0:
        b = b / np.array([scale_x, scale_y, scale_x, scale_y], dtype)
    return clip_boxes(b, width, height)


def scale_boxes(xyxy: Any, sx: float, sy: float) -> np.ndarray:
    """``(n, 4) float32`` boxes after resizing their image by ``(sx, sy)``."""
    return as_boxes(xyxy, dtype=np.float32) * np.array([sx, sy, sx, sy], np.float32)


def flip_boxes(xyxy: Any, width: float) -> np.ndarray:
    """Mirror ``(n, 4)`` boxes horizontally in an image of ``width`` pixels.

    Returns:
        ``(n, 4) float64`` boxes, corners ordered.
    """
    b = as_boxes(xyxy)
    return np.stack([width - b[:, 2], b[:, 1], width - b[:, 0], b[:, 3]], axis=1)


def xyxy_to_cxcywh_norm(xyxy: Any, width: float, height: float) -> np.ndarray:
    """Pixel ``(n, 4)`` xyxy -> ``(n, 4) float32`` normalised ``(cx, cy, w, h)`` in [0, 1].

    Corners are clipped to the image first.
    """
    b = as_boxes(xyxy, dtype=np.float32).copy()
    b[:, [0, 2]] = np.clip(b[:, [0, 2]] / float(width), 0, 1)
    b[:, [1, 3]] = np.clip(b[:, [1, 3]] / float(height), 0, 1)
    return np.stack(
        [(b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2, b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]],
        axis=1,
    ).astype(np.float32)


def cxcywh_norm_to_xyxy(boxes: Any, width: float, height: float) -> np.ndarray:
    """Normalised ``(n, 4)`` cxcywh -> pixel ``(n, 4) float32`` xyxy (inverse of
    :func:`xyxy_to_cxcywh_norm` for boxes inside the image)."""
    b = as_boxes(boxes, "boxes", dtype=np.float32)
    cx, cy, w, h = b[:, 0] * width, b[:, 1] * height, b[:, 2] * width, b[:, 3] * height
    return np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1).astype(np.float32)


def input_shape(width: int, height: int, max_size: int) -> tuple[int, int, float]:
    """Shape an image is fed to a detector at: longest side capped at ``max_size``.

    Returns:
        ``(height, width, scale)`` with ``scale = fed / original`` (1.0 if not shrunk).
    """
    longest = max(width, height)
    if longest <= max_size:
        return int(height), int(width), 1.0
    scale = max_size / longest
    return max(1, round(height * scale)), max(1, round(width * scale)), scale


def nms(boxes: Any, scores: Any, iou: float) -> np.ndarray:
    """Greedy non-maximum suppression.

    Args:
        boxes: ``(n, 4)`` xyxy; scores: ``(n,)``; iou: overlap above which the lower box goes.

    Returns:
        indices kept, best first.
    """
    boxes = np.asarray(boxes, np.float64)
    order = np.argsort(-np.asarray(scores), kind="stable")
    keep: list[int] = []
    while len(order):
        i = order[0]
        keep.append(int(i))
        if len(order) == 1:
            break
        ov = box_iou(boxes[i : i + 1], boxes[order[1:]])[0]
        order = order[1:][ov <= iou]
    return np.asarray(keep, np.int64)
