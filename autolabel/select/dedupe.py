"""One crop per object: drop duplicates and smaller copies before routing.

A screenshot often shows the same product photo twice: the main picture and a thumbnail
of it in a "you may also like" or colour-variant row. Both match the prompt; the thumbnail
may even score higher. A dataset of crops wants the main picture once, so:

1. a box whose content is a *smaller copy* of another box of the image (downscaled
   correlation of the two crops >= ``same_content``, area <= 1 / ``min_area_ratio`` of
   it) is dropped, whatever its score: the thumbnail loses to the main photo;
2. a box overlapping a kept box of the same phrase (IoU >= ``iou_threshold``) is dropped;
   human-accepted and seed boxes are kept first, then by P(correct);
3. at most ``max_per_image`` boxes are kept per image (accepted ones count first).

Pure functions over arrays; the select run loads the pixels for :func:`content_signatures`.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator

import numpy as np

from autolabel.errors import ShapeError
from autolabel.geometry import as_boxes, box_iou, paired_iou

#: Most cells (groups x rows x rows) of one greedy table of :func:`duplicate_mask`.
_TABLE_CELLS = 1 << 16
#: Side of the downscaled crop compared for "same content".
SIGNATURE_SIDE = 12
#: Correlation of two signatures above which two crops show the same picture.
SAME_CONTENT = 0.9
#: A copy at most 1 / this of the other's area is "smaller".
MIN_AREA_RATIO = 1.5


def content_signatures(image: np.ndarray, xyxy: np.ndarray, *, side: int = SIGNATURE_SIDE):
    """Small zero-mean, unit-norm colour thumbnails of boxes (brightness/contrast invariant).

    Args:
        image: ``(H, W, 3) uint8`` RGB (or ``(H, W)`` grey) image.
        xyxy: ``(n, 4)`` boxes in its pixels.
        side: thumbnail side.

    Returns:
        ``(n, side * side * 3)`` float32; the dot product of two rows is their correlation
        (1 = same picture at any size). A row of zeros for an empty or flat box.
    """
    import cv2

    img = np.asarray(image)
    if img.ndim == 2:
        img = np.stack([img] * 3, axis=-1)
    img = img[..., :3].astype(np.float32)
    H, W = img.shape[:2]
    boxes = as_boxes(xyxy)
    out = np.zeros((boxes.shape[0], side * side * 3), np.float32)
    for i, (x0, y0, x1, y1) in enumerate(boxes):
        a, b = int(max(0, np.floor(x0))), int(max(0, np.floor(y0)))
        c, d = int(min(W, np.ceil(x1))), int(min(H, np.ceil(y1)))
        if c - a < 2 or d - b < 2:
            continue
        v = cv2.resize(img[b:d, a:c], (side, side), interpolation=cv2.INTER_AREA).reshape(-1)
        v = v - v.mean()
        norm = float(np.linalg.norm(v))
        if norm > 1e-3:
            out[i] = v / norm
    return out


def smaller_copies(
    xyxy: np.ndarray,
    signatures: np.ndarray,
    *,
    same_content: float = SAME_CONTENT,
    min_area_ratio: float = MIN_AREA_RATIO,
) -> np.ndarray:
    """Boxes of one image that show the same picture as a larger box of that image.

    Args:
        xyxy: ``(n, 4)`` boxes of one image.
        signatures: ``(n, d)`` rows of :func:`content_signatures`.

    Returns:
        ``(n,) int64``: index of the larger box each one copies, -1 for none. Higher
        correlation wins among several larger boxes.
    """
    b = as_boxes(xyxy).astype(np.float64)
    sig = np.asarray(signatures, np.float32)
    n = b.shape[0]
    if sig.shape[0] != n:
        raise ShapeError(f"signatures: expected {n} rows, got {sig.shape[0]}")
    area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    corr = sig @ sig.T
    larger = area[None, :] >= min_area_ratio * area[:, None]  # [i, j]: j is larger than i
    ok = larger & (corr >= same_content)
    if n == 0:
        return np.zeros(0, np.int64)
    # a box overlapping the larger one is a duplicate by IoU (step 2), not a separate copy
    ok &= box_iou(b, b) < 0.1
    best = np.where(ok, corr, -np.inf)
    return np.where(ok.any(axis=1), best.argmax(axis=1), -1).astype(np.int64)


def duplicate_mask(
    xyxy: np.ndarray,
    image_id: np.ndarray,
    phrase_code: np.ndarray,
    p: np.ndarray,
    *,
    accepted: np.ndarray | None = None,
    ignore: np.ndarray | None = None,
    copy_of: np.ndarray | None = None,
    iou_threshold: float = 0.5,
    max_per_image: int | None = None,
) -> np.ndarray:
    """Which proposals duplicate an accepted or better box (to be neither queued nor exported).

    Args:
        xyxy: ``(n, 4)`` boxes.
        image_id: ``(n,)`` image of each box.
        phrase_code: ``(n,)`` integer phrase of each box (-1 = any phrase, e.g. seed boxes).
        p: ``(n,)`` P(correct); higher is kept first.
        accepted: ``(n,) bool`` boxes that are labels already (human-accepted, seed): kept
            first, never dropped.
        ignore: ``(n,) bool`` boxes out of the contest (rejected by a person): never kept,
            never dropped, never counted.
        copy_of: ``(n,) int`` from :func:`smaller_copies` (global indices, -1 = none): a
            smaller copy is dropped while the box it copies is not ignored.
        iou_threshold: same-phrase overlap that makes a duplicate.
        max_per_image: most boxes kept per image (None = no limit).

    Returns:
        ``(n,) bool``, True = drop.
    """
    b = as_boxes(xyxy)
    n = b.shape[0]
    img = np.asarray(image_id).reshape(-1)
    ph = np.asarray(phrase_code).reshape(-1)
    pp = np.asarray(p, np.float64).reshape(-1)
    for name, arr in (("image_id", img), ("phrase_code", ph), ("p", pp)):
        if arr.shape[0] != n:
            raise ShapeError(f"{name}: expected {n} values, got {arr.shape[0]}")
    acc = np.zeros(n, bool) if accepted is None else np.asarray(accepted, bool).reshape(-1)
    ign = np.zeros(n, bool) if ignore is None else np.asarray(ignore, bool).reshape(-1) & ~acc
    drop = np.zeros(n, bool)
    if copy_of is not None:
        cp = np.asarray(copy_of, np.int64).reshape(-1)
        has = cp >= 0
        drop[has] = ~ign[cp[has]]
        drop &= ~acc & ~ign
    order = np.lexsort((-pp, ~acc, img))
    multi = np.zeros(n, bool)
    if n:
        # images with one box in the contest need no pairwise pass (it is kept)
        _, inv, counts = np.unique(img[~ign], return_inverse=True, return_counts=True)
        multi[np.flatnonzero(~ign)] = counts[inv] >= 2
    rows_all = order[multi[order]]  # grouped by image, accepted first, then by p
    if rows_all.size == 0:
        return drop
    cap = n + 1 if max_per_image is None else int(max_per_image)
    skip = ign | drop
    # the greedy pass is sequential only within an image: position by position over tables
    # of images, vectorised over the images
    for idx, valid, ov in _image_tables(rows_all, img[rows_all], b):
        pc = ph[idx]
        same = (pc[:, :, None] == pc[:, None, :]) | (pc[:, :, None] < 0) | (pc[:, None, :] < 0)
        conflict = same & (ov >= iou_threshold)
        kept = np.zeros(valid.shape, bool)
        n_kept = np.zeros(idx.shape[0], np.int64)
        for k in range(idx.shape[1]):
            r = idx[:, k]
            live = valid[:, k] & ~skip[r]
            dup = (conflict[:, k, :] & kept).any(axis=1) | (n_kept >= cap)
            gone = live & ~acc[r] & dup
            keep = live & ~gone
            kept[:, k] = keep
            n_kept += keep
            drop[r[gone]] = True
    return drop


def _image_tables(
    rows: np.ndarray, image_of: np.ndarray, b: np.ndarray
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The images with >= 2 of ``rows`` as padded tables, one image a table row: images of
    similar size (same power of two) share a table, of at most :data:`_TABLE_CELLS` pair
    cells (memory stays flat in the number of images).

    Args:
        rows: ``(m,)`` box rows grouped by image (each image's rows contiguous, in the order
            the caller wants them).
        image_of: ``(m,)`` image of each of ``rows``.
        b: ``(n, 4)`` boxes, indexed by ``rows``.

    Yields:
        ``(idx (t, G) int, valid (t, G) bool, iou (t, G, G))``: the box rows of ``t``
        images padded to ``G`` (padding: row 0, ``valid`` False) and the IoU of every pair
        of them (0 where a box has NaN).
    """
    if rows.size == 0:
        return
    starts = np.flatnonzero(np.r_[True, image_of[1:] != image_of[:-1]])
    sizes = np.diff(np.r_[starts, rows.size])
    multi = np.flatnonzero(sizes >= 2)
    bucket = np.ceil(np.log2(sizes[multi])).astype(np.int64)
    for j in np.unique(bucket):
        in_bucket = multi[bucket == j]
        G = int(sizes[in_bucket].max())
        step = max(1, _TABLE_CELLS // (G * G))
        pos = np.arange(G)
        for a in range(0, in_bucket.size, step):
            sel = in_bucket[a : a + step]
            valid = pos[None, :] < sizes[sel, None]
            idx = np.where(valid, rows[np.minimum(starts[sel, None] + pos, rows.size - 1)], 0)
            ia = np.broadcast_to(idx[:, :, None], (sel.size, G, G)).reshape(-1)
            ib = np.broadcast_to(idx[:, None, :], (sel.size, G, G)).reshape(-1)
            yield idx, valid, np.nan_to_num(paired_iou(b[ia], b[ib])).reshape(sel.size, G, G)


def _copy_candidates(
    b: np.ndarray, img: np.ndarray, p: np.ndarray, live: np.ndarray, min_p: float
) -> Iterator[tuple[int, np.ndarray]]:
    """Images with a live box (P >= min_p) and a separate live box >= MIN_AREA_RATIO larger:
    ``(image id, its live rows in index order)``, by image id, yielded as they are wanted
    (the caller stops at ``max_loads``); tested over :func:`_image_tables`."""
    rows = np.flatnonzero(live)
    order = rows[np.argsort(img[rows], kind="stable")]
    area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    hit = [np.zeros(0, img.dtype)]
    for idx, valid, ov in _image_tables(order, img[order], b):
        ar = area[idx]
        larger = ar[:, None, :] >= MIN_AREA_RATIO * ar[:, :, None]  # [t, i, j]: j larger
        small = valid & (p[idx] >= min_p)
        found = (larger & (ov < 0.1) & small[:, :, None] & valid[:, None, :]).any(axis=(1, 2))
        hit.append(img[idx[found, 0]])
    g = img[order]
    starts = np.flatnonzero(np.r_[True, g[1:] != g[:-1]]) if order.size else np.zeros(0, int)
    ends = np.r_[starts[1:], order.size].astype(np.int64)
    for k in np.flatnonzero(np.isin(g[starts], np.concatenate(hit))).tolist():
        yield int(g[starts[k]]), order[starts[k] : ends[k]]


def learned_max_per_image(seed_image_id: np.ndarray) -> int | None:
    """``select.max_per_image`` when not set: 1 if every seed original has exactly one crop.

    Args:
        seed_image_id: ``(k,)`` original of each located seed box.

    Returns:
        1, or None (no limit) when some original has several crops or there is no seed.
    """
    ids = np.asarray(seed_image_id).reshape(-1)
    if ids.size == 0:
        return None
    _, counts = np.unique(ids, return_counts=True)
    return 1 if counts.max() == 1 else None


def one_crop_per_object(
    xyxy: np.ndarray,
    image_id: np.ndarray,
    phrase_code: np.ndarray,
    p: np.ndarray,
    *,
    accepted: np.ndarray,
    ignore: np.ndarray,
    load: Callable[[int], np.ndarray | None],
    seed_xyxy: np.ndarray | None = None,
    seed_image_id: np.ndarray | None = None,
    max_per_image: int | None = None,
    max_loads: int = 2000,
    min_p: float = 0.0,
    chunk: int = 1 << 15,
) -> tuple[np.ndarray, dict[str, int]]:
    """Drop duplicates, smaller copies and boxes beyond ``max_per_image`` (steps 1-3).

    Seed boxes count as accepted boxes of any phrase. Pixels are loaded (through ``load``)
    only for images where a box with P(correct) >= ``min_p`` has a separate box at least
    :data:`MIN_AREA_RATIO` times larger (a possible copy), at most ``max_loads`` images;
    others get no "smaller copy" check.

    Args:
        xyxy, image_id, phrase_code, p: ``(n, ...)`` current proposals.
        accepted: ``(n,) bool`` human-accepted proposals.
        ignore: ``(n,) bool`` proposals a person rejected.
        load: ``image_id -> (H, W, 3) uint8`` RGB, or None when unreadable.
        seed_xyxy: ``(k, 4)`` located seed boxes; seed_image_id: ``(k,)`` their images.
        max_per_image: most boxes kept per image (None = no limit).
        max_loads: most images opened.
        min_p: smaller boxes below this P(correct) are not worth a copy check.
        chunk: about this many boxes are decided at a time, whole images each (every rule
            is within one image): memory stays flat in the number of boxes.

    Returns:
        ``(drop (n,) bool, {"duplicates", "copies", "over_limit", "images_loaded"})``.
    """
    xyxy = as_boxes(xyxy, dtype=None)  # float32 boxes stay so: each chunk's table is float64
    img = np.asarray(image_id, np.int64).reshape(-1)
    ph = np.asarray(phrase_code, np.int64).reshape(-1)
    pp = np.asarray(p, np.float64).reshape(-1)
    acc, ign = np.asarray(accepted, bool).reshape(-1), np.asarray(ignore, bool).reshape(-1)
    n = xyxy.shape[0]
    has_seed = seed_xyxy is not None and as_boxes(seed_xyxy).shape[0] > 0
    s_xyxy = as_boxes(seed_xyxy).astype(np.float64) if has_seed else np.zeros((0, 4))
    s_img = np.asarray(seed_image_id, np.int64).reshape(-1) if has_seed else np.zeros(0, np.int64)
    # rows by image: the usual order already (proposals are stored an image at a time), then
    # no sort and no sorted copy (three (n,) int64 arrays at the peak otherwise)
    order = None if n < 2 or bool((img[1:] >= img[:-1]).all()) else np.argsort(img, kind="stable")
    g = img if order is None else img[order]
    cuts = np.flatnonzero(g[1:] != g[:-1]) + 1  # image boundaries in ``order``
    del g
    bounds = [0, *cuts[np.diff(np.r_[0, cuts // chunk]) > 0].tolist(), n]
    drop = np.zeros(n, bool)
    stats = {"copies": 0, "duplicates": 0, "over_limit": 0, "images_loaded": 0}
    for a, z in itertools.pairwise(bounds):
        if a == z:
            continue
        r = np.arange(a, z) if order is None else np.sort(order[a:z])
        mine = np.isin(s_img, img[r])
        k = int(mine.sum())  # seed boxes: accepted boxes of any phrase, after the proposals
        table = (
            np.concatenate([xyxy[r], s_xyxy[mine]], dtype=np.float64), np.r_[img[r], s_img[mine]],
            np.r_[ph[r], np.full(k, -1, np.int64)], np.r_[pp[r], np.ones(k)],
            np.r_[acc[r], np.ones(k, bool)], np.r_[ign[r], np.zeros(k, bool)],
        )  # fmt: skip
        left = max_loads - stats["images_loaded"]
        drop[r], part = _decide_images(table, r.size, load, max_per_image, left, min_p)
        for key, v in part.items():
            stats[key] += v
    return drop, stats


def _decide_images(
    table: tuple[np.ndarray, ...],
    n: int,
    load: Callable[[int], np.ndarray | None],
    max_per_image: int | None,
    max_loads: int,
    min_p: float,
) -> tuple[np.ndarray, dict[str, int]]:
    """:func:`one_crop_per_object` over whole images: ``table`` is ``(boxes, image, phrase,
    p, accepted, ignore)`` of their ``n`` proposals (index order) followed by their seed
    boxes; returns the proposals' drops and counts."""
    bx, img, ph, pp, acc, ign = table
    live = ~ign
    copy_of = np.full(bx.shape[0], -1, np.int64)
    loaded = 0
    for i, rows in _copy_candidates(bx, img, pp, live, min_p):
        if loaded >= max_loads:
            break
        pixels = load(i)
        loaded += 1
        if pixels is None:
            continue
        local = smaller_copies(bx[rows], content_signatures(pixels, bx[rows]))
        copy_of[rows[local >= 0]] = rows[local[local >= 0]]
    no_cap = duplicate_mask(bx, img, ph, pp, accepted=acc, ignore=ign, copy_of=copy_of)
    drop = duplicate_mask(
        bx, img, ph, pp, accepted=acc, ignore=ign, copy_of=copy_of, max_per_image=max_per_image
    )
    copies = (copy_of >= 0) & drop & ~acc
    stats = {
        "copies": int(copies[:n].sum()),
        "duplicates": int((no_cap & ~copies)[:n].sum()),
        "over_limit": int((drop & ~no_cap)[:n].sum()),
        "images_loaded": loaded,
    }
    return drop[:n], stats
