"""Model-side helpers of fine-tuning: freezing, trainable weights, scored predictions."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from autolabel.errors import ConflictError
from autolabel.geometry import cxcywh_norm_to_xyxy
from autolabel.train.data import resize_longest, token_groups


def apply_freeze(model: Any, freeze: str) -> dict[str, int]:
    """Freeze part of a ``GroundingDinoForObjectDetection``; returns parameter counts.

    ``text``: the BERT text encoder (keeps the language side of zero-shot ability);
    ``backbone``: the text encoder and the Swin image backbone; ``none``: train everything.
    """
    inner = model.model
    frozen_modules = []
    if freeze in ("text", "backbone"):
        frozen_modules.append(inner.text_backbone)
    if freeze == "backbone":
        frozen_modules.append(inner.backbone)
    for p in model.parameters():
        p.requires_grad_(True)
    for m in frozen_modules:
        for p in m.parameters():
            p.requires_grad_(False)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return {"trainable_params": int(trainable), "total_params": int(total)}


def trainable_state(model: Any) -> dict[str, Any]:
    """CPU copies of the weights that train (what checkpoints hold)."""
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items() if k in names}


def load_trainable(model: Any, state: dict[str, Any]) -> None:
    """Load weights saved by :func:`trainable_state` into ``model``."""
    missing = model.load_state_dict(state, strict=False)
    if missing.unexpected_keys:
        raise ConflictError(
            f"checkpoint does not fit the base model: unexpected keys {missing.unexpected_keys[:3]}"
        )


def predict(
    model: Any,
    processor: Any,
    images: Sequence[np.ndarray],
    prompt: str,
    *,
    max_size: int,
    top_k: int = 100,
    device: str = "cpu",
    batch_size: int = 4,
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Score every (query, phrase) pair and keep the ``top_k`` best per image.

    A phrase's score for a query is the max sigmoid over the phrase's tokens (as in
    Grounding DINO's evaluation). Images are resized so the longest side is ``max_size``.

    Args:
        images: ``(H, W, 3) uint8`` RGB arrays.

    Returns:
        Per image ``(xyxy (k, 4) float32 in original pixels, score (k,), class id (k,))``.
    """
    import torch

    was_training = model.training
    model.eval()
    out: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    try:
        for start in range(0, len(images), batch_size):
            chunk = list(images[start : start + batch_size])
            resized = [resize_longest(im, max_size)[0] for im in chunk]
            inputs = processor(
                images=resized,
                text=[prompt] * len(chunk),
                return_tensors="pt",
                padding=True,
                do_resize=False,
            ).to(device)
            with torch.no_grad():
                res = model(**inputs)
            groups = token_groups(inputs["input_ids"][0].tolist())
            probs = res.logits.float().sigmoid().cpu().numpy()  # (b, q, T_max)
            boxes = res.pred_boxes.float().cpu().numpy()  # (b, q, 4) cxcywh normalised
            for b, im in enumerate(chunk):
                out.append(_top_k(probs[b], boxes[b], groups, im.shape[:2], top_k))
    finally:
        model.train(was_training)
    return out


def _top_k(
    probs: np.ndarray, boxes: np.ndarray, groups: list[list[int]], hw: tuple[int, int], k: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ``k`` best (query, phrase) pairs of one image: ``(q, T)`` probs, ``(q, 4)`` boxes."""
    h, w = hw
    per_class = np.stack([probs[:, g].max(axis=1) for g in groups], axis=1)
    flat = per_class.reshape(-1)
    k = min(k, flat.size)
    idx = np.argpartition(-flat, k - 1)[:k]
    idx = idx[np.argsort(-flat[idx], kind="stable")]
    q, c = np.divmod(idx, per_class.shape[1])
    xyxy = cxcywh_norm_to_xyxy(boxes[q], w, h)
    return xyxy, flat[idx].astype(np.float32), c.astype(np.int64)
