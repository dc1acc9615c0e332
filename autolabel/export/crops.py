"""Cutting standard-size crops out of full-resolution originals, fast and in parallel.

One task per original image: the file is read once (its sha256 is computed from the same
bytes), decoded once for all its boxes, and every crop is resized and written as PNG. JPEGs
that are downscaled by 2x or more are decoded in Pillow's *draft* mode (the DCT scales the
image by 1/2, 1/4 or 1/8 while decoding, which is much cheaper than decoding the full image
and resizing). Boxes are given in EXIF-corrected pixels; they are mapped into the stored
(raw) pixel grid, the region is resized there, and the EXIF transpose is applied to the small
result only.

The same task puts the original into the export bundle (``bundle_dir``): a hard link (or a
copy) of the file when its stored pixels are upright, otherwise an upright re-encoded copy, so
that full-image formats reference pixels that match their boxes whatever loader reads them.
It also computes a difference hash of the upright pixels for the train/val grouping.

This module only imports Pillow (inside functions) so worker processes start quickly.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from autolabel.export.geometry import (
    ORIENTATION_OP,
    Box,
    corrected_to_raw,
    draft_factor,
)

K = TypeVar("K")

PAD_FILL = (128, 128, 128)
"""Neutral grey used around the crop in ``pad`` mode."""
PNG_COMPRESS_LEVEL = 1
"""zlib level for crop PNGs: level 1 is ~3x faster than Pillow's default 6, ~15% larger."""


@dataclass(frozen=True)
class CropJob:
    """One crop to write.

    Attributes:
        out_path: destination PNG path.
        region: ``(x0, y0, x1, y1)`` float region in EXIF-corrected pixels (margin applied).
        out_size: ``(w, h)`` of the resized region.
        canvas: ``(w, h)`` of the written image (larger than ``out_size`` in pad mode).
        offset: paste position of the resized region on the canvas.
    """

    out_path: str
    region: Box
    out_size: tuple[int, int]
    canvas: tuple[int, int]
    offset: tuple[int, int]


@dataclass(frozen=True)
class ImageTask:
    """All crops of one original.

    Attributes:
        path: the original image file.
        width: EXIF-corrected width recorded at ingest (boxes refer to this size).
        height: EXIF-corrected height recorded at ingest.
        jobs: the crops to cut (may be empty: then only the hash is computed).
        expected_sha256: the hash recorded at ingest; a full-file hash that differs from the
            file's bytes now makes the task fail with ``changed`` (partial ``head<N>:``
            hashes are not compared).
        max_pixels: decompression-bomb guard passed to the image reader.
        max_side: longest-side guard.
        bundle_dir: folder to put the bundle copy of the original in (None: no copy).
        bundle_stem: file stem of that copy (the extension follows the file written).
    """

    path: str
    width: int
    height: int
    jobs: tuple[CropJob, ...] = ()
    expected_sha256: str | None = None
    max_pixels: int = 200_000_000
    max_side: int = 30_000
    bundle_dir: str | None = None
    bundle_stem: str = "image"


@dataclass
class TaskResult:
    """What happened to one :class:`ImageTask`.

    Attributes:
        path: the original.
        sha256: hex digest of the original's bytes as read now (None if unreadable).
        error: ``"<reason>: <detail>"`` when the image could not be used, else None.
        written: number of crops written.
        draft: the JPEG draft reduction used (1 = full decode).
        dhash: difference hash of the upright pixels (see :func:`autolabel.export.splits.dhash`).
        bundle_file: file name written in ``bundle_dir`` (None when no copy was asked for).
    """

    path: str
    sha256: str | None = None
    error: str | None = None
    written: int = 0
    draft: int = 1
    dhash: str | None = None
    bundle_file: str | None = None
    info: dict[str, Any] = field(default_factory=dict)


def _decode(data: bytes, task: ImageTask, reduce: int) -> tuple[Any, int, float]:
    """Decode the original (drafted by ``reduce`` if JPEG) -> (RGB raw image, orientation, s).

    ``s`` is the factor from raw pixels to the decoded grid (1/draft). Uses the same guards,
    orientation reading and colour conversion as :mod:`autolabel.imageio`. The file is opened
    once: a rotated original with a bundle copy is decoded in full (the upright copy needs
    every pixel), whatever ``reduce`` says.
    """
    from autolabel import imageio
    from autolabel.errors import ImageError

    Image = imageio._pil()
    path = task.path
    try:
        im = Image.open(io.BytesIO(data))
    except Image.UnidentifiedImageError:
        raise ImageError(path, imageio.REASON_NOT_AN_IMAGE, "no known image format") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageError(path, imageio.REASON_DECODE, f"{type(exc).__name__}: {exc}") from None
    raw_w, raw_h = im.size
    imageio._check_size(path, raw_w, raw_h, task.max_pixels, task.max_side)
    orient = imageio._orientation(im)
    cw, ch = (raw_h, raw_w) if orient >= 5 else (raw_w, raw_h)
    if (cw, ch) != (task.width, task.height):
        # boxes refer to the size recorded at ingest; a different size means a changed file
        raise ImageError(
            path, "size-changed", f"expected {task.width}x{task.height}, got {cw}x{ch}"
        )
    if task.bundle_dir is not None and orient != 1:
        reduce = 1  # the upright copy needs every pixel
    s = 1.0
    if reduce > 1 and im.format == "JPEG" and min(raw_w, raw_h) >= 8 * reduce:
        im.draft("RGB", (raw_w // reduce, raw_h // reduce))
        s = 1.0 / max(1, round(raw_w / im.size[0]))
    try:
        im.load()
    except (OSError, SyntaxError, EOFError, ValueError) as exc:
        text = str(exc)
        reason = imageio.REASON_TRUNCATED if "truncated" in text else imageio.REASON_DECODE
        raise ImageError(path, reason, text) from None
    return imageio._to_rgb(im, path), orient, s


def _cut(im: Any, orient: int, s: float, task: ImageTask, job: CropJob) -> Any:
    """Resize one region of the decoded raw image and orient it; returns the final image."""
    from PIL import Image

    rx0, ry0, rx1, ry1 = corrected_to_raw(job.region, orient, task.width, task.height)
    box = (rx0 * s, ry0 * s, rx1 * s, ry1 * s)
    box = (
        max(0.0, box[0]),
        max(0.0, box[1]),
        min(float(im.size[0]), box[2]),
        min(float(im.size[1]), box[3]),
    )
    op = ORIENTATION_OP.get(orient)
    ow, oh = job.out_size
    raw_out = (oh, ow) if orient >= 5 else (ow, oh)
    out = im.resize(raw_out, Image.Resampling.LANCZOS, box=box)
    if op is not None:
        out = out.transpose(getattr(Image.Transpose, op))
    if job.canvas != job.out_size:
        canvas = Image.new("RGB", job.canvas, PAD_FILL)
        canvas.paste(out, job.offset)
        out = canvas
    return out


def run_task(task: ImageTask) -> TaskResult:
    """Hash the original, write all its crops and its bundle copy (never raises for a bad
    image).

    The crops are written to ``job.out_path`` (the parent folder must exist).
    """
    from autolabel.errors import ImageError
    from autolabel.export.splits import dhash
    from autolabel.imageio import fs_path

    result = TaskResult(path=task.path)
    try:
        with open(fs_path(task.path), "rb") as fh:
            data = fh.read()
    except FileNotFoundError:
        result.error = "not-found: the original no longer exists"
        return result
    except OSError as exc:
        result.error = f"unreadable: {exc.strerror or exc}"
        return result
    result.sha256 = hashlib.sha256(data).hexdigest()
    expected = task.expected_sha256
    if expected and ":" not in expected and expected != result.sha256:
        result.error = "changed: the original's sha256 differs from the one recorded at ingest"
        return result
    reduce = 8
    for job in task.jobs:
        x0, y0, x1, y1 = job.region
        reduce = min(reduce, draft_factor(x1 - x0, y1 - y0, *job.out_size))
    try:
        im, orient, s = _decode(data, task, reduce)
        result.draft = round(1 / s)
        for job in task.jobs:
            out = _cut(im, orient, s, task, job)
            out.save(job.out_path, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
            result.written += 1
        result.dhash = dhash(_upright(im, orient))
        if task.bundle_dir is not None:
            result.bundle_file = _bundle(task, data, im, orient)
    except ImageError as exc:
        result.error = f"{exc.reason}: {exc.detail}" if exc.detail else exc.reason
    return result


def _upright(im: Any, orient: int) -> Any:
    from PIL import Image

    op = ORIENTATION_OP.get(orient)
    return im if op is None else im.transpose(getattr(Image.Transpose, op))


UPRIGHT_JPEG_QUALITY = 95
"""Quality of the upright re-encoded copy of an EXIF-rotated JPEG original."""


def _bundle(task: ImageTask, data: bytes, im: Any, orient: int) -> str:
    """Put the original into ``task.bundle_dir``; returns the file name written.

    Upright stored pixels: a hard link to the original (a copy of the bytes read when the
    folder is on another file system). Otherwise the upright pixels re-encoded (JPEG quality
    95 for JPEGs, PNG for the rest), without an orientation tag.
    """
    import os
    from pathlib import Path

    ext = Path(task.path).suffix.lower() or ".jpg"
    folder = Path(task.bundle_dir or ".")
    if ORIENTATION_OP.get(orient) is None:
        name = f"{task.bundle_stem}{ext}"
        try:
            os.link(task.path, folder / name)
        except OSError:
            (folder / name).write_bytes(data)
        return name
    upright = _upright(im, orient)
    if ext in (".jpg", ".jpeg"):
        name = f"{task.bundle_stem}.jpg"
        upright.save(folder / name, format="JPEG", quality=UPRIGHT_JPEG_QUALITY)
    else:
        name = f"{task.bundle_stem}.png"
        upright.save(folder / name, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    return name


def run_tasks(
    tasks: Sequence[ImageTask],
    *,
    workers: int = 1,
    on_done: Callable[[TaskResult], None] | None = None,
) -> list[TaskResult]:
    """Run tasks, in ``workers`` processes when ``workers > 1``; results in task order."""
    results: list[TaskResult | None] = [None] * len(tasks)
    if workers <= 1 or len(tasks) < 2:
        for i, task in enumerate(tasks):
            results[i] = run_task(task)
            if on_done:
                on_done(results[i])  # type: ignore[arg-type]
        return results  # type: ignore[return-value]
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
    # Workers only run Pillow (single-threaded resize/PNG), so there is no thread pool to pin.
    # Do not call torch/OpenMP here: in a child forked after the parent ran torch (autocrop,
    # demo) torch.set_num_threads deadlocks (libgomp is not fork-safe).
    ctx = mp.get_context(method)
    with ProcessPoolExecutor(
        max_workers=workers, mp_context=ctx, initializer=die_with_parent, initargs=(os.getpid(),)
    ) as pool:
        for i, res in enumerate(
            pool.map(run_task, tasks, chunksize=_chunksize(len(tasks), workers))
        ):
            results[i] = res
            if on_done:
                on_done(res)
    return results  # type: ignore[return-value]


PR_SET_PDEATHSIG = 1
"""``prctl`` option: the signal the kernel sends a process when its parent dies (Linux)."""


def die_with_parent(parent_pid: int) -> None:
    """Worker initializer: end this worker when the export process dies, even by ``kill -9``.

    On Linux the kernel delivers SIGKILL to the worker when its parent exits
    (``prctl(PR_SET_PDEATHSIG)``); elsewhere a daemon thread polls ``os.getppid()``. Either
    way a worker never keeps writing into a temp folder the next export is cleaning.
    """
    import signal
    import sys
    import threading

    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):  # pragma: no cover - no prctl: poll below
            pass
    if os.getppid() != parent_pid:  # the parent died before the death signal was armed
        os._exit(1)

    def watch() -> None:
        import time

        while os.getppid() == parent_pid:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _chunksize(n: int, workers: int) -> int:
    return max(1, min(16, n // (workers * 8)))


def _run_batch(tasks: Sequence[ImageTask | None]) -> list[TaskResult | None]:
    return [None if t is None else run_task(t) for t in tasks]


def iter_run_tasks(
    pairs: Iterable[tuple[K, ImageTask | None]],
    *,
    workers: int = 1,
    batch: int = 8,
    window: int = 4,
) -> Iterator[tuple[K, TaskResult | None]]:
    """Run a stream of tasks, yielding ``(key, result)`` in input order with bounded memory.

    Keys stay in this process; only the tasks travel to the workers, ``batch`` tasks per
    call, with at most ``window * workers`` calls in flight (the input is read only as far
    as that). A None task passes through with a None result, in order.

    Args:
        pairs: ``(key, task or None)`` in the order the results are wanted.
        workers: processes (1 = run here).
        batch: tasks per call to a worker.
        window: calls in flight per worker.
    """
    if workers <= 1:
        for key, task in pairs:
            yield key, None if task is None else run_task(task)
        return
    import multiprocessing as mp
    from collections import deque
    from concurrent.futures import Future, ProcessPoolExecutor

    method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
    ctx = mp.get_context(method)  # workers run Pillow only (see run_tasks: no torch here)
    it = iter(pairs)
    pending: deque[tuple[list[K], Future[list[TaskResult | None]]]] = deque()
    with ProcessPoolExecutor(
        max_workers=workers, mp_context=ctx, initializer=die_with_parent, initargs=(os.getpid(),)
    ) as pool:

        def submit() -> bool:
            group = list(itertools.islice(it, batch))
            if not group:
                return False
            keys = [k for k, _ in group]
            pending.append((keys, pool.submit(_run_batch, [t for _, t in group])))
            return True

        more = True
        while more and len(pending) < window * workers:
            more = submit()
        while pending:
            keys, fut = pending.popleft()
            results = fut.result()
            if more:
                more = submit()
            yield from zip(keys, results, strict=True)
