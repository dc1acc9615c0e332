"""Original IDEA Grounding DINO checkpoints -> transformers ``GroundingDinoForObjectDetection``.

The original repository (IDEA-Research/GroundingDINO) stores ``{"model": state_dict}`` with
its own module names (``backbone.0.*`` Swin with fused ``qkv``, ``bert.*``, ``feat_map``,
``transformer.encoder.{layers,text_layers,fusion_layers}.*``, ``transformer.decoder.*``
with ``nn.MultiheadAttention`` ``in_proj_*``, top-level ``bbox_embed``). One table,
:func:`hf_to_original_key`, maps every transformers key to its original key (and, for the
split q/k/v projections, which third of the fused tensor it is); conversion in both
directions is derived from it, so the table is tested by a round trip and by comparing
model outputs.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from autolabel.errors import ModelError

_SWIN = "model.backbone.conv_encoder.model.swin."
_NORMS = "model.backbone.conv_encoder.model.hidden_states_norms."

# (hf regex, original template); checked in order, first match wins.
_RULES: list[tuple[str, str]] = [
    (_SWIN + r"embeddings\.patch_embeddings\.projection\.(.*)", "backbone.0.patch_embed.proj.{0}"),
    (_SWIN + r"embeddings\.norm\.(.*)", "backbone.0.patch_embed.norm.{0}"),
    (
        _SWIN + r"encoder\.layers\.(\d+)\.blocks\.(\d+)\.layernorm_before\.(.*)",
        "backbone.0.layers.{0}.blocks.{1}.norm1.{2}",
    ),
    (
        _SWIN + r"encoder\.layers\.(\d+)\.blocks\.(\d+)\.layernorm_after\.(.*)",
        "backbone.0.layers.{0}.blocks.{1}.norm2.{2}",
    ),
    (
        _SWIN + r"encoder\.layers\.(\d+)\.blocks\.(\d+)\.attention\.relative_position_bias\."
        r"relative_position_bias_table",
        "backbone.0.layers.{0}.blocks.{1}.attn.relative_position_bias_table",
    ),
    (
        _SWIN + r"encoder\.layers\.(\d+)\.blocks\.(\d+)\.attention\.o_proj\.(.*)",
        "backbone.0.layers.{0}.blocks.{1}.attn.proj.{2}",
    ),
    (
        _SWIN + r"encoder\.layers\.(\d+)\.blocks\.(\d+)\.attention\.([qkv])_proj\.(.*)",
        "backbone.0.layers.{0}.blocks.{1}.attn.qkv.{3}|{2}",
    ),
    (
        _SWIN + r"encoder\.layers\.(\d+)\.blocks\.(\d+)\.mlp\.(fc\d)\.(.*)",
        "backbone.0.layers.{0}.blocks.{1}.mlp.{2}.{3}",
    ),
    (_SWIN + r"encoder\.layers\.(\d+)\.downsample\.(.*)", "backbone.0.layers.{0}.downsample.{1}"),
    (_NORMS + r"stage(\d+)\.(.*)", "backbone.0.norm@{0}.{1}"),
    (r"model\.text_backbone\.(.*)", "bert.{0}"),
    (r"model\.text_projection\.(.*)", "feat_map.{0}"),
    (r"model\.input_proj_vision\.(.*)", "input_proj.{0}"),
    (r"model\.level_embed", "transformer.level_embed"),
    (r"model\.query_position_embeddings\.weight", "transformer.tgt_embed.weight"),
    (r"model\.enc_output\.(.*)", "transformer.enc_output.{0}"),
    (r"model\.enc_output_norm\.(.*)", "transformer.enc_output_norm.{0}"),
    (r"model\.encoder_output_bbox_embed\.(.*)", "transformer.enc_out_bbox_embed.{0}"),
    # encoder: text enhancer (nn.MultiheadAttention in the original)
    (
        r"model\.encoder\.layers\.(\d+)\.text_enhancer_layer\.self_attn\.(query|key|value)\.(.*)",
        "transformer.encoder.text_layers.{0}.self_attn.in_proj_{2}|{1}",
    ),
    (
        r"model\.encoder\.layers\.(\d+)\.text_enhancer_layer\.self_attn\.out_proj\.(.*)",
        "transformer.encoder.text_layers.{0}.self_attn.out_proj.{1}",
    ),
    (
        r"model\.encoder\.layers\.(\d+)\.text_enhancer_layer\.(fc\d)\.(.*)",
        "transformer.encoder.text_layers.{0}.linear@{1}.{2}",
    ),
    (
        r"model\.encoder\.layers\.(\d+)\.text_enhancer_layer\.layer_norm_before\.(.*)",
        "transformer.encoder.text_layers.{0}.norm1.{1}",
    ),
    (
        r"model\.encoder\.layers\.(\d+)\.text_enhancer_layer\.layer_norm_after\.(.*)",
        "transformer.encoder.text_layers.{0}.norm2.{1}",
    ),
    # encoder: fusion
    (
        r"model\.encoder\.layers\.(\d+)\.fusion_layer\.vision_param",
        "transformer.encoder.fusion_layers.{0}.gamma_v",
    ),
    (
        r"model\.encoder\.layers\.(\d+)\.fusion_layer\.text_param",
        "transformer.encoder.fusion_layers.{0}.gamma_l",
    ),
    (
        r"model\.encoder\.layers\.(\d+)\.fusion_layer\.layer_norm_vision\.(.*)",
        "transformer.encoder.fusion_layers.{0}.layer_norm_v.{1}",
    ),
    (
        r"model\.encoder\.layers\.(\d+)\.fusion_layer\.layer_norm_text\.(.*)",
        "transformer.encoder.fusion_layers.{0}.layer_norm_l.{1}",
    ),
    (
        r"model\.encoder\.layers\.(\d+)\.fusion_layer\.attn\.(vision|text|values_vision|values_text|"
        r"out_vision|out_text)_proj\.(.*)",
        "transformer.encoder.fusion_layers.{0}.attn.#{1}_proj.{2}",
    ),
    # encoder: deformable
    (
        r"model\.encoder\.layers\.(\d+)\.deformable_layer\.self_attn\.(.*)",
        "transformer.encoder.layers.{0}.self_attn.{1}",
    ),
    (
        r"model\.encoder\.layers\.(\d+)\.deformable_layer\.self_attn_layer_norm\.(.*)",
        "transformer.encoder.layers.{0}.norm1.{1}",
    ),
    (
        r"model\.encoder\.layers\.(\d+)\.deformable_layer\.(fc\d)\.(.*)",
        "transformer.encoder.layers.{0}.linear@{1}.{2}",
    ),
    (
        r"model\.encoder\.layers\.(\d+)\.deformable_layer\.final_layer_norm\.(.*)",
        "transformer.encoder.layers.{0}.norm2.{1}",
    ),
    # decoder
    (
        r"model\.decoder\.layers\.(\d+)\.self_attn\.(query|key|value)\.(.*)",
        "transformer.decoder.layers.{0}.self_attn.in_proj_{2}|{1}",
    ),
    (
        r"model\.decoder\.layers\.(\d+)\.self_attn\.out_proj\.(.*)",
        "transformer.decoder.layers.{0}.self_attn.out_proj.{1}",
    ),
    (
        r"model\.decoder\.layers\.(\d+)\.self_attn_layer_norm\.(.*)",
        "transformer.decoder.layers.{0}.norm2.{1}",
    ),
    (
        r"model\.decoder\.layers\.(\d+)\.encoder_attn_text\.(query|key|value)\.(.*)",
        "transformer.decoder.layers.{0}.ca_text.in_proj_{2}|{1}",
    ),
    (
        r"model\.decoder\.layers\.(\d+)\.encoder_attn_text\.out_proj\.(.*)",
        "transformer.decoder.layers.{0}.ca_text.out_proj.{1}",
    ),
    (
        r"model\.decoder\.layers\.(\d+)\.encoder_attn_text_layer_norm\.(.*)",
        "transformer.decoder.layers.{0}.catext_norm.{1}",
    ),
    (
        r"model\.decoder\.layers\.(\d+)\.encoder_attn\.(.*)",
        "transformer.decoder.layers.{0}.cross_attn.{1}",
    ),
    (
        r"model\.decoder\.layers\.(\d+)\.encoder_attn_layer_norm\.(.*)",
        "transformer.decoder.layers.{0}.norm1.{1}",
    ),
    (
        r"model\.decoder\.layers\.(\d+)\.(fc\d)\.(.*)",
        "transformer.decoder.layers.{0}.linear@{1}.{2}",
    ),
    (
        r"model\.decoder\.layers\.(\d+)\.final_layer_norm\.(.*)",
        "transformer.decoder.layers.{0}.norm3.{1}",
    ),
    (r"model\.decoder\.layer_norm\.(.*)", "transformer.decoder.norm.{0}"),
    (r"model\.decoder\.reference_points_head\.(.*)", "transformer.decoder.ref_point_head.{0}"),
    (r"model\.decoder\.bbox_embed\.(.*)", "transformer.decoder.bbox_embed.{0}"),
    (r"bbox_embed\.(.*)", "bbox_embed.{0}"),
]
_COMPILED = [(re.compile(p + "$"), t) for p, t in _RULES]
_QKV = {"q": 0, "k": 1, "v": 2, "query": 0, "key": 1, "value": 2}
_SHORT = {
    "vision": "v",
    "text": "l",
    "values_vision": "values_v",
    "values_text": "values_l",
    "out_vision": "out_v",
    "out_text": "out_l",
}
# keys of the transformers model with no counterpart in the original (unused by detection)
HF_ONLY = ("model.backbone.conv_encoder.model.swin.layernorm.",)


def hf_to_original_key(key: str) -> tuple[str, int | None] | None:
    """Map a transformers key to ``(original key, q/k/v part index or None)``.

    Returns None for keys with no original counterpart (see :data:`HF_ONLY`).

    Raises:
        ModelError: a key no rule covers (the transformers layout changed).
    """
    if key.startswith(HF_ONLY):
        return None
    for rx, template in _COMPILED:
        m = rx.match(key)
        if not m:
            continue
        out = template.format(*m.groups())
        part = None
        if "|" in out:
            out, which = out.split("|")
            part = _QKV[which]
        # small renames the format template cannot express
        out = re.sub(r"norm@(\d+)", lambda g: f"norm{int(g.group(1)) - 1}", out)
        out = re.sub(r"linear@fc(\d)", r"linear\1", out)
        out = re.sub(r"#(\w+?)_proj", lambda g: _SHORT[g.group(1)] + "_proj", out)
        return out, part
    raise ModelError(f"no original-checkpoint mapping for transformers key {key!r}")


def hf_to_original_state_dict(sd: dict[str, Any], config: Any = None) -> dict[str, Any]:
    """Write a transformers state dict in the original IDEA layout (fusing q/k/v)."""
    import torch

    out: dict[str, Any] = {}
    parts: dict[str, dict[int, Any]] = {}
    for key, value in sd.items():
        mapped = hf_to_original_key(key)
        if mapped is None:
            continue
        okey, part = mapped
        if part is None:
            out[okey] = value.clone()
        else:
            parts.setdefault(okey, {})[part] = value
    for okey, p in parts.items():
        out[okey] = torch.cat([p[0], p[1], p[2]], dim=0).clone()
    return out


def original_to_hf_state_dict(original: dict[str, Any], hf_keys: dict[str, Any]) -> dict[str, Any]:
    """Convert an original state dict to transformers keys.

    Args:
        original: the checkpoint's ``"model"`` dict (a ``module.`` prefix is stripped).
        hf_keys: the target model's ``state_dict()`` (for key names and shapes).

    Raises:
        ModelError: the checkpoint does not match the architecture (missing keys or shapes).
    """
    original = {k.removeprefix("module."): v for k, v in original.items()}
    out: dict[str, Any] = {}
    missing: list[str] = []
    bad: list[str] = []
    for key, target in hf_keys.items():
        mapped = hf_to_original_key(key)
        if mapped is None:
            out[key] = target
            continue
        okey, part = mapped
        if okey not in original:
            missing.append(okey)
            continue
        value = original[okey]
        if part is not None:
            n = value.shape[0] // 3
            value = value[part * n : (part + 1) * n]
        if tuple(value.shape) != tuple(target.shape):
            bad.append(f"{okey}: expected {tuple(target.shape)}, got {tuple(value.shape)}")
            continue
        out[key] = value
    if missing or bad:
        raise ModelError(
            "mismatched Grounding DINO checkpoint: "
            + (f"{len(missing)} expected keys missing (e.g. {missing[:3]}) " if missing else "")
            + (f"wrong shapes: {bad[:3]}" if bad else "")
        )
    return out


def config_from_original(original: dict[str, Any]):
    """Infer a ``GroundingDinoConfig`` from an original state dict's shapes.

    Swin dims (embed dim, depths, heads, window) come from the backbone keys; the text
    encoder is bert-base-uncased sized by its keys; 900 queries, 6+6 layers as in the
    released models (read from the keys too).
    """
    from transformers import BertConfig, GroundingDinoConfig, SwinConfig

    sd = {k.removeprefix("module."): v for k, v in original.items()}

    def count(prefix: str) -> int:
        rx = re.compile(re.escape(prefix) + r"(\d+)\.")
        return len({int(m.group(1)) for k in sd if (m := rx.match(k))})

    try:
        embed_dim = int(sd["backbone.0.patch_embed.proj.weight"].shape[0])
        depths = [
            count(f"backbone.0.layers.{i}.blocks.") for i in range(count("backbone.0.layers."))
        ]
        heads = [
            int(sd[f"backbone.0.layers.{i}.blocks.0.attn.relative_position_bias_table"].shape[1])
            for i in range(len(depths))
        ]
        table = int(sd["backbone.0.layers.0.blocks.0.attn.relative_position_bias_table"].shape[0])
        window = (round(table**0.5) + 1) // 2
        d_model = int(sd["transformer.level_embed"].shape[1])
        levels = int(sd["transformer.level_embed"].shape[0])
        queries = int(sd["transformer.tgt_embed.weight"].shape[0])
        enc_layers = count("transformer.encoder.layers.")
        dec_layers = count("transformer.decoder.layers.")
        enc_ffn = int(sd["transformer.encoder.layers.0.linear1.weight"].shape[0])
        dec_ffn = int(sd["transformer.decoder.layers.0.linear1.weight"].shape[0])
        vocab, hidden = (int(x) for x in sd["bert.embeddings.word_embeddings.weight"].shape)
        bert_layers = count("bert.encoder.layer.")
        inter = int(sd["bert.encoder.layer.0.intermediate.dense.weight"].shape[0])
        max_pos = int(sd["bert.embeddings.position_embeddings.weight"].shape[0])
    except KeyError as exc:
        raise ModelError(
            f"not an original Grounding DINO checkpoint: expected key {exc} "
            "(backbone.0.*, bert.*, transformer.*)"
        ) from None
    backbone = SwinConfig(
        embed_dim=embed_dim,
        depths=depths,
        num_heads=heads,
        window_size=window,
        image_size=384 if window == 12 else 224,
        out_indices=[2, 3, 4],
        out_features=["stage2", "stage3", "stage4"],
    )
    text = BertConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        num_hidden_layers=bert_layers,
        num_attention_heads=max(1, hidden // 64),
        intermediate_size=inter,
        max_position_embeddings=max_pos,
    )
    return GroundingDinoConfig(
        backbone_config=backbone,
        text_config=text,
        d_model=d_model,
        num_feature_levels=levels,
        num_queries=queries,
        encoder_layers=enc_layers,
        decoder_layers=dec_layers,
        encoder_ffn_dim=enc_ffn,
        decoder_ffn_dim=dec_ffn,
        use_timm_backbone=False,
    )


def convert_original_checkpoint(checkpoint: Path | str, out_dir: Path | str) -> Path:
    """Convert an original ``.pth`` into a transformers folder (model + processor).

    The architecture comes from a ``config.json`` next to the checkpoint if there is one
    (transformers format), else it is inferred from the state dict
    (:func:`config_from_original`). The tokenizer/processor files are taken from the
    checkpoint's folder if present, else from the ``bert-base-uncased`` tokenizer in the
    local hub cache.

    Raises:
        ModelError: unreadable file, not a Grounding DINO checkpoint, mismatched shapes, or
            no tokenizer available offline.
    """
    import torch
    from transformers import GroundingDinoConfig, GroundingDinoForObjectDetection

    ckpt = Path(checkpoint).expanduser()
    out = Path(out_dir)
    if not ckpt.is_file():
        raise ModelError(
            f"Grounding DINO checkpoint {str(checkpoint)!r} not found: expected a file like "
            "models/groundingdino_swint_ogc.pth "
            "(see `autolabel models pull groundingdino-swint-ogc`)"
        )
    try:
        raw = torch.load(ckpt, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ModelError(f"{ckpt}: cannot read as a torch checkpoint ({exc})") from None
    sd = raw.get("model", raw) if isinstance(raw, dict) else None
    if not isinstance(sd, dict):
        raise ModelError(f"{ckpt}: expected {{'model': state_dict}}, got {type(raw).__name__}")
    cfg_file = ckpt.with_name("config.json")
    if cfg_file.is_file():
        cfg = GroundingDinoConfig.from_dict(json.loads(cfg_file.read_text()))
    else:
        cfg = config_from_original(sd)
    try:
        model = GroundingDinoForObjectDetection(cfg).eval()
    except (ValueError, TypeError) as exc:
        raise ModelError(f"{ckpt}: cannot build the model its config describes ({exc})") from None
    new_sd = original_to_hf_state_dict(sd, model.state_dict())
    model.load_state_dict(new_sd, strict=True)
    processor = _processor_for(ckpt.parent)
    tmp = out.with_name(out.name + ".tmp")
    model.save_pretrained(tmp)
    processor.save_pretrained(tmp)
    (tmp / "converted_from.json").write_text(json.dumps({"checkpoint": str(ckpt)}))
    if out.exists():
        import shutil

        shutil.rmtree(out)
    tmp.rename(out)
    return out


def _processor_for(folder: Path):
    from transformers import (
        AutoProcessor,
        AutoTokenizer,
        GroundingDinoImageProcessor,
        GroundingDinoProcessor,
    )

    if any(folder.glob("processor_config.json")) or any(folder.glob("preprocessor_config.json")):
        try:
            return AutoProcessor.from_pretrained(folder)
        except (OSError, ValueError):
            pass
    try:
        tok = AutoTokenizer.from_pretrained("bert-base-uncased", local_files_only=True)
    except (OSError, ValueError):
        raise ModelError(
            "converting an original Grounding DINO checkpoint needs the bert-base-uncased "
            "tokenizer: put its files (vocab.txt, tokenizer.json, tokenizer_config.json) next "
            "to the .pth, or download google-bert/bert-base-uncased into the hub cache on a "
            "machine with internet"
        ) from None
    return GroundingDinoProcessor(image_processor=GroundingDinoImageProcessor(), tokenizer=tok)


def converted_dir(checkpoint: Path | str, models_dir: Path | str) -> Path:
    """Where the converted copy of ``checkpoint`` is cached (keyed by the file's hash)."""
    from autolabel.detect.base import model_version_of

    ckpt = Path(checkpoint)
    return Path(models_dir) / "converted" / f"{ckpt.stem}-{model_version_of(ckpt)}"


def ensure_converted(checkpoint: Path | str, models_dir: Path | str) -> Path:
    """Return the cached converted folder for ``checkpoint``, converting on first use."""
    target = converted_dir(checkpoint, models_dir)
    if not (target / "config.json").is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        convert_original_checkpoint(checkpoint, target)
    return target
