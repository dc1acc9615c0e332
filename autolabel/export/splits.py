"""A deterministic train/val split, grouped by source image and near-duplicate content.

Images are grouped when they have the same content hash (byte-identical copies) or the same
64-bit difference hash of their pixels (re-encoded, resized or renamed copies of one photo),
so a near-duplicate never ends up on both sides. Each group is placed by a hash of its
smallest content hash: the split depends only on the images' content, not on their order,
ids or the export run, and an image keeps its split when other images are added.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

TRAIN = "train"
VAL = "val"
DHASH_SIZE = 8
"""Difference hash of a ``(DHASH_SIZE, DHASH_SIZE + 1)`` grey thumbnail: 64 bits."""


def dhash(image: Any) -> str:
    """64-bit difference hash of a PIL image as 16 hex digits (higher = brighter to the right).

    The grey image is first box-averaged (``reduce``) down to at least 8x the
    ``(DHASH_SIZE + 1) x DHASH_SIZE`` grid, then resized to the grid (bilinear): the same hash
    as a direct bilinear resize up to ties in flat areas, at a fraction of the cost on
    full-size originals (the export hashes every one).

    Args:
        image: a PIL image (any mode, any size).
    """
    import numpy as np
    from PIL import Image

    grey = image.convert("L")
    factor = min(grey.size[0] // (8 * (DHASH_SIZE + 1)), grey.size[1] // (8 * DHASH_SIZE))
    if factor > 1:
        grey = grey.reduce(factor)
    small = grey.resize((DHASH_SIZE + 1, DHASH_SIZE), Image.Resampling.BILINEAR)
    px = np.asarray(small, dtype=np.int16).reshape(-1).tolist()
    bits = 0
    for y in range(DHASH_SIZE):
        row = px[y * (DHASH_SIZE + 1) : (y + 1) * (DHASH_SIZE + 1)]
        for x in range(DHASH_SIZE):
            bits = (bits << 1) | int(row[x + 1] > row[x])
    return f"{bits:016x}"


def split_unit(key: str) -> float:
    """``key`` -> a number in [0, 1) (first 8 bytes of its sha256): a group's score."""
    return int(hashlib.sha256(f"split:{key}".encode()).hexdigest()[:16], 16) / 2**64


def assign_splits(
    content: Mapping[int, str],
    dhashes: Mapping[int, str | None],
    *,
    val_fraction: float,
) -> dict[int, str]:
    """Split images into ``train``/``val`` by content groups.

    Args:
        content: image id -> content hash (sha256 of the file).
        dhashes: image id -> :func:`dhash` of its pixels (None when unknown).
        val_fraction: share of groups for validation, in [0, 1). A group goes to ``val``
            when the hash of its key is below it; if that leaves ``val`` empty while there
            are at least two groups, the group with the smallest hash goes there, so a
            small export still has a validation set; ``train`` is never left empty.

    Returns:
        image id -> ``"train"`` or ``"val"`` for every id of ``content``.
    """
    parent = {i: i for i in content}

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def union(a: int, b: int) -> None:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)

    first: dict[str, int] = {}
    for i in sorted(content):
        for key in (f"sha:{content[i]}", f"dhash:{dhashes.get(i)}" if dhashes.get(i) else None):
            if key is None:
                continue
            if key in first:
                union(first[key], i)
            else:
                first[key] = i
    groups: dict[int, list[int]] = {}
    for i in sorted(content):
        groups.setdefault(find(i), []).append(i)
    score = {root: split_unit(min(content[i] for i in members)) for root, members in groups.items()}
    val_roots = {r for r, s in score.items() if s < val_fraction}
    if val_fraction > 0 and not val_roots and len(groups) >= 2:
        val_roots = {min(score, key=lambda r: (score[r], r))}
    if val_roots and len(val_roots) == len(groups):  # never an empty training set
        val_roots.discard(max(score, key=lambda r: (score[r], r)))
    return {i: (VAL if find(i) in val_roots else TRAIN) for i in content}


def split_names(splits: Mapping[int, str], ids: Sequence[int]) -> dict[str, list[int]]:
    """``{"train": [...], "val": [...]}`` image ids in the order of ``ids``."""
    out: dict[str, list[int]] = {TRAIN: [], VAL: []}
    for i in ids:
        out[splits[i]].append(i)
    return out
