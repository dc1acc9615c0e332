"""The one place images are opened.

Every stage reads pixels through :func:`open_image` / :func:`load_rgb` and sizes through
:func:`image_size` / :func:`probe`, so that all of them agree on:

- **orientation**: the EXIF ``Orientation`` tag is applied; widths, heights and box
  coordinates everywhere in autolabel are in pixels of the *EXIF-corrected* image;
- **colour**: every mode becomes 8-bit RGB. ``1``/``L``/``CMYK``/``YCbCr``/``LAB``/``HSV``
  use Pillow's conversion; images with transparency (``RGBA``, ``LA``, ``PA``, ``P`` with a
  transparent index) are composited on **white** (the way a viewer shows them on a page);
  16-bit grey (``I;16*``) is scaled by 255/65535; ``I`` (32-bit int) is treated as 16-bit
  when its values fit in 0..65535, otherwise stretched min..max; ``F`` is scaled by 255 when
  its values lie in 0..1, otherwise stretched min..max;
- **guards**: more than ``max_pixels`` pixels or a side longer than ``max_side`` is refused
  before decoding (decompression bombs); truncated files are detected (Pillow's
  ``LOAD_TRUNCATED_IMAGES`` stays False) and refused.

Every failure raises :class:`autolabel.errors.ImageError` with the path and one of the
``REASON_*`` constants as ``reason`` (ingest stores that reason in the images table).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from autolabel.errors import ImageError

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    from PIL import Image as PILImage

DEFAULT_MAX_PIXELS = 200_000_000
"""Default pixel-count guard (mirrors ``image.max_pixels`` in configs/default.yaml)."""
DEFAULT_MAX_SIDE = 30_000
"""Default longest-side guard (mirrors ``image.max_side``)."""

REASON_NOT_FOUND = "not-found"
REASON_NOT_A_FILE = "not-a-file"
REASON_UNREADABLE = "unreadable"
REASON_EMPTY = "empty-file"
REASON_NOT_AN_IMAGE = "not-an-image"
REASON_TRUNCATED = "truncated"
REASON_TOO_LARGE = "too-large"
REASON_DECODE = "decode-error"
REASON_UNSUPPORTED_MODE = "unsupported-mode"

# EXIF orientation -> PIL transpose method name (1 = as stored). Shared with export's geometry.
EXIF_TRANSPOSE = {
    2: "FLIP_LEFT_RIGHT",
    3: "ROTATE_180",
    4: "FLIP_TOP_BOTTOM",
    5: "TRANSPOSE",
    6: "ROTATE_270",
    7: "TRANSVERSE",
    8: "ROTATE_90",
}
_EXIF_ORIENTATION = 0x0112
_ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}
_PIL_READY = False


FS_BYTES_PREFIX = "fsbytes:"
"""Marks a stored path whose file name is not valid UTF-8 (see :func:`stored_path`)."""
_ESCAPE = re.compile(rb"\\\\|\\x([0-9a-f]{2})")


def stored_path(path: str) -> str:
    """A file path as text that SQLite, JSON and terminals accept, reversibly.

    Valid UTF-8 paths are returned unchanged. A path with bytes that are not UTF-8 (a
    ``str`` from ``os.fsdecode``, holding lone surrogates) becomes ``fsbytes:`` + the path
    with each such byte written ``\\xNN`` and each backslash doubled; stored paths are
    absolute, so the prefix cannot be the start of a real one. :func:`fs_path` inverts it.
    """
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        raw = os.fsencode(path).replace(b"\\", b"\\\\")
        return FS_BYTES_PREFIX + raw.decode("utf-8", "backslashreplace")
    return path


def fs_path(path: str) -> str:
    """The path to hand to the OS for a :func:`stored_path` text (identity for plain ones)."""
    if not path.startswith(FS_BYTES_PREFIX):
        return path
    body = path[len(FS_BYTES_PREFIX) :].encode("utf-8")
    raw = _ESCAPE.sub(lambda m: bytes([int(m[1], 16)]) if m[1] else b"\\", body)
    return os.fsdecode(raw)


@dataclass(frozen=True)
class ImageInfo:
    """What the file header says about an image (no pixel decode).

    Attributes:
        width: width after EXIF orientation, in pixels.
        height: height after EXIF orientation, in pixels.
        format: Pillow's format name (``JPEG``, ``PNG``, ``WEBP``, ...).
        mode: Pillow's mode of the stored pixels (``RGB``, ``P``, ``I;16``, ...).
        orientation: the EXIF orientation tag (1..8; 1 = none).
    """

    width: int
    height: int
    format: str
    mode: str
    orientation: int


def _pil() -> Any:
    """Import Pillow once; autolabel applies its own size guard, so Pillow's is disabled."""
    global _PIL_READY
    from PIL import Image, ImageFile

    if not _PIL_READY:
        # Pillow's global bomb guard (89 M pixels, error at 2x) would contradict a larger
        # configured ``max_pixels``; :func:`_check_size` replaces it for every open.
        Image.MAX_IMAGE_PIXELS = None
        ImageFile.LOAD_TRUNCATED_IMAGES = False
        _PIL_READY = True
    return Image


def stat_regular(path: str) -> os.stat_result:
    """``os.stat`` of a regular, non-empty file, every failure mapped to an ImageError.

    Args:
        path: the image path (long Windows paths are handled by :func:`fs_path`).

    Returns:
        The file's stat result.

    Raises:
        ImageError: missing, unreadable, not a regular file or 0 bytes.
    """
    try:
        st = os.stat(fs_path(path))
    except FileNotFoundError:
        raise ImageError(path, REASON_NOT_FOUND) from None
    except PermissionError as exc:
        raise ImageError(path, REASON_UNREADABLE, exc.strerror or "permission denied") from None
    except OSError as exc:  # symlink loops, names too long, ...
        raise ImageError(path, REASON_UNREADABLE, exc.strerror or str(exc)) from None
    import stat

    if not stat.S_ISREG(st.st_mode):
        raise ImageError(path, REASON_NOT_A_FILE, "expected a regular file")
    if st.st_size == 0:
        raise ImageError(path, REASON_EMPTY, "0 bytes")
    return st


def open_header(path: str, data: bytes | None = None) -> PILImage.Image:
    """``Image.open`` (of ``data`` if given) with every failure mapped to an ImageError.

    Only the header is read: the pixels are decoded by the caller's ``load()`` (after
    ``draft`` for a reduced-size JPEG decode, as the review previews do).

    Raises:
        ImageError: unreadable, not an image, truncated or a broken header.
    """
    Image = _pil()
    try:
        if data is not None:
            import io

            return Image.open(io.BytesIO(data))
        return Image.open(fs_path(path))
    except Image.UnidentifiedImageError:
        raise ImageError(path, REASON_NOT_AN_IMAGE, "no known image format in header") from None
    except PermissionError as exc:
        raise ImageError(path, REASON_UNREADABLE, exc.strerror or "permission denied") from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, KeyError) as exc:
        reason = REASON_TRUNCATED if _riff_short(path, data) else REASON_DECODE
        raise ImageError(path, reason, f"{type(exc).__name__}: {exc}") from None


def _orientation(im: PILImage.Image) -> int:
    """EXIF orientation from the header only (``getexif`` would decode PNGs fully)."""
    Image = _pil()
    try:
        if im.format in ("TIFF", "MPO", "JPEG"):
            exif = im.getexif()
        elif "exif" in im.info:
            exif = Image.Exif()
            exif.load(im.info["exif"])
        else:
            return 1
        value = int(exif.get(_EXIF_ORIENTATION, 1))
    except Exception:  # malformed EXIF must not make an image unusable
        return 1
    return value if value in EXIF_TRANSPOSE else 1


def _riff_short(path: str, data: bytes | None = None) -> bool:
    """True if a RIFF (WebP) file is shorter than its header says (libwebp's error is vague)."""
    if data is not None:
        head, size = data[:12], len(data)
    else:
        try:
            with open(fs_path(path), "rb") as fh:
                head = fh.read(12)
                size = os.fstat(fh.fileno()).st_size
        except OSError:
            return False
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WEBP":
        return False
    return int.from_bytes(head[4:8], "little") + 8 > size


def _check_size(path: str, width: int, height: int, max_pixels: int, max_side: int) -> None:
    if width <= 0 or height <= 0:
        raise ImageError(path, REASON_DECODE, f"expected a positive size, got {width}x{height}")
    if width * height > max_pixels:
        raise ImageError(
            path,
            REASON_TOO_LARGE,
            f"{width}x{height} = {width * height} pixels, expected at most {max_pixels}",
        )
    if max(width, height) > max_side:
        raise ImageError(
            path,
            REASON_TOO_LARGE,
            f"{width}x{height} has a side longer than max_side={max_side}",
        )


def probe(
    path: str | os.PathLike[str] | os.PathLike[bytes] | bytes,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_side: int = DEFAULT_MAX_SIDE,
    data: bytes | None = None,
) -> ImageInfo:
    """Read an image's header: EXIF-corrected size, format and mode, without decoding pixels.

    Args:
        path: the image file (named in errors).
        max_pixels: refuse images with more pixels than this.
        max_side: refuse images whose longer side exceeds this.
        data: the file's bytes, if the caller already read them (ingest hashes and probes
            from one read); ``path`` is then not touched.

    Returns:
        The header facts as :class:`ImageInfo`.

    Raises:
        ImageError: missing, unreadable, empty, not an image, or too large.
    """
    spath = os.fsdecode(path)
    if data is None:
        stat_regular(spath)
    elif not data:
        raise ImageError(spath, REASON_EMPTY, "0 bytes")
    with open_header(spath, data) as im:
        w, h = im.size
        orient = _orientation(im)
        info = ImageInfo(
            width=h if orient >= 5 else w,
            height=w if orient >= 5 else h,
            format=str(im.format or ""),
            mode=str(im.mode),
            orientation=orient,
        )
    _check_size(spath, w, h, max_pixels, max_side)
    return info


def image_size(
    path: str | os.PathLike[str] | bytes,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_side: int = DEFAULT_MAX_SIDE,
) -> tuple[int, int]:
    """Return ``(width, height)`` of the EXIF-corrected image from its header only.

    Raises:
        ImageError: as :func:`probe`.
    """
    info = probe(path, max_pixels=max_pixels, max_side=max_side)
    return info.width, info.height


def _to_rgb(im: PILImage.Image, path: str) -> PILImage.Image:
    """Convert any Pillow mode to 8-bit RGB (alpha composited on white)."""
    Image = _pil()
    import numpy as np

    mode = im.mode
    if mode == "RGB":
        return im
    if mode == "P":
        if "transparency" in im.info or (im.palette is not None and im.palette.mode == "RGBA"):
            im = im.convert("RGBA")
            mode = "RGBA"
        else:
            return im.convert("RGB")
    if mode in _ALPHA_MODES:
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    if mode.startswith("I;16") or mode == "I":
        arr = np.asarray(im)
        if arr.ndim != 2:
            raise ImageError(path, REASON_UNSUPPORTED_MODE, f"mode {mode} with shape {arr.shape}")
        arr = arr.astype(np.float64)
        lo, hi = (float(arr.min()), float(arr.max())) if arr.size else (0.0, 0.0)
        if mode.startswith("I;16") or (lo >= 0 and hi <= 65535):
            grey = arr * (255.0 / 65535.0)
        else:
            grey = (arr - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(arr)
        return Image.fromarray(np.clip(np.rint(grey), 0, 255).astype(np.uint8)).convert("RGB")
    if mode == "F":
        arr = np.asarray(im, dtype=np.float64)
        arr = np.nan_to_num(arr)
        lo, hi = (float(arr.min()), float(arr.max())) if arr.size else (0.0, 0.0)
        if lo >= 0 and hi <= 1:
            grey = arr * 255.0
        else:
            grey = (arr - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(arr)
        return Image.fromarray(np.clip(np.rint(grey), 0, 255).astype(np.uint8)).convert("RGB")
    try:
        return im.convert("RGB")
    except (ValueError, OSError) as exc:
        raise ImageError(path, REASON_UNSUPPORTED_MODE, f"mode {mode}: {exc}") from None


def open_image(
    path: str | os.PathLike[str] | bytes,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_side: int = DEFAULT_MAX_SIDE,
) -> PILImage.Image:
    """Open an image fully decoded, EXIF-transposed, as 8-bit RGB.

    Multi-frame files (TIFF pages, animations) give their first frame.

    Args:
        path: the image file.
        max_pixels: refuse images with more pixels than this (checked before decoding).
        max_side: refuse images whose longer side exceeds this.

    Returns:
        A loaded ``PIL.Image.Image`` in mode ``RGB``; its size is the EXIF-corrected size.

    Raises:
        ImageError: reason ``not-found``, ``not-a-file``, ``unreadable``, ``empty-file``,
            ``not-an-image``, ``too-large``, ``truncated``, ``decode-error`` or
            ``unsupported-mode``.
    """
    Image = _pil()
    spath = os.fsdecode(path)
    stat_regular(spath)
    with open_header(spath) as im:
        _check_size(spath, im.size[0], im.size[1], max_pixels, max_side)
        orient = _orientation(im)
        try:
            im.load()
        except Image.DecompressionBombError as exc:  # pragma: no cover - guard disabled
            raise ImageError(spath, REASON_TOO_LARGE, str(exc)) from None
        except (OSError, SyntaxError, EOFError) as exc:
            text = str(exc)
            if "truncated" in text or isinstance(exc, EOFError) or _riff_short(spath):
                raise ImageError(spath, REASON_TRUNCATED, text) from None
            raise ImageError(spath, REASON_DECODE, f"{type(exc).__name__}: {text}") from None
        except (ValueError, IndexError, KeyError, ZeroDivisionError, MemoryError) as exc:
            raise ImageError(spath, REASON_DECODE, f"{type(exc).__name__}: {exc}") from None
        rgb = _to_rgb(im, spath)
        if rgb is im:
            rgb = im.copy()
    if orient != 1:
        rgb = rgb.transpose(getattr(Image.Transpose, EXIF_TRANSPOSE[orient]))
    return rgb


def load_rgb(
    path: str | os.PathLike[str] | bytes,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_side: int = DEFAULT_MAX_SIDE,
) -> np.ndarray:
    """Load an image as a ``(H, W, 3) uint8`` RGB array (EXIF-corrected; see :func:`open_image`).

    Raises:
        ImageError: as :func:`open_image`.
    """
    import numpy as np

    return np.ascontiguousarray(
        np.asarray(open_image(path, max_pixels=max_pixels, max_side=max_side), dtype=np.uint8)
    )


# Public names for modules that decode on their own terms (e.g. export's JPEG draft mode)
# but must agree with open_image on guards, orientation and colour.
check_size = _check_size
"""``check_size(path, width, height, max_pixels, max_side)``: raise ``too-large`` errors."""
exif_orientation = _orientation
"""``exif_orientation(im) -> int``: the EXIF orientation (1..8) from the header only."""
to_rgb = _to_rgb
"""``to_rgb(im, path) -> PIL.Image``: any mode to 8-bit RGB, as :func:`open_image` does."""
