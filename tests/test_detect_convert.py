"""Original IDEA Grounding DINO checkpoints -> transformers, on the tiny model."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from autolabel.errors import ModelError


@pytest.fixture(scope="module")
def hf_model(tiny_models):
    from transformers import GroundingDinoForObjectDetection

    return GroundingDinoForObjectDetection.from_pretrained(tiny_models["grounding-dino"]).eval()


def test_original_layout_uses_the_idea_key_names(tiny_models):
    sd = torch.load(tiny_models["grounding-dino-original"], weights_only=True)["model"]
    for key in (
        "backbone.0.patch_embed.proj.weight",
        "backbone.0.layers.0.blocks.0.attn.qkv.weight",
        "backbone.0.layers.0.blocks.0.attn.relative_position_bias_table",
        "backbone.0.norm1.weight",
        "bert.embeddings.word_embeddings.weight",
        "feat_map.weight",
        "input_proj.0.0.weight",
        "transformer.tgt_embed.weight",
        "transformer.encoder.text_layers.0.self_attn.in_proj_weight",
        "transformer.encoder.fusion_layers.0.gamma_v",
        "transformer.encoder.fusion_layers.0.attn.values_l_proj.weight",
        "transformer.decoder.layers.1.ca_text.in_proj_weight",
        "transformer.decoder.layers.0.catext_norm.weight",
        "transformer.decoder.ref_point_head.layers.0.weight",
        "transformer.enc_out_bbox_embed.layers.0.weight",
        "bbox_embed.0.layers.0.weight",
    ):
        assert key in sd, key
    assert not any(k.startswith("model.") for k in sd)
    # fused q/k/v: 3 x the embedding dim rows
    assert sd["backbone.0.layers.0.blocks.0.attn.qkv.weight"].shape == (48, 16)


def test_round_trip_of_the_key_mapping(hf_model):
    from autolabel.detect.convert import hf_to_original_state_dict, original_to_hf_state_dict

    hf_sd = hf_model.state_dict()
    back = original_to_hf_state_dict(hf_to_original_state_dict(hf_sd), hf_sd)
    assert back.keys() == hf_sd.keys()
    for k, v in hf_sd.items():
        assert torch.equal(back[k], v), k


def test_config_is_inferred_from_the_state_dict(tiny_models, hf_model):
    from autolabel.detect.convert import config_from_original

    sd = torch.load(tiny_models["grounding-dino-original"], weights_only=True)["model"]
    cfg = config_from_original({"module." + k: v for k, v in sd.items()})
    ref = hf_model.config
    assert cfg.backbone_config.embed_dim == ref.backbone_config.embed_dim == 16
    assert list(cfg.backbone_config.depths) == list(ref.backbone_config.depths)
    assert list(cfg.backbone_config.num_heads) == list(ref.backbone_config.num_heads)
    assert cfg.backbone_config.window_size == 7
    for attr in (
        "d_model",
        "num_queries",
        "encoder_layers",
        "decoder_layers",
        "encoder_ffn_dim",
        "decoder_ffn_dim",
        "num_feature_levels",
    ):
        assert getattr(cfg, attr) == getattr(ref, attr), attr
    assert cfg.text_config.vocab_size == 1100 and cfg.text_config.hidden_size == 32


def test_converted_checkpoint_detects_like_the_hf_model(tmp_path, monkeypatch, tiny_models):
    from autolabel.detect import build_detector

    monkeypatch.setenv("AUTOLABEL_MODELS_DIR", str(tmp_path / "models"))
    ckpt = tiny_models["grounding-dino-original"]
    orig = build_detector("grounding-dino", model=str(ckpt), box_threshold=0.5)
    hf = build_detector(
        "grounding-dino", model=str(tiny_models["grounding-dino"]), box_threshold=0.5
    )
    rng = np.random.default_rng(0)
    imgs = [rng.integers(0, 256, (150, 210, 3), dtype=np.uint8) for _ in range(2)]
    a, b = orig.detect(imgs, ["dog. cat"] * 2), hf.detect(imgs, ["dog. cat"] * 2)
    for x, y in zip(a, b, strict=True):
        assert len(x) == len(y) > 0
        np.testing.assert_allclose(x.xyxy, y.xyxy, atol=1e-4)
        np.testing.assert_allclose(x.score, y.score, atol=1e-5)
        assert list(x.phrase) == list(y.phrase)
    cached = list((tmp_path / "models" / "converted").iterdir())
    assert len(cached) == 1 and (cached[0] / "config.json").is_file()
    assert orig.model_version != hf.model_version and orig.model_id == str(ckpt)
    # second build reuses the cache
    mtime = (cached[0] / "config.json").stat().st_mtime
    build_detector("grounding-dino", model=str(ckpt))
    assert (cached[0] / "config.json").stat().st_mtime == mtime


def test_mismatched_checkpoints_fail_clearly(tmp_path, tiny_models, monkeypatch):
    from autolabel.detect.convert import convert_original_checkpoint

    monkeypatch.setenv("AUTOLABEL_MODELS_DIR", str(tmp_path / "models"))
    src = tiny_models["grounding-dino-original"]
    sd = torch.load(src, weights_only=True)["model"]
    bad_dir = tmp_path / "bad"
    shutil.copytree(src.parent, bad_dir)
    broken = dict(sd)
    del broken["transformer.decoder.layers.0.ca_text.in_proj_weight"]
    torch.save({"model": broken}, bad_dir / "groundingdino_tiny.pth")
    with pytest.raises(ModelError, match="expected keys missing"):
        convert_original_checkpoint(bad_dir / "groundingdino_tiny.pth", tmp_path / "out1")
    # a checkpoint whose shapes disagree with the config next to it
    cfg = json.loads((bad_dir / "config.json").read_text())
    cfg["d_model"] = 64
    (bad_dir / "config.json").write_text(json.dumps(cfg))
    torch.save({"model": sd}, bad_dir / "groundingdino_tiny.pth")
    with pytest.raises(ModelError, match="wrong shapes"):
        convert_original_checkpoint(bad_dir / "groundingdino_tiny.pth", tmp_path / "out2")
    with pytest.raises(ModelError, match="not an original Grounding DINO checkpoint"):
        from autolabel.detect.convert import config_from_original

        config_from_original(torch.load(tiny_models["sam"], weights_only=True))
    with pytest.raises(ModelError, match="not found"):
        convert_original_checkpoint(tmp_path / "nope.pth", tmp_path / "out3")
