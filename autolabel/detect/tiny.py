"""Tiny randomly initialised models for tests and the demo (no download, a few seconds).

``make_tiny_models(out_dir)`` writes:

- ``grounding-dino/``: a transformers ``GroundingDinoForObjectDetection`` (tiny Swin backbone,
  d_model 32, 1 encoder / 2 decoder layers, 20 queries, a 1-layer BERT with a small vocab)
  plus its processor, loadable offline with ``from_pretrained(dir)``.
- ``grounding-dino-original/groundingdino_tiny.pth``: the same weights in the original IDEA
  checkpoint key layout (``{"model": state_dict}``) with a ``config.json`` describing the
  architecture and the tokenizer files next to it, for the conversion code.
- ``sam/sam_tiny.pth``: a ``segment_anything`` ``Sam`` state dict with tiny dims.
- ``hf-sam/``: a transformers ``SamModel`` + ``SamProcessor`` with tiny dims.

The vocabulary places the ids Grounding DINO hard-codes (``[CLS]``=101, ``[SEP]``=102,
``.``=1012, ``?``=1029, ``[PAD]``=0, ``[UNK]``=100) where BERT has them, and holds real
lower-case words plus single letters and ``##`` letters so any lower-case ASCII text
tokenizes without ``[UNK]``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

_TINY_REV = 1
TINY_KEYS = ("grounding-dino", "grounding-dino-original", "sam", "hf-sam")

WORDS = (
    "a an the of and with on in for to at by from or is no not this that it "
    "product photo picture image item object thing red blue green white black yellow orange "
    "pink purple brown gray grey gold silver dark light small large big tiny square circle "
    "round rectangle triangle box sneaker sneakers shoe shoes boot boots handbag bag bags "
    "backpack purse wallet watch hat cap shirt dress jacket coat pants jeans skirt sock "
    "dog cat person man woman child face hand bird horse car bike rocket cup coffee mug "
    "bottle phone laptop camera chair table lamp book toy ball flower plant tree astronaut "
    "logo text banner button price tag sale screenshot icon food fruit apple banana "
    "cake pizza glass plate bowl spoon knife fork sofa bed door window house building "
    "left right top bottom center front back side new old best top-rated"
).split()


def _vocab() -> dict[str, int]:
    """Return a BERT-compatible vocab with the special ids Grounding DINO hard-codes."""
    size = 1100
    tokens: list[str | None] = [None] * size
    tokens[0] = "[PAD]"
    for i in range(1, 100):
        tokens[i] = f"[unused{i}]"
    tokens[100], tokens[101], tokens[102], tokens[103] = "[UNK]", "[CLS]", "[SEP]", "[MASK]"
    tokens[1012], tokens[1029] = ".", "?"
    fill: list[str] = []
    fill += list("!\"#$%&'()*+,-/:;<=>@[\\]^_`{|}~")
    fill += [str(d) for d in range(10)]
    fill += [chr(c) for c in range(ord("a"), ord("z") + 1)]
    fill += [f"##{chr(c)}" for c in range(ord("a"), ord("z") + 1)]
    fill += [f"##{d}" for d in range(10)]
    fill += ["##s", "##es", "##ed", "##ing", "##er", "##ly"]
    for w in WORDS:
        if "-" not in w:
            fill.append(w)
    seen: set[str] = set()
    fill = [t for t in fill if not (t in seen or seen.add(t))]
    it = iter(fill)
    filler = 0
    for i in range(size):
        if tokens[i] is None:
            tok = next(it, None)
            if tok is None:
                filler += 1
                tok = f"[unused{99 + filler}]"
            tokens[i] = tok
    return {t: i for i, t in enumerate(tokens)}  # type: ignore[misc]


def tiny_grounding_dino_config(
    *,
    embed_dim: int = 16,
    depth: int = 1,
    d_model: int = 32,
    heads: int = 2,
    ffn: int = 64,
    text_layers: int = 1,
    encoder_layers: int = 1,
    decoder_layers: int = 2,
    num_queries: int = 20,
):
    """A small ``GroundingDinoConfig`` (Swin backbone, BERT text encoder of width ``d_model``).

    The defaults are the tiny test model (d_model 32, 20 queries); benchmarks ask for larger
    ones with the same layout. ``decoder_layers`` must be >= 2 (GroundingDino's loss).
    """
    from transformers import BertConfig, GroundingDinoConfig, SwinConfig

    backbone = SwinConfig(
        embed_dim=embed_dim,
        depths=[depth] * 4,
        num_heads=[max(1, heads // 2)] * 2 + [heads] * 2,
        window_size=7,
        image_size=224,
        out_indices=[2, 3, 4],
        out_features=["stage2", "stage3", "stage4"],
    )
    text = BertConfig(
        vocab_size=1100,
        hidden_size=d_model,
        num_hidden_layers=text_layers,
        num_attention_heads=heads,
        intermediate_size=ffn,
        max_position_embeddings=256,
    )
    return GroundingDinoConfig(
        backbone_config=backbone,
        text_config=text,
        d_model=d_model,
        encoder_layers=encoder_layers,
        decoder_layers=decoder_layers,
        encoder_ffn_dim=ffn,
        decoder_ffn_dim=ffn,
        encoder_attention_heads=heads,
        decoder_attention_heads=heads,
        num_queries=num_queries,
        num_feature_levels=4,
        use_timm_backbone=False,
    )


def tiny_grounding_dino_processor():
    """A ``GroundingDinoProcessor`` with the tiny vocab and small image size (128-256 px)."""
    from transformers import BertTokenizerFast, GroundingDinoImageProcessor, GroundingDinoProcessor

    tokenizer = BertTokenizerFast(vocab=_vocab(), do_lower_case=True, model_max_length=256)
    image_processor = GroundingDinoImageProcessor(size={"shortest_edge": 128, "longest_edge": 256})
    return GroundingDinoProcessor(image_processor=image_processor, tokenizer=tokenizer)


def _seeded(seed: int):
    import torch

    torch.manual_seed(seed)


def _make_grounding_dino(out: Path) -> None:
    import torch
    from transformers import GroundingDinoForObjectDetection

    _seeded(0)
    model = GroundingDinoForObjectDetection(tiny_grounding_dino_config()).eval()
    # random init gives contrastive logits (query . token, both layer-normed, d=32) of
    # +-10, so every score is ~1.0; shrink the decoder's final norm so scores spread over
    # (0, 1) and thresholds select something
    with torch.no_grad():
        model.model.decoder.layer_norm.weight.mul_(0.2)
    model.save_pretrained(out)
    tiny_grounding_dino_processor().save_pretrained(out)


def _make_grounding_dino_original(hf_dir: Path, out: Path) -> None:
    import torch
    from transformers import GroundingDinoForObjectDetection

    from autolabel.detect.convert import hf_to_original_state_dict

    model = GroundingDinoForObjectDetection.from_pretrained(hf_dir)
    sd = hf_to_original_state_dict(model.state_dict(), model.config)
    out.mkdir(parents=True, exist_ok=True)
    torch.save({"model": sd}, out / "groundingdino_tiny.pth")
    # the architecture (an original checkpoint ships with a python config; ours is JSON)
    shutil.copy(hf_dir / "config.json", out / "config.json")
    for name in os.listdir(hf_dir):
        if name.startswith(("tokenizer", "processor", "preprocessor", "special_tokens", "vocab")):
            shutil.copy(hf_dir / name, out / name)


def tiny_sam_dims() -> dict[str, int]:
    """Dims of the tiny ``segment_anything`` model (input 256 px, 16x16 embedding)."""
    return {
        "img_size": 256,
        "embed_dim": 32,
        "depth": 2,
        "num_heads": 2,
        "out_chans": 32,
        "window_size": 4,
    }


def _make_sam(out: Path) -> None:
    import torch

    from autolabel.detect.sam import build_segment_anything

    _seeded(1)
    d = tiny_sam_dims()
    sam = build_segment_anything(
        img_size=d["img_size"],
        embed_dim=d["embed_dim"],
        depth=d["depth"],
        num_heads=d["num_heads"],
        out_chans=d["out_chans"],
        window_size=d["window_size"],
        global_attn_indexes=(d["depth"] - 1,),
        decoder_mlp_dim=64,
        iou_head_hidden_dim=32,
    )
    _randomize_zero_params(sam, seed=1)
    out.mkdir(parents=True, exist_ok=True)
    torch.save(sam.state_dict(), out / "sam_tiny.pth")


def _randomize_zero_params(module, *, seed: int) -> None:
    """Give all-zero parameters (e.g. rel-pos tables) small random values so outputs vary."""
    import torch

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            if p.numel() and torch.count_nonzero(p) == 0:
                p.copy_(torch.randn(p.shape, generator=g) * 0.02)


def _make_hf_sam(out: Path) -> None:
    from transformers import SamConfig, SamImageProcessor, SamModel, SamProcessor

    _seeded(2)
    config = SamConfig(
        vision_config={
            "hidden_size": 32,
            "output_channels": 32,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "image_size": 256,
            "patch_size": 16,
            "window_size": 4,
            "global_attn_indexes": [1],
            "num_pos_feats": 16,
            "mlp_dim": 64,
        },
        prompt_encoder_config={
            "hidden_size": 32,
            "image_size": 256,
            "patch_size": 16,
            "mask_input_channels": 4,
        },
        mask_decoder_config={
            "hidden_size": 32,
            "mlp_dim": 64,
            "num_attention_heads": 2,
            "iou_head_hidden_dim": 32,
        },
    )
    model = SamModel(config).eval()
    _randomize_zero_params(model, seed=2)
    model.save_pretrained(out)
    image_processor = SamImageProcessor(
        size={"longest_edge": 256},
        pad_size={"height": 256, "width": 256},
        mask_size={"longest_edge": 64},
        mask_pad_size={"height": 64, "width": 64},
    )
    SamProcessor(image_processor=image_processor).save_pretrained(out)


def _quiet_transformers() -> None:
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()


def make_tiny_models(out_dir: Path | str, *, keys: tuple[str, ...] = TINY_KEYS) -> dict[str, Path]:
    """Create tiny random-init models under ``out_dir``.

    Args:
        out_dir: folder to write into (created).
        keys: which models to make (subset of :data:`TINY_KEYS`).

    Returns:
        ``{"grounding-dino": dir, "grounding-dino-original": .pth file, "sam": .pth file,
        "hf-sam": dir}`` (only the requested keys).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _quiet_transformers()
    paths: dict[str, Path] = {}
    gd = out / "grounding-dino"
    if "grounding-dino" in keys or "grounding-dino-original" in keys:
        _make_grounding_dino(gd)
        if "grounding-dino" in keys:
            paths["grounding-dino"] = gd
    if "grounding-dino-original" in keys:
        orig = out / "grounding-dino-original"
        _make_grounding_dino_original(gd, orig)
        paths["grounding-dino-original"] = orig / "groundingdino_tiny.pth"
    if "sam" in keys:
        _make_sam(out / "sam")
        paths["sam"] = out / "sam" / "sam_tiny.pth"
    if "hf-sam" in keys:
        _make_hf_sam(out / "hf-sam")
        paths["hf-sam"] = out / "hf-sam"
    (out / "tiny.json").write_text(
        json.dumps({k: str(v.relative_to(out)) for k, v in paths.items()}, indent=1)
    )
    return paths


def tiny_version() -> str:
    """A hash of this module's (and the key-mapping's) source, so cached tiny models are
    rebuilt when they change. Bump ``_TINY_REV`` when a builder elsewhere changes."""
    src = Path(__file__).read_bytes()
    for extra in ("convert.py",):
        p = Path(__file__).with_name(extra)
        if p.exists():
            src += p.read_bytes()
    return hashlib.sha256(src).hexdigest()[:12]


def cached_tiny_models(cache_root: Path | str) -> dict[str, Path]:
    """Return tiny models cached under ``cache_root/<tiny_version>``, building them if needed.

    Safe when several processes race: each builds into a temporary sibling folder and the
    first rename wins.
    """
    root = Path(cache_root)
    final = root / tiny_version()
    index = final / "tiny.json"
    if not index.exists():
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".building-", dir=root))
        try:
            make_tiny_models(tmp)
            try:
                os.replace(tmp, final)
            except OSError:
                if not index.exists():  # someone else's half-made folder: replace it
                    shutil.rmtree(final, ignore_errors=True)
                    os.replace(tmp, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    rel = json.loads(index.read_text())
    return {k: final / v for k, v in rel.items()}
