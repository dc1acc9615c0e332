"""Find where a hand crop came from inside its original screenshot.

A crop may be resized by an unknown factor, brightened / contrast-boosted, a few pixels off
the intended region, and the original is a JPEG full of UI clutter (banners, price tags,
smaller thumbnails of the same photo). :func:`locate` runs normalised cross-correlation
(``cv2.TM_CCOEFF_NORMED``, invariant to affine brightness/contrast changes) coarse-to-fine:

1. **coarse**: the original is shrunk to ~``coarse_side`` px; the crop is matched at a
   geometric grid of sizes (every size whose box fits the original); the best peaks over
   all sizes are kept (non-maximum suppressed);
2. **fine**: each peak is re-searched at (up to) full resolution in a window around it, at
   sizes within ±7 % in 1 % steps;
3. **verify**: each refined box is cut from the original, resized to the crop's own
   resolution (capped) and compared with the crop on grey levels and gradient magnitude.
   A smaller thumbnail of the same photo upsampled to the crop's size is blurry and loses
   on the gradient term, so the full-size match wins;
4. **exact sides**: the winner's four sides are moved one by one (whole pixels, no cap on
   resolution) to maximise the grey NCC of the box against the crop (:func:`refine_sides`).
   This fixes what the fixed-aspect search cannot: a crop resized to a slightly different
   aspect (448 x 448), a black frame left out on one side.

Two scores decide (both higher = better, at most 1): below ``min_score`` on the
verification the crop is ``not_found``; below ``min_verify`` on the full-resolution check
it is ``not_found`` too, flagged ``loose`` with its best box kept in ``info`` for a person,
never a confident loose box.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from autolabel.geometry import iou

#: Default acceptance threshold on the verification score (mirrors ``seed.min_match_score``).
DEFAULT_MIN_SCORE = 0.7
#: Strict bar on the full-resolution check after side refinement (mirrors
#: ``seed.min_verify_score``). Exact boxes score >= 0.97 on JPEG originals with edited crops;
#: boxes that miss a frame or a side by >= 10 % stay below ~0.9.
DEFAULT_VERIFY_SCORE = 0.93
#: Relative size changes tried around a box during verification.
VERIFY_SCALES = (-0.01, -0.005, 0.0, 0.005, 0.01)
#: Gaussian sigma (comparison px) before the gradient: tolerate sub-pixel misalignment.
GRAD_BLUR = 1.0
#: Candidates whose coarse (or fine) NCC trails the best by more than this are dropped.
PRUNE_MARGIN = 0.25
#: Smallest comparison long side in verification, px.
VERIFY_MIN_SIDE = 128
#: Chromaticity distance tolerated before the score is penalised (true matches stay below
#: ~0.18 under brightness/contrast edits and JPEG; a grey region vs a red crop is ~0.5).
CHROMA_TOL = 0.25


@dataclass(frozen=True)
class Match:
    """Where a crop was found.

    Attributes:
        box: ``(x0, y0, x1, y1)`` in original pixels, or None when not found.
        score: verification score in [-1, 1], higher = more likely the true place.
        scale: original pixels per crop pixel (0 when not found).
        status: ``"located"`` or ``"not_found"``.
        info: diagnostics (coarse score, runner-up score, candidates tried, method).
        verify: full-resolution NCC of the final box (None when not checked); higher = the
            box is exactly the crop.
    """

    box: tuple[float, float, float, float] | None
    score: float
    scale: float
    status: str
    info: dict[str, Any] = field(default_factory=dict)
    verify: float | None = None


def to_gray(image: np.ndarray) -> np.ndarray:
    """``(H, W, 3) uint8`` RGB (or ``(H, W)``) -> ``(H, W) float32`` grey in 0..255."""
    img = np.asarray(image)
    if img.ndim == 3:
        img = img[..., :3].astype(np.float32)
        return img[..., 0] * 0.299 + img[..., 1] * 0.587 + img[..., 2] * 0.114
    return img.astype(np.float32)


def _resize(img: np.ndarray, w: float, h: float) -> np.ndarray:
    import cv2

    w, h = max(1, round(float(w))), max(1, round(float(h)))
    if w == img.shape[1] and h == img.shape[0]:
        return img
    interp = cv2.INTER_AREA if w < img.shape[1] else cv2.INTER_LINEAR
    return cv2.resize(img, (w, h), interpolation=interp)


def _ncc(a: np.ndarray, b: np.ndarray) -> float:
    a = a - a.mean()
    b = b - b.mean()
    den = float(np.sqrt((a * a).sum() * (b * b).sum()))
    if den < 1e-6:
        return 0.0
    return float((a * b).sum() / den)


def _grad(img: np.ndarray, blur: float = 0.0) -> np.ndarray:
    import cv2

    if blur > 0:
        img = cv2.GaussianBlur(img, (0, 0), blur)
    gx = cv2.Sobel(img, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(img, cv2.CV_32F, 0, 1, ksize=3)
    return cv2.magnitude(gx, gy)


def verify_score(
    crop_gray: np.ndarray,
    orig_gray: np.ndarray,
    box: tuple[float, ...],
    *,
    side: int = 256,
    shift: int = 2,
) -> tuple[float, tuple[float, float, float, float]]:
    """Compare a crop with a box of the original at the crop's resolution.

    Both are brought to ``side`` px on the crop's long side (a smaller box is *upsampled*,
    so a thumbnail loses its fine detail and scores lower than the full-size region). The
    box may move by ``shift`` px (at that resolution) and by ±1 % in size to absorb the
    last bit of misalignment.

    Args:
        crop_gray: ``(h, w) float32`` crop.
        orig_gray: ``(H, W) float32`` original.
        box: ``(x0, y0, x1, y1)`` in original pixels.
        side: comparison long side, px (at most the crop's).
        shift: search radius in comparison px.

    Returns:
        ``(score, box)``: mean of the grey-level and gradient-magnitude NCC (higher =
        better, at most 1) and the box that gave it.
    """
    import cv2

    h, w = crop_gray.shape
    H, W = orig_gray.shape
    s = min(1.0, side / max(h, w))
    vw, vh = max(8, round(w * s)), max(8, round(h * s))
    crop = _resize(crop_gray, vw, vh)
    crop_g = _grad(crop, GRAD_BLUR)
    if crop.std() < 1e-3:
        return -1.0, tuple(float(v) for v in box)  # type: ignore[return-value]
    best = (-2.0, tuple(float(v) for v in box))
    bw, bh = box[2] - box[0], box[3] - box[1]
    widths = [bw * (1 + k) for k in VERIFY_SCALES]
    if abs(vw / bw - 1) <= 0.02:  # an unresized crop: compare native pixels, no resampling
        widths.append(float(vw))
    for sw in widths:
        sh = sw * h / w
        cx, cy = box[0] + bw / 2, box[1] + bh / 2
        g = vw / sw  # comparison px per original px
        pad = (shift + 1) / g
        x0, y0 = cx - sw / 2 - pad, cy - sh / 2 - pad
        x1, y1 = cx + sw / 2 + pad, cy + sh / 2 + pad
        ix0, iy0 = max(0, int(np.floor(x0))), max(0, int(np.floor(y0)))
        ix1, iy1 = min(W, int(np.ceil(x1))), min(H, int(np.ceil(y1)))
        if ix1 - ix0 < 2 or iy1 - iy0 < 2:
            continue
        ww, wh = (ix1 - ix0) * g, (iy1 - iy0) * g
        if ww < vw or wh < vh:
            continue
        window = _resize(orig_gray[iy0:iy1, ix0:ix1], ww, wh)
        if window.shape[0] < vh or window.shape[1] < vw:
            continue
        r1 = cv2.matchTemplate(window, crop, cv2.TM_CCOEFF_NORMED)
        r2 = cv2.matchTemplate(_grad(window, GRAD_BLUR), crop_g, cv2.TM_CCOEFF_NORMED)
        r = np.nan_to_num(0.5 * (r1 + r2), nan=-1.0)
        _, mx, _, loc = cv2.minMaxLoc(r)
        if mx > best[0]:
            bx0 = ix0 + loc[0] / g
            by0 = iy0 + loc[1] / g
            best = (float(mx), (bx0, by0, bx0 + sw, by0 + sh))
    return best  # type: ignore[return-value]


def chroma_distance(
    crop: np.ndarray, original: np.ndarray, box: tuple[float, ...], *, side: int = 32
) -> float:
    """Mean L1 distance of pixel chromaticities ``rgb / (r + g + b)`` (brightness-invariant).

    Args:
        crop: ``(h, w, 3) uint8`` RGB crop (grey ``(h, w)`` gives 0).
        original: ``(H, W, 3) uint8`` RGB original.
        box: ``(x0, y0, x1, y1)`` in original pixels.
        side: long side both are shrunk to.

    Returns:
        Distance in [0, 2]; 0 = same colours.
    """
    if np.ndim(crop) != 3 or np.ndim(original) != 3:
        return 0.0
    h, w = crop.shape[:2]
    s = side / max(h, w)
    vw, vh = max(2, round(w * s)), max(2, round(h * s))
    x0, y0 = max(0, round(box[0])), max(0, round(box[1]))
    x1 = min(original.shape[1], round(box[2]))
    y1 = min(original.shape[0], round(box[3]))
    if x1 - x0 < 1 or y1 - y0 < 1:
        return 2.0
    a = _resize(np.asarray(original[y0:y1, x0:x1, :3], np.float32), vw, vh) + 1.0
    b = _resize(np.asarray(crop[..., :3], np.float32), vw, vh) + 1.0
    a /= a.sum(axis=2, keepdims=True)
    b /= b.sum(axis=2, keepdims=True)
    return float(np.abs(a - b).sum(axis=2).mean())


def _region(orig: np.ndarray, box: tuple[float, ...]) -> tuple[int, int, int, int] | None:
    H, W = orig.shape[:2]
    x0, y0 = max(0, round(box[0])), max(0, round(box[1]))
    x1, y1 = min(W, round(box[2])), min(H, round(box[3]))
    if x1 - x0 < 4 or y1 - y0 < 4:
        return None
    return x0, y0, x1, y1


def unclipped_mask(crop: np.ndarray, *, lo: int = 3, hi: int = 252) -> np.ndarray | None:
    """Pixels of an edited crop that still carry grey levels: no channel clipped to 0 / 255.

    Brightness / contrast boosts clip highlights and shadows; those pixels no longer relate
    linearly to the original, so the exact-box check leaves them out.

    Args:
        crop: ``(h, w, 3) uint8`` RGB crop (grey ``(h, w)`` works too).

    Returns:
        ``(h, w) bool`` (True = usable), or None when fewer than 30 % of pixels are usable
        (then every pixel counts).
    """
    img = np.asarray(crop)
    if img.ndim == 3:
        img = img[..., :3]
        ok = ((img > lo) & (img < hi)).all(axis=2)
    else:
        ok = (img > lo) & (img < hi)
    return ok if ok.mean() >= 0.3 else None


def _ncc_weighted(a: np.ndarray, b: np.ndarray, wt: np.ndarray | None) -> float:
    if wt is None:
        return _ncc(a, b)
    tot = float(wt.sum())
    if tot < 16:
        return _ncc(a, b)
    a = a - float((a * wt).sum()) / tot
    b = b - float((b * wt).sum()) / tot
    den = float(np.sqrt((wt * a * a).sum() * (wt * b * b).sum()))
    if den < 1e-6:
        return 0.0
    return float((wt * a * b).sum() / den)


def full_res_score(
    crop_gray: np.ndarray,
    orig_gray: np.ndarray,
    box: tuple[float, ...],
    valid: np.ndarray | None = None,
) -> float:
    """Grey-level NCC of the crop and a box of the original at the finest common resolution.

    No cap on the comparison size: the larger of the two (crop or box region) is shrunk to
    the smaller one's pixel size, so every pixel of evidence counts and a box a few pixels
    off (a frame left out, a side cut short) loses correlation along that side.

    Args:
        crop_gray: ``(h, w) float32`` crop.
        orig_gray: ``(H, W) float32`` original.
        box: ``(x0, y0, x1, y1)`` in original pixels (rounded to whole pixels).
        valid: optional ``(h, w) bool`` crop pixels to use (see :func:`unclipped_mask`).

    Returns:
        NCC in [-1, 1]; higher = the box shows exactly the crop. -1 for an empty box.
    """
    reg = _region(orig_gray, box)
    if reg is None:
        return -1.0
    x0, y0, x1, y1 = reg
    region = orig_gray[y0:y1, x0:x1]
    h, w = crop_gray.shape
    wt = None if valid is None else valid.astype(np.float32)
    if (x1 - x0) * (y1 - y0) >= w * h:
        return _ncc_weighted(_resize(region, w, h), crop_gray, wt)
    if wt is not None:
        wt = (_resize(wt, x1 - x0, y1 - y0) > 0.99).astype(np.float32)
    return _ncc_weighted(region, _resize(crop_gray, x1 - x0, y1 - y0), wt)


def refine_sides(
    crop_gray: np.ndarray,
    orig_gray: np.ndarray,
    box: tuple[float, ...],
    *,
    valid: np.ndarray | None = None,
    max_rounds: int = 6,
) -> tuple[float, tuple[float, float, float, float]]:
    """Move each side of ``box`` independently to maximise :func:`full_res_score`.

    A local search in whole original pixels: for step sizes from ~2 % of the box side down
    to 1 px, each side is moved by ``±step`` while the score improves. Unlike the
    fixed-aspect template search this can fix a box whose aspect or one side is off (a
    black frame left out on one side, a crop resized to a slightly different aspect).

    Args:
        crop_gray: ``(h, w) float32`` crop.
        orig_gray: ``(H, W) float32`` original.
        box: starting ``(x0, y0, x1, y1)`` in original pixels.
        valid: optional ``(h, w) bool`` crop pixels to use (see :func:`unclipped_mask`).
        max_rounds: passes over the four sides per step size.

    Returns:
        ``(score, box)``: the best full-resolution NCC and its box (whole pixels).
    """
    H, W = orig_gray.shape
    cur = [
        float(np.clip(round(box[0]), 0, W - 1)),
        float(np.clip(round(box[1]), 0, H - 1)),
        float(np.clip(round(box[2]), 1, W)),
        float(np.clip(round(box[3]), 1, H)),
    ]
    best = full_res_score(crop_gray, orig_gray, cur, valid)
    side = max(cur[2] - cur[0], cur[3] - cur[1])
    step = max(1, round(0.02 * side))
    limits = (W, H, W, H)
    while True:
        for _ in range(max_rounds):
            improved = False
            for k in range(4):
                for d in (-step, step):
                    trial = list(cur)
                    trial[k] = float(np.clip(trial[k] + d, 0, limits[k]))
                    if trial[2] - trial[0] < 4 or trial[3] - trial[1] < 4:
                        continue
                    s = full_res_score(crop_gray, orig_gray, trial, valid)
                    if s > best + 1e-6:
                        best, cur, improved = s, trial, True
                        break
            if not improved:
                break
        if step == 1:
            break
        step = max(1, step // 2)
    return best, (cur[0], cur[1], cur[2], cur[3])


def _coarse(
    crop: np.ndarray, orig: np.ndarray, *, min_side: int, step: float, top_k: int
) -> list[tuple[float, float, float, float, float]]:
    """Multi-scale search on small images; returns ``[(score, x0, y0, x1, y1)]`` (same px)."""
    import cv2

    H, W = orig.shape
    h, w = crop.shape
    aspect = h / w
    max_w = min(W, H / aspect)
    min_w = max(min_side, min_side / aspect)
    peaks: list[tuple[float, float, float, float, float]] = []
    tw = max_w
    widths = []
    while tw >= min_w:
        widths.append(tw)
        tw /= step
    for tw in widths:
        th = tw * aspect
        tpl = _resize(crop, tw, th)
        if tpl.shape[0] > H or tpl.shape[1] > W or tpl.std() < 1e-3:
            continue
        res = cv2.matchTemplate(orig, tpl, cv2.TM_CCOEFF_NORMED)
        res = np.nan_to_num(res, nan=-1.0, posinf=-1.0, neginf=-1.0)
        # the best two well-separated peaks at this size
        for _ in range(2):
            _, mx, _, loc = cv2.minMaxLoc(res)
            x, y = loc
            ph, pw = tpl.shape
            peaks.append((float(mx), float(x), float(y), float(x + pw), float(y + ph)))
            res[max(0, y - ph // 2) : y + ph // 2 + 1, max(0, x - pw // 2) : x + pw // 2 + 1] = -1
    peaks.sort(key=lambda p: -p[0])
    kept: list[tuple[float, float, float, float, float]] = []
    for p in peaks:
        if all(iou(p[1:], k[1:]) < 0.5 for k in kept):
            kept.append(p)
        if len(kept) >= top_k:
            break
    return kept


def _refine_pass(
    crop: np.ndarray,
    orig: np.ndarray,
    box: tuple[float, float, float, float],
    *,
    side: int,
    rel_step: float,
    n_steps: int,
) -> tuple[float, tuple[float, float, float, float]]:
    import cv2

    H, W = orig.shape
    h, w = crop.shape
    aspect = h / w
    bw = box[2] - box[0]
    bh = box[3] - box[1]
    # working resolution: the box at most as large as the crop and ``side``
    g = min(1.0, w / bw, side / max(bw, bh))
    span = rel_step * n_steps
    mx, my = (0.1 + span) * bw + 4 / g, (0.1 + span) * bh + 4 / g
    wx0, wy0 = max(0, int(box[0] - mx)), max(0, int(box[1] - my))
    wx1, wy1 = min(W, int(np.ceil(box[2] + mx))), min(H, int(np.ceil(box[3] + my)))
    window = _resize(orig[wy0:wy1, wx0:wx1], (wx1 - wx0) * g, (wy1 - wy0) * g)
    best = (-2.0, box)
    for k in range(-n_steps, n_steps + 1):
        tw = bw * (1 + rel_step * k) * g
        th = tw * aspect
        if th > window.shape[0] or tw > window.shape[1] or tw < 4 or th < 4:
            continue
        tpl = _resize(crop, tw, th)
        if tpl.std() < 1e-3:
            continue
        res = cv2.matchTemplate(window, tpl, cv2.TM_CCOEFF_NORMED)
        _, mx_, _, loc = cv2.minMaxLoc(res)
        if mx_ > best[0]:
            x0 = wx0 + loc[0] / g
            y0 = wy0 + loc[1] / g
            best = (float(mx_), (x0, y0, x0 + tpl.shape[1] / g, y0 + tpl.shape[0] / g))
    return best


def _refine(
    crop: np.ndarray, orig: np.ndarray, box: tuple[float, float, float, float], *, work_side: int
) -> tuple[float, tuple[float, float, float, float]]:
    """Two passes around ``box`` (original px): sizes ±15 % in 3 % steps at <= 128 px, then
    ±3 % in 1 % steps at <= ``work_side`` px; returns ``(ncc, box)``."""
    _, box = _refine_pass(crop, orig, box, side=128, rel_step=0.03, n_steps=5)
    return _refine_pass(crop, orig, box, side=work_side, rel_step=0.01, n_steps=3)


def score_box(
    crop: np.ndarray,
    original: np.ndarray,
    box: tuple[float, float, float, float],
    *,
    work_side: int = 256,
    verify_side: int = 320,
) -> tuple[float, tuple[float, float, float, float]]:
    """Refine one approximate box and return its verification score (no global search).

    Used to rank many candidate originals cheaply once a coarse box is known.

    Args:
        crop: ``(h, w, 3) uint8`` RGB crop.
        original: ``(H, W, 3) uint8`` RGB original.
        box: approximate ``(x0, y0, x1, y1)`` in original pixels (within ~15 % in size).

    Returns:
        ``(score, box)`` as in :func:`locate` (score higher = better).
    """
    crop_g = to_gray(crop)
    orig_g = to_gray(original)
    _, fbox = _refine(crop_g, orig_g, box, work_side=work_side)
    largest = max(fbox[2] - fbox[0], fbox[3] - fbox[1])
    side = int(min(max(crop_g.shape), max(largest, VERIFY_MIN_SIDE), verify_side))
    score, vbox = verify_score(crop_g, orig_g, fbox, side=side)
    score -= max(0.0, chroma_distance(crop, original, vbox) - CHROMA_TOL)
    return score, vbox


def locate(
    crop: np.ndarray,
    original: np.ndarray,
    *,
    min_score: float = DEFAULT_MIN_SCORE,
    coarse_side: int = 200,
    min_box_side: int = 12,
    step: float = 1.06,
    top_k: int = 4,
    work_side: int = 256,
    verify_side: int = 320,
    tie_margin: float = 0.03,
    min_verify: float = DEFAULT_VERIFY_SCORE,
) -> Match:
    """Find the box of ``crop`` inside ``original``.

    Args:
        crop: ``(h, w, 3) uint8`` RGB (or grey ``(h, w)``) hand crop, any scale.
        original: ``(H, W, 3) uint8`` RGB (or grey) image the crop was cut from.
        min_score: verification score needed for ``located``.
        coarse_side: long side of the original in the coarse search.
        min_box_side: smallest box side considered in the coarse image, px.
        step: ratio between consecutive sizes in the coarse search.
        top_k: coarse peaks refined.
        work_side: cap on the fine search's box side, px.
        verify_side: cap on the verification's long side, px.
        tie_margin: a candidate at least 1.5x larger in area and within this margin of the
            best score wins (full-size photo over its thumbnail).
        min_verify: full-resolution NCC the side-refined box needs; below it the crop is
            ``not_found`` with ``info["flag"] == "loose"``.

    Returns:
        A :class:`Match`; ``box`` in original pixels (float, exclusive right/bottom).
    """
    crop_g = to_gray(crop)
    orig_g = to_gray(original)
    H, W = orig_g.shape
    f = min(1.0, coarse_side / max(H, W))
    orig_c = _resize(orig_g, W * f, H * f)
    # crop detail beyond the coarse box size is useless there: pre-shrink once
    cs = min(1.0, 2 * coarse_side / max(crop_g.shape))
    crop_c = _resize(crop_g, crop_g.shape[1] * cs, crop_g.shape[0] * cs)
    peaks = _coarse(crop_c, orig_c, min_side=min_box_side, step=step, top_k=top_k)
    if not peaks:
        return Match(None, -1.0, 0.0, "not_found", {"reason": "crop too large or flat"})
    refined = []
    for p in peaks:
        if p[0] < peaks[0][0] - PRUNE_MARGIN:
            break
        box = (p[1] / f, p[2] / f, p[3] / f, p[4] / f)
        refined.append((p[0], *_refine(crop_g, orig_g, box, work_side=work_side)))
    best_fine = max(r[1] for r in refined)
    refined = [r for r in refined if r[1] >= best_fine - PRUNE_MARGIN]
    # one comparison resolution for all candidates: the crop's, capped by the largest box
    largest = max(max(b[2] - b[0], b[3] - b[1]) for _, _, b in refined)
    # ... but never below VERIFY_MIN_SIDE: a tiny box (little evidence) upsampled against a
    # detailed crop scores low, which keeps smooth unrelated crops from matching small blobs
    side = int(min(max(crop_g.shape), max(largest, VERIFY_MIN_SIDE), verify_side))
    cands = []
    for coarse, fine, fbox in refined:
        vscore, vbox = verify_score(crop_g, orig_g, fbox, side=side)
        vscore -= max(0.0, chroma_distance(crop, original, vbox) - CHROMA_TOL)
        cands.append((vscore, fine, coarse, vbox))
    cands.sort(key=lambda c: -c[0])
    score, fine, coarse, box = cands[0]
    # a thumbnail of the same photo, upsampled, can match nearly as well as the full-size
    # region when the photo is smooth; the annotator crops the full-size one
    area = (box[2] - box[0]) * (box[3] - box[1])
    for c in cands[1:]:
        c_area = (c[3][2] - c[3][0]) * (c[3][3] - c[3][1])
        if c[0] >= score - tie_margin and c_area > 1.5 * area and c[0] >= min_score:
            score, fine, coarse, box = c
            area = c_area
    runner_up = cands[1][0] if len(cands) > 1 else None
    info = {
        "method": "ncc-multiscale",
        "coarse": round(coarse, 4),
        "fine": round(fine, 4),
        "runner_up": None if runner_up is None else round(runner_up, 4),
        "candidates": len(cands),
    }
    if score < min_score:
        x0, y0 = max(0.0, box[0]), max(0.0, box[1])
        x1, y1 = min(float(W), box[2]), min(float(H), box[3])
        return Match(None, score, 0.0, "not_found", info | {"best_box": [x0, y0, x1, y1]})
    verify, box = refine_sides(crop_g, orig_g, box, valid=unclipped_mask(crop))
    verify -= max(0.0, chroma_distance(crop, original, box) - CHROMA_TOL)
    info["verify"] = round(verify, 4)
    if verify < min_verify:
        info |= {
            "best_box": list(box),
            "flag": "loose",
            "reason": f"full-resolution check {verify:.3f} below {min_verify:.2f}",
        }
        return Match(None, score, 0.0, "not_found", info, verify=verify)
    scale = (box[2] - box[0]) / crop_g.shape[1]
    return Match(box, score, scale, "located", info, verify=verify)
