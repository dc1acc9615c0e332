"""Uncertainty signals: pure functions over arrays of boxes and scores.

Every signal has a documented direction (see :data:`SIGNALS`). Missing values are NaN;
the calibrator imputes them and learns from the missingness itself.

Signals come from two places:

- the detector / refiner, stored per box in ``proposals.signals`` (``token_score``,
  ``second_score``, ``n_competing``, ``sam_iou``, ``sam_stability``, ``mask_box_iou``,
  ``exemplar_score``, ``tta_iou`` ...);
- this module, computed by ``autolabel select`` from all boxes of an image and the seed
  set (``margin``, ``n_competing``, ``size_outlier``, ``aspect_outlier``,
  ``exemplar_sim``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from autolabel.errors import ShapeError
from autolabel.geometry import as_boxes, box_iou, flip_boxes, mask_boxes, paired_iou

SIGNALS: dict[str, str] = {
    "score": "detector box confidence; higher = more likely correct",
    "token_score": "max token probability of the phrase; higher = more likely correct",
    "logit_margin": (
        "token score minus the best token probability of another phrase; higher = more likely "
        "correct"
    ),
    "query_rank": "rank of the box's query in its forward (0 = best); higher = less likely correct",
    "second_score": (
        "best other query / exemplar score overlapping the box; higher = less likely correct"
    ),
    "margin": (
        "score minus the best other box of the same phrase in the image (negative for "
        "boxes that are not the best); higher = more likely correct"
    ),
    "n_competing": "other boxes of the same phrase in the image; higher = less likely correct",
    "sam_iou": "SAM predicted mask IoU; higher = more likely correct",
    "sam_stability": "SAM mask stability score; higher = more likely correct",
    "mask_box_iou": "IoU of the detector box and the SAM mask's box; higher = more likely correct",
    "tta_iou": (
        "IoU with the best same-phrase box on the flipped / rescaled image; higher = more "
        "likely correct"
    ),
    "exemplar_score": "exemplar matcher score of the box; higher = more likely correct",
    "match_score": "exemplar detector colour correlation; higher = more likely correct",
    "grad_score": "exemplar detector gradient correlation; higher = more likely correct",
    "exemplar_sim": (
        "cosine similarity of the box crop to the closest seed crop; higher = more likely correct"
    ),
    "size_outlier": (
        "robust |z| of log(box area / image area) against the seed boxes; higher = less "
        "likely correct"
    ),
    "aspect_outlier": (
        "robust |z| of log(width / height) against the seed boxes; higher = less likely correct"
    ),
    "layout_outlier": (
        "RMS robust z of relative area, centre x, centre y and aspect against the seed boxes "
        "(select/layout.py); higher = less likely correct"
    ),
    "upscale": (
        "export size / box long side, relative to the seed boxes' (> 1.5 is never "
        "auto-accepted); higher = less likely correct"
    ),
    "snap_sides": (
        "sides of the box on an edge line or the image border after edge snapping, 0-4 "
        "(detect/snap.py); higher = more likely correct"
    ),
}
"""Every signal the selector knows, with its direction."""

EMBED_SIZE = 8
EMBED_DIM = EMBED_SIZE * EMBED_SIZE + 24
"""Length of :func:`image_embedding` / :func:`crop_embedding` rows at the default size."""


def group_competition(score: np.ndarray, group: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Margin to the next best box and number of competitors within each group.

    A group is usually one (image, phrase) pair. Vectorised: O(n log n) for any number of
    groups.

    Args:
        score: ``(n,)`` box scores.
        group: ``(n,)`` integer group codes.

    Returns:
        ``margin (n,)``: for the best box of a group its score minus the second best (its own
        score when alone); for every other box its score minus the best (<= 0). Higher =
        more likely correct.
        ``n_competing (n,)``: number of other boxes in the group. Higher = less likely
        correct.
    """
    score = np.asarray(score, np.float64).reshape(-1)
    group = np.asarray(group).reshape(-1)
    if score.shape != group.shape:
        raise ShapeError(f"group: expected shape {score.shape}, got {group.shape}")
    n = score.shape[0]
    if n == 0:
        return np.zeros(0), np.zeros(0)
    # a few (n,) temporaries at a time: select runs this over every current proposal
    order = np.lexsort((-score, group))
    g = group[order]
    start = np.empty(n, bool)
    start[0] = True
    np.not_equal(g[1:], g[:-1], out=start[1:])
    del g
    starts = np.flatnonzero(start)
    del start
    sizes = np.diff(np.r_[starts, n])
    s = score[order]
    second = np.where(sizes > 1, s[np.minimum(starts + 1, n - 1)], 0.0)
    ref = np.repeat(s[starts], sizes)  # the group's best; its best box: the second best
    ref[starts] = second
    s -= ref
    del ref
    margin = np.empty(n)
    margin[order] = s
    del s
    comp = np.empty(n)
    comp[order] = np.repeat(sizes - 1, sizes)
    return margin, comp


def group_codes(*keys: np.ndarray) -> np.ndarray:
    """Dense integer codes for the combinations of several ``(n,)`` key arrays."""
    if not keys:
        raise ShapeError("group_codes: expected at least one key array, got none")
    codes = None
    for k in keys:
        _, inv = np.unique(np.asarray(k), return_inverse=True)
        inv = inv.reshape(-1).astype(np.int64)
        codes = inv if codes is None else codes * (int(inv.max(initial=0)) + 1) + inv
        _, codes = np.unique(codes, return_inverse=True)
        codes = codes.reshape(-1).astype(np.int64)
    assert codes is not None
    return codes


def mask_box_iou(xyxy: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """IoU of each detector box ``(n, 4)`` with the box of its mask ``(n, H, W)``.

    Returns ``(n,)``; 0 for an empty mask. Higher = more likely correct (the mask agrees
    with the box).
    """
    mb = mask_boxes(masks)
    iou = paired_iou(as_boxes(xyxy), np.nan_to_num(mb, nan=0.0))
    iou[np.isnan(mb).any(axis=1)] = 0.0
    return iou


def tta_agreement(
    xyxy: np.ndarray,
    phrase: Sequence[str],
    aug_xyxy: np.ndarray,
    aug_phrase: Sequence[str],
) -> np.ndarray:
    """Agreement of boxes with a second prediction mapped back to the same image.

    Args:
        xyxy: ``(n, 4)`` original boxes.
        phrase: ``n`` phrases.
        aug_xyxy: ``(m, 4)`` boxes predicted on the augmented image, already mapped back.
        aug_phrase: ``m`` phrases.

    Returns:
        ``(n,)`` IoU with the best matching same-phrase box (0 if none). Higher = more
        likely correct.
    """
    a = as_boxes(xyxy)
    b = as_boxes(aug_xyxy, "aug_xyxy")
    if a.shape[0] == 0:
        return np.zeros(0)
    if b.shape[0] == 0:
        return np.zeros(a.shape[0])
    iou = box_iou(a, b)
    same = (
        np.asarray(list(phrase), dtype=object)[:, None]
        == np.asarray(list(aug_phrase), dtype=object)[None, :]
    )
    return np.where(same, iou, 0.0).max(axis=1)


def tta_signal(detector: Any, image: np.ndarray, prompt: str, proposals: Any) -> np.ndarray:
    """Run ``detector`` on the horizontally flipped image and score agreement (``tta_iou``).

    Costs one extra forward pass per image, so it is optional: call it from a propose
    loop (or a notebook) and store the result with ``proposals.with_data(tta_iou=...)``.

    Args:
        detector: an :mod:`autolabel.detect` detector (``detect(images, prompts)``).
        image: ``(H, W, 3) uint8`` RGB image the proposals were made on.
        prompt: the prompt used for the proposals.
        proposals: the :class:`autolabel.types.Proposals` of ``image``.

    Returns:
        ``(n,)`` float32 ``tta_iou`` per proposal.
    """
    flipped = np.ascontiguousarray(np.asarray(image)[:, ::-1])
    (aug,) = detector.detect([flipped], [prompt])
    back = flip_boxes(aug.xyxy, image.shape[1])
    return tta_agreement(proposals.xyxy, proposals.phrase, back, aug.phrase).astype(np.float32)


def crop_embedding(image: np.ndarray, xyxy: np.ndarray, *, size: int = 8) -> np.ndarray:
    """Cheap appearance embedding of box crops: a grey thumbnail plus a colour histogram.

    Args:
        image: ``(H, W, 3) uint8`` RGB image.
        xyxy: ``(n, 4)`` boxes in pixels of ``image``.
        size: thumbnail side.

    Returns:
        ``(n, size*size + 24)`` float32 rows, each centred and L2-normalised (zeros for an
        empty crop).
    """
    img = np.asarray(image)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ShapeError(f"image: expected shape (H, W, 3), got {img.shape}")
    b = as_boxes(xyxy)
    h, w = img.shape[:2]
    out = np.zeros((b.shape[0], size * size + 24), np.float32)
    for i, (x0, y0, x1, y1) in enumerate(b):
        xa, xb = int(np.clip(np.floor(x0), 0, w)), int(np.clip(np.ceil(x1), 0, w))
        ya, yb = int(np.clip(np.floor(y0), 0, h)), int(np.clip(np.ceil(y1), 0, h))
        if xb - xa < 1 or yb - ya < 1:
            continue
        out[i] = image_embedding(img[ya:yb, xa:xb], size=size)
    return out


def image_embedding(image: np.ndarray, *, size: int = 8) -> np.ndarray:
    """Embedding of a whole ``(H, W, 3) uint8`` image (see :func:`crop_embedding`).

    Returns ``(size*size + 24,)`` float32: a centred ``size x size`` grey thumbnail (block
    means) and an 8-bin-per-channel colour histogram, each half L2-normalised and weighted
    equally, so cosine similarity compares layout and colour.
    """
    img = np.asarray(image, np.float32)
    h, w = img.shape[:2]
    grey = img.mean(axis=2)
    ys = np.linspace(0, h, size + 1).astype(int)
    xs = np.linspace(0, w, size + 1).astype(int)
    ys[1:] = np.maximum(ys[1:], ys[:-1] + 1)
    xs[1:] = np.maximum(xs[1:], xs[:-1] + 1)
    ys = np.minimum(ys, h)
    xs = np.minimum(xs, w)
    thumb = np.add.reduceat(np.add.reduceat(grey, ys[:-1], axis=0), xs[:-1], axis=1)
    counts = np.diff(np.r_[ys[:-1], h])[:, None] * np.diff(np.r_[xs[:-1], w])[None, :]
    thumb = (thumb / np.maximum(counts, 1)).reshape(-1)
    thumb = thumb - thumb.mean()
    q = np.clip(img.reshape(-1, 3) // 32, 0, 7).astype(np.int64)
    hist = np.concatenate([np.bincount(q[:, c], minlength=8) for c in range(3)]).astype(np.float32)
    hist = hist - hist.mean()
    parts = []
    for v in (thumb, hist):
        norm = float(np.linalg.norm(v))
        parts.append(v / norm if norm > 0 else v)
    out = np.concatenate(parts).astype(np.float32) / np.sqrt(2.0)
    return out


def exemplar_similarity(embeddings: np.ndarray, seed_embeddings: np.ndarray) -> np.ndarray:
    """Cosine similarity of each ``(n, d)`` embedding to its closest ``(k, d)`` seed row.

    Returns ``(n,)`` in [-1, 1]; NaN for every row when there are no seed rows. Higher = more
    likely correct (looks like something a person cropped).
    """
    e = np.asarray(embeddings, np.float64)
    s = np.asarray(seed_embeddings, np.float64)
    if e.ndim != 2:
        raise ShapeError(f"embeddings: expected shape (n, d), got {e.shape}")
    if s.size == 0:
        return np.full(e.shape[0], np.nan)
    if s.ndim != 2 or s.shape[1] != e.shape[1]:
        raise ShapeError(f"seed_embeddings: expected shape (k, {e.shape[1]}), got {s.shape}")
    en = e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)
    sn = s / np.maximum(np.linalg.norm(s, axis=1, keepdims=True), 1e-12)
    return (en @ sn.T).max(axis=1)


def size_aspect_outliers(
    xyxy: np.ndarray,
    image_wh: np.ndarray,
    seed_xyxy: np.ndarray,
    seed_wh: np.ndarray,
    *,
    min_seed: int = 3,
) -> tuple[np.ndarray, np.ndarray]:
    """How unusual each box's relative size and aspect ratio are, against the seed boxes.

    Uses robust z-scores (median and 1.4826 * MAD, floored so that a tight seed set does not
    blow up) of ``log(box area / image area)`` and ``log(width / height)``.

    Args:
        xyxy: ``(n, 4)`` boxes.
        image_wh: ``(n, 2)`` width and height of each box's image.
        seed_xyxy: ``(k, 4)`` seed boxes.
        seed_wh: ``(k, 2)`` width and height of the seed images.
        min_seed: below this many seed boxes both outputs are NaN (unknown).

    Returns:
        ``size_outlier (n,)`` and ``aspect_outlier (n,)``, >= 0. Higher = less likely correct.
    """
    b = as_boxes(xyxy)
    s = as_boxes(seed_xyxy, "seed_xyxy")
    wh = np.asarray(image_wh, np.float64).reshape(-1, 2)
    swh = np.asarray(seed_wh, np.float64).reshape(-1, 2)
    if wh.shape[0] != b.shape[0]:
        raise ShapeError(f"image_wh: expected shape ({b.shape[0]}, 2), got {wh.shape}")
    if swh.shape[0] != s.shape[0]:
        raise ShapeError(f"seed_wh: expected shape ({s.shape[0]}, 2), got {swh.shape}")
    n = b.shape[0]
    if s.shape[0] < min_seed:
        return np.full(n, np.nan), np.full(n, np.nan)

    def feats(boxes: np.ndarray, sizes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        bw = np.clip(boxes[:, 2] - boxes[:, 0], 1e-3, None)
        bh = np.clip(boxes[:, 3] - boxes[:, 1], 1e-3, None)
        img_area = np.clip(sizes[:, 0] * sizes[:, 1], 1e-3, None)
        with np.errstate(invalid="ignore"):
            return np.log(bw * bh / img_area), np.log(bw / bh)

    la, lr = feats(b, wh)
    sa, sr = feats(s, swh)

    def robust_z(x: np.ndarray, ref: np.ndarray, floor: float) -> np.ndarray:
        med = np.median(ref)
        mad = 1.4826 * np.median(np.abs(ref - med))
        return np.abs(x - med) / max(mad, floor)

    return robust_z(la, sa, 0.25), robust_z(lr, sr, 0.15)
