"""Edge-snap refiner: move each side of a box to the strongest straight edge nearby.

Works for boxes from any detector and needs no weights. For each side of a box, the rows
(top/bottom) or columns (left/right) within ``max_shift`` of the box size are scored by how
much of the side's span they cut across a grey-level step (*coverage*: the fraction of the
span whose step exceeds ``edge_threshold``), plus a little for the mean step; the span is
the side's middle part (``span_inset`` off each end, so rounded corners, stickers on a corner
and the loose box's own overhang matter less). The side moves to the best-scoring line when
its coverage reaches ``min_coverage``; a small penalty per pixel moved keeps it in place when
two lines are equally good (a frame's outer and inner edges). The image border counts as a
weak edge, so a picture that touches it is not pulled inwards.

Signals added to ``Proposals.data`` (direction given):

- ``snap_shift``: mean absolute side move / mean box side, before -> after (lower = the
  detector's box already sat on edges; an id of how far the refiner moved it).
- ``snap_edge``: mean coverage of the four final sides in [0, 1] (higher = the box sits on
  sharp straight edges all round, as a picture against flat UI does).
- ``snap_sides``: how many of the four final sides sit on an edge line (coverage >=
  ``min_coverage``) or on the image border, 0-4 (higher = better). A side on no edge is a
  side the pixels do not confirm: measured on the loop benchmark's desktop mix, 4 of the 7
  auto-accepted boxes that were wrong at IoU 0.9 had one, against 5 of 428 right ones
  (select calibrates such boxes apart, :func:`autolabel.select.calibrate.weak_sides`).
"""

from __future__ import annotations

import numpy as np

from autolabel.errors import InputError, ShapeError
from autolabel.types import Proposals

SIGNALS = ("snap_shift", "snap_edge", "snap_sides")
ALL_SIDES = 4
"""``snap_sides`` of a box whose every side is confirmed by an edge or the border."""


def to_gray(image: np.ndarray) -> np.ndarray:
    """``(H, W, 3) uint8`` RGB -> ``(H, W) float32`` grey."""
    img = np.asarray(image)
    if img.ndim == 2:
        return img.astype(np.float32)
    if img.dtype == np.uint8 and img.shape[2] == 3:
        import cv2

        return cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_RGB2GRAY).astype(np.float32)
    f = img[..., :3].astype(np.float32)
    return f[..., 0] * 0.299 + f[..., 1] * 0.587 + f[..., 2] * 0.114


def _line_scores(
    gray: np.ndarray, pos: np.ndarray, lo: int, hi: int, axis: int, threshold: float
) -> tuple[np.ndarray, np.ndarray]:
    """Coverage and mean step of the lines at ``pos`` over the span ``[lo, hi)``.

    The line at ``p`` is the boundary between index ``p - 1`` and ``p`` along ``axis``
    (0 = rows: a horizontal line; 1 = columns: a vertical line). Positions 0 and the size
    (image borders) get coverage 0 here; callers add the border bonus.
    """
    n = gray.shape[axis]
    p = np.clip(pos, 1, n - 1)
    if axis == 0:
        a, b = gray[p - 1, lo:hi], gray[p, lo:hi]
        # a 2-pixel step too: anti-aliased or JPEG-smeared edges spread over two lines
        a2 = gray[np.clip(p - 2, 0, n - 1), lo:hi]
        b2 = gray[np.clip(p + 1, 0, n - 1), lo:hi]
    else:
        a, b = gray[lo:hi, p - 1].T, gray[lo:hi, p].T
        a2 = gray[lo:hi, np.clip(p - 2, 0, n - 1)].T
        b2 = gray[lo:hi, np.clip(p + 1, 0, n - 1)].T
    step = np.maximum(np.abs(b - a), 0.6 * np.abs(b2 - a2))
    cov = (step > threshold).mean(axis=1)
    mag = step.mean(axis=1)
    edge = (pos <= 0) | (pos >= n)
    cov = np.where(edge, 0.0, cov)
    mag = np.where(edge, 0.0, mag)
    return cov, mag


def snap_box(
    gray: np.ndarray,
    box: np.ndarray,
    *,
    max_shift: float = 0.12,
    min_shift_px: int = 3,
    edge_threshold: float = 8.0,
    min_coverage: float = 0.4,
    span_inset: float = 0.12,
    border_score: float = 0.5,
    move_penalty: float = 0.1,
    nearest: bool = False,
) -> tuple[np.ndarray, float]:
    """Snap one box to nearby straight edges.

    Args:
        gray: ``(H, W) float32`` grey image.
        box: ``(4,)`` xyxy in pixels (right/bottom exclusive).
        max_shift: farthest move of a side, as a fraction of the box's width (left/right)
            or height (top/bottom).
        min_shift_px: search at least this many pixels either way.
        edge_threshold: grey-level step that counts as an edge pixel.
        min_coverage: a side moves only to a line covering at least this share of its span.
        span_inset: share of the span left out at each end.
        border_score: score of the image border as a line (a picture touching the border).
        move_penalty: score lost per ``max_shift`` moved.
        nearest: move only within the run of edge lines (coverage >= ``min_coverage``, gaps
            of one pixel at most) nearest to the side, never across a gap to a stronger line
            beyond: a box on the inner edge of a thin frame stays inside it, one on the outer
            edge stays outside (for boxes that already sit within a few pixels of an edge). A
            fainter line (half ``min_coverage``) within 2 px of the side also anchors it.

    Returns:
        ``(new_box (4,) float64, mean coverage of the four final sides, sides on an edge
        line or the image border (0-4))``.
    """
    H, W = gray.shape
    x0, y0, x1, y1 = (float(v) for v in box)
    w, h = max(1.0, x1 - x0), max(1.0, y1 - y0)
    out = [x0, y0, x1, y1]
    covs = []
    on_edge = 0
    for side in range(4):
        horizontal = side in (1, 3)  # top / bottom lines
        size = h if horizontal else w
        r = max(min_shift_px, round(max_shift * size))
        c = round(out[side])
        limit = H if horizontal else W
        pos = np.arange(max(0, c - r), min(limit, c + r) + 1)
        if horizontal:
            lo, hi = round(x0 + span_inset * w), round(x1 - span_inset * w)
            lo, hi = max(0, lo), min(W, max(hi, lo + 1))
        else:
            lo, hi = round(y0 + span_inset * h), round(y1 - span_inset * h)
            lo, hi = max(0, lo), min(H, max(hi, lo + 1))
        if hi - lo < 2 or len(pos) == 0:
            covs.append(0.0)
            on_edge += int(out[side] <= 0 or out[side] >= limit)
            continue
        cov, mag = _line_scores(gray, pos, lo, hi, 0 if horizontal else 1, edge_threshold)
        score = cov + 0.25 * np.minimum(mag / 60.0, 1.0)
        score = np.where((pos == 0) | (pos == limit), border_score, score)
        score = score - move_penalty * np.abs(pos - out[side]) / max(r, 1)
        if nearest:
            # a fainter edge right at the side (a light photo against a light frame) anchors
            # it too, so the side does not jump to a frame's stronger outer edge
            faint = (np.abs(pos - out[side]) <= 2) & (cov >= 0.5 * min_coverage)
            strong = (cov >= min_coverage) | (pos == 0) | (pos == limit) | faint
            score = np.where(_nearest_run(pos, strong, out[side]), score, -np.inf)
        k = int(np.argmax(score))
        at_border = pos[k] in (0, limit)
        if at_border or cov[k] >= min_coverage:
            out[side] = float(pos[k])
            covs.append(border_score if at_border else float(cov[k]))
            on_edge += 1
        else:
            j = int(np.argmin(np.abs(pos - c)))
            covs.append(float(cov[j]))
    if out[2] - out[0] < 2 or out[3] - out[1] < 2:
        return np.asarray([x0, y0, x1, y1], np.float64), 0.0, 0
    return np.asarray(out, np.float64), float(np.mean(covs)), on_edge


def _nearest_run(pos: np.ndarray, strong: np.ndarray, at: float) -> np.ndarray:
    """Mask of the run of ``strong`` positions (one-pixel gaps allowed) nearest to ``at``;
    all True when none is strong (the caller then keeps the side)."""
    idx = np.flatnonzero(strong)
    if not len(idx):
        return np.ones(len(pos), bool)
    p = pos[idx]
    run = np.concatenate([[0], np.cumsum(np.diff(p) > 2)])
    best = run[int(np.argmin(np.abs(p - at)))]
    keep = np.zeros(len(pos), bool)
    keep[idx[run == best]] = True
    return keep


class SnapRefiner:
    """Edge-snap refiner (``Refiner`` protocol): boxes in, tighter boxes out; no weights.

    Args:
        max_shift: farthest move of a side as a fraction of the box size (default 12 %: a
            loose box from a detector is usually within 5–10 %).
        edge_threshold, min_coverage, span_inset, move_penalty: see :func:`snap_box`.
        model, device, dtype: accepted so generic refiner options work; ignored.
    """

    name = "snap"
    model_id = "snap"

    def __init__(
        self,
        *,
        max_shift: float = 0.12,
        edge_threshold: float = 8.0,
        min_coverage: float = 0.4,
        span_inset: float = 0.12,
        move_penalty: float = 0.1,
        model: str | None = None,
        device: str | None = None,
        dtype: str | None = None,
    ) -> None:
        if not 0 < max_shift <= 0.5:
            raise InputError(f"max_shift: expected a fraction in (0, 0.5], got {max_shift}")
        if not 0 <= min_coverage <= 1:
            raise InputError(f"min_coverage: expected a value in [0, 1], got {min_coverage}")
        self.options = {
            "max_shift": float(max_shift),
            "edge_threshold": float(edge_threshold),
            "min_coverage": float(min_coverage),
            "span_inset": float(span_inset),
            "move_penalty": float(move_penalty),
        }
        self.model_version = "snap-1:" + ",".join(f"{v:g}" for v in self.options.values())

    def refine(self, image: np.ndarray, proposals: Proposals) -> Proposals:
        """Snap every box of one image.

        Args:
            image: ``(H, W, 3) uint8`` RGB.
            proposals: boxes in pixels of ``image``.

        Returns:
            Same boxes, scores and phrases, with moved ``xyxy`` and the signals
            ``snap_shift``, ``snap_edge`` and ``snap_sides`` added.
        """
        arr = np.asarray(image)
        if arr.ndim != 3 or arr.shape[2] != 3:
            raise ShapeError(f"image: expected an (H, W, 3) RGB array, got shape {arr.shape}")
        if len(proposals) == 0:
            return proposals.with_data(**{k: np.zeros(0, np.float32) for k in SIGNALS})
        gray = to_gray(arr)
        boxes, shift, edge, sides = snap_boxes(gray, proposals.xyxy, **self.options)
        return Proposals(
            xyxy=boxes.astype(np.float32),
            score=proposals.score,
            phrase=proposals.phrase,
            mask=None,
            data={**proposals.data, "snap_shift": shift, "snap_edge": edge, "snap_sides": sides},
        )


def snap_boxes(
    gray: np.ndarray, xyxy: np.ndarray, **options: float | bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """:func:`snap_box` over ``(n, 4)`` boxes.

    Returns:
        ``(boxes (n, 4) float64, snap_shift (n,) float32, snap_edge (n,) float32,
        snap_sides (n,) float32)``.
    """
    xyxy = np.asarray(xyxy, np.float64).reshape(-1, 4)
    boxes = np.empty_like(xyxy)
    shift = np.zeros(len(xyxy), np.float32)
    edge = np.zeros(len(xyxy), np.float32)
    sides = np.zeros(len(xyxy), np.float32)
    for i, b in enumerate(xyxy):
        nb, e, sides[i] = snap_box(gray, b, **options)
        boxes[i] = nb
        size = max(1.0, ((b[2] - b[0]) + (b[3] - b[1])) / 2)
        shift[i] = float(np.abs(nb - b).mean() / size)
        edge[i] = e
    return boxes, shift, edge, sides
