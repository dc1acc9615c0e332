"""SAM refiners: turn each proposed box into a mask, a tight box and two quality signals.

Two backends with the same output:

- ``sam``: the original ``segment_anything`` package and a ``.pth`` state dict (vit_b / vit_l /
  vit_h, or any dims: the architecture is read off the state dict's shapes).
- ``hf-sam``: transformers ``SamModel`` / ``SamProcessor`` (``facebook/sam-vit-*``, SlimSAM,
  or a local folder).

Each image's embedding is computed once and all its boxes are refined in one batched call.
Signals added to ``Proposals.data`` (higher = better for both):

- ``sam_iou``: SAM's own predicted IoU of the mask, in [0, 1] (roughly).
- ``sam_stability``: IoU of the mask thresholded at logit -1 and +1, in [0, 1].
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from autolabel.detect.base import model_version_of, resolve_device, select_dtype
from autolabel.errors import ModelError
from autolabel.geometry import mask_boxes
from autolabel.types import Proposals

SAM_ARCHS = {
    "vit_b": (768, 12, 12, (2, 5, 8, 11)),
    "vit_l": (1024, 24, 16, (5, 11, 17, 23)),
    "vit_h": (1280, 32, 16, (7, 15, 23, 31)),
}


def build_segment_anything(
    *,
    img_size: int = 1024,
    embed_dim: int = 768,
    depth: int = 12,
    num_heads: int = 12,
    out_chans: int = 256,
    window_size: int = 14,
    global_attn_indexes: tuple[int, ...] = (2, 5, 8, 11),
    decoder_mlp_dim: int = 2048,
    decoder_depth: int = 2,
    decoder_heads: int = 8,
    iou_head_hidden_dim: int = 256,
    mask_in_chans: int = 16,
):
    """Build a ``segment_anything.modeling.Sam`` with the given dims (random weights).

    The defaults are vit_b; the tiny test model uses small dims.
    """
    from functools import partial

    import torch
    from segment_anything.modeling import (
        ImageEncoderViT,
        MaskDecoder,
        PromptEncoder,
        Sam,
        TwoWayTransformer,
    )

    emb = img_size // 16
    sam = Sam(
        image_encoder=ImageEncoderViT(
            depth=depth,
            embed_dim=embed_dim,
            img_size=img_size,
            mlp_ratio=4,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
            num_heads=num_heads,
            patch_size=16,
            qkv_bias=True,
            use_rel_pos=True,
            global_attn_indexes=tuple(global_attn_indexes),
            window_size=window_size,
            out_chans=out_chans,
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=out_chans,
            image_embedding_size=(emb, emb),
            input_image_size=(img_size, img_size),
            mask_in_chans=mask_in_chans,
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(
                depth=decoder_depth,
                embedding_dim=out_chans,
                mlp_dim=decoder_mlp_dim,
                num_heads=decoder_heads,
            ),
            transformer_dim=out_chans,
            iou_head_depth=3,
            iou_head_hidden_dim=iou_head_hidden_dim,
        ),
        pixel_mean=[123.675, 116.28, 103.53],
        pixel_std=[58.395, 57.12, 57.375],
    )
    return sam.eval()


def sam_dims_from_state_dict(sd: dict[str, Any]) -> dict[str, Any]:
    """Read a ``segment_anything`` architecture off a state dict's keys and shapes.

    Raises:
        ModelError: the dict is not a SAM image-encoder/decoder state dict.
    """
    try:
        pos = sd["image_encoder.pos_embed"]  # (1, H/16, W/16, C)
        embed_dim = int(pos.shape[-1])
        img_size = int(pos.shape[1]) * 16
        blocks = sorted(
            {int(m.group(1)) for k in sd if (m := re.match(r"image_encoder\.blocks\.(\d+)\.", k))}
        )
        depth = len(blocks)
        head_dim = int(sd["image_encoder.blocks.0.attn.rel_pos_h"].shape[1])
        num_heads = embed_dim // head_dim
        global_idx, window = [], 14
        for b in blocks:
            n = int(sd[f"image_encoder.blocks.{b}.attn.rel_pos_h"].shape[0])
            if n == 2 * (img_size // 16) - 1:
                global_idx.append(b)
            else:
                window = (n + 1) // 2
        out_chans = int(sd["image_encoder.neck.0.weight"].shape[0])
        dec_layers = {
            int(m.group(1))
            for k in sd
            if (m := re.match(r"mask_decoder\.transformer\.layers\.(\d+)\.", k))
        }
        mlp_dim = int(sd["mask_decoder.transformer.layers.0.mlp.lin1.weight"].shape[0])
        iou_hidden = int(sd["mask_decoder.iou_prediction_head.layers.0.weight"].shape[0])
        mask_in = int(sd["prompt_encoder.mask_downscaling.3.weight"].shape[0])
    except (KeyError, IndexError, AttributeError) as exc:
        raise ModelError(
            f"not a segment_anything SAM checkpoint: expected key {exc} "
            "(image_encoder.*, prompt_encoder.*, mask_decoder.*)"
        ) from None
    heads = 8 if out_chans % 8 == 0 and out_chans >= 64 else 2
    return {
        "img_size": img_size,
        "embed_dim": embed_dim,
        "depth": depth,
        "num_heads": num_heads,
        "out_chans": out_chans,
        "window_size": window,
        "global_attn_indexes": tuple(global_idx),
        "decoder_mlp_dim": mlp_dim,
        "decoder_depth": len(dec_layers),
        "decoder_heads": heads,
        "iou_head_hidden_dim": iou_hidden,
        "mask_in_chans": mask_in,
    }


def _arch_name(dims: dict[str, Any]) -> str:
    for name, (e, d, h, g) in SAM_ARCHS.items():
        if (dims["embed_dim"], dims["depth"], dims["num_heads"]) == (e, d, h) and tuple(
            dims["global_attn_indexes"]
        ) == g:
            return name
    return f"custom(embed={dims['embed_dim']},depth={dims['depth']})"


def tight_boxes(masks: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    """Tight ``[x0, y0, x1, y1]`` boxes around boolean masks.

    Args:
        masks: ``(n, H, W) bool``.
        fallback: ``(n, 4)`` boxes used where a mask is empty.

    Returns:
        ``(n, 4) float32``; ``x1``/``y1`` are exclusive pixel edges (``<= W``/``<= H``).
    """
    tight = mask_boxes(masks)
    fb = np.asarray(fallback, np.float32).reshape(-1, 4)
    return np.where(np.isnan(tight), fb, tight).astype(np.float32)


def stability_scores(logits: np.ndarray, *, threshold: float = 0.0, offset: float = 1.0):
    """IoU between masks at ``logit > threshold + offset`` and ``> threshold - offset``.

    Args:
        logits: ``(n, H, W)`` float mask logits.

    Returns:
        ``(n,) float32`` in [0, 1]; higher = steadier mask. 1.0 where both masks are empty.
    """
    hi = (logits > threshold + offset).reshape(len(logits), -1).sum(1)
    lo = (logits > threshold - offset).reshape(len(logits), -1).sum(1)
    return np.where(lo > 0, hi / np.maximum(lo, 1), 1.0).astype(np.float32)


def _finish(
    image: np.ndarray, proposals: Proposals, logits: np.ndarray, iou: np.ndarray
) -> Proposals:
    h, w = image.shape[:2]
    masks = logits > 0.0
    boxes = tight_boxes(masks, proposals.xyxy)
    boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, w)
    boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, h)
    return Proposals(
        xyxy=boxes,
        score=proposals.score,
        phrase=proposals.phrase,
        mask=masks,
        data={
            **proposals.data,
            "sam_iou": iou.astype(np.float32),
            "sam_stability": stability_scores(logits),
            "box_before_refine": proposals.xyxy.copy(),
        },
    )


def _empty_with_masks(image: np.ndarray, proposals: Proposals) -> Proposals:
    h, w = image.shape[:2]
    return Proposals(
        proposals.xyxy,
        proposals.score,
        proposals.phrase,
        mask=np.zeros((0, h, w), bool),
        data={
            **proposals.data,
            "sam_iou": np.zeros(0, np.float32),
            "sam_stability": np.zeros(0, np.float32),
            "box_before_refine": np.zeros((0, 4), np.float32),
        },
    )


class SamRefiner:
    """``segment_anything`` refiner (``Refiner`` protocol).

    Args:
        model: path to a SAM ``.pth`` state dict (vit_b/l/h or custom dims), or a registry
            name (``sam-vit-b``, the default, once its file is placed under ``models/``).
        device: ``auto`` | ``cpu`` | ``cuda`` | ``cuda:N`` | ``mps``.
    """

    name = "sam"

    def __init__(self, model: str | Path = "sam-vit-b", *, device: str = "auto") -> None:
        import torch

        from autolabel.detect.versions import resolve_model

        path = Path(resolve_model(str(model), kind="sam")).expanduser()
        if not path.is_file():
            raise ModelError(
                f"SAM checkpoint {str(model)!r} not found: expected a .pth file such as "
                "models/sam_vit_b_01ec64.pth (see `autolabel models pull sam-vit-b`)"
            )
        try:
            sd = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise ModelError(f"{path}: cannot read as a torch checkpoint ({exc})") from None
        if isinstance(sd, dict) and "model" in sd and isinstance(sd["model"], dict):
            sd = sd["model"]
        if not isinstance(sd, dict):
            raise ModelError(f"{path}: expected a state dict, got {type(sd).__name__}")
        self.dims = sam_dims_from_state_dict(sd)
        self.arch = _arch_name(self.dims)
        sam = build_segment_anything(**self.dims)
        missing, unexpected = sam.load_state_dict(sd, strict=False)
        if missing or unexpected:
            raise ModelError(
                f"{path}: checkpoint does not match the SAM {self.arch} architecture "
                f"(missing {list(missing)[:3]}, unexpected {list(unexpected)[:3]})"
            )
        self.device = resolve_device(device)
        self.model = sam.to(self.device).eval()
        self.model_id = str(path)
        self.model_version = model_version_of(path)

    def refine(self, image: np.ndarray, proposals: Proposals) -> Proposals:
        """Refine all boxes of one image.

        Args:
            image: ``(H, W, 3) uint8`` RGB.
            proposals: boxes in pixels of ``image``.

        Returns:
            Proposals with ``mask (n, H, W)``, tight boxes and ``sam_iou``/``sam_stability``.
        """
        import torch
        from segment_anything import SamPredictor

        if len(proposals) == 0:
            return _empty_with_masks(image, proposals)
        predictor = SamPredictor(self.model)
        with torch.inference_mode():
            predictor.set_image(np.ascontiguousarray(image), image_format="RGB")
            boxes = torch.as_tensor(proposals.xyxy, dtype=torch.float32, device=self.device)
            boxes = predictor.transform.apply_boxes_torch(boxes, image.shape[:2])
            logits, iou, _ = predictor.predict_torch(
                point_coords=None,
                point_labels=None,
                boxes=boxes,
                multimask_output=False,
                return_logits=True,
            )
        return _finish(
            image, proposals, logits[:, 0].float().cpu().numpy(), iou[:, 0].cpu().numpy()
        )


class HfSamRefiner:
    """transformers ``SamModel`` refiner (``Refiner`` protocol).

    Args:
        model: hub id (e.g. ``facebook/sam-vit-base``, ``Zigeng/SlimSAM-uniform-77``) or a
            local folder saved with ``save_pretrained``.
        device: ``auto`` | ``cpu`` | ``cuda`` | ``mps``.
        dtype: ``auto`` | ``float32`` | ``float16`` | ``bfloat16``.
    """

    name = "hf-sam"

    def __init__(
        self,
        model: str | Path = "facebook/sam-vit-base",
        *,
        device: str = "auto",
        dtype: str = "auto",
    ) -> None:
        from autolabel.detect.base import load_hf

        self.device = resolve_device(device)
        self.dtype = select_dtype(dtype, self.device)
        self.model, self.processor, self.model_id, self.model_version = load_hf(
            model, kind="sam", device=self.device, dtype=self.dtype
        )

    def refine(self, image: np.ndarray, proposals: Proposals) -> Proposals:
        """Same contract as :meth:`SamRefiner.refine`."""
        import torch

        if len(proposals) == 0:
            return _empty_with_masks(image, proposals)
        boxes = [[[float(v) for v in b] for b in proposals.xyxy]]
        inputs = self.processor(images=image, input_boxes=boxes, return_tensors="pt")
        pixel_values = inputs["pixel_values"].to(self.device, self.dtype)
        with torch.inference_mode():
            emb = self.model.get_image_embeddings(pixel_values)
            out = self.model(
                image_embeddings=emb,
                input_boxes=inputs["input_boxes"].to(self.device, self.dtype),
                multimask_output=False,
            )
        logits = self.processor.post_process_masks(
            out.pred_masks.float().cpu(),
            inputs["original_sizes"].cpu(),
            inputs["reshaped_input_sizes"].cpu(),
            binarize=False,
        )[0][:, 0]
        iou = out.iou_scores.float().cpu().numpy()[0, :, 0]
        return _finish(image, proposals, logits.numpy(), iou)
