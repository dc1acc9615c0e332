"""Captions: reading JSONL/CSV/sidecars, noun phrases from Chinese and English, prompts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from autolabel.errors import InputError
from autolabel.seed.captions import (
    build_prompt,
    match_captions,
    phrase_from_caption,
    read_captions,
    sidecar_caption,
)
from autolabel.types import Prompt


@pytest.mark.parametrize(
    ("caption", "phrase"),
    [
        ("white running shoe with blue stripes", "white running shoe"),
        ("New 2024 black leather handbag, free shipping", "black leather handbag"),
        ("A white coffee cup on a saucer", "white coffee cup"),
        # a caption that names the picture first is about what the picture shows
        ("product photo of a ceramic coffee mug", "ceramic coffee mug"),
        ("Close-up of a leather handbag", "leather handbag"),
        ("product photo", "product photo"),
        ("bottle of wine", "bottle"),
        ("orange tabby cat plush toy for kids", "tabby cat plush toy"),
        ("白色运动鞋…", "white sneaker"),
        ("白色运动鞋，透气网面", "white sneaker"),
        ("黑色皮质手提包新款包邮", "black leather handbag"),
        ("红色的连衣裙", "red dress"),
        ("黑色复古相机，带三脚架", "black vintage camera"),
        ("白色咖啡杯和杯碟", "white coffee cup"),
        ("蓝色 Nike 运动鞋", "blue nike sneaker"),
        ("", ""),
        (None, ""),
    ],
)
def test_phrase_from_caption(caption, phrase) -> None:
    assert phrase_from_caption(caption) == phrase


def test_unknown_chinese_words_are_kept() -> None:
    p = phrase_from_caption("白色筋膜枪")
    assert p.startswith("white ") and any("\u4e00" <= ch <= "\u9fff" for ch in p)


def test_prompt_map_wins() -> None:
    m = {"连衣裙": "dress", "红色连衣裙": "red summer dress", "Shoe": "sneaker"}
    assert phrase_from_caption("红色连衣裙 夏季", m) == "red summer dress"  # longest key
    assert phrase_from_caption("蓝色连衣裙", m) == "dress"
    assert phrase_from_caption("white running shoe", m) == "sneaker"  # case-insensitive


def test_build_prompt_orders_by_frequency() -> None:
    phrases = ["handbag", "white sneaker", "white sneaker", "", "hat", "handbag", "white sneaker"]
    assert build_prompt(phrases) == "white sneaker. handbag. hat"
    assert build_prompt(phrases, max_phrases=2) == "white sneaker. handbag"
    assert build_prompt(["", ""]) == ""
    # the stored form of a Prompt: parsing it back gives the same phrases
    assert Prompt.parse(build_prompt(phrases)).phrases == ("white sneaker", "handbag", "hat")


def test_read_captions_formats(tmp_path: Path) -> None:
    jl = tmp_path / "c.jsonl"
    jl.write_text(
        json.dumps({"image": "crops/a.png", "text": "白色运动鞋"}, ensure_ascii=False)
        + "\n\n"
        + json.dumps({"images": ["b.png"], "response": "red hat"})
        + "\n",
        encoding="utf-8",
    )
    assert read_captions(jl) == {"crops/a.png": "白色运动鞋", "b.png": "red hat"}
    csv = tmp_path / "c.csv"
    csv.write_text('image,text\na.png,"white shoe, size 42"\n', encoding="utf-8")
    assert read_captions(csv) == {"a.png": "white shoe, size 42"}
    js = tmp_path / "c.json"
    js.write_text(json.dumps([{"image": "a.png", "caption": "hat"}]), encoding="utf-8")
    assert read_captions(js) == {"a.png": "hat"}


@pytest.mark.parametrize(
    ("name", "text", "match"),
    [
        ("c.jsonl", '{"image": "a.png"}\n', "expected"),
        ("c.jsonl", "not json\n", "invalid JSON"),
        ("c.csv", "a.png\n", "expected 'image,text'"),
        ("c.txt", "a.png hat\n", "expected a .jsonl"),
        ("missing.jsonl", None, "cannot read"),
    ],
)
def test_read_captions_errors(tmp_path: Path, name, text, match) -> None:
    p = tmp_path / name
    if text is not None:
        p.write_text(text, encoding="utf-8")
    with pytest.raises(InputError, match=match):
        read_captions(p)


def test_match_and_sidecar(tmp_path: Path) -> None:
    crops = [tmp_path / "crops" / "a.png", tmp_path / "crops" / "b.png", tmp_path / "x" / "c.png"]
    for c in crops:
        c.parent.mkdir(exist_ok=True)
        c.write_bytes(b"")
    caps = {"crops/a.png": "one", "b.png": "two", "/elsewhere/zzz.png": "three"}
    got = match_captions(caps, crops, base=tmp_path)
    assert got == {crops[0]: "one", crops[1]: "two"}
    crops[2].with_suffix(".txt").write_text("  side text \n", encoding="utf-8")
    assert sidecar_caption(crops[2]) == "side text"
    assert sidecar_caption(crops[0]) is None
