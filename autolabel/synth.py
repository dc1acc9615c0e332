"""Synthetic phone screenshots and hand-crop imitations, shared by tests, benchmarks and demos.

Every generator is deterministic given a ``numpy.random.Generator``. Real photos come from
scikit-image's bundled sample data (no download); the layout imitates an e-commerce app
screenshot: status bar, search bar, a product photo at a known box, SALE banners, price
tags, buttons, a bottom navigation bar and distractor thumbnails (of other photos or of the
same photo at a smaller size).

Example:
    >>> rng = np.random.default_rng(0)
    >>> shot, box, meta = make_screenshot(rng)
    >>> crop, crop_box, _ = make_crop(rng, shot, box)
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFont

#: Sample photos used as products (scikit-image names).
PHOTO_NAMES: tuple[str, ...] = (
    "astronaut",
    "coffee",
    "chelsea",
    "rocket",
    "camera",
    "immunohistochemistry",
    "coins",
    "moon",
)
#: Sample photos never placed in screenshots: crops of them must come back ``not_found``.
UNRELATED_PHOTO_NAMES: tuple[str, ...] = ("retina", "hubble_deep_field", "colorwheel", "page")

#: Product-style captions per photo: (English, Chinese).
CAPTIONS: dict[str, tuple[str, str]] = {
    "astronaut": ("white space suit with american flag patch", "白色宇航服，带国旗徽章"),
    "coffee": ("white coffee cup on a saucer", "白色咖啡杯和杯碟"),
    "chelsea": ("orange tabby cat plush toy", "橘色猫咪毛绒玩具"),
    "rocket": ("white rocket model with launch tower", "白色火箭模型"),
    "camera": ("black vintage camera with tripod", "黑色复古相机，带三脚架"),
    "immunohistochemistry": ("purple patterned silk scarf", "紫色印花丝巾"),
    "coins": ("silver coin set for collectors", "银色纪念币套装"),
    "moon": ("grey moon lamp for bedroom", "灰色月球灯"),
    "retina": ("red round wall clock", "红色圆形挂钟"),
    "hubble_deep_field": ("black galaxy print poster", "黑色星空海报"),
    "colorwheel": ("rainbow color wheel sticker", "彩色色轮贴纸"),
    "page": ("printed book page", "印刷书页"),
}

_BANNER_TEXTS = ("SALE -30%", "NEW IN", "FLASH DEAL", "BUY 2 GET 1", "-50% TODAY", "HOT")
_PRICE_TEXTS = ("$19.99", "$129", "$8.50", "$45.00", "$299", "$5.99")
_BUTTON_TEXTS = ("Add to cart", "Buy now", "Follow", "Share", "Details")


@cache
def load_photo(name: str) -> np.ndarray:
    """Load a scikit-image sample photo as RGB.

    Args:
        name: a ``skimage.data`` function name, e.g. ``"astronaut"``.

    Returns:
        ``(H, W, 3) uint8`` array (read-only; copy before editing).
    """
    import skimage.data

    img = np.asarray(getattr(skimage.data, name)())
    if img.dtype == bool:
        img = img.astype(np.uint8) * 255
    if img.ndim == 2:
        img = np.stack([img] * 3, axis=-1)
    img = np.ascontiguousarray(img[..., :3].astype(np.uint8))
    if max(img.shape[:2]) > 640:  # keep generation fast
        pil = Image.fromarray(img)
        pil.thumbnail((640, 640), Image.Resampling.LANCZOS)
        img = np.asarray(pil)
    img.setflags(write=False)
    return img


@lru_cache(maxsize=8)
def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # pragma: no cover - very old Pillow
        return ImageFont.load_default()


def _rand_color(rng: np.random.Generator, lo: int = 0, hi: int = 256) -> tuple[int, int, int]:
    c = rng.integers(lo, hi, size=3)
    return int(c[0]), int(c[1]), int(c[2])


def product_photo(rng: np.random.Generator, name: str) -> Image.Image:
    """A random sub-region (55–100 % of each side) of a sample photo, randomly mirrored."""
    img = load_photo(name)
    h, w = img.shape[:2]
    fw, fh = rng.uniform(0.55, 1.0, size=2)
    cw, ch = max(8, int(w * fw)), max(8, int(h * fh))
    x0 = int(rng.integers(0, w - cw + 1))
    y0 = int(rng.integers(0, h - ch + 1))
    sub = img[y0 : y0 + ch, x0 : x0 + cw]
    if rng.random() < 0.5:
        sub = sub[:, ::-1]
    return Image.fromarray(np.ascontiguousarray(sub))


def _overlaps(box: tuple[int, int, int, int], boxes: list[tuple[int, int, int, int]]) -> bool:
    x0, y0, x1, y1 = box
    return any(x0 < b[2] and b[0] < x1 and y0 < b[3] and b[1] < y1 for b in boxes)


def _place(
    rng: np.random.Generator,
    size: tuple[int, int],
    wh: tuple[int, int],
    taken: list[tuple[int, int, int, int]],
    *,
    top: int,
    bottom: int,
    tries: int = 30,
) -> tuple[int, int, int, int] | None:
    w, h = wh
    W = size[0]
    if w > W or bottom - top < h:
        return None
    for _ in range(tries):
        x = int(rng.integers(0, W - w + 1))
        y = int(rng.integers(top, bottom - h + 1))
        box = (x, y, x + w, y + h)
        if not _overlaps(box, taken):
            return box
    return None


def make_screenshot(
    rng: np.random.Generator,
    photo: str | None = None,
    size: tuple[int, int] = (360, 640),
    *,
    same_photo_distractors: int = 1,
    other_distractors: int = 2,
    unique_mark: bool = False,
) -> tuple[Image.Image, tuple[float, float, float, float], dict[str, Any]]:
    """A phone-screenshot-like image with one product photo pasted at a known box.

    Args:
        rng: random generator (the only source of randomness).
        photo: sample photo name (one of :data:`PHOTO_NAMES`); random if None.
        size: ``(W, H)`` of the screenshot.
        same_photo_distractors: smaller thumbnails of the same product photo elsewhere.
        other_distractors: thumbnails of other sample photos.
        unique_mark: draw a random label (colour + code) onto the product photo, so that no
            two screenshots show the same picture (as with real, distinct products).

    Returns:
        ``(image, box, meta)``: RGB PIL image of ``size``; ``box`` = ``(x0, y0, x1, y1)`` of
        the product photo in pixels (exclusive right/bottom); ``meta`` has ``photo``,
        ``distractors`` (list of ``{"photo", "box"}``) and ``clutter`` (list of boxes).
    """
    W, H = size
    if photo is None:
        photo = str(rng.choice(PHOTO_NAMES))
    bg = _rand_color(rng, 215, 256)
    img = Image.new("RGB", (W, H), bg)
    draw = ImageDraw.Draw(img)
    status_h = max(12, H // 28)
    nav_h = max(20, H // 14)
    search_h = max(16, H // 20)
    dark = _rand_color(rng, 0, 70)
    # status bar with clock and battery
    draw.rectangle((0, 0, W, status_h), fill=dark)
    draw.text(
        (6, 1),
        f"{int(rng.integers(0, 24)):02d}:{int(rng.integers(0, 60)):02d}",
        fill=(240, 240, 240),
        font=_font(max(8, status_h - 4)),
    )
    draw.rectangle((W - 30, 3, W - 8, status_h - 3), outline=(240, 240, 240))
    # search bar
    sy0 = status_h + 4
    draw.rounded_rectangle(
        (8, sy0, W - 8, sy0 + search_h),
        radius=search_h // 2,
        fill=(245, 245, 245),
        outline=(180, 180, 180),
    )
    draw.text(
        (20, sy0 + 2), "Search products", fill=(150, 150, 150), font=_font(max(8, search_h - 6))
    )
    # bottom navigation bar with icons
    draw.rectangle((0, H - nav_h, W, H), fill=_rand_color(rng, 230, 256))
    for k in range(4):
        cx = int((k + 0.5) * W / 4)
        r = nav_h // 4
        draw.ellipse((cx - r, H - nav_h + 4, cx + r, H - nav_h + 4 + 2 * r), outline=dark, width=2)
    top, bottom = sy0 + search_h + 4, H - nav_h - 4

    # the product photo
    prod = product_photo(rng, photo)
    pw = int(W * rng.uniform(0.45, 0.85))
    ph = round(pw * prod.height / prod.width)
    max_h = int((bottom - top) * 0.55)
    if ph > max_h:
        ph = max_h
        pw = round(ph * prod.width / prod.height)
    prod = prod.resize((pw, ph), Image.Resampling.LANCZOS)
    px = int(rng.integers(0, W - pw + 1))
    py = int(rng.integers(top, bottom - ph + 1))
    if unique_mark:
        mark = ImageDraw.Draw(prod)
        mw, mh = max(8, int(pw * rng.uniform(0.25, 0.4))), max(8, int(ph * rng.uniform(0.1, 0.18)))
        mx = int(rng.integers(0, max(1, pw - mw)))
        my = int(rng.integers(0, max(1, ph - mh)))
        mark.rounded_rectangle((mx, my, mx + mw, my + mh), radius=3, fill=_rand_color(rng))
        mark.text(
            (mx + 3, my + 1),
            f"#{int(rng.integers(0, 100000)):05d}",
            fill=_rand_color(rng),
            font=_font(max(8, mh - 4)),
        )
    img.paste(prod, (px, py))
    box = (float(px), float(py), float(px + pw), float(py + ph))
    taken = [(px - 2, py - 2, px + pw + 2, py + ph + 2)]
    meta: dict[str, Any] = {"photo": photo, "distractors": [], "clutter": []}

    # distractor thumbnails: the same photo smaller, and other photos
    others = [p for p in PHOTO_NAMES if p != photo]
    sources = [("same", photo)] * same_photo_distractors + [
        ("other", str(rng.choice(others))) for _ in range(other_distractors)
    ]
    for kind, name in sources:
        scale = rng.uniform(0.25, 0.5)
        tw, th = max(12, int(pw * scale)), max(12, int(ph * scale))
        spot = _place(rng, (W, H), (tw, th), taken, top=top, bottom=bottom)
        if spot is None:
            continue
        thumb = prod if kind == "same" else product_photo(rng, name)
        img.paste(thumb.resize((tw, th), Image.Resampling.LANCZOS), spot[:2])
        taken.append(spot)
        meta["distractors"].append({"photo": name, "box": list(spot)})

    # banners, price tags, buttons
    for _ in range(int(rng.integers(3, 7))):
        kind = rng.choice(["banner", "price", "button"])
        if kind == "banner":
            wh = (int(W * rng.uniform(0.4, 0.95)), int(rng.integers(18, 40)))
            text = str(rng.choice(_BANNER_TEXTS))
            fill = _rand_color(rng, 150, 256) if rng.random() < 0.5 else (220, 30, 40)
        elif kind == "price":
            wh = (int(rng.integers(50, 90)), int(rng.integers(16, 26)))
            text = str(rng.choice(_PRICE_TEXTS))
            fill = (255, 230, 0) if rng.random() < 0.5 else _rand_color(rng, 180, 256)
        else:
            wh = (int(rng.integers(70, 130)), int(rng.integers(20, 32)))
            text = str(rng.choice(_BUTTON_TEXTS))
            fill = _rand_color(rng, 0, 120)
        spot = _place(rng, (W, H), wh, taken, top=top, bottom=bottom)
        if spot is None:
            continue
        draw.rounded_rectangle(spot, radius=4, fill=fill)
        luminance = 0.3 * fill[0] + 0.59 * fill[1] + 0.11 * fill[2]
        draw.text(
            (spot[0] + 5, spot[1] + 3),
            text,
            font=_font(max(8, wh[1] - 8)),
            fill=(0, 0, 0) if luminance > 140 else (255, 255, 255),
        )
        taken.append(spot)
        meta["clutter"].append({"kind": str(kind), "box": list(spot)})
    return img, box, meta


def make_crop(
    rng: np.random.Generator,
    screenshot: Image.Image,
    box: tuple[float, float, float, float],
    *,
    jitter: int = 3,
    brightness: tuple[float, float] = (0.85, 1.3),
    contrast: tuple[float, float] = (0.85, 1.35),
    long_side: int | None = 448,
    resize_prob: float = 0.8,
) -> tuple[Image.Image, tuple[int, int, int, int], dict[str, Any]]:
    """Imitate a hand crop in a screen-capture tool (FastStone Capture).

    The region is ``box`` with each edge moved by up to ``jitter`` pixels, then brightened /
    contrast-boosted and (with probability ``resize_prob``) resized to ``long_side`` on the
    long side.

    Args:
        rng: random generator.
        screenshot: the pristine screenshot (crops are taken from the screen, not the JPEG).
        box: ``(x0, y0, x1, y1)`` intended region.
        jitter: maximum pixels each edge is off.
        brightness: range of the brightness factor.
        contrast: range of the contrast factor.
        long_side: target long side; None keeps the size.
        resize_prob: probability of resizing.

    Returns:
        ``(crop, crop_box, meta)``: the crop image; ``crop_box`` = the integer region actually
        cropped (in screenshot pixels); ``meta`` with the factors used.
    """
    W, H = screenshot.size
    d = rng.integers(-jitter, jitter + 1, size=4) if jitter > 0 else np.zeros(4, int)
    x0 = int(np.clip(round(box[0]) + d[0], 0, W - 2))
    y0 = int(np.clip(round(box[1]) + d[1], 0, H - 2))
    x1 = int(np.clip(round(box[2]) + d[2], x0 + 2, W))
    y1 = int(np.clip(round(box[3]) + d[3], y0 + 2, H))
    crop = screenshot.crop((x0, y0, x1, y1))
    b = float(rng.uniform(*brightness))
    c = float(rng.uniform(*contrast))
    crop = ImageEnhance.Brightness(crop).enhance(b)
    crop = ImageEnhance.Contrast(crop).enhance(c)
    resized = False
    if long_side is not None and rng.random() < resize_prob:
        s = long_side / max(crop.size)
        crop = crop.resize(
            (max(1, round(crop.width * s)), max(1, round(crop.height * s))),
            Image.Resampling.LANCZOS,
        )
        resized = True
    return crop, (x0, y0, x1, y1), {"brightness": b, "contrast": c, "resized": resized}


def unrelated_crop(
    rng: np.random.Generator, *, long_side: int = 448, name: str | None = None
) -> Image.Image:
    """A crop of a photo that never appears in any generated screenshot."""
    name = name or str(rng.choice(UNRELATED_PHOTO_NAMES))
    prod = product_photo(rng, name)
    s = long_side / max(prod.size)
    return prod.resize((max(1, round(prod.width * s)), max(1, round(prod.height * s))))


@dataclass(frozen=True)
class SeedTruth:
    """Ground truth of one generated crop (paths relative to the seed-set folder)."""

    crop: str
    original: str | None
    box: list[float] | None  #: the product photo in the original (what the annotator meant)
    crop_box: list[int] | None  #: the region actually cropped (what can be located)
    photo: str
    caption: str


_SUFFIXES = ("_448_v2", "_448", "_crop", "_v1", "_448_final")


def make_seed_set(
    out_dir: str | Path,
    n: int,
    seed: int = 0,
    *,
    size: tuple[int, int] = (360, 640),
    n_unrelated: int = 0,
    jpeg_quality: int = 85,
    crop_options: dict[str, Any] | None = None,
) -> list[SeedTruth]:
    """Write a seed set imitating the hand-crop workflow.

    Layout: ``out_dir/originals/shot_0007.jpg`` (JPEG screenshots), ``out_dir/crops/
    shot_0007_448_v2.png`` (PNG crops, name suffix varies), ``out_dir/captions.jsonl``
    (``{"image": "crops/...png", "text": ...}``, ms-swift style, Chinese or English) and
    ``out_dir/truth.json``. Unrelated crops are named ``unrelated_000_448.png``.

    Args:
        out_dir: folder to write to (created).
        n: number of screenshot/crop pairs.
        seed: RNG seed.
        size: screenshot ``(W, H)``.
        n_unrelated: extra crops of photos that appear in no original.
        jpeg_quality: JPEG quality of the originals.
        crop_options: keyword arguments for :func:`make_crop`.

    Returns:
        One :class:`SeedTruth` per crop, in file-name order.
    """
    out = Path(out_dir)
    (out / "originals").mkdir(parents=True, exist_ok=True)
    (out / "crops").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    truth: list[SeedTruth] = []
    for i in range(n):
        shot, box, meta = make_screenshot(rng, size=size)
        crop, crop_box, _ = make_crop(rng, shot, box, **(crop_options or {}))
        stem = f"shot_{i:04d}"
        orig_rel = f"originals/{stem}.jpg"
        crop_rel = f"crops/{stem}{_SUFFIXES[int(rng.integers(len(_SUFFIXES)))]}.png"
        shot.save(out / orig_rel, quality=jpeg_quality)
        crop.save(out / crop_rel)
        en, zh = CAPTIONS[meta["photo"]]
        truth.append(
            SeedTruth(
                crop_rel,
                orig_rel,
                list(box),
                list(crop_box),
                meta["photo"],
                zh if rng.random() < 0.5 else en,
            )
        )
    for j in range(n_unrelated):
        name = str(rng.choice(UNRELATED_PHOTO_NAMES))
        crop_rel = f"crops/unrelated_{j:03d}_448.png"
        unrelated_crop(rng, name=name).save(out / crop_rel)
        truth.append(SeedTruth(crop_rel, None, None, None, name, CAPTIONS[name][0]))
    with open(out / "captions.jsonl", "w", encoding="utf-8") as f:
        for t in truth:
            f.write(json.dumps({"image": t.crop, "text": t.caption}, ensure_ascii=False) + "\n")
    (out / "truth.json").write_text(
        json.dumps([asdict(t) for t in truth], ensure_ascii=False, indent=1), encoding="utf-8"
    )
    return truth
