"""ms-swift 4.6 reads the export: ``load_dataset`` + Qwen2-VL / Qwen2.5-VL template encode.

Runs in the swift venv (``setup_venvs.sh swift``) through ``swift_driver.py``, from an
unrelated working directory with ``ROOT_IMAGE_DIR`` set to the version folder, the way the
export tells users to train. Boxes are decoded from the encoded tokens and checked against
the pixels the Qwen2-VL image processor received.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tests.support import consumers as fd

TEMPLATES = ("qwen2_vl", "qwen2_5_vl")
SWIFT_FILES = ("swift.jsonl", "swift_messages.jsonl", "swift_grounding.jsonl")
"""The ms-swift training files; each has its val split at ``val/<name>``."""
BOX_RE = re.compile(r"<\|box_start\|>\((\d+),(\d+)\),\((\d+),(\d+)\)<\|box_end\|>")
REF_RE = re.compile(r"<\|object_ref_start\|>(.*?)<\|object_ref_end\|>")
CAPTION_COLOUR = {"red box": fd.RED, "green box": fd.GREEN, fd.GREEN_CAPTION: fd.GREEN}


def _driver(py: Path, *args: str, cwd: Path, env: dict[str, str] | None = None) -> None:
    base = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    base.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", USE_HF="1", OMP_NUM_THREADS="1")
    res = subprocess.run(
        [str(py), str(fd.CONSUMERS_DIR / "swift_driver.py"), *args],
        cwd=cwd,
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert res.returncode == 0, f"swift driver {args[0]} failed:\n{res.stderr[-6000:]}"


@pytest.fixture(scope="module", params=TEMPLATES)
def encoded(request, exported, tmp_path_factory) -> tuple[str, dict[str, list[dict]]]:
    """``(template, {file name: encoded rows})`` for every swift file of the export."""
    py = fd.venv_python("swift")
    template = request.param
    work = tmp_path_factory.mktemp(f"swift-{template}")
    _driver(py, "make-model", str(work / "model"), "--family", template, cwd=work)
    files = [
        str(exported.version / sub / f)
        for sub in ("", "val")
        for f in SWIFT_FILES
        if (exported.version / sub / f).is_file()
    ]
    elsewhere = work / "cwd"  # not the version folder: paths must resolve via ROOT_IMAGE_DIR
    elsewhere.mkdir()
    _driver(
        py, "encode", *files, "--model", str(work / "model"), "--template", template,
        "--out", str(work / "enc"), cwd=elsewhere, env={"ROOT_IMAGE_DIR": str(exported.version)},
    )  # fmt: skip
    rows: dict[str, list[dict]] = {}
    for rec in fd.read_jsonl(work / "enc" / "rows.jsonl"):
        rows.setdefault(Path(rec["dataset"]).name, []).append(rec)
    return template, rows


def _fed_image(rec: dict) -> np.ndarray:
    from PIL import Image

    [path] = rec["images"]
    with Image.open(path) as im:
        arr = np.asarray(im.convert("RGB"))
    [(_t, gh, gw)] = rec["grids"]
    assert arr.shape[:2] == (gh * 14, gw * 14), "the saved image is not the one encoded"
    assert rec["n_image_tokens"] == gh * gw // 4
    return arr


def _user_turn(text: str) -> str:
    m = re.search(r"<\|im_start\|>user\n(.*?)<\|im_end\|>", text, re.S)
    assert m, f"expected a user turn, got {text[:300]!r}"
    return m.group(1)


def _check_grounding(template: str, rows: list[dict]) -> int:
    n = 0
    for rec in rows:
        arr = _fed_image(rec)
        h, w = arr.shape[:2]
        assert "<|vision_start|><|image_pad|>" in _user_turn(rec["text"])
        refs = REF_RE.findall(rec["text"])
        boxes = BOX_RE.findall(rec["trained"])
        assert refs and boxes, (
            f"{template}: expected Qwen2 <|object_ref_start|>/<|box_start|> tokens, got "
            f"{rec['trained'][:200]!r}"
        )
        assert len(set(refs)) == 1 and refs[0] in fd.COLOURS
        if template == "qwen2_vl":  # 0..1000 of the image the model sees
            px = [
                tuple(float(q) * s / 1000 for q, s in zip(b, (w, h, w, h), strict=True))
                for b in boxes
            ]
        else:  # Qwen2.5-VL: absolute pixels of the (resized) image the model sees
            px = [tuple(float(q) for q in b) for b in boxes]
        fd.assert_on_object(
            arr, [(refs[0], b) for b in px], f"{template} {rec['source']['images']}"
        )
        n += len(px)
    return n


@pytest.mark.slow
def test_swift_grounding_boxes_land_on_objects(encoded):
    """Qwen2-VL gets its special tokens with 0..1000 numbers, Qwen2.5-VL absolute pixels of
    the resized image; either way the boxes cover the squares (the EXIF-6 original too)."""
    template, rows = encoded
    assert _check_grounding(template, rows["swift_grounding.jsonl"]) == sum(
        len(o.objects) for o in fd.ORIGINALS
    )


@pytest.mark.slow
def test_swift_messages_is_sft_with_the_crop_in_the_user_turn(encoded):
    template, rows = encoded
    msgs = rows["swift_messages.jsonl"]
    assert len(msgs) == sum(len(o.objects) for o in fd.ORIGINALS)
    for rec in msgs:
        user = _user_turn(rec["text"])
        assert user.startswith("<|vision_start|><|image_pad|>") and "<|vision_end|>" in user
        caption = rec["source"]["messages"][-1]["content"]
        assert rec["trained"] == caption + "<|im_end|>\n", "only the caption is trained"
        arr = _fed_image(rec)  # the crop: (almost) all of it is the object's colour
        share = fd.colour_mask(arr, CAPTION_COLOUR[caption]).mean()
        assert share >= 0.8, f"{template}: crop for {caption!r} is {share:.0%} its colour"


@pytest.mark.slow
def test_swift_jsonl_is_pretraining_form(encoded):
    """``{"image","text"}`` rows become assistant-only rows (image + caption, no user turn):
    right for ``swift pt``, which is how docs/export.md offers them."""
    _template, rows = encoded
    pt = rows["swift.jsonl"]
    assert len(pt) == sum(len(o.objects) for o in fd.ORIGINALS)
    for rec in pt:
        assert "<|im_start|>user\n<|im_end|>" in rec["text"]  # empty user turn
        answer = rec["text"].split("<|im_start|>assistant\n", 1)[1]
        assert answer.startswith("<|vision_start|><|image_pad|>")  # the image sits in the answer
        caption = rec["source"]["images"] and rec["trained"].removesuffix("<|im_end|>\n")
        assert caption in CAPTION_COLOUR
        _fed_image(rec)


def test_docs_say_which_swift_file_for_what():
    text = (fd.REPO / "docs" / "export.md").read_text(encoding="utf-8")
    assert "swift pt" in text and "ROOT_IMAGE_DIR" in text
    for family in ("Qwen2-VL", "Qwen2.5-VL"):
        assert family in text


def test_export_prints_and_writes_the_training_command(exported):
    printed = exported.stdout.replace("'", "").replace('"', "")
    assert f"ROOT_IMAGE_DIR={exported.version} swift sft" in printed
    written = [
        p for p in exported.version.rglob("*") if p.is_file() and p.suffix in (".md", ".sh", ".txt")
    ]
    assert any("ROOT_IMAGE_DIR" in p.read_text(encoding="utf-8") for p in written)


def test_jsonl_glob_takes_only_swift_training_files(exported):
    """``swift sft --dataset vN/*.jsonl`` takes ms-swift rows only (no manifest, ODVG, lists,
    no Qwen-VL v1 text, no val rows)."""
    names = sorted(p.name for p in exported.version.glob("*.jsonl"))
    assert names == sorted(SWIFT_FILES)
    for path in sorted(exported.version.glob("*.jsonl")):
        for row in fd.read_jsonl(path):
            assert "messages" in row or set(row) == {"image", "text"}, (
                f"{path.name}: not an ms-swift training row: {json.dumps(row)[:120]}"
            )
