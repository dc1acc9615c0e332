"""Loading for propose: pending rows -> same-shape batches -> decoded images, ahead of the model.

- :func:`group_by_shape` cuts the stream of pending rows into batches whose images share
  one fed shape (no padding, so results do not depend on batch neighbours), holding at most
  ``window`` rows;
- :func:`prefetch` decodes batches in loader threads, at most ``depth`` batches ahead;
- :func:`load_for_detector` decodes, EXIF-corrects and shrinks one image and never raises
  for a bad file (the reason is returned).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from autolabel.errors import ImageError
from autolabel.geometry import input_shape

WINDOW_BATCHES = 8
"""Pending rows held for shape grouping, in batches (bounded; larger = fewer partial batches)."""


@dataclass
class Loaded:
    """One decoded image ready for the detector (or the reason it could not be read)."""

    image_id: int
    image: np.ndarray | None  # (h, w, 3) uint8 at the fed size
    width: int = 0  # original (EXIF-corrected) size
    height: int = 0
    error: str | None = None


def load_for_detector(
    image_id: int, path: str, *, max_size: int, max_pixels: int, max_side: int
) -> Loaded:
    """Decode, EXIF-correct and shrink one image (runs in loader threads / Ray tasks).

    Never raises for a bad image: the reason is returned in ``Loaded.error``.
    """
    from autolabel.imageio import open_image

    try:
        im = open_image(path, max_pixels=max_pixels, max_side=max_side)
        w, h = im.size
        fh, fw, scale = input_shape(w, h, max_size)
        if scale != 1.0:
            from PIL import Image

            im = im.resize((fw, fh), Image.Resampling.BILINEAR)
        arr = np.array(im, dtype=np.uint8)  # writable: torch.from_numpy warns otherwise
        return Loaded(image_id, arr, w, h)
    except ImageError as exc:
        return Loaded(
            image_id, None, error=f"{exc.reason}: {exc.detail}" if exc.detail else exc.reason
        )
    except MemoryError:
        return Loaded(image_id, None, error="too-large: out of memory while decoding")


def group_by_shape(
    rows: Iterable[Any], *, batch_size: int, max_size: int, window: int
) -> Iterator[list[Any]]:
    """Cut a stream of image rows into batches whose images share one fed shape.

    Rows (with ``id``, ``width``, ``height``) are held in per-shape groups; a group is
    emitted when it reaches ``batch_size``; when more than ``window`` rows are held the
    largest group is flushed (so memory is bounded and rare shapes still leave). Rows with
    unknown size form their own group.

    Yields:
        Lists of at most ``batch_size`` rows.
    """
    groups: dict[Any, list[Any]] = {}
    held = 0
    for row in rows:
        w, h = row["width"], row["height"]
        key = input_shape(w, h, max_size)[:2] if w and h else None
        g = groups.setdefault(key, [])
        g.append(row)
        held += 1
        if len(g) >= batch_size:
            yield g
            held -= len(g)
            del groups[key]
        elif held > window:
            big = max(groups, key=lambda k: len(groups[k]))
            out = groups.pop(big)
            held -= len(out)
            yield out
    for g in groups.values():
        if g:
            yield g


def prefetch(
    batches: Iterator[list[Any]], load: Callable[[Any], Loaded], *, workers: int, depth: int
) -> Iterator[list[Loaded]]:
    """Decode batches ahead of the consumer in ``workers`` threads, ``depth`` batches deep."""
    if workers <= 0:
        for rows in batches:
            yield [load(r) for r in rows]
        return
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="autolabel-load")
    pending: deque[list[Future[Loaded]]] = deque()
    try:
        for rows in batches:
            pending.append([pool.submit(load, r) for r in rows])
            if len(pending) > depth:
                yield [f.result() for f in pending.popleft()]
        while pending:
            yield [f.result() for f in pending.popleft()]
    finally:
        for futs in pending:
            for f in futs:
                f.cancel()
        pool.shutdown(wait=True, cancel_futures=True)
