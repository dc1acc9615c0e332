"""A weight-free detector: find the objects shown in exemplar crops again in new images.

Multi-scale normalised cross-correlation (OpenCV ``TM_CCOEFF_NORMED``, invariant to the
brightness/contrast changes of hand crops): a coarse pass over a downscaled grey image and a
geometric range of (cached) template sizes proposes peaks; those within ``refine_margin`` of
the best are refined in colour at full resolution
over nearby scales and positions; overlapping hits are suppressed (NMS). The aspect ratio
of each exemplar is kept. Nothing above ``box_threshold`` -> empty ``Proposals``.

Signals in ``Proposals.data`` (direction given):

- ``match_score``: the refined colour correlation in [0, 1] (higher = better).
- ``grad_score``: correlation of the (blurred) image gradients of the exemplar and the hit,
  in [0, 1] (higher = better). Flat or merely similar-coloured regions score high on colour
  but low here, so ``score`` = mean of the two.
- ``coarse_score``: the correlation found in the coarse pass (higher = better).
- ``second_score``: best correlation of another suppressed candidate overlapping this box
  (IoU > 0.3) with a *different* exemplar (lower = less ambiguous; 0 when none).
- ``exemplar_index``: which exemplar matched (an id, no direction).
- ``scale``: matched size / exemplar size (no direction).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from autolabel.detect.grounding_dino import normalize_phrases
from autolabel.errors import InputError, ShapeError
from autolabel.geometry import box_iou, nms
from autolabel.types import Proposals

#: Template long side (px) of the reduced-resolution step of the refinement.
REFINE_SIDE = 96
#: Resized templates kept for reuse: at most this many, each at most this many pixels
#: (coarse and reduced-resolution templates; full-resolution ones are not kept).
CACHE_MAX_ITEMS = 2048
CACHE_MAX_PIXELS = 128 * 128
#: Smallest template side (px) on a coarse pyramid level.
COARSE_MIN = 20

SIGNALS = ("match_score", "grad_score", "coarse_score", "second_score", "exemplar_index", "scale")


def _load(ex: Any, i: int) -> np.ndarray:
    if isinstance(ex, (str, Path)):
        from autolabel.imageio import load_rgb

        return load_rgb(ex)
    arr = np.asarray(ex)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
        raise ShapeError(
            f"exemplars[{i}]: expected an (H, W, 3) uint8 RGB array or an image path, got "
            f"shape {arr.shape} dtype {arr.dtype}"
        )
    return arr


def _grey(rgb: np.ndarray, *, full: bool = False, side: int = 160) -> np.ndarray:
    """Grey copy of an exemplar, reduced to ``side`` px on the long side unless ``full``."""
    import cv2

    g = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)
    f = side / max(g.shape)
    if full or f >= 1:
        return g
    return cv2.resize(
        g,
        (max(4, round(g.shape[1] * f)), max(4, round(g.shape[0] * f))),
        interpolation=cv2.INTER_AREA,
    )


def _gradients(rgb: np.ndarray) -> np.ndarray:
    import cv2

    g = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32)
    g = cv2.GaussianBlur(g, (0, 0), 1.0)
    return np.stack([cv2.Sobel(g, cv2.CV_32F, 1, 0), cv2.Sobel(g, cv2.CV_32F, 0, 1)])


def _grad_ncc(exemplar: np.ndarray, image: np.ndarray, box: np.ndarray) -> float:
    """Normalised correlation (no mean removal) of the gradient fields of the exemplar
    resized to ``box`` and the image inside ``box``; in [-1, 1]. A box larger than the
    exemplar is compared at the exemplar's resolution (the detail it lacks adds nothing)."""
    import cv2

    x0, y0, x1, y1 = (round(float(v)) for v in box)
    patch = image[max(0, y0) : y1, max(0, x0) : x1]
    if patch.shape[0] < 4 or patch.shape[1] < 4:
        return 0.0
    g = min(1.0, max(exemplar.shape[:2]) / max(patch.shape[:2]))
    if g < 1:
        patch = cv2.resize(
            patch,
            (max(4, round(patch.shape[1] * g)), max(4, round(patch.shape[0] * g))),
            interpolation=cv2.INTER_AREA,
        )
    tmpl = cv2.resize(exemplar, (patch.shape[1], patch.shape[0]), interpolation=cv2.INTER_AREA)
    a = _gradients(tmpl).astype(np.float64).ravel()
    b = _gradients(patch).astype(np.float64).ravel()
    den = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / den) if den > 0 else 0.0


class ExemplarDetector:
    """Finds exemplar objects in images (``Detector`` protocol); needs no weights.

    Args:
        exemplars: seed crops, ``(H, W, 3) uint8`` arrays or image paths.
        phrases: one phrase per exemplar (or one for all); None = the prompt's first phrase
            at detect time (or ``"object"``).
        box_threshold: minimum ``score`` (mean of colour and gradient correlation, 0..1)
            to report a box; true matches of the synthetic tests score > 0.85, clutter < 0.75.
        min_size: smallest matched long side in pixels.
        max_size_frac: largest matched long side as a fraction of the image's long side.
        scale_step: ratio between consecutive template sizes in the coarse pass.
        coarse_side: the image is downscaled to at most this long side for the coarse pass.
        nms_iou: overlap above which the weaker hit is suppressed.
        max_per_image: most boxes returned per image.
        refine_margin: coarse hits whose grey correlation trails the best by more than this
            are not refined (the full-resolution refinement is the costly step).
        model, device, dtype, text_threshold: accepted so the generic options callers pass
            to every detector work; ignored (this detector has no weights, runs on CPU).
    """

    name = "exemplar"
    text_threshold = 0.0

    def __init__(
        self,
        exemplars: Sequence[Any],
        phrases: Sequence[str] | str | None = None,
        *,
        box_threshold: float = 0.78,
        min_size: int = 24,
        max_size_frac: float = 1.0,
        scale_step: float = 1.08,
        coarse_side: int = 400,
        nms_iou: float = 0.3,
        max_per_image: int = 20,
        refine_margin: float = 0.2,
        model: str | None = None,
        device: str | None = None,
        dtype: str | None = None,
        text_threshold: float | None = None,
    ) -> None:
        if len(exemplars) == 0:
            raise InputError("exemplar detector: expected at least one exemplar crop, got none")
        self.exemplars = [_load(e, i) for i, e in enumerate(exemplars)]
        for i, e in enumerate(self.exemplars):
            if min(e.shape[:2]) < 4:
                raise ShapeError(f"exemplars[{i}]: expected at least 4x4 pixels, got {e.shape[:2]}")
        if isinstance(phrases, str):
            phrases = [phrases] * len(self.exemplars)
        if phrases is not None and len(phrases) != len(self.exemplars):
            raise ShapeError(
                f"phrases: expected one per exemplar ({len(self.exemplars)}), got {len(phrases)}"
            )
        if not 0.0 <= box_threshold <= 1.0:
            raise InputError(f"box_threshold: expected a value in [0, 1], got {box_threshold}")
        self.phrases = None if phrases is None else [" ".join(p.lower().split()) for p in phrases]
        self.box_threshold = float(box_threshold)
        self.min_size = int(min_size)
        self.max_size_frac = float(max_size_frac)
        self.scale_step = float(scale_step)
        self.coarse_side = int(coarse_side)
        self.nms_iou = float(nms_iou)
        self.max_per_image = int(max_per_image)
        self.refine_margin = float(refine_margin)
        h = hashlib.sha256()
        for e in self.exemplars:
            h.update(str(e.shape).encode())
            h.update(np.ascontiguousarray(e).tobytes())
        h.update(
            repr((self.phrases, min_size, max_size_frac, scale_step, coarse_side, nms_iou)).encode()
        )
        self.model_version = h.hexdigest()[:16]
        self.model_id = f"exemplar:{len(self.exemplars)}"
        # coarse templates are grey and small: keep a reduced copy of each exemplar to
        # resize from, and cache resized templates (images of one size reuse them)
        self._grey = [_grey(e) for e in self.exemplars]
        self._cache: dict[tuple[int, int, int, bool], np.ndarray] = {}

    def _template(self, k: int, tw: int, th: int, grey: bool) -> np.ndarray:
        import cv2

        key = (k, tw, th, grey)
        t = self._cache.get(key)
        if t is None:
            src = self._grey[k] if grey else self.exemplars[k]
            if grey and (tw > src.shape[1] or th > src.shape[0]):
                src = _grey(self.exemplars[k], full=True)
            interp = cv2.INTER_AREA if tw < src.shape[1] else cv2.INTER_LINEAR
            t = cv2.resize(src, (tw, th), interpolation=interp)
            if tw * th <= CACHE_MAX_PIXELS:  # small (coarse / reduced) templates only
                if len(self._cache) >= CACHE_MAX_ITEMS:
                    self._cache.clear()
                self._cache[key] = t
        return t

    # -- public ----------------------------------------------------------------------------
    def detect(self, images: Sequence[np.ndarray], prompts: Sequence[str]) -> list[Proposals]:
        """Find the exemplars in each image.

        Args:
            images: ``B`` arrays ``(H, W, 3) uint8`` RGB.
            prompts: ``B`` prompts; used only for the phrase when ``phrases`` is None.

        Returns:
            ``B`` ``Proposals``; empty where no exemplar matches above ``box_threshold``.
        """
        if isinstance(prompts, str):
            prompts = [prompts] * len(images)
        if len(prompts) != len(images):
            raise ShapeError(f"prompts: expected one per image ({len(images)}), got {len(prompts)}")
        out = []
        for i, (img, prompt) in enumerate(zip(images, prompts, strict=True)):
            arr = np.asarray(img)
            if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
                raise ShapeError(
                    f"images[{i}]: expected an (H, W, 3) uint8 RGB array, got shape {arr.shape} "
                    f"dtype {arr.dtype}"
                )
            out.append(self._detect_one(arr, prompt))
        return out

    # -- internals -------------------------------------------------------------------------
    def _phrase(self, k: int, prompt: str) -> str:
        if self.phrases is not None:
            return self.phrases[k]
        ph = normalize_phrases(prompt or "")
        return ph[0] if ph else "object"

    def _sizes(self, ex: np.ndarray, hw: tuple[int, int]) -> list[float]:
        """Candidate scales (matched long side / exemplar long side)."""
        eh, ew = ex.shape[:2]
        long_ex = max(eh, ew)
        # largest size that fits the image with this aspect ratio
        fit = min(hw[0] / eh, hw[1] / ew)
        hi = min(fit, self.max_size_frac * max(hw) / long_ex)
        lo = self.min_size / long_ex
        if hi < lo:
            return []
        n = int(np.floor(np.log(hi / lo) / np.log(self.scale_step))) + 1
        return [hi / self.scale_step**j for j in range(n)]

    def _detect_one(self, image: np.ndarray, prompt: str) -> Proposals:
        import cv2

        H, W = image.shape[:2]
        f = min(1.0, self.coarse_side / max(H, W))
        small = (
            cv2.resize(
                image, (max(1, round(W * f)), max(1, round(H * f))), interpolation=cv2.INTER_AREA
            )
            if f < 1
            else image
        )
        # grey pyramid: a large template is matched on a coarser level (>= COARSE_MIN px),
        # which costs a fraction and finds the same peak; colour decides in refinement
        levels = [cv2.cvtColor(np.ascontiguousarray(small), cv2.COLOR_RGB2GRAY)]
        while len(levels) < 4 and min(levels[-1].shape) >= 2 * COARSE_MIN:
            levels.append(cv2.pyrDown(levels[-1]))
        cands: list[tuple[float, float, float, float, float, int, float]] = []
        coarse_t = max(0.0, self.box_threshold - 0.15)
        for k, ex in enumerate(self.exemplars):
            eh, ew = ex.shape[:2]
            for s in self._sizes(ex, (H, W)):
                tw, th = round(ew * s * f), round(eh * s * f)
                if min(tw, th) < 6 or tw > small.shape[1] or th > small.shape[0]:
                    continue
                lv = 0
                while lv + 1 < len(levels) and min(tw, th) / 2 ** (lv + 1) >= COARSE_MIN:
                    lv += 1
                img_l = levels[lv]
                ltw, lth = max(1, round(tw / 2**lv)), max(1, round(th / 2**lv))
                if ltw > img_l.shape[1] or lth > img_l.shape[0]:
                    continue
                tmpl = self._template(k, ltw, lth, True)
                if float(tmpl.std()) < 2.0:
                    continue  # a flat template correlates with noise
                r = cv2.matchTemplate(img_l, tmpl, cv2.TM_CCOEFF_NORMED)
                np.nan_to_num(r, copy=False, nan=-1.0, posinf=-1.0, neginf=-1.0)
                if float(r.max()) <= coarse_t:
                    continue
                ksz = max(3, (min(ltw, lth) // 2) | 1)
                peaks = (r >= cv2.dilate(r, np.ones((ksz, ksz), np.uint8))) & (r > coarse_t)
                ys, xs = np.nonzero(peaks)
                if len(ys) > 5:
                    top = np.argsort(-r[ys, xs])[:5]
                    ys, xs = ys[top], xs[top]
                m = 2**lv / f
                for y, x in zip(ys, xs, strict=True):
                    cands.append(
                        (x * m, y * m, x * m + tw / f, y * m + th / f, float(r[y, x]), k, s)
                    )
        if not cands:
            return Proposals.empty(SIGNALS)
        arr = np.asarray(cands, np.float64)
        keep = nms(arr[:, :4], arr[:, 4], self.nms_iou)[: self.max_per_image]
        keep = keep[arr[keep, 4] >= arr[keep, 4].max() - self.refine_margin]
        refined = [self._refine(image, arr[i]) for i in keep]
        boxes = np.asarray([r[0] for r in refined], np.float64).reshape(-1, 4)
        color = np.asarray([r[1] for r in refined], np.float64).clip(0, 1)
        scales = np.asarray([r[2] for r in refined], np.float64)
        grads = np.asarray(
            [
                _grad_ncc(self.exemplars[int(arr[i, 5])], image, b)
                for i, b in zip(keep, boxes, strict=True)
            ],
            np.float64,
        ).clip(0, 1)
        scores = (color + grads) / 2
        exi = arr[keep, 5].astype(np.int64)
        ok = scores > self.box_threshold
        if not ok.any():
            return Proposals.empty(SIGNALS)
        order = nms(boxes[ok], scores[ok], self.nms_iou)[: self.max_per_image]
        idx = np.flatnonzero(ok)[order]
        # ambiguity: best other-exemplar candidate overlapping each kept box
        iou = box_iou(boxes[idx], arr[:, :4])
        other = arr[None, :, 5] != exi[idx, None]
        second = np.where((iou > 0.3) & other, arr[None, :, 4], 0.0).max(axis=1).clip(0, 1)
        return Proposals(
            xyxy=boxes[idx].astype(np.float32),
            score=scores[idx].clip(0, 1).astype(np.float32),
            phrase=[self._phrase(int(k), prompt) for k in exi[idx]],
            data={
                "match_score": color[idx].astype(np.float32),
                "grad_score": grads[idx].astype(np.float32),
                "coarse_score": arr[keep, 4][idx].clip(0, 1).astype(np.float32),
                "second_score": second.astype(np.float32),
                "exemplar_index": exi[idx].astype(np.float32),
                "scale": scales[idx].astype(np.float32),
            },
        )

    def _refine(self, image: np.ndarray, cand: np.ndarray) -> tuple[np.ndarray, float, float]:
        """Search around a coarse hit over nearby scales: first on a copy of the window
        reduced so the template is ~``REFINE_SIDE`` px, then at full resolution at the best
        scale within a pixel or two of the best place (the colour score is the full-res one)."""
        import cv2

        H, W = image.shape[:2]
        x0, y0, x1, y1, _, k, s = cand
        k = int(k)
        ex = self.exemplars[k]
        eh, ew = ex.shape[:2]
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        big = max(ew, eh) * s * 1.06
        pad0 = max(4, round(0.06 * big))
        wx0 = int(max(0, np.floor(cx - ew * s * 0.53 - pad0)))
        wy0 = int(max(0, np.floor(cy - eh * s * 0.53 - pad0)))
        wx1 = int(min(W, np.ceil(cx + ew * s * 0.53 + pad0)))
        wy1 = int(min(H, np.ceil(cy + eh * s * 0.53 + pad0)))
        g = min(1.0, REFINE_SIDE / max(1.0, max(ew, eh) * s))
        win = image[wy0:wy1, wx0:wx1]
        if g < 1:
            win = cv2.resize(
                win,
                (max(1, round(win.shape[1] * g)), max(1, round(win.shape[0] * g))),
                interpolation=cv2.INTER_AREA,
            )
        best_mid = (-2.0, 0.0, 0.0, s)
        for ds in (0.94, 0.97, 1.0, 1.03, 1.06):
            ss = s * ds
            tw, th = round(ew * ss * g), round(eh * ss * g)
            if tw < 4 or th < 4 or tw > win.shape[1] or th > win.shape[0]:
                continue
            r = cv2.matchTemplate(win, self._template(k, tw, th, False), cv2.TM_CCOEFF_NORMED)
            np.nan_to_num(r, copy=False, nan=-1.0, posinf=-1.0, neginf=-1.0)
            _, mx, _, loc = cv2.minMaxLoc(r)
            if mx > best_mid[0]:
                best_mid = (mx, wx0 + loc[0] / g, wy0 + loc[1] / g, ss)
        if best_mid[0] < -1.5:
            return np.array([x0, y0, x1, y1]), -1.0, s
        _, bx, by, ss = best_mid
        tw, th = round(ew * ss), round(eh * ss)
        if tw < 4 or th < 4 or tw > W or th > H:
            return np.array([x0, y0, x1, y1]), -1.0, s
        pad = int(np.ceil(1 / g)) + 1
        fx0, fy0 = int(max(0, round(bx) - pad)), int(max(0, round(by) - pad))
        fx1, fy1 = int(min(W, round(bx) + tw + pad)), int(min(H, round(by) + th + pad))
        fx0, fy0 = min(fx0, W - tw), min(fy0, H - th)
        fx1, fy1 = max(fx1, fx0 + tw), max(fy1, fy0 + th)
        r = cv2.matchTemplate(
            image[fy0:fy1, fx0:fx1], self._template(k, tw, th, False), cv2.TM_CCOEFF_NORMED
        )
        np.nan_to_num(r, copy=False, nan=-1.0, posinf=-1.0, neginf=-1.0)
        _, mx, _, loc = cv2.minMaxLoc(r)
        bx, by = fx0 + loc[0], fy0 + loc[1]
        return np.array([bx, by, bx + tw, by + th], np.float64), float(mx), ss
