"""``autolabel models info``: describe a model folder, checkpoint file or registry name."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from autolabel.errors import ModelError


def _size(p: Path) -> int:
    if p.is_file():
        return p.stat().st_size
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())


def model_info(target: str | Path) -> dict[str, Any]:
    """Describe ``target`` without building the model.

    Args:
        target: a transformers folder, an original Grounding DINO ``.pth``, a SAM ``.pth``,
            or a registry name.

    Returns:
        JSON-friendly dict: ``format`` (transformers | grounding-dino-original |
        segment-anything | registry), ``kind``, ``path``, ``size_bytes``, ``model_version``
        and format-specific architecture fields.

    Raises:
        ModelError: the path does not exist or is not a model this tool can read.
    """
    from autolabel.detect.base import model_version_of
    from autolabel.detect.registry import load_registry

    p = Path(target).expanduser()
    if not p.exists():
        registry = load_registry()
        if str(target) in registry:
            e = registry[str(target)]
            return {
                "format": "registry",
                "name": e.name,
                "kind": e.kind,
                "source": e.hub or e.url,
                "files": list(e.files),
                "sha256": e.sha256,
                "licence": e.licence,
                "size": e.size,
                "present": e.is_present(),
                "path": str(e.local_path()),
                "notes": e.notes,
            }
        raise ModelError(
            f"{target}: no such file, folder or registry name (expected a model folder, a .pth "
            "checkpoint or a name from `autolabel models list`)"
        )
    info: dict[str, Any] = {"path": str(p), "size_bytes": _size(p)}
    if p.is_dir():
        cfg_file = p / "config.json"
        if not cfg_file.is_file():
            raise ModelError(f"{p}: not a transformers model folder: expected config.json")
        cfg = json.loads(cfg_file.read_text())
        mtype = cfg.get("model_type")
        info.update(format="transformers", model_type=mtype, model_version=model_version_of(p))
        info["processor"] = any(
            (p / n).is_file() for n in ("processor_config.json", "preprocessor_config.json")
        )
        if mtype == "grounding-dino":
            bb = cfg.get("backbone_config") or {}
            info.update(
                kind="grounding-dino",
                backbone=bb.get("model_type"),
                backbone_embed_dim=bb.get("embed_dim"),
                backbone_depths=bb.get("depths"),
                d_model=cfg.get("d_model"),
                num_queries=cfg.get("num_queries"),
                encoder_layers=cfg.get("encoder_layers"),
                decoder_layers=cfg.get("decoder_layers"),
                max_text_len=cfg.get("max_text_len"),
            )
        elif mtype == "sam":
            vc = cfg.get("vision_config") or {}
            info.update(
                kind="hf-sam",
                vision_hidden_size=vc.get("hidden_size"),
                vision_layers=vc.get("num_hidden_layers"),
                image_size=vc.get("image_size"),
            )
        else:
            info["kind"] = "unknown"
        return info
    import torch

    try:
        raw = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ModelError(f"{p}: cannot read as a torch checkpoint ({exc})") from None
    sd = raw.get("model", raw) if isinstance(raw, dict) else None
    if not isinstance(sd, dict):
        raise ModelError(f"{p}: expected a state dict, got {type(raw).__name__}")
    info["model_version"] = model_version_of(p)
    info["n_tensors"] = len(sd)
    info["n_params"] = int(sum(getattr(v, "numel", lambda: 0)() for v in sd.values()))
    keys = [k.removeprefix("module.") for k in sd]
    if any(k.startswith("image_encoder.") for k in keys):
        from autolabel.detect.sam import _arch_name, sam_dims_from_state_dict

        dims = sam_dims_from_state_dict(sd)
        info.update(format="segment-anything", kind="sam", arch=_arch_name(dims), **dims)
        info["global_attn_indexes"] = list(dims["global_attn_indexes"])
        return info
    if any(k.startswith("backbone.0.") for k in keys) and any(k.startswith("bert.") for k in keys):
        from autolabel.detect.convert import config_from_original

        cfg = config_from_original(sd)
        info.update(
            format="grounding-dino-original",
            kind="grounding-dino",
            backbone_embed_dim=cfg.backbone_config.embed_dim,
            backbone_depths=list(cfg.backbone_config.depths),
            window_size=cfg.backbone_config.window_size,
            d_model=cfg.d_model,
            num_queries=cfg.num_queries,
            encoder_layers=cfg.encoder_layers,
            decoder_layers=cfg.decoder_layers,
        )
        return info
    raise ModelError(
        f"{p}: unrecognised checkpoint: expected SAM keys (image_encoder.*) or original "
        "Grounding DINO keys (backbone.0.*, bert.*)"
    )
