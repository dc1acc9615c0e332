"""Layout prior learned from the seed boxes: where, how large and how shaped crops are.

Hand crops of product screenshots share a layout: the main product picture takes most of
the width, sits in the upper part and has the photo's aspect; the "you may also like"
thumbnails are small, low and often square. A proposal that looks nothing like the seed
boxes, or whose source region is much smaller than the exported crop (a thumbnail upscaled
2x to 448 px), is suspicious however high its detector score.

Pure functions over arrays; :func:`layout_signals` produces the per-proposal signals that
enter calibration (``layout_outlier``, ``upscale``; directions in
:data:`autolabel.select.signals.SIGNALS`), :func:`suspicious_upscale` the hard rule.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from autolabel.errors import ShapeError
from autolabel.geometry import as_boxes

#: Names of the layout features, in column order of :func:`layout_features`.
LAYOUT_FEATURES = ("log_rel_area", "center_x", "center_y", "log_aspect")
#: Smallest robust spread per feature: a seed of near-identical boxes must not make every
#: small deviation an outlier (log area ~ x1.3, 8 % of the image in position, log aspect ~
#: x1.15).
MIN_SPREAD = np.array([0.25, 0.08, 0.08, 0.15])
#: Minimum located seed boxes to learn a layout from.
MIN_SEED_BOXES = 3
#: A crop upscaled more than this (export size / source long side, relative to what the
#: seed crops needed) is suspicious.
UPSCALE_LIMIT = 1.5


@dataclass(frozen=True)
class LayoutPrior:
    """Robust location and spread of the seed boxes' layout features.

    Attributes:
        center: ``(4,)`` medians of :data:`LAYOUT_FEATURES`.
        spread: ``(4,)`` robust spreads (1.4826 x MAD, at least :data:`MIN_SPREAD`).
        upscale_ref: 90th percentile of the seed boxes' upscale factor at the export size
            (1.0 when unknown): seed crops that were themselves upscaled allow as much.
        n: seed boxes it was learned from.
    """

    center: np.ndarray
    spread: np.ndarray
    upscale_ref: float
    n: int


def _wh(wh: np.ndarray, n: int) -> np.ndarray:
    wh = np.asarray(wh, np.float64).reshape(-1, 2) if np.size(wh) else np.zeros((0, 2))
    if wh.shape[0] != n:
        raise ShapeError(f"image sizes: expected shape ({n}, 2), got {wh.shape}")
    return wh


def layout_features(xyxy: np.ndarray, wh: np.ndarray) -> np.ndarray:
    """Per-box layout features relative to the image.

    Args:
        xyxy: ``(n, 4)`` boxes in pixels.
        wh: ``(n, 2)`` width and height of each box's image (NaN = unknown).

    Returns:
        ``(n, 4)`` float64: log(box area / image area), box centre x / image width, box
        centre y / image height, log(box width / box height); NaN where the image size is
        unknown.
    """
    b = as_boxes(xyxy).astype(np.float64)
    size = _wh(wh, b.shape[0])
    bw = np.maximum(b[:, 2] - b[:, 0], 1e-6)
    bh = np.maximum(b[:, 3] - b[:, 1], 1e-6)
    with np.errstate(invalid="ignore", divide="ignore"):
        area = np.log(bw * bh / (size[:, 0] * size[:, 1]))
        cx = (b[:, 0] + b[:, 2]) / 2 / size[:, 0]
        cy = (b[:, 1] + b[:, 3]) / 2 / size[:, 1]
    return np.stack([area, cx, cy, np.log(bw / bh)], axis=1)


def upscale_factor(xyxy: np.ndarray, export_size: int | None) -> np.ndarray:
    """How much a box must be enlarged to reach the export size on its long side.

    Args:
        xyxy: ``(n, 4)`` boxes in pixels.
        export_size: long side of exported crops (None = unknown).

    Returns:
        ``(n,)`` float64 ``export_size / max(box w, box h)`` (> 1 = upscaled); NaN when
        ``export_size`` is None.
    """
    b = as_boxes(xyxy).astype(np.float64)
    if export_size is None:
        return np.full(b.shape[0], np.nan)
    side = np.maximum(np.maximum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]), 1e-6)
    return float(export_size) / side


def fit_layout(
    seed_xyxy: np.ndarray, seed_wh: np.ndarray, *, export_size: int | None = None
) -> LayoutPrior | None:
    """Learn the layout prior from located seed boxes.

    Args:
        seed_xyxy: ``(k, 4)`` seed boxes in their originals' pixels.
        seed_wh: ``(k, 2)`` sizes of those originals.
        export_size: long side of exported crops (for ``upscale_ref``).

    Returns:
        A :class:`LayoutPrior`, or None with fewer than :data:`MIN_SEED_BOXES` usable boxes.
    """
    feats = layout_features(seed_xyxy, seed_wh)
    ok = ~np.isnan(feats).any(axis=1)
    if ok.sum() < MIN_SEED_BOXES:
        return None
    f = feats[ok]
    center = np.median(f, axis=0)
    spread = np.maximum(1.4826 * np.median(np.abs(f - center), axis=0), MIN_SPREAD)
    up = upscale_factor(as_boxes(seed_xyxy)[ok], export_size)
    ref = float(np.nanpercentile(up, 90)) if export_size is not None else 1.0
    return LayoutPrior(center=center, spread=spread, upscale_ref=max(1.0, ref), n=int(ok.sum()))


def layout_signals(
    xyxy: np.ndarray,
    wh: np.ndarray,
    prior: LayoutPrior | None,
    *,
    export_size: int | None = None,
) -> dict[str, np.ndarray]:
    """Per-proposal layout signals for calibration.

    Args:
        xyxy: ``(n, 4)`` proposal boxes in pixels.
        wh: ``(n, 2)`` sizes of their images.
        prior: from :func:`fit_layout` (None = no seed layout: both signals are NaN, the
            calibrator imputes them and nothing counts as suspicious).
        export_size: long side of exported crops (None: ``upscale`` is NaN).

    Returns:
        ``{"layout_outlier": (n,), "upscale": (n,)}``: the root-mean-square robust z of the
        four layout features against the seed (higher = less likely correct) and the
        upscale factor relative to the seed's (``upscale_factor / prior.upscale_ref``;
        higher = less likely correct).
    """
    b = as_boxes(xyxy)
    n = b.shape[0]
    if prior is None:
        return {"layout_outlier": np.full(n, np.nan), "upscale": np.full(n, np.nan)}
    z = (layout_features(b, wh) - prior.center) / prior.spread
    out = np.sqrt(np.mean(z * z, axis=1))
    return {"layout_outlier": out, "upscale": upscale_factor(b, export_size) / prior.upscale_ref}


def suspicious_upscale(upscale: np.ndarray, *, limit: float = UPSCALE_LIMIT) -> np.ndarray:
    """``(n,) bool``: crops upscaled more than ``limit`` x beyond what the seed needed.

    Such a box (typically a thumbnail) is never auto-accepted; a person decides. NaN
    (unknown export size) is not suspicious.
    """
    up = np.asarray(upscale, np.float64).reshape(-1)
    return np.nan_to_num(up, nan=0.0) > limit
