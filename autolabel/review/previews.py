"""Image previews for the review app: a few fixed sizes, decoded small, bounded on disk.

A preview is the EXIF-corrected RGB image shrunk so its longer side is one of
:data:`PREVIEW_SIZES` (capped by the ``review.preview_max_side`` setting); any requested
``max_side`` is rounded *up* to the next of these, so one image has at most a few cache
files whatever clients ask for. Decoding is as small as the format allows:

- JPEG: Pillow's draft mode (the DCT scales by 1/2, 1/4 or 1/8 while decoding), so a
  12000x9000 photo never exists at full size in memory;
- other formats: decoded in their stored mode (1 byte per pixel for bilevel, grey and palette
  PNGs), shrunk by an integer factor (``Image.reduce``) *before* the conversion to RGB, which
  would otherwise triple or quadruple the memory.

At most ``max_decodes`` previews are decoded at once (a semaphore), and the cache folder
keeps at most ``max_files`` files and ``max_bytes`` bytes (least recently used go first).
"""

from __future__ import annotations

import math
import os
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

from autolabel.errors import ImageError

PREVIEW_SIZES = (256, 768, 1024, 1600)
"""Longest sides of the previews served (plus the configured maximum, if smaller)."""
DEFAULT_MAX_DECODES = 2
DEFAULT_MAX_FILES = 20_000
DEFAULT_MAX_BYTES = 1 << 30
JPEG_QUALITY = 85


def preview_sides(max_side: int) -> tuple[int, ...]:
    """The sides served when the largest preview is ``max_side`` (ascending)."""
    return (*(s for s in PREVIEW_SIZES if s < max_side), int(max_side))


def preview_side(requested: int | None, max_side: int) -> int:
    """Round a requested longest side up to a served one (None or too large: ``max_side``)."""
    sides = preview_sides(max_side)
    if requested is None or requested <= 0:
        return sides[-1]
    return next((s for s in sides if s >= requested), sides[-1])


def decode_preview(path: str, side: int) -> Any:
    """Decode ``path`` as an RGB ``PIL.Image`` whose longer side is at most ``side``.

    Uses the same guards, orientation and colour rules as :func:`autolabel.imageio.open_image`
    but decodes at reduced resolution where it can (see the module docstring).

    Raises:
        ImageError: missing, unreadable, not an image, too large or undecodable.
    """
    from PIL import Image

    from autolabel import imageio

    imageio.stat_regular(path)
    with imageio.open_header(path) as im:
        imageio.check_size(path, im.size[0], im.size[1], *_guards())
        orient = imageio.exif_orientation(im)
        raw_w, raw_h = im.size
        scale = min(1.0, side / max(raw_w, raw_h))
        want = (max(1, math.ceil(raw_w * scale)), max(1, math.ceil(raw_h * scale)))
        if im.format == "JPEG" and scale < 1:
            im.draft("RGB", want)
        try:
            im.load()
        except (OSError, SyntaxError, EOFError, ValueError, MemoryError) as exc:
            raise ImageError(path, imageio.REASON_DECODE, f"{type(exc).__name__}: {exc}") from None
        small = _shrink(im, want)
        rgb = imageio.to_rgb(small, path)
        if rgb is im:
            rgb = im.copy()
    if max(rgb.size) > side:
        rgb.thumbnail((side, side), Image.Resampling.LANCZOS)
    if orient != 1:
        rgb = rgb.transpose(getattr(Image.Transpose, imageio.EXIF_TRANSPOSE[orient]))
    return rgb


def _guards() -> tuple[int, int]:
    from autolabel.imageio import DEFAULT_MAX_PIXELS, DEFAULT_MAX_SIDE

    return DEFAULT_MAX_PIXELS, DEFAULT_MAX_SIDE


def _shrink(im: Any, want: tuple[int, int]) -> Any:
    """Shrink a decoded image by the largest integer factor that keeps it >= ``want``,
    in its stored mode (``reduce`` box-averages; bilevel and palette images, which it does
    not take, are sampled)."""
    from PIL import Image

    factor = int(min(im.size[0] / want[0], im.size[1] / want[1]))
    if factor < 2:
        return im
    try:
        return im.reduce(factor)
    except ValueError:  # modes 1, P, I;16...: nearest keeps the palette / bit depth
        size = (max(1, im.size[0] // factor), max(1, im.size[1] // factor))
        small = im.resize(size, Image.Resampling.NEAREST)
        small.info = dict(im.info)
        return small


class PreviewCache:
    """Preview files in ``folder``: made on demand, at most ``max_decodes`` at a time,
    evicted least-recently-used beyond ``max_files`` files or ``max_bytes`` bytes.

    Args:
        folder: the cache folder (created when needed; files named ``ID_VERSION_SIDE.jpg``).
        max_side: the largest preview side (``review.preview_max_side``).
        max_decodes: concurrent decodes allowed (each may need the stored image in memory).
        max_files: most files kept.
        max_bytes: most bytes kept.
    """

    def __init__(
        self,
        folder: Path,
        *,
        max_side: int,
        max_decodes: int = DEFAULT_MAX_DECODES,
        max_files: int = DEFAULT_MAX_FILES,
        max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        self.folder = Path(folder)
        self.max_side = int(max_side)
        self.max_files = int(max_files)
        self.max_bytes = int(max_bytes)
        self._decodes = threading.BoundedSemaphore(max(1, int(max_decodes)))
        self._lock = threading.Lock()
        self._files: OrderedDict[str, int] = OrderedDict()  # name -> bytes, LRU first
        self._bytes = 0
        self._scanned = False

    def side(self, requested: int | None) -> int:
        """The served side for a requested ``max_side`` (see :func:`preview_side`)."""
        return preview_side(requested, self.max_side)

    def get(self, source: str, key: str, side: int) -> Path:
        """The preview file of ``source`` at ``side`` (``key`` names the image version).

        Raises:
            ImageError: the source cannot be decoded.
        """
        name = f"{key}_{side}.jpg"
        path = self.folder / name
        with self._lock:
            self._scan()
            if name in self._files and path.exists():
                self._files.move_to_end(name)
                return path
        with self._decodes:
            if not path.exists():  # another thread may have made it while we waited
                self._write(decode_preview(source, side), path)
        with self._lock:
            size = path.stat().st_size
            self._bytes += size - self._files.pop(name, 0)
            self._files[name] = size
            self._evict(keep=name)
        return path

    def stats(self) -> dict[str, int]:
        """``{"files", "bytes"}`` currently in the cache."""
        with self._lock:
            self._scan()
            return {"files": len(self._files), "bytes": self._bytes}

    def _write(self, im: Any, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            im.save(tmp, format="JPEG", quality=JPEG_QUALITY)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)

    def _scan(self) -> None:
        """Index files left by an earlier server (oldest first) once."""
        if self._scanned:
            return
        self._scanned = True
        try:
            entries = [e for e in os.scandir(self.folder) if e.name.endswith(".jpg")]
        except OSError:
            return
        for e in sorted(entries, key=lambda e: e.stat().st_mtime):
            size = e.stat().st_size
            self._files[e.name] = size
            self._bytes += size
        self._evict()

    def _evict(self, keep: str | None = None) -> None:
        while self._files and (len(self._files) > self.max_files or self._bytes > self.max_bytes):
            name, size = next(iter(self._files.items()))
            if name == keep:
                if len(self._files) == 1:
                    break
                self._files.move_to_end(name)
                continue
            del self._files[name]
            self._bytes -= size
            (self.folder / name).unlink(missing_ok=True)
