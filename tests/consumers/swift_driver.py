"""Runs real ms-swift on exported files; executed by the swift venv's python, never imported.

Commands::

    swift_driver.py make-model DIR --family qwen2_vl|qwen2_5_vl
        Write a weight-less model folder: config.json, preprocessor_config.json and a
        byte-level BPE tokenizer with the Qwen2 special tokens at their real ids
        (``<|endoftext|>`` = 151643 ... ``<|video_pad|>`` = 151656), built offline.
    swift_driver.py encode --model DIR --template T --out OUT DATASET...
        ``swift.dataset.load_dataset`` + ``swift.template.get_template(...).encode`` in train
        mode for every row; writes ``OUT/rows.jsonl`` (decoded input text, the trained text,
        image grids, the pixels the processor received saved as ``OUT/img_<row>_<k>.png``).

The swift venv holds no torchvision (see setup_venvs.sh); qwen-vl-utils imports it at module
level but only uses it for videos, so qwen-vl-utils is imported first with a stub in
``sys.modules`` (attributes raise on use), and the stub is removed right after; likewise
transformers' video processor (torchvision-only) is not loaded, the processor gets None.
Every image goes through the real qwen-vl-utils ``fetch_image`` and transformers' PIL image
processor.
"""

from __future__ import annotations

import argparse
import json
import sys
import types
from pathlib import Path

QWEN2_SPECIAL = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
]
"""Qwen2-VL / Qwen2.5-VL added tokens in id order starting at FIRST_SPECIAL_ID."""
FIRST_SPECIAL_ID = 151643


def _import_qwen_vl_utils() -> None:
    """Import qwen-vl-utils with a torchvision stub that is removed again right after."""

    def _unavailable(*_a, **_k):
        raise RuntimeError("torchvision is not installed in the swift venv (video input only)")

    class _Stub(types.ModuleType):
        def __getattr__(self, name: str):
            if name.startswith("__"):
                raise AttributeError(name)
            return _unavailable

    tv = _Stub("torchvision")
    tv.__version__ = "0.0.0+stub"
    tv.io = _Stub("torchvision.io")
    tv.transforms = _Stub("torchvision.transforms")
    tv.transforms.InterpolationMode = types.SimpleNamespace(BICUBIC="bicubic", BILINEAR="bilinear")
    tv.transforms.functional = _Stub("torchvision.transforms.functional")
    mods = (tv, tv.io, tv.transforms, tv.transforms.functional)
    for mod in mods:
        sys.modules[mod.__name__] = mod
    try:
        import qwen_vl_utils.vision_process  # noqa: F401
    finally:
        for mod in mods:  # nothing else may take the stub for a real torchvision
            del sys.modules[mod.__name__]


def _no_video_processor() -> None:
    """Qwen2-VL processors load a torchvision-only video processor; images never use it."""
    from transformers import processing_utils

    class _NoVideo:
        @classmethod
        def from_pretrained(cls, *_a, **_k):
            return None

    mapping = processing_utils._LazyAutoProcessorMapping
    get = mapping.__getitem__
    mapping.__getitem__ = lambda self, key: _NoVideo if key == "video_processor" else get(self, key)
    mixin = processing_utils.ProcessorMixin
    check = mixin.check_argument_for_proper_class
    mixin.check_argument_for_proper_class = lambda self, name, arg: (
        None if name == "video_processor" and arg is None else check(self, name, arg)
    )


def make_model(out: Path, family: str) -> None:
    """Weight-less Qwen2-VL / Qwen2.5-VL folder that ms-swift's processor loader accepts."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    out.mkdir(parents=True, exist_ok=True)
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {c: i for i, c in enumerate(alphabet)}
    # unreachable filler entries so that the added tokens land on their real ids
    for i in range(len(vocab), FIRST_SPECIAL_ID):
        vocab[f"\u0120reserved{i}"] = i
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in QWEN2_SPECIAL])
    for k, t in enumerate(QWEN2_SPECIAL):
        got = tok.token_to_id(t)
        if got != FIRST_SPECIAL_ID + k:
            raise SystemExit(f"{t}: expected id {FIRST_SPECIAL_ID + k}, got {got}")
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        model_max_length=32768,
    )
    fast.save_pretrained(out)
    cfg_path = out / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["tokenizer_class"] = "Qwen2Tokenizer"
    cfg_path.write_text(json.dumps(cfg, indent=1))
    arch = {
        "qwen2_vl": ("qwen2_vl", "Qwen2VLForConditionalGeneration", "Qwen2VLProcessor"),
        "qwen2_5_vl": ("qwen2_5_vl", "Qwen2_5_VLForConditionalGeneration", "Qwen2_5_VLProcessor"),
    }[family]
    config = {
        "model_type": arch[0],
        "architectures": [arch[1]],
        "torch_dtype": "bfloat16",
        "vocab_size": 151936,
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "bos_token_id": 151643,
        "eos_token_id": 151645,
        "vision_start_token_id": 151652,
        "vision_end_token_id": 151653,
        "vision_token_id": 151654,
        "image_token_id": 151655,
        "video_token_id": 151656,
        "rope_scaling": {"type": "mrope", "mrope_section": [4, 6, 6]},
        "vision_config": {"depth": 1, "embed_dim": 32, "hidden_size": 64, "num_heads": 2,
                          "out_hidden_size": 64, "patch_size": 14, "spatial_merge_size": 2,
                          "temporal_patch_size": 2},
    }  # fmt: skip
    (out / "config.json").write_text(json.dumps(config, indent=1))
    pre = {
        "image_processor_type": "Qwen2VLImageProcessor",
        "processor_class": arch[2],
        "do_resize": True,
        "do_rescale": True,
        "do_normalize": True,
        "do_convert_rgb": True,
        "rescale_factor": 1 / 255,
        "image_mean": [0.48145466, 0.4578275, 0.40821073],
        "image_std": [0.26862954, 0.26130258, 0.27577711],
        "min_pixels": 3136,
        "max_pixels": 12845056,
        "patch_size": 14,
        "temporal_patch_size": 2,
        "merge_size": 2,
    }
    (out / "preprocessor_config.json").write_text(json.dumps(pre, indent=1))


def encode(model: Path, template_type: str, datasets: list[str], out: Path) -> None:
    """load_dataset + template.encode of every row; one JSON line per row in OUT/rows.jsonl."""
    _import_qwen_vl_utils()
    _no_video_processor()
    from swift.dataset import load_dataset
    from swift.model import get_processor
    from swift.template import get_template

    out = out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    processor = get_processor(str(model), model_type=template_type, download_model=False)
    template = get_template(processor, template_type=template_type)
    template.set_mode("train")
    tokenizer = template.tokenizer
    seen: list[list] = []
    original = template._pre_tokenize_images

    def spy(context_list, loss_scale_list, inputs):  # keep the images the processor receives
        res = original(context_list, loss_scale_list, inputs)
        seen.append(list(inputs.images))
        return res

    template._pre_tokenize_images = spy
    n = 0
    with open(out / "rows.jsonl", "w", encoding="utf-8") as fh:
        for dataset in datasets:
            train, _ = load_dataset([dataset], load_from_cache_file=False, strict=True)
            for row in train:
                seen.clear()
                enc = template.encode(dict(row))
                ids = list(enc["input_ids"])
                labels = list(enc["labels"])
                trained = [t for t, lab in zip(ids, labels, strict=True) if lab != -100]
                grids = enc.get("image_grid_thw")
                images = []
                for k, im in enumerate(seen[-1] if seen else []):
                    p = out / f"img_{n}_{k}.png"
                    im.save(p)
                    images.append(str(p))
                rec = {
                    "dataset": dataset,
                    "source": {k: row[k] for k in ("images", "messages", "objects") if k in row},
                    "text": tokenizer.decode(ids, skip_special_tokens=False),
                    "trained": tokenizer.decode(trained, skip_special_tokens=False),
                    "n_image_tokens": ids.count(151655),
                    "grids": [] if grids is None else [list(map(int, g)) for g in grids],
                    "images": images,
                }
                fh.write(json.dumps(rec, ensure_ascii=False, default=str) + "\n")
                n += 1


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    mk = sub.add_parser("make-model")
    mk.add_argument("dir", type=Path)
    mk.add_argument("--family", required=True, choices=["qwen2_vl", "qwen2_5_vl"])
    en = sub.add_parser("encode")
    en.add_argument("datasets", nargs="+")
    en.add_argument("--model", type=Path, required=True)
    en.add_argument("--template", required=True)
    en.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    if args.cmd == "make-model":
        make_model(args.dir, args.family)
    else:
        encode(args.model, args.template, args.datasets, args.out)


if __name__ == "__main__":
    main()
