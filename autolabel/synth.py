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


# --------------------------------------------------------------------------------------------
# Realistic app / web screenshots with procedurally generated products (QUALITY.md)
# --------------------------------------------------------------------------------------------

#: Screen sizes ``(W, H)`` of phone captures and one desktop capture.
PHONE_SIZES: tuple[tuple[int, int], ...] = ((1080, 2340), (720, 1600), (1170, 2532))
DESKTOP_SIZE: tuple[int, int] = (1920, 1080)

_TITLES_EN = (
    "Wireless earbuds with charging case",
    "Ceramic coffee mug 350 ml",
    "Cotton oversize t-shirt unisex",
    "Stainless steel water bottle",
    "Leather crossbody bag for women",
    "Kids building blocks set 120 pcs",
    "Running shoes breathable mesh",
    "Scented candle gift box",
)
_SECTION_TEXTS = ("You may also like", "Similar items", "Colour", "Reviews (2.3k)", "Shop")


def _product_rng(product_id: int, salt: int = 0) -> np.random.Generator:
    return np.random.default_rng([int(product_id), 7919, int(salt)])


def _hsv_shift(rgb: tuple[int, int, int], dh: float, min_sat: float = 0.0) -> tuple[int, int, int]:
    import colorsys

    h, s, v = colorsys.rgb_to_hsv(*(c / 255 for c in rgb))
    r, g, b = colorsys.hsv_to_rgb((h + dh) % 1.0, max(s, min_sat), max(v, min_sat * 0.8))
    return round(r * 255), round(g * 255), round(b * 255)


def product_image(
    product_id: int, size: tuple[int, int], *, variant: int = 0, seed: int = 0
) -> Image.Image:
    """A procedurally generated "product photo", reproducible from ``product_id``.

    A studio-like background (gradient, vignette or texture, never a flat UI colour) with a
    shaded, textured object (bottle, box, round or irregular shape, sometimes a second item),
    a soft shadow and sensor noise. The same id gives the same product at any size;
    ``variant`` > 0 changes its colour (a colour variant thumbnail); ``seed`` changes only the
    noise.

    Args:
        product_id: product identity (any int).
        size: ``(W, H)`` in pixels.
        variant: colour variant (0 = the product as sold).
        seed: noise seed.

    Returns:
        RGB PIL image of ``size``.
    """
    from PIL import ImageFilter

    W, H = max(4, int(size[0])), max(4, int(size[1]))
    r = _product_rng(product_id)
    # background: two-colour gradient (linear or radial) + optional texture
    c0 = np.array(_rand_color(r, 120, 250), np.float32)
    c1 = np.array(_rand_color(r, 60, 235), np.float32)
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    u, v = xx / W, yy / H
    bg_kind = int(r.integers(0, 4))
    if bg_kind == 0:
        ang = r.uniform(0, 2 * np.pi)
        t = (np.cos(ang) * u + np.sin(ang) * v - min(0, np.cos(ang)) - min(0, np.sin(ang))) / (
            abs(np.cos(ang)) + abs(np.sin(ang))
        )
    elif bg_kind == 1:
        t = np.sqrt((u - 0.5) ** 2 + (v - 0.5) ** 2) * 1.4
    elif bg_kind == 2:  # fabric / wood-like stripes
        f = r.uniform(6, 20)
        t = 0.5 + 0.25 * np.sin(2 * np.pi * f * (u * r.uniform(0.3, 1) + v)) + 0.25 * v
    else:  # bokeh-like scene
        t = v * 0.6
    bg = c0[None, None] * (1 - t[..., None]) + c1[None, None] * t[..., None]
    if bg_kind == 3:
        for _ in range(int(r.integers(6, 14))):
            cx, cy, rad = r.uniform(0, 1), r.uniform(0, 1), r.uniform(0.05, 0.2)
            blob = np.exp(-((u - cx) ** 2 + (v - cy) ** 2) / (2 * rad**2))[..., None]
            bg = bg * (1 - 0.5 * blob) + 0.5 * blob * np.array(_rand_color(r, 100, 256))
    img = Image.fromarray(bg.clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img, "RGBA")
    # objects, drawn in unit coordinates so that every size shows the same product
    main = _rand_color(r, 20, 230)
    main = _hsv_shift(main, 0.23 * variant, 0.55) if variant else main
    n_obj = 1 + int(r.random() < 0.35)
    for k in range(n_obj):
        kind = int(r.integers(0, 4))
        cx = r.uniform(0.35, 0.65) if k == 0 else r.uniform(0.15, 0.85)
        cy = r.uniform(0.4, 0.6) if k == 0 else r.uniform(0.3, 0.8)
        ow = r.uniform(0.35, 0.7) * (1 if k == 0 else 0.5)
        oh = r.uniform(0.35, 0.75) * (1 if k == 0 else 0.5)
        box = (W * (cx - ow / 2), H * (cy - oh / 2), W * (cx + ow / 2), H * (cy + oh / 2))
        col = main if k == 0 else _rand_color(r, 20, 230)
        if variant and k > 0:
            col = _hsv_shift(col, 0.23 * variant, 0.55)
        sh = (box[0] + 0.03 * W, box[3] - 0.04 * H, box[2] + 0.05 * W, box[3] + 0.03 * H)
        draw.ellipse(sh, fill=(0, 0, 0, 60))
        if kind == 0:
            draw.ellipse(box, fill=col)
        elif kind == 1:
            draw.rounded_rectangle(box, radius=int(min(W, H) * r.uniform(0.01, 0.08)), fill=col)
        elif kind == 2:  # bottle: body + neck
            bw = box[2] - box[0]
            draw.rounded_rectangle(
                (box[0], box[1] + 0.3 * (box[3] - box[1]), box[2], box[3]),
                radius=int(bw * 0.2),
                fill=col,
            )
            draw.rectangle(
                (box[0] + 0.35 * bw, box[1], box[2] - 0.35 * bw, box[1] + 0.35 * (box[3] - box[1])),
                fill=_hsv_shift(col, 0.5),
            )
        else:
            pts = [
                (
                    W * (cx + ow / 2 * r.uniform(0.5, 1) * np.cos(a)),
                    H * (cy + oh / 2 * r.uniform(0.5, 1) * np.sin(a)),
                )
                for a in np.sort(r.uniform(0, 2 * np.pi, int(r.integers(5, 9))))
            ]
            draw.polygon(pts, fill=col)
        # texture on the object: stripes or dots or a printed label
        deco = int(r.integers(0, 3))
        dc = (*_rand_color(r), int(r.integers(90, 200)))
        bx0, by0, bx1, by1 = box
        if deco == 0:
            for j in range(int(r.integers(3, 8))):
                y = by0 + (by1 - by0) * (j + 0.5) / 8
                draw.line(
                    (bx0 + 0.15 * (bx1 - bx0), y, bx1 - 0.15 * (bx1 - bx0), y),
                    fill=dc,
                    width=max(1, int(H * 0.012)),
                )
        elif deco == 1:
            for _ in range(int(r.integers(5, 15))):
                px, py = r.uniform(bx0, bx1), r.uniform(by0, by1)
                rr = max(1.0, min(W, H) * r.uniform(0.008, 0.03))
                draw.ellipse((px - rr, py - rr, px + rr, py + rr), fill=dc)
        else:
            lw, lh = 0.5 * (bx1 - bx0), 0.25 * (by1 - by0)
            lx, ly = (bx0 + bx1) / 2 - lw / 2, (by0 + by1) / 2 - lh / 2
            draw.rectangle((lx, ly, lx + lw, ly + lh), fill=(*_rand_color(r, 180, 256), 230))
            draw.text(
                (lx + 2, ly + 1),
                f"P{product_id % 1000:03d}",
                fill=(20, 20, 20, 255),
                font=_font(max(8, int(lh * 0.6))),
            )
        # highlight
        hx, hy = bx0 + 0.25 * (bx1 - bx0), by0 + 0.2 * (by1 - by0)
        hr = 0.08 * min(bx1 - bx0, by1 - by0)
        draw.ellipse((hx - hr, hy - hr, hx + hr, hy + hr), fill=(255, 255, 255, 70))
    img = img.filter(ImageFilter.GaussianBlur(radius=max(0.5, min(W, H) / 500)))
    arr = np.asarray(img).astype(np.float32)
    noise = np.random.default_rng([int(product_id), int(seed), W, H]).normal(0, 2.5, arr.shape)
    return Image.fromarray((arr + noise).clip(0, 255).astype(np.uint8))


def _cjk_line(draw: ImageDraw.ImageDraw, rng: np.random.Generator, xy, n: int, size: int, fill):
    """Glyph-like strokes imitating a line of Chinese text (the bundled font has no CJK)."""
    x, y = xy
    for _ in range(n):
        for _ in range(int(rng.integers(3, 7))):
            if rng.random() < 0.5:
                yy = y + rng.uniform(0.1, 0.9) * size
                draw.line(
                    (x + rng.uniform(0, 0.4) * size, yy, x + rng.uniform(0.6, 1) * size, yy),
                    fill=fill,
                    width=max(1, size // 12),
                )
            else:
                xx = x + rng.uniform(0.1, 0.9) * size
                draw.line(
                    (xx, y + rng.uniform(0, 0.4) * size, xx, y + rng.uniform(0.6, 1) * size),
                    fill=fill,
                    width=max(1, size // 12),
                )
        x += size * 1.1


def _text_line(draw, rng, xy, width: int, size: int, fill) -> None:
    if rng.random() < 0.4:
        _cjk_line(draw, rng, xy, max(1, int(width / (size * 1.1))), size, fill)
    else:
        text = str(rng.choice(_TITLES_EN))
        draw.text(xy, text[: max(4, int(width / (size * 0.55)))], fill=fill, font=_font(size))


def _sticker(draw, rng, corner_xy, s: float) -> tuple[int, int, int, int]:
    """A "SALE -30%" / "NEW" sticker centred near ``corner_xy`` (overlaps the corner)."""
    text = str(rng.choice(("SALE -30%", "NEW", "-50%", "HOT", "限时")))
    w, h = int(rng.uniform(150, 260) * s), int(rng.uniform(60, 90) * s)
    cx, cy = corner_xy
    x0 = int(cx - w * rng.uniform(0.2, 0.5))
    y0 = int(cy - h * rng.uniform(0.2, 0.5))
    fill = (230, 30, 40) if rng.random() < 0.6 else (255, 200, 0)
    if rng.random() < 0.5:
        draw.rounded_rectangle((x0, y0, x0 + w, y0 + h), radius=h // 3, fill=fill)
    else:
        draw.ellipse((x0, y0, x0 + w, y0 + h), fill=fill)
    draw.text((x0 + w * 0.15, y0 + h * 0.2), text, fill=(255, 255, 255), font=_font(int(h * 0.5)))
    return (x0, y0, x0 + w, y0 + h)


@dataclass
class _Page:
    """Drawing state shared by the :func:`make_app_screenshot` helpers."""

    rng: np.random.Generator
    img: Image.Image
    draw: ImageDraw.ImageDraw
    W: int
    H: int
    s: float  #: scale against a 1080 px wide phone
    desktop: bool
    dark_mode: bool
    bgc: tuple[int, int, int]
    ink: tuple[int, int, int]
    muted: tuple[int, int, int]
    product_id: int
    other_products: tuple[int, int]
    meta: dict[str, Any]

    def other_pid(self) -> int:
        """A random product id other than the main one."""
        while True:
            p = int(self.rng.integers(*self.other_products))
            if p != self.product_id:
                return p

    def paste_photo(self, pid: int, box, variant: int = 0, radius: int = 0) -> None:
        """Paste product ``pid`` into ``box`` (optionally with rounded corners)."""
        x0, y0, x1, y1 = (int(v) for v in box)
        ph = product_image(
            pid, (x1 - x0, y1 - y0), variant=variant, seed=int(self.rng.integers(1e6))
        )
        if radius > 0:
            m = Image.new("L", ph.size, 0)
            ImageDraw.Draw(m).rounded_rectangle((0, 0, ph.width - 1, ph.height - 1), radius, 255)
            self.img.paste(ph, (x0, y0), m)
        else:
            self.img.paste(ph, (x0, y0))


def _desktop_chrome(pg: _Page) -> tuple[int, int, int, int]:
    """Side bar, optional ad column with photos, header. Returns the content area."""
    rng, draw, W, H = pg.rng, pg.draw, pg.W, pg.H
    side_w = int(W * rng.uniform(0.1, 0.16))
    side_c = _rand_color(rng, 30, 80) if rng.random() < 0.5 else _rand_color(rng, 225, 245)
    draw.rectangle((0, 0, side_w, H), fill=side_c)
    for k in range(int(rng.integers(6, 12))):
        draw.text(
            (20, 120 + k * 44),
            str(rng.choice(_SECTION_TEXTS)),
            font=_font(18),
            fill=(230, 230, 230) if sum(side_c) < 300 else (40, 40, 40),
        )
    left, right = side_w, W
    if rng.random() < 0.7:  # right ad column with photos
        ad_w = int(W * rng.uniform(0.14, 0.2))
        right = W - ad_w
        draw.rectangle((right, 0, W, H), fill=_rand_color(rng, 230, 250))
        y = 100
        while y < H - 200:
            ah = int(ad_w * rng.uniform(0.6, 1.0))
            pg.paste_photo(pg.other_pid(), (right + 12, y, W - 12, y + ah))
            pg.meta["banners"].append([right + 12, y, W - 12, y + ah])
            y += ah + 60
    top = int(rng.integers(60, 90))
    draw.rectangle((left, 0, W, top), fill=_rand_color(rng, 20, 250))
    draw.rounded_rectangle(
        (left + 40, top * 0.2, left + 40 + W * 0.3, top * 0.8),
        radius=int(top * 0.3),
        fill=(250, 250, 250),
        outline=pg.muted,
    )
    return left, top, right, H


def _phone_status_and_search(pg: _Page) -> int:
    """Status bar and search box. Returns the y where the content starts."""
    rng, draw, W, s, muted = pg.rng, pg.draw, pg.W, pg.s, pg.muted
    status_h = int(rng.uniform(60, 95) * s)
    status_c = pg.bgc if rng.random() < 0.6 else _rand_color(rng, 0, 256)
    draw.rectangle((0, 0, W, status_h), fill=status_c)
    tc = (20, 20, 20) if sum(status_c) > 380 else (240, 240, 240)
    draw.text(
        (30 * s, status_h * 0.2),
        f"{int(rng.integers(0, 24)):02d}:{int(rng.integers(0, 60)):02d}",
        fill=tc,
        font=_font(int(status_h * 0.5)),
    )
    for k in range(3):
        bx = W - (60 + 55 * k) * s
        draw.rectangle((bx, status_h * 0.3, bx + 38 * s, status_h * 0.7), outline=tc, width=2)
    sh = int(rng.uniform(90, 130) * s)
    sy = status_h + int(10 * s)
    draw.rounded_rectangle(
        (30 * s, sy, W - 30 * s, sy + sh),
        radius=sh // 2,
        fill=_rand_color(rng, 225, 250) if not pg.dark_mode else (60, 60, 60),
        outline=muted if rng.random() < 0.5 else None,
    )
    draw.ellipse((60 * s, sy + sh * 0.3, 60 * s + sh * 0.4, sy + sh * 0.7), outline=muted, width=3)
    draw.text(
        (80 * s + sh * 0.4, sy + sh * 0.25),
        "Search products",
        fill=muted,
        font=_font(int(sh * 0.4)),
    )
    return sy + sh + int(20 * s)


def _phone_nav_bar(pg: _Page) -> int:
    """Bottom navigation bar with icons. Returns its top y."""
    rng, draw, W, H = pg.rng, pg.draw, pg.W, pg.H
    nav_h = int(rng.uniform(120, 170) * pg.s)
    nav_c = _rand_color(rng, 235, 256) if not pg.dark_mode else (30, 30, 30)
    draw.rectangle((0, H - nav_h, W, H), fill=nav_c)
    draw.line((0, H - nav_h, W, H - nav_h), fill=(210, 210, 210), width=2)
    n_icons = int(rng.integers(4, 6))
    for k in range(n_icons):
        cx = (k + 0.5) * W / n_icons
        rr = nav_h * 0.18
        draw.rounded_rectangle(
            (cx - rr, H - nav_h + 0.15 * nav_h, cx + rr, H - nav_h + 0.15 * nav_h + 2 * rr),
            radius=int(rr * 0.4),
            outline=pg.ink,
            width=3,
        )
    return H - nav_h


def _phone_header(pg: _Page, top: int) -> int:
    """Optional shop header or promo banner above the picture. Returns the new top."""
    rng, draw, W, s = pg.rng, pg.draw, pg.W, pg.s
    above = rng.random()
    if above < 0.25:
        ah = int(rng.uniform(110, 160) * s)
        ar = ah * 0.35
        draw.ellipse(
            (30 * s, top + ah / 2 - ar, 30 * s + 2 * ar, top + ah / 2 + ar),
            fill=_rand_color(rng),
        )
        draw.text(
            (50 * s + 2 * ar, top + ah * 0.3),
            "Official Store",
            fill=pg.ink,
            font=_font(int(ah * 0.25)),
        )
        top += ah
    elif above < 0.4:
        ah = int(rng.uniform(160, 260) * s)
        bcol = _rand_color(rng, 150, 256)
        draw.rounded_rectangle((30 * s, top, W - 30 * s, top + ah), radius=int(20 * s), fill=bcol)
        pw = int(ah * 0.8)
        pg.paste_photo(
            pg.other_pid(), (W - 60 * s - pw, top + ah * 0.1, W - 60 * s, top + ah * 0.9)
        )
        draw.text(
            (60 * s, top + ah * 0.3),
            str(rng.choice(_BANNER_TEXTS)),
            fill=(255,) * 3,
            font=_font(int(ah * 0.3)),
        )
        pg.meta["banners"].append([int(30 * s), top, int(W - 30 * s), top + ah])
        top += ah + int(20 * s)
    return top


def _main_picture(
    pg: _Page, content: tuple[int, int, int, int]
) -> tuple[tuple[int, int, int, int], int]:
    """The main product picture, its optional frame card and stickers.

    Returns:
        ``((px, py, pw, ph), frame)``: the picture's corner and size, the frame width.
    """
    rng, draw, s = pg.rng, pg.draw, pg.s
    left, top, right, bottom = content
    CW = right - left
    aspect = float(rng.choice([1.0, 1.0, 1.0, 0.75, 1.25, 4 / 3, 9 / 16]))  # h / w
    if pg.desktop:
        frac = rng.uniform(0.35, 0.5)
    else:
        frac = 1.0 if rng.random() < 0.3 else rng.uniform(0.6, 0.95)
    pw = int(CW * frac)
    ph = int(pw * aspect)
    max_ph = int((bottom - top) * (0.75 if not pg.desktop else 0.85))
    if ph > max_ph:
        ph = max_ph
    y_hi = min(int(pg.H * 2 / 3) - 1, bottom - ph)
    py = int(rng.integers(top, max(top + 1, min(y_hi, top + int(0.15 * pg.H)) + 1)))
    if pg.desktop:
        px = left + int(rng.uniform(0.03, 0.08) * CW)
    elif frac >= 0.999:
        px = left
    else:
        px = left + int(rng.choice([(CW - pw) // 2, int(30 * s), (CW - pw) // 2]))
    frame = 0
    if frac < 0.999 and rng.random() < 0.3:
        frame = int(rng.uniform(8, 28) * s)
        fc = (255, 255, 255) if pg.bgc != (255, 255, 255) else _rand_color(rng, 215, 240)
        draw.rounded_rectangle(
            (px - frame, py - frame, px + pw + frame, py + ph + frame),
            radius=int(rng.uniform(0, 20) * s),
            fill=fc,
        )
    radius = int(rng.uniform(12, 45) * s) if rng.random() < 0.4 else 0
    pg.paste_photo(pg.product_id, (px, py, px + pw, py + ph), radius=radius)
    pg.meta["layout"].update(frac=float(frac), aspect=aspect, frame=frame, radius=radius)
    if rng.random() < 0.3:
        pg.meta["stickers"].append(list(_sticker(draw, rng, (px, py), s)))
    if rng.random() < 0.25:
        pg.meta["stickers"].append(list(_sticker(draw, rng, (px + pw, py + ph), s)))
    return (px, py, pw, ph), frame


def _carousel_dots(pg: _Page, px: int, pw: int, y: int) -> int:
    """Optional carousel dot row centred under the picture at ``y``. Returns the new y."""
    rng, s = pg.rng, pg.s
    if rng.random() < 0.4:
        n = int(rng.integers(3, 7))
        rr = 7 * s
        cx0 = px + pw / 2 - n * 14 * s
        for k in range(n):
            pg.draw.ellipse(
                (cx0 + k * 28 * s - rr, y - rr, cx0 + k * 28 * s + rr, y + rr),
                fill=pg.ink if k == 0 else (190, 190, 190),
            )
        y += int(30 * s)
    return y


def _title_price_buttons(pg: _Page, tx: int, y: int, avail: int, fs: int) -> int:
    """Title lines, price and optional cart buttons from ``(tx, y)``. Returns the new y."""
    rng, draw, s = pg.rng, pg.draw, pg.s
    for _ in range(int(rng.integers(1, 4))):
        _text_line(draw, rng, (tx, y), avail, fs, pg.ink)
        y += int(fs * 1.5)
    draw.text((tx, y), str(rng.choice(_PRICE_TEXTS)), fill=(220, 30, 40), font=_font(int(fs * 1.5)))
    y += int(fs * 2.4)
    if rng.random() < 0.7:
        bw, bh = int(avail * rng.uniform(0.3, 0.45)), int(rng.uniform(90, 120) * s)
        for k, label in enumerate(("Add to cart", "Buy now")):
            bx = tx + k * (bw + int(20 * s))
            draw.rounded_rectangle(
                (bx, y, bx + bw, y + bh), radius=bh // 2, fill=_rand_color(rng, 0, 256)
            )
            draw.text(
                (bx + bw * 0.2, y + bh * 0.3),
                label,
                fill=(255, 255, 255),
                font=_font(int(bh * 0.35)),
            )
        y += bh + int(30 * s)
    return y


def _thumbnail_row(pg: _Page, tx: int, y: int, avail: int, fs: int) -> int:
    """A titled row of thumbnails (same product, its variants, others). Returns the new y."""
    rng, draw, s = pg.rng, pg.draw, pg.s
    draw.text((tx, y), str(rng.choice(_SECTION_TEXTS)), fill=pg.ink, font=_font(fs))
    y += int(fs * 1.6)
    n = int(rng.integers(2, 5)) if not pg.desktop else int(rng.integers(4, 7))
    gap = int(20 * s)
    tw = (avail - gap * (n - 1)) // n
    th = int(tw * rng.choice([1.0, 1.0, 1.25]))
    for k in range(n):
        bx = tx + k * (tw + gap)
        u = rng.random()
        if u < 0.3:
            pid, var = pg.product_id, 0
        elif u < 0.5:
            pid, var = pg.product_id, int(rng.integers(1, 4))
        else:
            pid, var = pg.other_pid(), 0
        pg.paste_photo(
            pid,
            (bx, y, bx + tw, y + th),
            variant=var,
            radius=int(12 * s) if rng.random() < 0.3 else 0,
        )
        pg.meta["thumbs"].append(
            {"box": [bx, y, bx + tw, y + th], "product_id": pid, "variant": var}
        )
        draw.text(
            (bx, y + th + 8 * s),
            str(rng.choice(_PRICE_TEXTS)),
            fill=(220, 30, 40),
            font=_font(int(fs * 0.8)),
        )
    return y + th + int(fs * 2.2)


def _photo_banner(pg: _Page, tx: int, y: int, avail: int) -> int:
    """A coloured banner containing another product's photo. Returns the new y."""
    rng, draw, s = pg.rng, pg.draw, pg.s
    bh = int(rng.uniform(180, 300) * s)
    draw.rounded_rectangle(
        (tx, y, tx + avail, y + bh), radius=int(16 * s), fill=_rand_color(rng, 120, 256)
    )
    pw2 = int(bh * rng.uniform(0.8, 1.4))
    pg.paste_photo(
        pg.other_pid(),
        (tx + avail - pw2 - 20 * s, y + bh * 0.1, tx + avail - 20 * s, y + bh * 0.9),
    )
    draw.text(
        (tx + 30 * s, y + bh * 0.3),
        str(rng.choice(_BANNER_TEXTS)),
        fill=(255, 255, 255),
        font=_font(int(bh * 0.25)),
    )
    pg.meta["banners"].append([tx, y, tx + avail, y + bh])
    return y + bh + int(30 * s)


def _review_block(pg: _Page, tx: int, y: int, avail: int, fs: int) -> int:
    """A review: round avatar, name line, one or two muted text lines. Returns the new y."""
    rng, draw, s = pg.rng, pg.draw, pg.s
    ar = int(40 * s)
    ph_ = product_image(pg.other_pid(), (2 * ar, 2 * ar))
    m = Image.new("L", ph_.size, 0)
    ImageDraw.Draw(m).ellipse((0, 0, 2 * ar - 1, 2 * ar - 1), fill=255)
    pg.img.paste(ph_, (tx, y), m)
    _text_line(draw, rng, (tx + 2 * ar + 20 * s, y + ar * 0.4), avail // 2, fs, pg.ink)
    y += 2 * ar + int(20 * s)
    for _ in range(int(rng.integers(1, 3))):
        _text_line(draw, rng, (tx, y), avail, int(fs * 0.85), pg.muted)
        y += int(fs * 1.4)
    return y


def _icon_paragraph(pg: _Page, tx: int, y: int, avail: int, fs: int) -> int:
    """A row of round icons and a text paragraph. Returns the new y."""
    rng, draw, s = pg.rng, pg.draw, pg.s
    for k in range(int(rng.integers(3, 6))):
        rr = 24 * s
        draw.ellipse(
            (tx + k * 90 * s, y, tx + k * 90 * s + 2 * rr, y + 2 * rr), outline=pg.ink, width=3
        )
    y += int(70 * s)
    for _ in range(int(rng.integers(1, 4))):
        _text_line(draw, rng, (tx, y), avail, int(fs * 0.85), pg.ink)
        y += int(fs * 1.4)
    return y


def _feed(pg: _Page, tx: int, y: int, avail: int, fs: int, bottom: int) -> None:
    """Fill down to ``bottom`` with thumbnail rows (at least one), banners, reviews, text."""
    while y < bottom - 60 * pg.s:
        choice = pg.rng.random() if pg.meta["thumbs"] else 0.0  # at least one thumbnail row
        if choice < 0.55:
            y = _thumbnail_row(pg, tx, y, avail, fs)
        elif choice < 0.7:
            y = _photo_banner(pg, tx, y, avail)
        elif choice < 0.85:
            y = _review_block(pg, tx, y, avail, fs)
        else:
            y = _icon_paragraph(pg, tx, y, avail, fs)


def _new_page(
    rng: np.random.Generator,
    product_id: int,
    size: tuple[int, int],
    desktop: bool,
    other_products: tuple[int, int],
) -> _Page:
    """Colours (light or dark mode), the blank canvas and the ``meta`` skeleton."""
    W, H = int(size[0]), int(size[1])
    dark_mode = rng.random() < 0.1
    bgc = (
        _rand_color(rng, 15, 40)
        if dark_mode
        else ((255, 255, 255) if rng.random() < 0.55 else _rand_color(rng, 238, 250))
    )
    ink = (235, 235, 235) if dark_mode else _rand_color(rng, 10, 60)
    img = Image.new("RGB", (W, H), bgc)
    layout: dict[str, Any] = {"desktop": desktop, "dark": dark_mode, "size": [W, H]}
    meta: dict[str, Any] = {
        "product_id": int(product_id),
        "layout": layout,
        "thumbs": [],
        "banners": [],
        "stickers": [],
    }
    return _Page(
        rng=rng,
        img=img,
        draw=ImageDraw.Draw(img),
        W=W,
        H=H,
        s=(W if not desktop else W / 1.6) / 1080,
        desktop=desktop,
        dark_mode=dark_mode,
        bgc=bgc,
        ink=ink,
        muted=(150, 150, 150),
        product_id=int(product_id),
        other_products=other_products,
        meta=meta,
    )


def make_app_screenshot(
    rng: np.random.Generator,
    *,
    product_id: int | None = None,
    size: tuple[int, int] | None = None,
    desktop: bool = False,
    other_products: tuple[int, int] = (1000, 100000),
) -> tuple[Image.Image, tuple[float, float, float, float], dict[str, Any]]:
    """A shopping-app (or desktop web page) capture with one main product picture.

    Phone layout (any ``size``, default one of :data:`PHONE_SIZES`): status bar, search box,
    sometimes a shop header or promo banner, the main picture (60–100 % of the width, top in
    the upper two thirds, 1:1 / 3:4 / 4:3 / 16:9; sometimes rounded corners, a white or grey
    frame card, a carousel dot row, a sticker and a price tag overlapping corners), title
    lines in English and Chinese, price, buttons, "you may also like" rows of thumbnails (the
    same product, its colour variants and other products), banners containing photos,
    avatars and icons, a bottom navigation bar. Desktop (``desktop=True``, default
    1920×1080): header, side bars, the picture in the content column, ads on the right.

    Args:
        rng: random generator (the only source of layout randomness).
        product_id: the main product (see :func:`product_image`); random if None.
        size: ``(W, H)``; default by kind.
        desktop: desktop web page instead of a phone app.
        other_products: id range other products are drawn from.

    Returns:
        ``(image, box, meta)``: RGB image; ``box`` = the main picture ``(x0, y0, x1, y1)``
        (exclusive right/bottom, inside any frame); ``meta`` has ``product_id``, ``layout``
        (dict of the choices), ``thumbs`` (list of ``{"box", "product_id", "variant"}``),
        ``banners`` and ``stickers`` (boxes).
    """
    if product_id is None:
        product_id = int(rng.integers(*other_products))
    if size is None:
        size = DESKTOP_SIZE if desktop else PHONE_SIZES[int(rng.integers(len(PHONE_SIZES)))]
    pg = _new_page(rng, product_id, size, desktop, other_products)
    s, layout = pg.s, pg.meta["layout"]
    if desktop:
        left, top, right, bottom = _desktop_chrome(pg)
    else:
        left, right = 0, pg.W
        top = _phone_status_and_search(pg)
        bottom = _phone_nav_bar(pg)
        top = _phone_header(pg, top)
    layout["content"] = [left, top, right, bottom]
    (px, py, pw, ph), frame = _main_picture(pg, (left, top, right, bottom))
    box = (float(px), float(py), float(px + pw), float(py + ph))
    y0 = py + ph + frame + int(20 * s)
    y = _carousel_dots(pg, px, pw, y0)
    layout["carousel"] = bool(y != y0)
    # text, price, buttons, then the feed below (text to the right of the picture on desktop)
    CW = right - left
    if desktop:
        tx, y = px + pw + frame + 40, py
        avail = right - tx - 30
    else:
        tx, avail = left + int(30 * s), CW - int(60 * s)
    fs = int(rng.uniform(34, 46) * s)
    y = _title_price_buttons(pg, tx, y, avail, fs)
    if desktop:
        y = max(y, py + ph + frame + 40)
        tx, avail = left + int(0.03 * CW), CW - int(0.06 * CW)
    _feed(pg, tx, y, avail, fs, bottom)
    return pg.img, box, pg.meta


def hand_crop_name(rng: np.random.Generator, product_id: int) -> str:
    """A hand-crop file name like ``product_A_448_v2.png`` (or one with no id in common)."""
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    tag = letters[product_id % 26] + ("" if product_id < 26 else str(product_id // 26 % 100))
    style = int(rng.integers(0, 4))
    if style == 0:
        return f"product_{tag}_448_v{int(rng.integers(1, 4))}.png"
    if style == 1:
        return f"product_{tag}_448.png"
    if style == 2:
        return f"IMG_{int(rng.integers(1000, 9999))}.png"
    return f"{tag.lower()}_crop_final.png"


def encode_image(
    img: Image.Image, rng: np.random.Generator, *, exif_prob: float = 0.0
) -> tuple[bytes, str]:
    """Encode as a user's file would be: JPEG (quality 70–95), PNG or WEBP.

    With probability ``exif_prob`` (JPEG only) the pixels are stored rotated with an EXIF
    orientation tag (3, 6 or 8) that turns them back, as phone photos are; readers that
    apply EXIF orientation (``autolabel.imageio``) see ``img`` again.

    Returns:
        ``(data, suffix)`` with suffix ``.jpg``, ``.png`` or ``.webp``.
    """
    import io

    u = rng.random()
    buf = io.BytesIO()
    if u < 0.6:
        quality = int(rng.integers(70, 96))
        if rng.random() < exif_prob:
            orient = int(rng.choice([3, 6, 8]))
            # stored pixels = inverse of the transpose the reader applies
            inv = {
                3: Image.Transpose.ROTATE_180,
                6: Image.Transpose.ROTATE_90,
                8: Image.Transpose.ROTATE_270,
            }[orient]
            exif = Image.Exif()
            exif[0x0112] = orient
            img.transpose(inv).save(buf, "JPEG", quality=quality, exif=exif.tobytes())
        else:
            img.save(buf, "JPEG", quality=quality)
        return buf.getvalue(), ".jpg"
    if u < 0.8:
        img.save(buf, "PNG", compress_level=1)
        return buf.getvalue(), ".png"
    img.save(buf, "WEBP", quality=int(rng.integers(75, 95)))
    return buf.getvalue(), ".webp"


def decode_image(data: bytes) -> np.ndarray:
    """Decode :func:`encode_image` bytes EXIF-corrected, ``(H, W, 3) uint8`` RGB."""
    import io

    from PIL import ImageOps

    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(ImageOps.exif_transpose(im).convert("RGB"))


@dataclass(frozen=True)
class AppSample:
    """One generated capture: decoded pixels, the main-picture box and its product."""

    image: np.ndarray  #: ``(H, W, 3) uint8`` after an encode/decode round trip
    box: tuple[float, float, float, float]
    product_id: int
    meta: dict[str, Any]
    suffix: str = ".png"
    crop: np.ndarray | None = None  #: a hand crop of the box (seed samples only)
    crop_name: str | None = None


def make_app_samples(
    n: int,
    seed: int,
    *,
    products: list[int] | None = None,
    sizes: tuple[tuple[int, int], ...] = PHONE_SIZES,
    desktop_prob: float = 0.0,
    with_crops: bool = False,
    exif_prob: float = 0.1,
    scale: float = 1.0,
) -> list[AppSample]:
    """Generate ``n`` captures (seed set with hand crops, or test set).

    Args:
        n: number of captures.
        seed: RNG seed (layouts, sizes, encodings).
        products: product ids to draw the main product from (cycled); random ids if None.
        sizes: phone sizes drawn from.
        desktop_prob: share of desktop web-page captures.
        with_crops: also imitate a hand crop of each main picture (:func:`make_crop`: a few
            px of jitter, brightness/contrast, often resized to 448) and its file name.
        exif_prob: share of JPEGs stored with an EXIF orientation.
        scale: multiply every size (e.g. 0.5 for quick tests).

    Returns:
        ``n`` :class:`AppSample`.
    """
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        pid = int(products[i % len(products)]) if products else None
        desk = rng.random() < desktop_prob
        base = DESKTOP_SIZE if desk else sizes[int(rng.integers(len(sizes)))]
        size = (round(base[0] * scale), round(base[1] * scale))
        shot, box, meta = make_app_screenshot(rng, product_id=pid, size=size, desktop=desk)
        crop = name = None
        if with_crops:
            c, _, _ = make_crop(rng, shot, box, jitter=max(1, round(3 * scale)))
            crop, name = np.asarray(c), hand_crop_name(rng, meta["product_id"])
        data, suffix = encode_image(shot, rng, exif_prob=exif_prob)
        out.append(AppSample(decode_image(data), box, meta["product_id"], meta, suffix, crop, name))
    return out
