"""Candidate rectangles from image structure, and their features, for the ``regions`` detector.

Everything here works on a downscaled copy of the capture (short side ~``SMALL_SHORT``):

1. **UI colours**: the few colours that cover large flat areas (page background, cards,
   side bars, frames); a pixel within ``COLOR_TOL`` of one of them is *background*.
2. **Components**: connected components of the non-background mask (against all UI colours,
   and against the most common one only, so a picture inside a card and the card are both
   found), at two closing sizes, plus components of each UI colour itself (a flat-coloured
   photo background inside the page).
3. **Rectangle fits** of each component: its bounding box; the box with rows/columns
   trimmed where the component's span is short (a sticker or price tag sticking out of a
   corner); the box with uniform outer bands peeled off (a frame).

Features (one row per candidate, :data:`FEATURES`) describe position and size, texture,
colour, how much of the box and of a ring around it is background, how straight and strong
its four borders are, text-likeness, and how similar it looks to the seed crops.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

#: Short side of the downscaled copy used for candidates and features (long side capped).
SMALL_SHORT = 300
SMALL_LONG_MAX = 720
#: Colour distance (max over channels) within which a pixel belongs to a UI colour.
COLOR_TOL = 7
#: A colour is a UI colour when it covers at least this share of the image.
UI_MIN_SHARE = 0.005
#: Side of the grey thumbnails compared with seed crops.
THUMB = 12
#: Frame bands (a picture inside a thin uniform card border): widest band as a share of the
#: box side and in small pixels, most grey-level spread inside it, least coverage of the line
#: that closes it, and most grey-level difference between the bands of two sides.
BAND_MAX_FRAC = 0.08
BAND_MAX_PX = 20
BAND_STD = 8.0
BAND_LINE_COV = 0.6
BAND_COLOR_TOL = 12.0
BAND_SEGMENTS = 5

FEATURES: tuple[str, ...] = (
    "cx",
    "cy",
    "w",
    "h",
    "x0",
    "y0",
    "x1",
    "y1",
    "log_aspect",
    "area",
    "area_vs_max",
    "log_px",
    "bg_inside",
    "bg_ring_out",
    "bg_ring_in",
    "grad_inside",
    "std_inside",
    "sat_inside",
    "edge_min",
    "edge_mean",
    "edge_mag",
    "ring_contrast",
    "inner_line",
    "band_out",
    "band_in",
    "band_out_w",
    "band_in_w",
    "text_like",
    "n_colors",
    "contained_by",
    "contains",
    "source",
    "seed_sim",
    "seed_hist",
    "d_w",
    "d_h",
    "d_cx",
    "d_cy",
    "d_aspect",
    "d_px",
    "layout",
)


#: Columns computed (layout statistics, signals) but not given to the classifier: a picture's
#: height and aspect follow its product, not the layout, so a seed of a few products would
#: teach the scorer the wrong thing.
NOT_SCORED: tuple[str, ...] = ("h", "y1", "log_aspect", "area", "d_h", "d_aspect")
SCORED = np.array([i for i, f in enumerate(FEATURES) if f not in NOT_SCORED], np.int64)


@dataclass
class Prepared:
    """Maps of one downscaled image shared by candidates and features."""

    small: np.ndarray  #: (h, w, 3) uint8
    f: float  #: small pixels per original pixel
    full_hw: tuple[int, int]
    gray: np.ndarray  #: (h, w) float32
    bg: np.ndarray  #: (h, w) bool, pixel of a UI colour
    ui_colors: np.ndarray  #: (k, 3)
    near: list[np.ndarray]  #: per UI colour, (h, w) bool: pixel of that colour
    ii_bg: np.ndarray
    ii_grad: np.ndarray
    ii_g: np.ndarray
    ii_g2: np.ndarray
    ii_sat: np.ndarray
    ii_ex: np.ndarray  #: integral of vertical-line edge map (steps along x)
    ii_ey: np.ndarray  #: integral of horizontal-line edge map (steps along y)
    ii_sx: np.ndarray  #: integral of the x-step map before the one-pixel tolerance
    ii_sy: np.ndarray  #: integral of the y-step map before the one-pixel tolerance
    ii_mx: np.ndarray
    ii_my: np.ndarray
    ii_rgb: np.ndarray  #: (h+1, w+1, 3) float64 integral of ``small``


def _integral(a: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.integral(np.ascontiguousarray(a, dtype=np.float32), sdepth=cv2.CV_64F)


def _rect_sum(ii: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Sums over ``(n, 4)`` integer boxes (clipped) from an integral image."""
    h, w = ii.shape[0] - 1, ii.shape[1] - 1
    # np.minimum/np.maximum: np.clip's per-call overhead dominates on these small arrays
    x0 = np.minimum(np.maximum(b[:, 0], 0), w)
    x1 = np.minimum(np.maximum(b[:, 2], 0), w)
    y0 = np.minimum(np.maximum(b[:, 1], 0), h)
    y1 = np.minimum(np.maximum(b[:, 3], 0), h)
    return ii[y1, x1] - ii[y0, x1] - ii[y1, x0] + ii[y0, x0]


def _area(b: np.ndarray) -> np.ndarray:
    return np.maximum(b[:, 2] - b[:, 0], 0) * np.maximum(b[:, 3] - b[:, 1], 0)


def _color_key(small: np.ndarray) -> np.ndarray:
    """15-bit colour key (5 bits per channel) per pixel: ``(h, w) int32``."""
    q = (small >> 3).astype(np.int32)
    return (q[..., 0] << 10) | (q[..., 1] << 5) | q[..., 2]


def ui_colors(
    small: np.ndarray, key: np.ndarray, *, min_share: float = UI_MIN_SHARE, k: int = 6
) -> np.ndarray:
    """The colours covering large flat areas, most common first: ``(k', 3) float32``."""
    import cv2

    # only flat pixels vote (3x3 range small): photo pixels rarely do
    g = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)
    ker = np.ones((3, 3), np.uint8)
    flat = cv2.subtract(cv2.dilate(g, ker), cv2.erode(g, ker)) <= 4
    kf = key[flat]
    counts = np.bincount(kf, minlength=1 << 15)
    total = key.size
    order = np.argsort(-counts)[: 4 * k]
    order = order[counts[order] >= min_share * total]
    if not len(order):
        return np.zeros((0, 3), np.float32)
    pix = small[flat].astype(np.float64)
    sums = np.stack(
        [np.bincount(kf, weights=pix[:, c], minlength=1 << 15)[order] for c in range(3)], 1
    )
    means = sums / counts[order][:, None]
    cols: list[np.ndarray] = []
    for c in means.astype(np.float32):
        if all(np.abs(c - o).max() > COLOR_TOL for o in cols):
            cols.append(c)
        if len(cols) >= k:
            break
    return np.asarray(cols, np.float32).reshape(-1, 3)


_BIN_CENTRES = None


def near_masks(key: np.ndarray, cols: np.ndarray) -> list[np.ndarray]:
    """Per UI colour, pixels whose 5-bit colour bin lies within ``COLOR_TOL`` (+ half a bin)
    of it: a lookup on the colour key, ``[(h, w) bool, ...]``."""
    global _BIN_CENTRES
    if _BIN_CENTRES is None:
        k = np.arange(1 << 15)
        _BIN_CENTRES = np.stack([(k >> 10) & 31, (k >> 5) & 31, k & 31], 1) * 8.0 + 3.5
    out = []
    for c in cols:
        d = np.maximum(np.abs(_BIN_CENTRES[:, 0] - c[0]), np.abs(_BIN_CENTRES[:, 1] - c[1]))
        lut = np.maximum(d, np.abs(_BIN_CENTRES[:, 2] - c[2])) <= COLOR_TOL + 4
        out.append(lut[key])
    return out


def prepare(image: np.ndarray) -> Prepared:
    """Downscale ``image`` ``(H, W, 3) uint8`` and compute the shared maps."""
    import cv2

    H, W = image.shape[:2]
    # an integer factor (OpenCV's INTER_AREA is several times faster on those), then a
    # cap on the long side for long scroll captures
    k = max(1, round(min(H, W) / SMALL_SHORT))
    small = (
        cv2.resize(image, (max(1, W // k), max(1, H // k)), interpolation=cv2.INTER_AREA)
        if k > 1
        else np.ascontiguousarray(image)
    )
    if max(small.shape[:2]) > SMALL_LONG_MAX:
        g = SMALL_LONG_MAX / max(small.shape[:2])
        small = cv2.resize(
            small,
            (max(1, round(small.shape[1] * g)), max(1, round(small.shape[0] * g))),
            interpolation=cv2.INTER_AREA,
        )
    f = small.shape[1] / W
    gray = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY).astype(np.float32)
    key = _color_key(small)
    cols = ui_colors(small, key)
    near = near_masks(key, cols)
    bg = np.logical_or.reduce(near) if near else np.zeros(small.shape[:2], bool)
    gx = cv2.Sobel(gray, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(gray, cv2.CV_32F, 0, 1, ksize=3)
    grad = np.abs(gx) + np.abs(gy)
    hsv = cv2.cvtColor(small, cv2.COLOR_RGB2HSV)
    # steps between neighbours: a line at x is the boundary between x-1 and x
    dx = np.zeros_like(gray)
    dx[:, 1:] = np.abs(gray[:, 1:] - gray[:, :-1])
    dy = np.zeros_like(gray)
    dy[1:] = np.abs(gray[1:] - gray[:-1])
    # tolerate one pixel of misplacement at this scale
    sx, sy = (dx > 6).astype(np.uint8), (dy > 6).astype(np.uint8)
    ex = cv2.dilate(sx, np.ones((1, 3), np.uint8)).astype(np.float32)
    ey = cv2.dilate(sy, np.ones((3, 1), np.uint8)).astype(np.float32)
    mx = cv2.dilate(dx, np.ones((1, 3), np.uint8))
    my = cv2.dilate(dy, np.ones((3, 1), np.uint8))
    return Prepared(
        small=small,
        f=f,
        full_hw=(H, W),
        gray=gray,
        bg=bg,
        ui_colors=cols,
        near=near,
        ii_bg=_integral(bg.astype(np.float32)),
        ii_grad=_integral(grad),
        ii_g=_integral(gray),
        ii_g2=_integral(gray * gray),
        ii_sat=_integral(hsv[..., 1].astype(np.float32)),
        ii_ex=_integral(ex),
        ii_ey=_integral(ey),
        ii_sx=_integral(sx),
        ii_sy=_integral(sy),
        ii_mx=_integral(mx),
        ii_my=_integral(my),
        ii_rgb=cv2.integral(small, sdepth=cv2.CV_64F),
    )


# -- candidates -----------------------------------------------------------------------------
def _trim(sub: np.ndarray, frac: float) -> tuple[int, int, int, int] | None:
    """Rows/columns of a component mask whose span is at least ``frac`` of the widest."""
    rows = sub.any(axis=1)
    cols = sub.any(axis=0)
    if not rows.any():
        return None
    h, w = sub.shape
    first = np.where(rows, sub.argmax(axis=1), w)
    last = np.where(rows, w - 1 - sub[:, ::-1].argmax(axis=1), -1)
    span = (last - first + 1).clip(0)
    ok_r = np.flatnonzero(span >= frac * span.max())
    firstc = np.where(cols, sub.argmax(axis=0), h)
    lastc = np.where(cols, h - 1 - sub[::-1].argmax(axis=0), -1)
    spanc = (lastc - firstc + 1).clip(0)
    ok_c = np.flatnonzero(spanc >= frac * spanc.max())
    if not len(ok_r) or not len(ok_c):
        return None
    return int(ok_c[0]), int(ok_r[0]), int(ok_c[-1]) + 1, int(ok_r[-1]) + 1


def _peel(gray: np.ndarray, b: tuple[int, int, int, int], max_frac: float = 0.15):
    """Peel uniform outer bands (a frame) off box ``b``; None when nothing peels."""
    x0, y0, x1, y1 = b
    patch = gray[y0:y1, x0:x1]
    if patch.shape[0] < 8 or patch.shape[1] < 8:
        return None
    ih, iw = patch.shape
    rs = patch[:, iw // 10 : iw - iw // 10].std(axis=1)
    cs = patch[ih // 10 : ih - ih // 10].std(axis=0)
    lim_r = max(1, int(max_frac * len(rs)))
    lim_c = max(1, int(max_frac * len(cs)))

    def run(a: np.ndarray, lim: int) -> int:
        k = 0
        while k < lim and a[k] < 3.0:
            k += 1
        return k

    t = run(rs, lim_r)
    bt = run(rs[::-1], lim_r)
    lft = run(cs, lim_c)
    rt = run(cs[::-1], lim_c)
    if t + bt + lft + rt == 0:
        return None
    return x0 + lft, y0 + t, x1 - rt, y1 - bt


def _line_cov(ii: np.ndarray, pos: np.ndarray, lo: int, hi: int, rows: bool) -> np.ndarray:
    """Share of ``[lo, hi)`` covered by edge pixels on each row (``rows``) / column at ``pos``."""
    if hi <= lo:
        return np.zeros(len(pos))
    if rows:
        s = ii[pos + 1, hi] - ii[pos, hi] - ii[pos + 1, lo] + ii[pos, lo]
    else:
        s = ii[hi, pos + 1] - ii[hi, pos] - ii[lo, pos + 1] + ii[lo, pos]
    return s / (hi - lo)


def _to_lines(p: Prepared, b, *, outward: bool, min_cov: float, reach: float):
    """Move each side of ``b`` to the nearest line (edge coverage >= ``min_cov`` over the
    middle 80 % of the side) outward or inward within ``reach`` of the box size."""
    h, w = p.bg.shape
    x0, y0, x1, y1 = b
    bw, bh = x1 - x0, y1 - y0
    ix, iy = bw // 10, bh // 10
    out = [x0, y0, x1, y1]
    for side in range(4):
        rows = side in (1, 3)
        size = bh if rows else bw
        r = max(2, int(reach * size))
        c = out[side]
        step = (-1 if side in (0, 1) else 1) * (1 if outward else -1)
        lim = (h if rows else w) - 1
        pos = c + step * np.arange(2 if not outward else 1, r + 1)
        pos = pos[(pos >= 0) & (pos <= lim)]
        if not len(pos):
            continue
        if rows:
            cov = _line_cov(p.ii_ey, pos, x0 + ix, x1 - ix, True)
        else:
            cov = _line_cov(p.ii_ex, pos, y0 + iy, y1 - iy, False)
        hit = np.flatnonzero(cov >= min_cov)
        if len(hit):
            out[side] = int(pos[hit[0]])
    if out[2] - out[0] < 4 or out[3] - out[1] < 4:
        return tuple(b)
    return tuple(out)


def frame_bands(p: Prepared, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Thin uniform bands closed by a straight line just inside and just outside each box side.

    A picture inside a card border has, just outside each side, a band of one colour (the
    border) and then the card's outer edge; the card's box has the same band just inside.
    For each side (itself an edge) the band is the narrowest ``d`` (3 px up to
    ``BAND_MAX_FRAC`` of the box side, at most ``BAND_MAX_PX``) whose line at distance ``d``
    covers at least ``BAND_LINE_COV`` of the side's middle 80 %, with a quiet line between,
    and whose pixels between the two lines are flat (:func:`_uniform`). Sides whose band
    colour differs from the other sides' median by more than ``BAND_COLOR_TOL`` do not count.

    Args:
        p: prepared maps; boxes: ``(n, 4)`` int small-image boxes.

    Returns:
        ``(inside (n, 4) int64, outside (n, 4) int64)``: band width per side (left, top,
        right, bottom; 0 = no band) in small pixels.
    """
    h, w = p.bg.shape
    b = np.asarray(boxes, np.int64).reshape(-1, 4)
    n = len(b)
    width = np.zeros((2, n, 4), np.int64)  # [0] inside, [1] outside
    mean = np.zeros((2, n, 4))
    bw = np.maximum(b[:, 2] - b[:, 0], 1)
    bh = np.maximum(b[:, 3] - b[:, 1], 1)
    ix, iy = bw // 10, bh // 10
    for vertical in (True, False):  # left/right sides (columns), then top/bottom (rows)
        sides = np.array([0, 2] if vertical else [1, 3])
        # one row per (direction, side, box)
        side = np.tile(np.repeat(sides, n), 2)
        out = np.repeat([0, 1], 2 * n)
        box = np.tile(np.arange(n), 4)
        e = b[box, side]
        if vertical:
            lo, hi, size, limit = b[box, 1] + iy[box], b[box, 3] - iy[box], bw[box], w
        else:
            lo, hi, size, limit = b[box, 0] + ix[box], b[box, 2] - ix[box], bh[box], h
        span = np.maximum(hi - lo, 1)
        allow = np.minimum(size * BAND_MAX_FRAC, BAND_MAX_PX).astype(np.int64)
        sign = np.where(side < 2, -1, 1) * np.where(out == 1, 1, -1)
        ii = p.ii_ex if vertical else p.ii_ey
        raw = p.ii_sx if vertical else p.ii_sy

        # the box side itself must be an edge (a loose box on a flat page has no frame)
        sel = np.flatnonzero(allow >= 3)
        if len(sel):
            own = _lines_cover(ii, e[sel, None], lo[sel], hi[sel], span[sel], vertical=vertical)
            sel = sel[own[:, 0] >= BAND_LINE_COV]
        if not len(sel):
            continue
        es, lim, sg = e[sel], allow[sel], sign[sel]
        los, his, sps = lo[sel], hi[sel], span[sel]
        ds = np.arange(3, int(lim.max()) + 1)  # (D,) band widths tried
        L = es[:, None] + sg[:, None] * ds[None]  # (m, D)
        cov = _lines_cover(ii, L, los, his, sps, vertical=vertical)
        # a band needs a quiet line between (else the "line" is the box's own blurred edge)
        ks = np.arange(1, int(ds[-1]))
        between = es[:, None] + sg[:, None] * ks[None]
        quiet = np.minimum.accumulate(
            _lines_cover(raw, between, los, his, sps, vertical=vertical), axis=1
        )
        ok_d = (
            (L >= 1)
            & (L <= limit - 1)
            & (cov >= BAND_LINE_COV)
            & (quiet[:, ds - 2] < 0.3)
            & (ds[None] <= lim[:, None])
        )
        bi, di = np.nonzero(ok_d)
        if not len(bi):
            continue
        r = sel[bi]
        eb, Lb = e[r], L[bi, di]
        # the band between the lines, one pixel off each; or two off the box's own side
        # (a candidate side is often one pixel off its edge, on the blurred step)
        a, z = np.minimum(eb, Lb) + 1, np.maximum(eb, Lb) - 1
        ok, m = _uniform(p, _strip(a, z, lo[r], hi[r], vertical), vertical=vertical)
        a2, z2 = np.where(Lb < eb, a, a + 1), np.where(Lb < eb, z - 1, z)
        ok2, m2 = _uniform(p, _strip(a2, z2, lo[r], hi[r], vertical), vertical=vertical)
        ok2 &= ~ok & (z2 > a2)
        m = np.where(ok2, m2, m)
        good = ok | ok2
        if not good.any():
            continue
        bi, di, m = bi[good], di[good], m[good]
        first_b, first = np.unique(bi, return_index=True)  # nonzero order: d ascending
        r = sel[first_b]
        width[out[r], box[r], side[r]] = ds[di[first]]
        mean[out[r], box[r], side[r]] = m[first]
    # one border colour all round: drop sides far from the median band colour
    for k in range(2):
        found = width[k] > 0
        rows = found.any(axis=1)
        if rows.any():
            mm = np.where(found[rows], mean[k][rows], np.nan)
            med = np.nanmedian(mm, axis=1, keepdims=True)
            off = np.zeros_like(found)
            off[rows] = found[rows] & (np.abs(mm - med) > BAND_COLOR_TOL)
            width[k][off] = 0
    return width[0], width[1]


def _lines_cover(
    ii: np.ndarray, pos: np.ndarray, lo: np.ndarray, hi: np.ndarray, span, *, vertical: bool
) -> np.ndarray:
    """Share of ``[lo, hi)`` covered by a step map (integral ``ii``) on the lines ``pos``
    ``(m, k)`` (columns when ``vertical``, else rows), ``(m, k)``."""
    k = pos.shape[1]
    strip = _strip(pos.ravel(), pos.ravel() + 1, np.repeat(lo, k), np.repeat(hi, k), vertical)
    return _rect_sum(ii, strip).reshape(pos.shape) / span[:, None]


def _strip(a, z, lo, hi, vertical: bool) -> np.ndarray:
    """Boxes ``(n, 4)`` spanning ``[a, z)`` across a side and ``[lo, hi)`` along it."""
    return np.stack([a, lo, z, hi] if vertical else [lo, a, hi, z], 1)


def _uniform(p: Prepared, strip: np.ndarray, *, vertical: bool) -> tuple[np.ndarray, np.ndarray]:
    """Whether each ``(n, 4)`` strip is one flat colour in most of its length (stickers over
    a frame spoil a part of it): of ``BAND_SEGMENTS`` pieces along it, a majority has a grey
    spread <= ``BAND_STD`` and those agree within ``BAND_COLOR_TOL``.

    Returns:
        ``(ok (n,) bool, mean grey of the flat pieces (n,))``.
    """
    k = BAND_SEGMENTS
    n = len(strip)
    a0, a1 = (strip[:, 1], strip[:, 3]) if vertical else (strip[:, 0], strip[:, 2])
    cuts = a0[:, None] + ((a1 - a0)[:, None] * np.arange(k + 1)[None]) // k  # (n, k+1)
    seg = np.repeat(strip, k, axis=0)  # (n * k, 4): segment j of strip i at row i * k + j
    c0, c1 = (1, 3) if vertical else (0, 2)
    seg[:, c0], seg[:, c1] = cuts[:, :-1].ravel(), cuts[:, 1:].ravel()
    area = _area(seg)
    m = _rect_sum(p.ii_g, seg) / np.maximum(area, 1)
    var = _rect_sum(p.ii_g2, seg) / np.maximum(area, 1) - m * m
    means = m.reshape(n, k)
    flat = ((var <= BAND_STD**2) & (area > 0)).reshape(n, k)
    nf = flat.sum(axis=1)
    mean = np.where(flat, means, 0.0).sum(axis=1) / np.maximum(nf, 1)
    spread = np.where(flat, means, -np.inf).max(axis=1) - np.where(flat, means, np.inf).min(axis=1)
    ok = (nf > k // 2) & (spread <= BAND_COLOR_TOL)
    return ok, mean


def band_boxes(p: Prepared, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The frame variants of boxes: the rectangle inside a uniform band all round, and the one
    outside it (see :func:`frame_bands`).

    A variant is made when at least three sides have a band; a fourth side without one (a
    sticker over the border) moves by the median width of the other three.

    Returns:
        ``(inner (n, 4) int64, outer (n, 4) int64)``; a row equals the input box where no
        variant was found.
    """
    b = np.asarray(boxes, np.int64).reshape(-1, 4)
    out = []
    for outward, wd in zip((False, True), frame_bands(p, b), strict=True):
        ok = (wd > 0).sum(axis=1) >= 3
        med = np.zeros(len(b), np.int64)
        if ok.any():
            med[ok] = np.array([int(np.median(r[r > 0])) for r in wd[ok]])
        wd = np.where((wd == 0) & ok[:, None], med[:, None], wd)
        wd = np.where(ok[:, None], wd, 0)
        sgn = np.array([-1, -1, 1, 1]) * (1 if outward else -1)
        v = b + sgn * wd
        bad = (v[:, 2] - v[:, 0] < 4) | (v[:, 3] - v[:, 1] < 4)
        out.append(np.where(bad[:, None], b, v))
    return out[0], out[1]


def candidates(p: Prepared, *, min_side: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Candidate boxes in small-image pixels.

    Returns:
        ``(boxes (n, 4) int64, source (n,) int64)``; source: 0 bbox, 1 trimmed, 2 peeled
        (also: the picture inside a uniform frame band, :func:`band_boxes`), 3 colour region,
        4 grown to lines (also: the outer edge of a frame band around the box), 5 shrunk to
        lines (6: an exemplar match, added by the detector) (an id, no direction).
    """
    import cv2

    h, w = p.bg.shape
    masks = [~p.bg]
    if len(p.ui_colors) > 1:
        masks.append(~p.near[0])
    out: list[tuple[int, int, int, int]] = []
    src: list[int] = []

    def add(b, s: int) -> None:
        x0, y0, x1, y1 = b
        if x1 - x0 >= min_side and y1 - y0 >= min_side:
            out.append((int(x0), int(y0), int(x1), int(y1)))
            src.append(s)

    min_area = 0.002 * h * w
    for mi, m in enumerate(masks):
        m8 = m.astype(np.uint8)
        m8 = cv2.morphologyEx(m8, cv2.MORPH_OPEN, np.ones((2, 2), np.uint8))
        for k in (1, 3) if mi == 0 else (3,):
            mk = m8 if k == 1 else cv2.morphologyEx(m8, cv2.MORPH_CLOSE, np.ones((k, k), np.uint8))
            n, lab, stats, _ = cv2.connectedComponentsWithStats(mk, connectivity=4)
            for i in range(1, n):
                x, y, bw, bh, _ = stats[i]
                if bw * bh < min_area or bw < min_side or bh < min_side:
                    continue
                if bw >= 0.98 * w and bh >= 0.9 * h:
                    continue
                b = (x, y, x + bw, y + bh)
                add(b, 0)
                sub = lab[y : y + bh, x : x + bw] == i
                for frac in (0.6, 0.85):
                    t = _trim(sub, frac)
                    if t is not None and t != (0, 0, bw, bh):
                        add((x + t[0], y + t[1], x + t[2], y + t[3]), 1)
                pe = _peel(p.gray, b)
                if pe is not None:
                    add(pe, 2)
    # flat-coloured regions that are not the page itself (a photo's plain background)
    for m in p.near[1:3]:
        n, lab, stats, _ = cv2.connectedComponentsWithStats(m.astype(np.uint8), connectivity=4)
        for i in range(1, n):
            x, y, bw, bh, _ = stats[i]
            if bw * bh < min_area or (bw >= 0.98 * w and bh >= 0.9 * h):
                continue
            add((x, y, x + bw, y + bh), 3)
    # edge-line variants of the larger candidates: grow each side out to the nearest long
    # straight line (a picture whose background partly matches the page), or shrink it in
    # to one (a picture touching a header or banner)
    for b, s_ in list(zip(out, src, strict=True)):
        if s_ != 0 or (b[2] - b[0]) * (b[3] - b[1]) < 5 * min_area:
            continue
        g = _to_lines(p, b, outward=True, min_cov=0.5, reach=0.4)
        if g != b:
            add(g, 4)
        k = _to_lines(p, b, outward=False, min_cov=0.8, reach=0.35)
        if k != b:
            add(k, 5)
    # frame variants: the picture inside a thin uniform border, and the border's outer edge
    big = [b for b in out if (b[2] - b[0]) * (b[3] - b[1]) >= 5 * min_area]
    if big:
        arr_b = np.asarray(big, np.int64)
        inner, outer = band_boxes(p, arr_b)
        for b0, bi, bo in zip(arr_b, inner, outer, strict=True):
            if (bi != b0).any():
                add(tuple(bi), 2)
            if (bo != b0).any():
                add(tuple(bo), 4)
    if not out:
        return np.zeros((0, 4), np.int64), np.zeros(0, np.int64)
    arr = np.asarray(out, np.int64)
    s = np.asarray(src, np.int64)
    _, idx = np.unique(arr, axis=0, return_index=True)
    idx = np.sort(idx)
    return arr[idx], s[idx]


# -- features -------------------------------------------------------------------------------
def thumbs(small: np.ndarray, boxes: np.ndarray, ii_rgb: np.ndarray | None = None):
    """Grey ``THUMB x THUMB`` thumbnails (zero-mean, unit-norm) and 4x4x4-bin colour
    histograms of the thumbnail cells, from per-channel integral images (all boxes at once).

    Args:
        small: ``(h, w, 3) uint8``; boxes: ``(n, 4)`` int; ii_rgb: ``(h+1, w+1, 3)`` integral
            of ``small`` (computed when None).

    Returns:
        ``(t (n, THUMB*THUMB) float32, hist (n, 64) float32)``.
    """
    import cv2

    if ii_rgb is None:
        ii_rgb = cv2.integral(small, sdepth=cv2.CV_64F)
    b = np.asarray(boxes, np.int64).reshape(-1, 4)
    n = len(b)
    if n == 0:
        return np.zeros((0, THUMB * THUMB), np.float32), np.zeros((0, 64), np.float32)
    g = np.linspace(0, 1, THUMB + 1)
    xs = np.round(b[:, 0:1] + (b[:, 2:3] - b[:, 0:1]) * g).astype(np.int64)  # (n, T+1)
    ys = np.round(b[:, 1:2] + (b[:, 3:4] - b[:, 1:2]) * g).astype(np.int64)
    xs = np.maximum.accumulate(xs, axis=1)
    ys = np.maximum.accumulate(ys, axis=1)
    S = ii_rgb[ys[:, :, None], xs[:, None, :]]  # (n, T+1, T+1, 3)
    cell = S[:, 1:, 1:] - S[:, :-1, 1:] - S[:, 1:, :-1] + S[:, :-1, :-1]
    area = (np.diff(ys, axis=1)[:, :, None] * np.diff(xs, axis=1)[:, None, :]).clip(1)
    mean = cell / area[..., None]  # (n, T, T, 3)
    gray = (mean @ np.array([0.299, 0.587, 0.114])).reshape(n, -1)
    gray = gray - gray.mean(axis=1, keepdims=True)
    nrm = np.linalg.norm(gray, axis=1, keepdims=True)
    t = np.where(nrm > 0, gray / np.maximum(nrm, 1e-9), 0.0).astype(np.float32)
    q = np.clip(mean, 0, 255).astype(np.int64) >> 6
    code = (q[..., 0] * 16 + q[..., 1] * 4 + q[..., 2]).reshape(n, -1)
    hist = np.zeros((n, 64), np.float32)
    np.add.at(hist, (np.repeat(np.arange(n), code.shape[1]), code.ravel()), 1.0)
    hist /= code.shape[1]
    return t, hist


def crop_descriptors(crops: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Thumbnails/histograms of whole seed crops (see :func:`thumbs`)."""
    import cv2

    ts, hs = [], []
    for c in crops:
        c = np.asarray(c)
        f = min(1.0, 128 / max(c.shape[:2]))
        if f < 1:
            c = cv2.resize(
                c,
                (max(2, round(c.shape[1] * f)), max(2, round(c.shape[0] * f))),
                interpolation=cv2.INTER_AREA,
            )
        t, hh = thumbs(c, np.array([[0, 0, c.shape[1], c.shape[0]]]))
        ts.append(t[0])
        hs.append(hh[0])
    return (
        np.asarray(ts, np.float32).reshape(-1, THUMB * THUMB),
        np.asarray(hs, np.float32).reshape(-1, 64),
    )


def base_features(
    p: Prepared, boxes: np.ndarray, source: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Features that need no seed statistics.

    Args:
        p: prepared maps; boxes: ``(n, 4)`` int small-image boxes; source: ``(n,)``.

    Returns:
        ``(X (n, len(FEATURES)) float32, thumbs (n, THUMB*THUMB), hists (n, 64))``; the
        seed-dependent columns (``seed_*``, ``d_*``, ``layout``) are zero until
        :func:`seed_features` fills them.
    """
    h, w = p.bg.shape
    b = np.asarray(boxes, np.int64).reshape(-1, 4)
    n = len(b)
    bw = np.maximum(b[:, 2] - b[:, 0], 1).astype(np.float64)
    bh = np.maximum(b[:, 3] - b[:, 1], 1).astype(np.float64)
    area = bw * bh
    cols: dict[str, np.ndarray] = {}
    cols["cx"] = (b[:, 0] + b[:, 2]) / 2 / w
    cols["cy"] = (b[:, 1] + b[:, 3]) / 2 / h
    cols["w"] = bw / w
    cols["h"] = bh / h
    cols["x0"] = b[:, 0] / w
    cols["y0"] = b[:, 1] / h
    cols["x1"] = b[:, 2] / w
    cols["y1"] = b[:, 3] / h
    cols["log_aspect"] = np.log(bh / bw)
    cols["area"] = area / (w * h)
    cols["log_px"] = np.log(np.maximum(bw, bh) / p.f)
    bg_in = _rect_sum(p.ii_bg, b) / area
    cols["bg_inside"] = bg_in
    r = np.maximum(2, (0.03 * np.minimum(bw, bh)).astype(np.int64))
    outer = np.stack([b[:, 0] - r, b[:, 1] - r, b[:, 2] + r, b[:, 3] + r], 1)
    inner = np.stack([b[:, 0] + r, b[:, 1] + r, b[:, 2] - r, b[:, 3] - r], 1)
    o_area = np.maximum(
        _area(
            np.stack(
                [
                    outer[:, 0].clip(0),
                    outer[:, 1].clip(0),
                    outer[:, 2].clip(max=w),
                    outer[:, 3].clip(max=h),
                ],
                1,
            )
        )
        - area,
        1,
    )
    cols["bg_ring_out"] = np.where(
        o_area > 1, (_rect_sum(p.ii_bg, outer) - _rect_sum(p.ii_bg, b)) / o_area, 1.0
    )
    i_area = np.maximum(area - _area(inner), 1)
    cols["bg_ring_in"] = (_rect_sum(p.ii_bg, b) - _rect_sum(p.ii_bg, inner)) / i_area
    cols["grad_inside"] = _rect_sum(p.ii_grad, b) / area / 100
    mean = _rect_sum(p.ii_g, b) / area
    cols["std_inside"] = np.sqrt(np.maximum(_rect_sum(p.ii_g2, b) / area - mean**2, 0)) / 64
    cols["sat_inside"] = _rect_sum(p.ii_sat, b) / area / 255
    # border lines: coverage of the step map along each side (middle 80 %)
    ix = (0.1 * bw).astype(np.int64)
    iy = (0.1 * bh).astype(np.int64)
    top = np.stack([b[:, 0] + ix, b[:, 1], b[:, 2] - ix, b[:, 1] + 1], 1)
    bot = np.stack([b[:, 0] + ix, b[:, 3], b[:, 2] - ix, b[:, 3] + 1], 1)
    lef = np.stack([b[:, 0], b[:, 1] + iy, b[:, 0] + 1, b[:, 3] - iy], 1)
    rig = np.stack([b[:, 2], b[:, 1] + iy, b[:, 2] + 1, b[:, 3] - iy], 1)
    span_x = np.maximum(bw - 2 * ix, 1)
    span_y = np.maximum(bh - 2 * iy, 1)
    e = np.stack(
        [
            np.where(b[:, 1] <= 0, 0.6, _rect_sum(p.ii_ey, top) / span_x),
            np.where(b[:, 3] >= h, 0.6, _rect_sum(p.ii_ey, bot) / span_x),
            np.where(b[:, 0] <= 0, 0.6, _rect_sum(p.ii_ex, lef) / span_y),
            np.where(b[:, 2] >= w, 0.6, _rect_sum(p.ii_ex, rig) / span_y),
        ],
        1,
    ).clip(0, 1)
    mags = np.stack(
        [
            _rect_sum(p.ii_my, top) / span_x,
            _rect_sum(p.ii_my, bot) / span_x,
            _rect_sum(p.ii_mx, lef) / span_y,
            _rect_sum(p.ii_mx, rig) / span_y,
        ],
        1,
    )
    cols["edge_min"] = e.min(axis=1)
    cols["edge_mean"] = e.mean(axis=1)
    cols["edge_mag"] = mags.mean(axis=1) / 64
    # contrast between the ring just outside and just inside (mean grey)
    ring_o = (_rect_sum(p.ii_g, outer) - _rect_sum(p.ii_g, b)) / o_area
    ring_i = (_rect_sum(p.ii_g, b) - _rect_sum(p.ii_g, inner)) / i_area
    cols["ring_contrast"] = np.abs(ring_o - ring_i) / 64
    cols["inner_line"] = _inner_lines(p, b)
    # a thin uniform band just outside (the box is a picture in a frame) or just inside (the
    # box is the frame): which one the seed's boxes are is learned from the seed
    side = np.stack([bw, bh, bw, bh], 1)
    for name, wd in zip(("in", "out"), frame_bands(p, b), strict=True):
        found = wd > 0
        nf = found.sum(axis=1)
        cols[f"band_{name}"] = nf / 4
        cols[f"band_{name}_w"] = (
            np.where(nf > 0, (wd / side).sum(axis=1) / np.maximum(nf, 1), 0.0) / BAND_MAX_FRAC
        )
    t, hist = thumbs(p.small, b, p.ii_rgb)
    ncol = (hist > 0.02).sum(axis=1)
    cols["n_colors"] = ncol / 64
    # text / UI-chrome likeness: much background inside, strong edges, few colours
    cols["text_like"] = bg_in * cols["grad_inside"] / (1 + ncol / 8)
    # containment among candidates (a picture sits inside a card / contains a sticker)
    lt = np.maximum(b[:, None, :2], b[None, :, :2])
    rb = np.minimum(b[:, None, 2:], b[None, :, 2:])
    inter = np.prod((rb - lt).clip(0), axis=2).astype(np.float64)
    inside = inter >= 0.95 * area[:, None]  # i inside j
    np.fill_diagonal(inside, False)
    cols["contained_by"] = np.log1p(inside.sum(axis=1))
    cols["contains"] = np.log1p(inside.sum(axis=0))
    picture = bg_in < 0.5
    amax = area[picture].max() if picture.any() else area.max() if n else 1.0
    cols["area_vs_max"] = area / max(amax, 1.0)
    cols["source"] = source.astype(np.float64)
    X = np.zeros((n, len(FEATURES)), np.float32)
    for k, name in enumerate(FEATURES):
        if name in cols:
            X[:, k] = cols[name]
    return X, t, hist


def _inner_lines(p: Prepared, b: np.ndarray) -> np.ndarray:
    """Strongest straight line strictly inside each box (coverage over its full width or
    height, 6-94 % of the way across): high when a box spans two stacked regions."""
    out = np.zeros(len(b))
    for i, (x0, y0, x1, y1) in enumerate(b):
        bw, bh = x1 - x0, y1 - y0
        if bw < 8 or bh < 8:
            continue
        ys = np.arange(y0 + max(2, int(0.06 * bh)), y1 - max(2, int(0.06 * bh)))
        xs = np.arange(x0 + max(2, int(0.06 * bw)), x1 - max(2, int(0.06 * bw)))
        m = 0.0
        if len(ys):
            m = _line_cov(p.ii_ey, ys, x0, x1, True).max()
        if len(xs):
            m = max(m, _line_cov(p.ii_ex, xs, y0, y1, False).max())
        out[i] = m
    return out


@dataclass
class SeedStats:
    """Seed boxes' layout (each box, and the spread used as the distance scale) and crops.

    Layout distances are to the *nearest* seed box, not to the mean: a seed mixing phone and
    desktop captures has two clusters, and a mean sits between them.
    """

    mean: np.ndarray  #: (6,) of w, h, cx, cy, log_aspect, log_px
    std: np.ndarray
    thumbs: np.ndarray  #: (m, THUMB*THUMB)
    hists: np.ndarray  #: (m, 64)
    origin: np.ndarray  #: (m,) int: training image index of each crop (-1 unknown)
    layout: np.ndarray  #: (k, 6) layout columns of each seed box
    layout_origin: np.ndarray  #: (k,) training image index of each seed box
    #: (2,) seed boxes that are a picture inside a thin frame / the frame itself
    frames: np.ndarray = field(default_factory=lambda: np.zeros(2))


_LAYOUT_COLS = ("w", "h", "cx", "cy", "log_aspect", "log_px")
_STD_FLOOR = np.array([0.05, 0.04, 0.05, 0.04, 0.1, 0.1])


def seed_stats(
    X_pos: np.ndarray, thumbs_: np.ndarray, hists: np.ndarray, origin, pos_origin
) -> SeedStats:
    """Layout statistics from the base features of the positive (seed) boxes ``X_pos``
    (cut from training images ``pos_origin``) and the crops' descriptors."""
    idx = [FEATURES.index(c) for c in _LAYOUT_COLS]
    v = X_pos[:, idx].astype(np.float64)
    mean = v.mean(axis=0) if len(v) else np.zeros(len(idx))
    std = np.maximum(v.std(axis=0) if len(v) > 1 else _STD_FLOOR, _STD_FLOOR)
    out_ = X_pos[:, FEATURES.index("band_out")] >= 0.75
    in_ = X_pos[:, FEATURES.index("band_in")] >= 0.75
    frames = np.array([(out_ & ~in_).sum(), (in_ & ~out_).sum()], np.float64)
    return SeedStats(
        mean,
        std,
        thumbs_,
        hists,
        np.asarray(origin, np.int64),
        v,
        np.asarray(pos_origin, np.int64),
        frames,
    )


def follow_seed_frames(
    boxes: np.ndarray, X: np.ndarray, prob: np.ndarray, stats: SeedStats
) -> np.ndarray:
    """Rank the frame variant the seed's boxes are above the other one.

    A picture inside a thin uniform frame gives two candidates (the picture, with a band just
    outside; the frame, with a band just inside) that look alike to the scorer. When the
    seed's framed boxes are mostly pictures (or mostly frames), the scores within each group
    of such nested candidates are reassigned: the group's highest scores go to the wanted
    variants and the lowest to the others, each kind keeping its own order. Without framed
    seed boxes, or with as many of each kind, nothing changes.

    Args:
        boxes: ``(n, 4)`` candidate boxes; X: their ``(n, len(FEATURES))`` features;
        prob: ``(n,)`` scores; stats: the seed statistics.

    Returns:
        ``(n,)`` scores (a new array, a permutation of ``prob`` within each group).
    """
    out = np.asarray(prob, np.float64).copy()
    inner_n, outer_n = (float(v) for v in np.asarray(stats.frames).reshape(-1)[:2])
    if inner_n == outer_n or len(out) < 2:
        return out
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    # two sides with a band suffice here (a light photo edge against a light frame is faint)
    b_out, b_in = X[:, FEATURES.index("band_out")], X[:, FEATURES.index("band_in")]
    pic = np.flatnonzero((b_out >= 0.5) & (b_out > b_in))
    frm = np.flatnonzero((b_in >= 0.5) & (b_in > b_out))
    if not len(pic) or not len(frm):
        return out
    from autolabel.geometry import box_iou

    # the picture lies inside the frame (2 px slack), most of it
    inside = (b[pic, None, :2] >= b[None, frm, :2] - 2).all(axis=2) & (
        b[pic, None, 2:] <= b[None, frm, 2:] + 2
    ).all(axis=2)
    pair = (box_iou(b[pic], b[frm]) >= 0.7) & inside
    if not pair.any():
        return out
    # groups: connected pictures and frames (near-duplicate candidates of one framed photo)
    n_p = len(pic)
    label = np.arange(n_p + len(frm))
    changed = True
    while changed:
        lp, lf = label[:n_p], label[n_p:]
        m = np.where(pair, np.minimum(lp[:, None], lf[None]), np.iinfo(np.int64).max)
        new = np.concatenate([np.minimum(lp, m.min(axis=1)), np.minimum(lf, m.min(axis=0))])
        changed = bool((new != label).any())
        label = new
    members = np.concatenate([pic, frm])
    wanted = np.concatenate([np.ones(n_p, bool), np.zeros(len(frm), bool)])
    if inner_n < outer_n:
        wanted = ~wanted
    linked = np.concatenate([pair.any(axis=1), pair.any(axis=0)])
    for g in np.unique(label[linked]):
        sel = np.flatnonzero((label == g) & linked)
        w_idx = members[sel[wanted[sel]]]
        o_idx = members[sel[~wanted[sel]]]
        scores = np.sort(out[np.concatenate([w_idx, o_idx])])[::-1]
        w_idx = w_idx[np.argsort(-out[w_idx], kind="stable")]
        o_idx = o_idx[np.argsort(-out[o_idx], kind="stable")]
        out[np.concatenate([w_idx, o_idx])] = scores
    return out


def seed_features(
    X: np.ndarray,
    t: np.ndarray,
    hist: np.ndarray,
    stats: SeedStats,
    *,
    exclude_origin: int | None = None,
) -> np.ndarray:
    """Fill the seed-dependent columns of ``X`` in place (and return it).

    ``exclude_origin``: leave out the crops cut from this training image (leave-one-out, so
    that training positives do not find themselves).
    """
    idx = [FEATURES.index(c) for c in _LAYOUT_COLS]
    v = X[:, idx].astype(np.float64)
    ref = stats.layout
    if exclude_origin is not None:
        ref = ref[stats.layout_origin != exclude_origin]
    if not len(ref):
        ref = stats.mean[None]
    # per-column distance to each seed box, in units of the seed spread; the nearest box
    # by width and place (see NOT_SCORED) gives every column
    z = (v[:, None, :] - ref[None]) / stats.std  # (n, k, 6)
    d2 = (z[:, :, [0, 2, 3]] ** 2).sum(axis=2)
    j = d2.argmin(axis=1) if len(X) else np.zeros(0, np.int64)
    zn = np.abs(z[np.arange(len(X)), j])
    for k, name in enumerate(("d_w", "d_h", "d_cx", "d_cy", "d_aspect", "d_px")):
        X[:, FEATURES.index(name)] = zn[:, k]
    X[:, FEATURES.index("layout")] = -0.5 * (d2.min(axis=1) if len(X) else 0.0)
    keep = np.ones(len(stats.thumbs), bool)
    if exclude_origin is not None:
        keep &= stats.origin != exclude_origin
    if keep.any() and len(X):
        sims = t @ stats.thumbs[keep].T
        X[:, FEATURES.index("seed_sim")] = sims.max(axis=1)
        hi = np.minimum(hist[:, None, :], stats.hists[keep][None]).sum(axis=2)
        X[:, FEATURES.index("seed_hist")] = hi.max(axis=1)
    else:
        X[:, FEATURES.index("seed_sim")] = 0.0
        X[:, FEATURES.index("seed_hist")] = 0.0
    return X
