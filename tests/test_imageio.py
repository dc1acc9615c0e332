"""imageio: every mode to RGB, EXIF orientation, size guards and every broken-file kind."""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from autolabel import imageio
from autolabel.errors import ImageError

RNG = np.random.default_rng(0)


def _rgb(h: int = 24, w: int = 32) -> np.ndarray:
    return RNG.integers(0, 256, (h, w, 3), dtype=np.uint8)


# -- modes -----------------------------------------------------------------------------------


def test_rgb_png_roundtrips_exactly(tmp_path):
    arr = _rgb()
    Image.fromarray(arr).save(tmp_path / "a.png")
    out = imageio.load_rgb(tmp_path / "a.png")
    assert out.dtype == np.uint8 and out.shape == (24, 32, 3)
    np.testing.assert_array_equal(out, arr)


def test_grey_and_one_bit_become_rgb_with_equal_channels(tmp_path):
    grey = RNG.integers(0, 256, (10, 12), dtype=np.uint8)
    Image.fromarray(grey).save(tmp_path / "l.png")
    out = imageio.load_rgb(tmp_path / "l.png")
    np.testing.assert_array_equal(out, np.repeat(grey[..., None], 3, axis=2))

    bits = grey > 127
    Image.fromarray(bits).convert("1").save(tmp_path / "b.png")
    assert Image.open(tmp_path / "b.png").mode == "1"
    out = imageio.load_rgb(tmp_path / "b.png")
    np.testing.assert_array_equal(out[..., 0], np.where(bits, 255, 0))
    assert (out[..., 0] == out[..., 2]).all()


def test_palette_without_transparency_keeps_colours(tmp_path):
    arr = np.zeros((8, 8, 3), np.uint8)
    arr[:4] = (200, 10, 30)
    arr[4:] = (5, 100, 250)
    Image.fromarray(arr).quantize(4).save(tmp_path / "p.png")
    assert Image.open(tmp_path / "p.png").mode == "P"
    np.testing.assert_array_equal(imageio.load_rgb(tmp_path / "p.png"), arr)


def test_palette_transparency_is_composited_on_white(tmp_path):
    im = Image.new("P", (6, 4), 0)
    im.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    im.paste(1, (0, 0, 3, 4))  # left half red, right half index 0 (transparent)
    im.save(tmp_path / "pt.png", transparency=0)
    out = imageio.load_rgb(tmp_path / "pt.png")
    assert (out[:, :3] == (255, 0, 0)).all()
    assert (out[:, 3:] == 255).all()


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_alpha_is_composited_on_white(tmp_path, mode):
    rgba = np.zeros((4, 3, 4), np.uint8)
    rgba[..., :3] = 40
    rgba[:, 0, 3] = 255  # opaque -> 40
    rgba[:, 1, 3] = 0  # transparent -> white
    rgba[:, 2, 3] = 128  # half -> 40*128/255 + 255*127/255 ~ 147
    Image.fromarray(rgba, "RGBA").convert(mode).save(tmp_path / "a.png")
    assert Image.open(tmp_path / "a.png").mode == mode
    out = imageio.load_rgb(tmp_path / "a.png").astype(int)
    assert (out[:, 0] == 40).all()
    assert (out[:, 1] == 255).all()
    assert np.abs(out[:, 2] - 147).max() <= 1


def test_cmyk_uses_pillow_conversion(tmp_path):
    cmyk = np.zeros((4, 4, 4), np.uint8)
    cmyk[:2, :, 0] = 255  # pure cyan
    cmyk[2:, :, 3] = 255  # pure black
    Image.fromarray(cmyk, "CMYK").save(tmp_path / "c.tif")
    assert Image.open(tmp_path / "c.tif").mode == "CMYK"
    out = imageio.load_rgb(tmp_path / "c.tif")
    assert (out[:2] == (0, 255, 255)).all()
    assert (out[2:] == 0).all()


def test_cmyk_jpeg_opens_as_rgb(tmp_path):
    Image.new("CMYK", (16, 8), (0, 255, 255, 0)).save(tmp_path / "c.jpg", quality=95)
    out = imageio.load_rgb(tmp_path / "c.jpg").astype(int)
    assert out.shape == (8, 16, 3)
    assert np.abs(out.mean(axis=(0, 1)) - (255, 0, 0)).max() < 12  # magenta+yellow = red


def test_sixteen_bit_grey_is_scaled_to_eight_bit(tmp_path):
    values = np.array([[0, 257, 32896, 65535]], np.uint16)
    Image.fromarray(values).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode.startswith("I")
    out = imageio.load_rgb(tmp_path / "g16.png")
    np.testing.assert_array_equal(out[0, :, 0], [0, 1, 128, 255])
    assert (out[..., 0] == out[..., 1]).all()


def test_int32_and_float_images(tmp_path):
    Image.fromarray(np.array([[-10, 0, 10]], np.int32), "I").save(tmp_path / "i.tif")
    out = imageio.load_rgb(tmp_path / "i.tif")
    np.testing.assert_array_equal(out[0, :, 0], [0, 128, 255])  # stretched min..max
    Image.fromarray(np.array([[0.0, 0.5, 1.0]], np.float32), "F").save(tmp_path / "f.tif")
    out = imageio.load_rgb(tmp_path / "f.tif")
    np.testing.assert_array_equal(out[0, :, 0], [0, 128, 255])  # 0..1 scaled by 255


@pytest.mark.parametrize("ext", ["jpg", "webp", "bmp", "tiff", "gif"])
def test_common_formats_open_as_rgb(tmp_path, ext):
    arr = _rgb()
    Image.fromarray(arr).save(tmp_path / f"a.{ext}")
    out = imageio.load_rgb(tmp_path / f"a.{ext}")
    assert out.shape == arr.shape and out.dtype == np.uint8
    assert imageio.image_size(tmp_path / f"a.{ext}") == (32, 24)


# -- EXIF orientation ----------------------------------------------------------------------


def _exif_image(path: Path, orientation: int, fmt: str) -> np.ndarray:
    arr = _rgb(20, 40)
    arr[:5, :5] = (255, 0, 0)
    exif = Image.Exif()
    exif[0x0112] = orientation
    kwargs = {"quality": 100, "subsampling": 0} if fmt == "JPEG" else {}
    Image.fromarray(arr).save(path, format=fmt, exif=exif.tobytes(), **kwargs)
    return arr


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_exif_orientation_is_applied_like_pillow(tmp_path, orientation, fmt):
    path = tmp_path / f"o{orientation}.{fmt.lower()}"
    _exif_image(path, orientation, fmt)
    expected = np.asarray(ImageOps.exif_transpose(Image.open(path)).convert("RGB"))
    out = imageio.load_rgb(path)
    np.testing.assert_array_equal(out, expected)
    assert imageio.image_size(path) == (expected.shape[1], expected.shape[0])
    info = imageio.probe(path)
    assert info.orientation == orientation and info.format == fmt
    if orientation >= 5:
        assert out.shape[:2] == (40, 20)


def test_malformed_exif_is_ignored(tmp_path):
    arr = _rgb()
    Image.fromarray(arr).save(tmp_path / "e.png", exif=b"Exif\x00\x00garbage")
    assert imageio.image_size(tmp_path / "e.png") == (32, 24)
    np.testing.assert_array_equal(imageio.load_rgb(tmp_path / "e.png"), arr)


# -- guards and broken files ---------------------------------------------------------------


def _png_header_only(path: Path, width: int, height: int, idat: bytes | None = None) -> None:
    """A PNG whose header claims ``width x height`` with a tiny (invalid) data stream."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64) if idat is None else idat
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )


def _png_bad_stream(path: Path) -> None:
    """A complete PNG (8x8) whose image data is not a zlib stream: corrupt, not truncated."""
    _png_header_only(path, 8, 8, idat=b"not zlib data at all")


def test_decompression_bomb_header_is_refused_before_decoding(tmp_path):
    path = tmp_path / "bomb.png"
    _png_header_only(path, 60_000, 60_000)
    with pytest.raises(ImageError) as info:
        imageio.open_image(path)
    assert info.value.reason == imageio.REASON_TOO_LARGE
    assert "3600000000 pixels" in str(info.value) and str(path) in str(info.value)
    with pytest.raises(ImageError, match="too-large"):
        imageio.image_size(path)


def test_configured_guards(tmp_path):
    Image.fromarray(_rgb(20, 40)).save(tmp_path / "a.png")
    with pytest.raises(ImageError, match="at most 100"):
        imageio.open_image(tmp_path / "a.png", max_pixels=100)
    with pytest.raises(ImageError, match="max_side=30"):
        imageio.load_rgb(tmp_path / "a.png", max_side=30)
    assert imageio.load_rgb(tmp_path / "a.png", max_pixels=800, max_side=40).shape == (20, 40, 3)


def test_larger_limit_than_pillows_own_guard_is_honoured(tmp_path):
    # Pillow refuses > 2 * 89.5 M pixels by default; our guard (configurable) decides.
    path = tmp_path / "big.png"
    _png_header_only(path, 20_000, 9_500)  # 190 M pixels, under the 200 M default
    info = imageio.probe(path)
    assert (info.width, info.height) == (20_000, 9_500)


@pytest.mark.parametrize("ext", ["jpg", "png", "webp", "gif", "bmp", "tiff"])
def test_truncated_files_are_detected(tmp_path, ext):
    good = tmp_path / f"good.{ext}"
    Image.fromarray(_rgb(64, 64)).save(good)
    data = good.read_bytes()
    bad = tmp_path / f"bad.{ext}"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError) as info:
        imageio.open_image(bad)
    assert info.value.reason == imageio.REASON_TRUNCATED
    assert info.value.path == str(bad)


def test_header_probe_does_not_decode_pixels(tmp_path):
    good = tmp_path / "good.png"
    Image.fromarray(_rgb(64, 64)).save(good)
    bad = tmp_path / "bad.png"
    bad.write_bytes(good.read_bytes()[:-200])
    assert imageio.image_size(bad) == (64, 64)  # header intact
    with pytest.raises(ImageError, match="truncated"):
        imageio.load_rgb(bad)


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda p: None, imageio.REASON_NOT_FOUND),
        (lambda p: p.mkdir(), imageio.REASON_NOT_A_FILE),
        (lambda p: p.write_bytes(b""), imageio.REASON_EMPTY),
        (lambda p: p.write_text("this is not a picture\n"), imageio.REASON_NOT_AN_IMAGE),
        (lambda p: _png_bad_stream(p), imageio.REASON_DECODE),
        (lambda p: os.symlink(p, p), imageio.REASON_UNREADABLE),
    ],
    ids=["missing", "folder", "zero-bytes", "text", "corrupt-stream", "symlink-loop"],
)
def test_broken_files_raise_named_errors(tmp_path, make, reason):
    path = tmp_path / "x.jpg"
    make(path)
    with pytest.raises(ImageError) as info:
        imageio.load_rgb(path)
    assert info.value.reason == reason
    assert str(path) in str(info.value)
    if reason == imageio.REASON_DECODE:  # header fine, pixels broken: only a decode sees it
        assert imageio.image_size(path) == (8, 8)
    else:
        with pytest.raises(ImageError):
            imageio.probe(path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their permissions")
def test_unreadable_file(tmp_path):
    path = tmp_path / "a.png"
    Image.fromarray(_rgb()).save(path)
    path.chmod(0)
    with pytest.raises(ImageError, match="unreadable"):
        imageio.load_rgb(path)


def test_permission_denied_while_opening_is_unreadable(tmp_path, monkeypatch):
    # works as root too: the OS refusal is simulated where Pillow opens the file
    import builtins

    path = tmp_path / "a.png"
    Image.fromarray(_rgb()).save(path)
    real_open = builtins.open

    def deny(file, *args, **kwargs):
        if os.fspath(file) == str(path):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", deny)
    with pytest.raises(ImageError) as info:
        imageio.load_rgb(path)
    assert info.value.reason == imageio.REASON_UNREADABLE
    assert "Permission denied" in str(info.value)


def test_accepts_str_bytes_and_pathlike(tmp_path):
    Image.fromarray(_rgb()).save(tmp_path / "a.png")
    for p in (tmp_path / "a.png", str(tmp_path / "a.png"), os.fsencode(tmp_path / "a.png")):
        assert imageio.open_image(p).mode == "RGB"
