"""Captions of seed crops, and detector prompt phrases derived from them.

Captions come from a JSONL file (``{"image": crop_path, "text": ...}``, the ms-swift form;
``images``/``crop`` and ``caption``/``response`` keys are accepted too), a CSV file
(``image,text`` columns, header optional) or sidecar ``.txt`` files next to the crops.

Prompt phrases are short noun phrases a grounding detector understands:

- English: the words before the first ``with / for / in / on / of / by / from / and`` or
  punctuation, minus articles, numbers and shop words, keeping the last
  :data:`MAX_PHRASE_WORDS` words ("white running shoe with blue stripes" -> "white running
  shoe").
- Chinese: segmented with jieba, cut at the first punctuation or linking word (带, 配, 和,
  ...), shop words dropped, each word translated with a small built-in product dictionary
  (:data:`ZH_EN`; unknown words are kept as they are) ("白色运动鞋…" -> "white sneaker").
- A per-class ``prompt_map`` (config ``seed.prompt_map``) wins: the longest key found in the
  caption gives the phrase.
"""

from __future__ import annotations

import csv
import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from autolabel.errors import InputError
from autolabel.types import Prompt

MAX_PHRASE_WORDS = 4

#: Chinese product words -> English (extend through ``seed.prompt_map`` for your classes).
ZH_EN: dict[str, str] = {
    # colours
    "白色": "white", "白": "white", "黑色": "black", "黑": "black", "红色": "red",
    "红": "red", "蓝色": "blue", "蓝": "blue", "绿色": "green", "绿": "green",
    "黄色": "yellow", "黄": "yellow", "灰色": "grey", "灰": "grey", "粉色": "pink",
    "粉红色": "pink", "紫色": "purple", "紫": "purple", "橙色": "orange", "橘色": "orange",
    "棕色": "brown", "咖啡色": "brown", "银色": "silver", "金色": "gold", "彩色": "colorful",
    "米色": "beige", "卡其色": "khaki", "藏青色": "navy", "透明": "transparent",
    # materials / styles / shapes
    "皮质": "leather", "真皮": "leather", "皮革": "leather", "棉": "cotton",
    "纯棉": "cotton", "丝绸": "silk", "真丝": "silk", "羊毛": "wool", "木质": "wooden",
    "木": "wooden", "金属": "metal", "不锈钢": "steel", "塑料": "plastic", "玻璃": "glass",
    "陶瓷": "ceramic", "毛绒": "plush", "复古": "vintage", "印花": "printed",
    "条纹": "striped", "格子": "checked", "圆形": "round", "方形": "square",
    "大号": "large", "小号": "small", "迷你": "mini", "无线": "wireless",
    "男士": "men's", "女士": "women's", "儿童": "kids",
    # products
    "运动鞋": "sneaker", "跑鞋": "running shoe", "鞋子": "shoe", "鞋": "shoe",
    "高跟鞋": "high heels", "靴子": "boots", "凉鞋": "sandals", "拖鞋": "slippers",
    "帆布鞋": "canvas shoe", "手提包": "handbag", "包包": "bag", "包": "bag",
    "背包": "backpack", "双肩包": "backpack", "钱包": "wallet", "行李箱": "suitcase",
    "连衣裙": "dress", "裙子": "skirt", "半身裙": "skirt", "T恤": "t-shirt", "t恤": "t-shirt",
    "衬衫": "shirt", "外套": "coat", "大衣": "coat", "夹克": "jacket", "卫衣": "hoodie",
    "毛衣": "sweater", "裤子": "trousers", "牛仔裤": "jeans", "短裤": "shorts",
    "帽子": "hat", "棒球帽": "baseball cap", "手表": "watch", "眼镜": "glasses",
    "太阳镜": "sunglasses", "墨镜": "sunglasses", "项链": "necklace", "耳环": "earrings",
    "戒指": "ring", "手链": "bracelet", "手机": "phone", "手机壳": "phone case",
    "耳机": "headphones", "充电器": "charger", "笔记本电脑": "laptop", "电脑": "computer",
    "键盘": "keyboard", "鼠标": "mouse", "杯子": "cup", "水杯": "cup", "咖啡杯": "coffee cup",
    "杯": "cup", "杯碟": "saucer", "碟": "saucer", "盘子": "plate", "碗": "bowl",
    "瓶子": "bottle", "水瓶": "bottle", "猫": "cat", "猫咪": "cat", "狗": "dog",
    "玩具": "toy", "毛绒玩具": "plush toy", "相机": "camera", "三脚架": "tripod",
    "火箭": "rocket", "模型": "model", "丝巾": "scarf", "围巾": "scarf", "纪念币": "coin",
    "硬币": "coin", "币": "coin", "套装": "set", "灯": "lamp", "台灯": "desk lamp",
    "月球": "moon", "月球灯": "moon lamp", "挂钟": "wall clock", "钟": "clock",
    "海报": "poster", "贴纸": "sticker", "色轮": "color wheel", "书": "book",
    "书页": "book page", "宇航服": "space suit", "星空": "galaxy", "口红": "lipstick",
    "香水": "perfume", "面霜": "face cream", "椅子": "chair", "沙发": "sofa",
    "桌子": "table", "枕头": "pillow", "自行车": "bicycle", "雨伞": "umbrella",
    "印刷": "printed", "橘": "orange", "银": "silver",
}  # fmt: skip

_ZH_STOP = {
    "新款", "爆款", "正品", "包邮", "限时", "特价", "款", "时尚", "潮流", "热卖", "促销",
    "的", "了", "一个", "一只", "一件", "一双", "这", "那", "个", "只", "件", "双", "超",
    "很", "非常", "官方", "旗舰店", "同款", "2023", "2024", "2025", "2026",
}  # fmt: skip
_ZH_CUT = {"带", "配", "和", "与", "及", "附", "送", "含", "用于", "适合", "在", "上", "放在"}
_EN_CUT = {"with", "for", "in", "on", "of", "by", "from", "and", "featuring", "that", "which"}
_EN_DROP = {
    "a", "an", "the", "new", "hot", "sale", "best", "cheap", "free", "shipping", "original",
    "genuine", "official", "brand", "this", "these", "my", "our", "2024", "2025", "2026",
}  # fmt: skip
_EN_GENERIC = {
    "product", "products", "photo", "photos", "picture", "pictures", "image", "images", "shot",
    "close-up", "closeup", "view", "front", "side", "top", "detail", "item",
}  # fmt: skip
"""Words that name the picture, not the object: "product photo of a mug" is about the mug."""
_CJK = re.compile(r"[\u3400-\u9fff]")
_PUNCT = re.compile(r"[，。、；：！？…,.;:!?()（）\[\]【】「」\"'“”/|~\-—·]+")


def _is_chinese(text: str) -> bool:
    return bool(_CJK.search(text))


def _english_phrase(text: str) -> str:
    words: list[str] = []
    for raw in text.lower().split():
        w = raw.strip("\"'()[]")
        stop = w != raw.rstrip(",.;:!?") or bool(re.search(r"[,.;:!?]$", raw))
        w = w.strip(",.;:!?")
        if w in _EN_CUT:
            if w == "of" and words and all(x in _EN_GENERIC for x in words):
                words = []  # "product photo of a ceramic mug": the mug, not the photo
                continue
            if words:
                break
            continue
        if w and w not in _EN_DROP and not re.fullmatch(r"[\d%$¥€.,x×-]+", w):
            words.append(w)
        if stop and words:
            break
    return " ".join(words[-MAX_PHRASE_WORDS:])


def _chinese_phrase(text: str) -> str:
    import logging

    import jieba

    jieba.setLogLevel(logging.WARNING)
    for word in ZH_EN:  # keep dictionary words whole
        jieba.add_word(word, freq=None)
    head = _PUNCT.split(text.strip(), maxsplit=1)[0] or text
    out: list[str] = []
    for tok in jieba.lcut(head):
        tok = tok.strip()
        if not tok:
            continue
        if tok in _ZH_CUT and out:
            break
        if tok in _ZH_STOP or tok in _ZH_CUT:
            continue
        if _is_chinese(tok):
            out.append(ZH_EN.get(tok, tok))
        else:
            eng = _english_phrase(tok)
            if eng:
                out.append(eng)
    return " ".join(" ".join(out).split()[-MAX_PHRASE_WORDS:])


def phrase_from_caption(caption: str | None, prompt_map: Mapping[str, str] | None = None) -> str:
    """A short detector phrase for one caption ("" if nothing usable).

    Args:
        caption: free text, Chinese or English.
        prompt_map: ``{caption word or phrase: prompt phrase}``; the longest key contained
            in the caption (case-insensitive) wins over the heuristics.

    Returns:
        Lower-case phrase of at most :data:`MAX_PHRASE_WORDS` words (Chinese words without a
        translation count as one word each).
    """
    if not caption or not caption.strip():
        return ""
    low = caption.lower()
    for key in sorted(prompt_map or {}, key=len, reverse=True):
        if key and key.lower() in low:
            return " ".join(str(prompt_map[key]).lower().split())  # type: ignore[index]
    return _chinese_phrase(caption) if _is_chinese(caption) else _english_phrase(caption)


def build_prompt(phrases: Iterable[str], *, max_phrases: int = 8) -> str:
    """The most frequent distinct phrases as a prompt, in its stored form (``"a. b"``).

    Ties keep first-seen order; empty phrases are skipped; ``""`` when none is left. The
    form is ``str(Prompt)`` (:class:`autolabel.types.Prompt`).
    """
    counts = Counter(p for p in phrases if p)
    top = [p for p, _ in counts.most_common(max_phrases)]
    return str(Prompt.parse(top)) if top else ""


# -- reading captions --------------------------------------------------------------------
_IMAGE_KEYS = ("image", "images", "crop", "file", "path")
_TEXT_KEYS = ("text", "caption", "response", "label")


def _pick(row: Mapping[str, object], keys: Sequence[str]) -> object | None:
    for k in keys:
        if k in row and row[k] not in (None, "", []):
            return row[k]
    return None


def read_captions(path: str | Path) -> dict[str, str]:
    """Read a caption file into ``{image name as written: caption}``.

    Args:
        path: ``.jsonl`` / ``.json`` (list of rows) or ``.csv``.

    Raises:
        InputError: unreadable file, or a row without an image or text.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise InputError(f"{path}: cannot read captions ({exc.strerror})") from exc
    out: dict[str, str] = {}
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json"):
        if suffix == ".json":
            try:
                rows = json.loads(text)
            except json.JSONDecodeError as exc:
                raise InputError(f"{path}: expected a JSON list of rows ({exc})") from exc
            if not isinstance(rows, list):
                raise InputError(f"{path}: expected a JSON list, got {type(rows).__name__}")
            numbered = list(enumerate(rows, 1))
        else:
            numbered = []
            for n, line in enumerate(text.splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    numbered.append((n, json.loads(line)))
                except json.JSONDecodeError as exc:
                    raise InputError(f"{path}:{n}: invalid JSON ({exc.msg})") from exc
        for n, row in numbered:
            image = _pick(row, _IMAGE_KEYS) if isinstance(row, dict) else None
            caption = _pick(row, _TEXT_KEYS) if isinstance(row, dict) else None
            if isinstance(image, list):
                image = image[0]
            if image is None or caption is None:
                raise InputError(
                    f'{path}:{n}: expected {{"image": ..., "text": ...}}, got {str(row)[:80]!r}'
                )
            out[str(image)] = str(caption).strip()
        return out
    if suffix in (".csv", ".tsv"):
        reader = csv.reader(text.splitlines(), delimiter="\t" if suffix == ".tsv" else ",")
        for n, row in enumerate(reader, 1):
            if not row or not "".join(row).strip():
                continue
            if len(row) < 2:
                raise InputError(f"{path}:{n}: expected 'image,text', got {row!r}")
            if n == 1 and row[0].strip().lower() in _IMAGE_KEYS:
                continue
            out[row[0].strip()] = row[1].strip()
        return out
    raise InputError(f"{path}: expected a .jsonl, .json, .csv or .tsv caption file")


def match_captions(
    captions: Mapping[str, str], crops: Sequence[Path], *, base: Path | None = None
) -> dict[Path, str]:
    """Attach captions to crop paths by absolute path, path relative to ``base``, or name.

    Args:
        captions: from :func:`read_captions`.
        crops: crop paths (absolute).
        base: folder the caption file's relative paths start from (its own folder).
    """
    index: dict[str, str] = {}
    for k, v in captions.items():
        index[k] = v
        p = Path(k)
        if base is not None and not p.is_absolute():
            index.setdefault(str((base / p).resolve()), v)
        index.setdefault(p.name, v)
    out: dict[Path, str] = {}
    for c in crops:
        hit = index.get(str(c)) or index.get(str(c.resolve())) or index.get(c.name)
        if hit is not None:
            out[c] = hit
    return out


def sidecar_caption(crop: Path) -> str | None:
    """The text of ``crop``'s sidecar ``.txt`` file (same stem), if any."""
    side = crop.with_suffix(".txt")
    if side.is_file():
        text = side.read_text(encoding="utf-8-sig").strip()
        return text or None
    return None
