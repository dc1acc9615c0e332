"""Diversity for the review queue: k-center greedy over cheap image embeddings.

Reviewers should not see 50 near-duplicates in a row. Images are grouped around k-center
greedy centres; within a group each further item's priority is discounted, so the queue
(and the budget) spreads over the groups while the most informative items still lead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from autolabel.errors import ShapeError


def k_center_greedy(emb: np.ndarray, k: int, *, first: int = 0) -> np.ndarray:
    """Pick ``k`` rows of ``emb (n, d)`` that cover the set: each next pick is the farthest
    row from those already picked (a 2-approximation of the k-center problem).

    Returns ``(min(k, n),)`` int64 row indices, in pick order, starting with ``first``.
    """
    x = np.asarray(emb, np.float64)
    if x.ndim != 2:
        raise ShapeError(f"emb: expected shape (n, d), got {x.shape}")
    n = x.shape[0]
    k = min(int(k), n)
    if k <= 0:
        return np.zeros(0, np.int64)
    picks = np.empty(k, np.int64)
    picks[0] = first
    dist = ((x - x[first]) ** 2).sum(axis=1)
    for i in range(1, k):
        nxt = int(np.argmax(dist))
        picks[i] = nxt
        dist = np.minimum(dist, ((x - x[nxt]) ** 2).sum(axis=1))
    return picks


def assign_clusters(emb: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Index of the nearest centre row for each ``(n, d)`` row; ``(n,)`` int64.

    Rows containing NaN (no embedding) get -1.
    """
    x = np.asarray(emb, np.float64)
    c = np.asarray(centres, np.float64)
    out = np.full(x.shape[0], -1, np.int64)
    ok = ~np.isnan(x).any(axis=1)
    if c.shape[0] == 0 or not ok.any():
        return out
    xs = x[ok]
    best = np.full(xs.shape[0], np.inf)
    arg = np.zeros(xs.shape[0], np.int64)
    for j in range(c.shape[0]):
        d = ((xs - c[j]) ** 2).sum(axis=1)
        better = d < best
        best[better] = d[better]
        arg[better] = j
    out[ok] = arg
    return out


def cluster_images(emb: np.ndarray, *, k: int = 64) -> np.ndarray:
    """Group ``(n, d)`` image embeddings around k-center greedy centres; ``(n,)`` labels.

    Rows with NaN (unreadable images) get their own singleton labels, so they are never
    discounted as duplicates.
    """
    x = np.asarray(emb, np.float64)
    n = x.shape[0]
    labels = np.full(n, -1, np.int64)
    ok = np.flatnonzero(~np.isnan(x).any(axis=1)) if n else np.zeros(0, np.int64)
    if ok.size:
        centres = k_center_greedy(x[ok], k)
        labels[ok] = assign_clusters(x[ok], x[ok][centres])
    bad = np.flatnonzero(labels < 0)
    labels[bad] = labels.max(initial=-1) + 1 + np.arange(bad.size)
    return labels


def diverse_priority(value: np.ndarray, cluster: np.ndarray, *, decay: float) -> np.ndarray:
    """Discount value for repeats within a cluster: ``value * decay ** rank_in_cluster``.

    Args:
        value: ``(n,)`` informativeness, higher = review first.
        cluster: ``(n,)`` cluster label of each item's image.
        decay: in (0, 1]; 1 = no diversity, smaller = stronger spreading.

    Returns:
        ``(n,)`` priorities (higher = reviewed first).
    """
    v = np.asarray(value, np.float64).reshape(-1)
    c = np.asarray(cluster).reshape(-1)
    if v.shape != c.shape:
        raise ShapeError(f"cluster: expected shape {v.shape}, got {c.shape}")
    if v.size == 0 or decay >= 1.0:
        return v.copy()
    order = np.lexsort((-v, c))
    cs = c[order]
    start = np.r_[True, cs[1:] != cs[:-1]]
    idx = np.arange(v.size)
    first = np.maximum.accumulate(np.where(start, idx, 0))
    rank = np.empty(v.size)
    rank[order] = idx - first
    return v * np.power(decay, rank)


class EmbeddingCache:
    """Embeddings cached in an ``.npz`` file (``ids``, ``emb``), keyed by an integer id.

    ``autolabel select`` keeps image embeddings in ``<workspace>/cache/image_embeddings.npz``
    and crop embeddings (by proposal id) in ``<workspace>/cache/crop_embeddings.npz``; a
    corrupt or stale file is simply rebuilt.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._ids = np.zeros(0, np.int64)
        self._emb = np.zeros((0, 0), np.float32)
        if self.path.exists():
            try:
                with np.load(self.path) as z:
                    self._ids, self._emb = z["ids"].astype(np.int64), z["emb"]
            except (OSError, ValueError, KeyError):
                pass
        self._new_ids: list[np.ndarray] = []
        self._new_emb: list[np.ndarray] = []

    def lookup(self, ids: np.ndarray, dim: int) -> tuple[np.ndarray, np.ndarray]:
        """Cached rows for ``ids``: ``(n, dim)`` float32 (NaN where absent) and a found mask."""
        ids = np.asarray(ids, np.int64)
        out = np.full((ids.shape[0], dim), np.nan, np.float32)
        found = np.zeros(ids.shape[0], bool)
        if self._ids.size and self._emb.ndim == 2 and self._emb.shape[1] == dim:
            order = np.argsort(self._ids)
            sids = self._ids[order]
            pos = np.clip(np.searchsorted(sids, ids), 0, sids.size - 1)
            found = sids[pos] == ids
            out[found] = self._emb[order[pos[found]]]
        return out, found

    def put(self, ids: np.ndarray, emb: np.ndarray) -> None:
        """Remember rows (written by :meth:`save`)."""
        if len(ids):
            self._new_ids.append(np.asarray(ids, np.int64))
            self._new_emb.append(np.asarray(emb, np.float32))

    def save(self) -> None:
        """Merge new rows into the file (atomic replace)."""
        if not self._new_ids:
            return
        ids = np.concatenate(self._new_ids)
        emb = np.concatenate(self._new_emb)
        if self._ids.size and self._emb.ndim == 2 and self._emb.shape[1:] == emb.shape[1:]:
            keep = ~np.isin(self._ids, ids)
            ids = np.concatenate([self._ids[keep], ids])
            emb = np.concatenate([self._emb[keep], emb])
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.stem + ".tmp.npz")
        np.savez(tmp, ids=ids, emb=emb)
        tmp.replace(self.path)
        self._ids, self._emb = ids, emb
        self._new_ids, self._new_emb = [], []


def embed_image_file(path: str, *, max_pixels: int | None = None) -> np.ndarray | None:
    """Embedding of an image file (None if it cannot be read)."""
    from autolabel.errors import ImageError
    from autolabel.imageio import open_image
    from autolabel.select.signals import image_embedding

    try:
        kwargs: dict[str, Any] = {} if max_pixels is None else {"max_pixels": max_pixels}
        im = open_image(path, **kwargs)
        im.thumbnail((64, 64))
        return image_embedding(np.asarray(im.convert("RGB")))
    except ImageError:
        return None
