"""Pure box geometry for export: margins, resize plans, EXIF orientation maps, normalisation.

Boxes are ``(x0, y0, x1, y1)`` floats in pixels of the EXIF-corrected image unless a function
says otherwise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from autolabel.errors import InputError
from autolabel.imageio import EXIF_TRANSPOSE

Box = tuple[float, float, float, float]

RESIZE_MODES = ("fit", "pad", "short-side")

# EXIF orientation -> the transpose that turns the stored (raw) image into the corrected one.
ORIENTATION_OP: dict[int, str | None] = {1: None, **EXIF_TRANSPOSE}
_INVERSE_OP = {
    None: None,
    "FLIP_LEFT_RIGHT": "FLIP_LEFT_RIGHT",
    "FLIP_TOP_BOTTOM": "FLIP_TOP_BOTTOM",
    "ROTATE_180": "ROTATE_180",
    "TRANSPOSE": "TRANSPOSE",
    "TRANSVERSE": "TRANSVERSE",
    "ROTATE_90": "ROTATE_270",
    "ROTATE_270": "ROTATE_90",
}


def clip_box(box: Box, width: int, height: int) -> Box:
    """Clip a box to ``[0, width] x [0, height]`` (order of corners normalised)."""
    x0, y0, x1, y1 = box
    x0, x1 = sorted((x0, x1))
    y0, y1 = sorted((y0, y1))
    return (
        min(max(x0, 0.0), float(width)),
        min(max(y0, 0.0), float(height)),
        min(max(x1, 0.0), float(width)),
        min(max(y1, 0.0), float(height)),
    )


def expand_box(box: Box, margin_pct: float, width: int, height: int) -> Box:
    """Grow a box by ``margin_pct`` percent of its width/height on every side, then clip.

    Args:
        box: ``(x0, y0, x1, y1)`` in pixels.
        margin_pct: percentage (``10`` adds 10% of the box width left and right).
        width: image width (clip bound).
        height: image height (clip bound).
    """
    if margin_pct < 0:
        raise InputError(f"margin: expected a percentage >= 0, got {margin_pct}")
    x0, y0, x1, y1 = clip_box(box, width, height)
    mx = (x1 - x0) * margin_pct / 100.0
    my = (y1 - y0) * margin_pct / 100.0
    return clip_box((x0 - mx, y0 - my, x1 + mx, y1 + my), width, height)


@dataclass(frozen=True)
class ResizePlan:
    """How one crop region becomes a standard-size image.

    Attributes:
        out_size: ``(w, h)`` of the resized crop (before padding).
        canvas: ``(w, h)`` of the final image (equals ``out_size`` except in pad mode).
        offset: where the resized crop is pasted on the canvas.
        scale: output pixels per source pixel (> 1 means upscaling).
        deciding_side: length in source pixels of the side the mode scales to ``size``.
    """

    out_size: tuple[int, int]
    canvas: tuple[int, int]
    offset: tuple[int, int]
    scale: float
    deciding_side: float


def resize_plan(crop_w: float, crop_h: float, size: int, mode: str) -> ResizePlan:
    """Plan the resize of a ``crop_w x crop_h`` region to the standard ``size``.

    Modes:
        ``fit``: the long side becomes ``size`` (aspect kept, not square).
        ``pad``: as ``fit``, then centred on a ``size x size`` canvas (neutral fill).
        ``short-side``: the short side becomes ``size`` (ViT-style resize, no centre crop).
    """
    if mode not in RESIZE_MODES:
        raise InputError(f"resize: expected one of {', '.join(RESIZE_MODES)}, got {mode!r}")
    if size < 1:
        raise InputError(f"size: expected a positive number of pixels, got {size}")
    if crop_w <= 0 or crop_h <= 0:
        raise InputError(f"crop: expected a positive size, got {crop_w}x{crop_h}")
    side = min(crop_w, crop_h) if mode == "short-side" else max(crop_w, crop_h)
    scale = size / side
    out = (max(1, round(crop_w * scale)), max(1, round(crop_h * scale)))
    if mode == "pad":
        canvas = (size, size)
        offset = ((size - out[0]) // 2, (size - out[1]) // 2)
    else:
        canvas, offset = out, (0, 0)
    return ResizePlan(out_size=out, canvas=canvas, offset=offset, scale=scale, deciding_side=side)


def transform_box(box: Box, op: str | None, width: int, height: int) -> Box:
    """Map a box through a PIL transpose of a ``width x height`` image.

    Args:
        box: ``(x0, y0, x1, y1)`` in the image before the transpose.
        op: a ``PIL.Image.Transpose`` name (``ROTATE_90`` is counter-clockwise) or None.
        width: image width before the transpose.
        height: image height before the transpose.

    Returns:
        The same region in the transposed image, corners ordered.
    """
    x0, y0, x1, y1 = box
    w, h = float(width), float(height)
    if op is None:
        pts = [(x0, y0), (x1, y1)]
    elif op == "FLIP_LEFT_RIGHT":
        pts = [(w - x0, y0), (w - x1, y1)]
    elif op == "FLIP_TOP_BOTTOM":
        pts = [(x0, h - y0), (x1, h - y1)]
    elif op == "ROTATE_180":
        pts = [(w - x0, h - y0), (w - x1, h - y1)]
    elif op == "ROTATE_90":  # counter-clockwise: (x, y) -> (y, w - x)
        pts = [(y0, w - x0), (y1, w - x1)]
    elif op == "ROTATE_270":  # clockwise: (x, y) -> (h - y, x)
        pts = [(h - y0, x0), (h - y1, x1)]
    elif op == "TRANSPOSE":  # (x, y) -> (y, x)
        pts = [(y0, x0), (y1, x1)]
    elif op == "TRANSVERSE":  # (x, y) -> (h - y, w - x)
        pts = [(h - y0, w - x0), (h - y1, w - x1)]
    else:
        raise InputError(f"transpose: expected a PIL transpose name, got {op!r}")
    (a, b), (c, d) = pts
    return (min(a, c), min(b, d), max(a, c), max(b, d))


def corrected_to_raw(box: Box, orientation: int, width: int, height: int) -> Box:
    """Map a box in the EXIF-corrected image (``width x height``) to the stored pixels.

    Args:
        box: box in corrected pixels.
        orientation: EXIF orientation tag (1..8).
        width: corrected image width.
        height: corrected image height.
    """
    op = ORIENTATION_OP.get(orientation)
    return transform_box(box, _INVERSE_OP[op], width, height)


def draft_factor(crop_w: float, crop_h: float, out_w: int, out_h: int) -> int:
    """Largest JPEG DCT reduction (1, 2, 4, 8) that keeps the region at least ``out`` size."""
    ratio = min(crop_w / max(out_w, 1), crop_h / max(out_h, 1))
    for d in (8, 4, 2):
        if ratio >= d:
            return d
    return 1


def to_norm1000(box: Box, width: int, height: int) -> tuple[int, int, int, int]:
    """Box in pixels -> integers in 0..1000 (Qwen-VL grounding convention)."""
    x0, y0, x1, y1 = box

    def q(v: float, s: int) -> int:
        return int(min(1000, max(0, round(v / s * 1000))))

    return (q(x0, width), q(y0, height), q(x1, width), q(y1, height))


def from_norm1000(q: tuple[int, int, int, int], width: int, height: int) -> Box:
    """Inverse of :func:`to_norm1000` (pixels, up to the 1/1000 quantisation)."""
    return (q[0] * width / 1000, q[1] * height / 1000, q[2] * width / 1000, q[3] * height / 1000)


def to_yolo(box: Box, width: int, height: int) -> tuple[float, float, float, float]:
    """Box in pixels -> YOLO ``(cx, cy, w, h)`` normalised to 0..1."""
    x0, y0, x1, y1 = box
    return ((x0 + x1) / 2 / width, (y0 + y1) / 2 / height, (x1 - x0) / width, (y1 - y0) / height)


def from_yolo(v: tuple[float, float, float, float], width: int, height: int) -> Box:
    """Inverse of :func:`to_yolo`."""
    cx, cy, w, h = v
    return (
        (cx - w / 2) * width,
        (cy - h / 2) * height,
        (cx + w / 2) * width,
        (cy + h / 2) * height,
    )


def round_box(box: Box, ndigits: int = 2) -> list[float]:
    """Box as a JSON-friendly list rounded to ``ndigits`` (stable text across runs)."""
    return [float(round(v, ndigits)) for v in box]


def is_finite_box(box: Box) -> bool:
    return all(math.isfinite(v) for v in box)
