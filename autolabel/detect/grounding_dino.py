"""Grounding DINO through transformers (``GroundingDinoForObjectDetection`` + processor).

One forward per batch of images holds ALL of an image's prompt phrases (one text per image);
prompts longer than the text encoder's 256 tokens are split into chunks of whole phrases,
each chunk is a separate forward, and the per-chunk results are merged. Images are batched
by their preprocessed size (no padding between images, so a batch gives exactly the
single-image result).

Per-box signals in ``Proposals.data`` (direction given; used by the selector):

- ``token_score``: max token probability within the assigned phrase (higher = better).
- ``logit_margin``: ``token_score`` minus the best token probability of any other phrase of
  the same chunk (higher = less ambiguous; equals ``token_score`` for one phrase).
- ``second_score``: best score of another query whose box overlaps this one with IoU > 0.5
  (lower = less duplicated / competed; 0 when none).
- ``n_competing``: number of other queries above ``box_threshold`` overlapping with
  IoU > 0.5 (lower = cleaner).
- ``query_rank``: rank of this query's score among all queries of its forward (0 = best).
- ``text_ok``: 1.0 if ``token_score > text_threshold`` else 0.0 (higher = better).
- ``area_frac``: box area / image area.

``score`` is the transformers score (max token probability over the whole text), so the
boxes and scores equal ``processor.post_process_grounded_object_detection`` with
``threshold=box_threshold`` (boxes here are clipped to the image).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from autolabel.constants import DEFAULT_MODEL
from autolabel.detect.base import load_hf, model_version_of, resolve_device, select_dtype
from autolabel.errors import EmptyPromptError, InputError, ShapeError
from autolabel.geometry import box_iou
from autolabel.types import Prompt, Proposals

MAX_TEXT_TOKENS = 256
IOU_COMPETE = 0.5
SIGNALS = (
    "token_score",
    "logit_margin",
    "second_score",
    "n_competing",
    "query_rank",
    "text_ok",
    "area_frac",
)


def normalize_phrases(prompt: str | Sequence[str]) -> list[str]:
    """Split a prompt into clean phrases: lower-case, single spaces, no dots, no duplicates.

    Args:
        prompt: ``"Red sneaker. handbag."`` or a list of phrases.

    Returns:
        ``["red sneaker", "handbag"]`` (order kept).
    """
    try:
        return list(Prompt.parse(prompt).phrases)
    except EmptyPromptError:
        return []


def prompt_text(phrases: Sequence[str]) -> str:
    """``["a", "b"]`` -> ``"a. b."`` (the text format Grounding DINO was trained on)."""
    return Prompt(tuple(phrases)).text


def chunk_phrases(
    phrases: Sequence[str], tokenizer: Any, max_tokens: int = MAX_TEXT_TOKENS
) -> list[list[str]]:
    """Greedily pack phrases into chunks whose text fits ``max_tokens`` (with [CLS]/[SEP]).

    Raises:
        InputError: a single phrase is longer than the text encoder allows.
    """
    budget = max_tokens - 2
    chunks: list[list[str]] = []
    cur: list[str] = []
    used = 0
    for ph in phrases:
        n = len(tokenizer(ph, add_special_tokens=False)["input_ids"]) + 1  # + "."
        if n > budget:
            raise InputError(
                f"prompt phrase is too long: expected at most {budget - 1} tokens, got "
                f"{n - 1} ({ph[:60]!r}...)"
            )
        if cur and used + n > budget:
            chunks.append(cur)
            cur, used = [], 0
        cur.append(ph)
        used += n
    if cur:
        chunks.append(cur)
    return chunks


def phrase_token_map(text: str, phrases: Sequence[str], tokenizer: Any) -> np.ndarray:
    """Which phrase each token of ``text`` belongs to (-1 for [CLS], '.', [SEP]).

    Returns:
        ``(n_tokens,) int`` aligned with ``tokenizer(text)["input_ids"]``.
    """
    enc = tokenizer(text, return_offsets_mapping=True)
    spans = []
    pos = 0
    for ph in phrases:
        start = text.index(ph, pos)
        spans.append((start, start + len(ph)))
        pos = start + len(ph)
    out = np.full(len(enc["input_ids"]), -1, np.int64)
    for j, (s, e) in enumerate(enc["offset_mapping"]):
        if e <= s:
            continue
        for k, (ps, pe) in enumerate(spans):
            if s >= ps and e <= pe:
                out[j] = k
                break
    return out


def _check_image(img: Any, i: int) -> np.ndarray:
    arr = np.asarray(img)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
        raise ShapeError(
            f"images[{i}]: expected an (H, W, 3) uint8 RGB array, got shape {arr.shape} "
            f"dtype {arr.dtype}"
        )
    return arr


class GroundingDinoDetector:
    """Text-prompted detector (``Detector`` protocol).

    Args:
        model: hub id (default ``IDEA-Research/grounding-dino-tiny``), a registry name, a
            local transformers folder, or an original IDEA ``.pth`` (converted once and
            cached under ``models/converted/``).
        device: ``auto`` | ``cpu`` | ``cuda`` | ``cuda:N`` | ``mps``.
        dtype: ``auto`` (fp16 on CUDA, fp32 elsewhere) | ``float32`` | ``float16`` |
            ``bfloat16``.
        box_threshold: keep queries whose score is above this.
        text_threshold: token probability a phrase needs to count as matched (``text_ok``).
        image_size: shortest side the images are resized to (longest side capped at
            ``image_size * 1333 / 800``); None = the processor's own setting (800 for the
            released models).
        max_batch: most images per forward (None = all given).
    """

    name = "grounding-dino"

    def __init__(
        self,
        model: str | Path = DEFAULT_MODEL,
        *,
        device: str = "auto",
        dtype: str = "auto",
        box_threshold: float = 0.35,
        text_threshold: float = 0.25,
        image_size: int | None = None,
        max_batch: int | None = None,
    ) -> None:
        from autolabel.detect.registry import models_dir
        from autolabel.detect.versions import resolve_model

        for label, v in (("box_threshold", box_threshold), ("text_threshold", text_threshold)):
            if not 0.0 <= float(v) <= 1.0:
                raise InputError(f"{label}: expected a value in [0, 1], got {v}")
        self.box_threshold = float(box_threshold)
        self.text_threshold = float(text_threshold)
        self.image_size = image_size
        self.max_batch = max_batch
        self.device = resolve_device(device)
        self.dtype = select_dtype(dtype, self.device)
        source = resolve_model(str(model), kind="grounding-dino")
        version = None
        if Path(source).expanduser().is_file():
            from autolabel.detect.convert import ensure_converted

            version = model_version_of(source)
            folder = ensure_converted(Path(source).expanduser(), models_dir())
            self.model, self.processor, _, _ = load_hf(
                folder, kind="grounding-dino", device=self.device, dtype=self.dtype
            )
            self.model_id = str(model)
            self.model_version = version
        else:
            self.model, self.processor, self.model_id, self.model_version = load_hf(
                source, kind="grounding-dino", device=self.device, dtype=self.dtype
            )
            self.model_id = str(model)
        self.tokenizer = self.processor.tokenizer
        self.max_text_tokens = int(getattr(self.model.config, "max_text_len", MAX_TEXT_TOKENS))

    @classmethod
    def from_model(
        cls,
        model: Any,
        processor: Any,
        *,
        model_id: str = "in-memory",
        model_version: str = "in-memory",
        box_threshold: float = 0.35,
        text_threshold: float = 0.25,
        image_size: int | None = None,
        max_batch: int | None = None,
    ) -> GroundingDinoDetector:
        """Wrap an already built ``GroundingDinoForObjectDetection`` + processor (e.g. during
        fine-tuning, or a random-weight model in the benchmark); device/dtype are the model's.
        """
        self = cls.__new__(cls)
        param = next(model.parameters())
        self.device, self.dtype = str(param.device), param.dtype
        self.model, self.processor = model.eval(), processor
        self.model_id, self.model_version = model_id, model_version
        self.box_threshold, self.text_threshold = float(box_threshold), float(text_threshold)
        self.image_size, self.max_batch = image_size, max_batch
        self.tokenizer = processor.tokenizer
        self.max_text_tokens = int(getattr(model.config, "max_text_len", MAX_TEXT_TOKENS))
        return self

    # -- preprocessing -------------------------------------------------------------------
    def _pixels(self, image: np.ndarray):
        kwargs: dict[str, Any] = {"return_tensors": "pt"}
        if self.image_size:
            s = int(self.image_size)
            kwargs["size"] = {"shortest_edge": s, "longest_edge": round(s * 1333 / 800)}
        return self.processor.image_processor(images=image, **kwargs)["pixel_values"]

    def plan(self, prompts: Sequence[str]) -> list[list[list[str]]]:
        """Per image: the phrase chunks its prompt is split into."""
        cache: dict[str, list[list[str]]] = {}
        out = []
        for prompt in prompts:
            if prompt not in cache:
                phrases = normalize_phrases(prompt)
                if not phrases:
                    raise InputError(
                        f"empty prompt: expected phrases like 'red sneaker. bag', got {prompt!r}"
                    )
                cache[prompt] = chunk_phrases(phrases, self.tokenizer, self.max_text_tokens)
            out.append(cache[prompt])
        return out

    # -- main entry ----------------------------------------------------------------------
    def detect(self, images: Sequence[np.ndarray], prompts: Sequence[str]) -> list[Proposals]:
        """Detect the prompt phrases in each image.

        Args:
            images: ``B`` arrays ``(H, W, 3) uint8`` RGB.
            prompts: ``B`` prompt strings, phrases separated by ``". "``.

        Returns:
            ``B`` ``Proposals`` (boxes in pixels of each image, clipped to it).

        Raises:
            ShapeError: wrong image arrays or a prompt count different from the images.
            InputError: an empty prompt or a phrase over the token limit.
        """
        import torch

        if isinstance(prompts, str):
            prompts = [prompts] * len(images)
        if len(prompts) != len(images):
            raise ShapeError(f"prompts: expected one per image ({len(images)}), got {len(prompts)}")
        arrays = [_check_image(im, i) for i, im in enumerate(images)]
        if not arrays:
            return []
        plans = self.plan(prompts)
        pixels = [self._pixels(a) for a in arrays]
        # jobs grouped by preprocessed shape: (image index, phrases of one chunk)
        groups: dict[tuple[int, ...], list[tuple[int, list[str]]]] = {}
        for i, chunks in enumerate(plans):
            for ch in chunks:
                groups.setdefault(tuple(pixels[i].shape[-2:]), []).append((i, ch))
        parts: list[list[Proposals]] = [[] for _ in arrays]
        step = self.max_batch or max(len(j) for j in groups.values())
        for jobs in groups.values():
            for s in range(0, len(jobs), step):
                batch = jobs[s : s + step]
                texts = [prompt_text(ch) for _, ch in batch]
                enc = self.tokenizer(texts, padding=True, return_tensors="pt")
                pv = torch.cat([pixels[i] for i, _ in batch]).to(self.device, self.dtype)
                with torch.inference_mode():
                    out = self.model(
                        pixel_values=pv,
                        pixel_mask=torch.ones(
                            pv.shape[0], *pv.shape[-2:], dtype=torch.long, device=self.device
                        ),
                        input_ids=enc["input_ids"].to(self.device),
                        attention_mask=enc["attention_mask"].to(self.device),
                        token_type_ids=(
                            enc["token_type_ids"].to(self.device)
                            if "token_type_ids" in enc
                            else None
                        ),
                    )
                logits = out.logits.float().cpu().numpy()
                boxes = out.pred_boxes.float().cpu().numpy()
                for b, (i, ch) in enumerate(batch):
                    parts[i].append(
                        self.postprocess(logits[b], boxes[b], texts[b], ch, arrays[i].shape[:2])
                    )
        return [Proposals.merge(p) if len(p) > 1 else p[0] for p in parts]

    def postprocess(
        self,
        logits: np.ndarray,
        boxes_cxcywh: np.ndarray,
        text: str,
        phrases: Sequence[str],
        hw: tuple[int, int],
    ) -> Proposals:
        """Turn one forward's raw outputs into Proposals.

        Args:
            logits: ``(Q, 256)`` token logits (``-inf`` past the text).
            boxes_cxcywh: ``(Q, 4)`` normalised ``cx, cy, w, h``.
            text: the prompt text of this forward; ``phrases`` its phrases in order.
            hw: ``(H, W)`` of the original image.
        """
        h, w = hw
        with np.errstate(over="ignore"):
            probs = 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))
        score = probs.max(axis=1)
        tok = phrase_token_map(text, phrases, self.tokenizer)
        k = len(phrases)
        per_phrase = np.zeros((probs.shape[0], k))
        for j in range(k):
            cols = np.flatnonzero(tok == j)
            if len(cols):
                per_phrase[:, j] = probs[:, cols].max(axis=1)
        best = per_phrase.argmax(axis=1)
        token_score = per_phrase[np.arange(len(best)), best]
        if k > 1:
            srt = np.sort(per_phrase, axis=1)
            margin = srt[:, -1] - srt[:, -2]
        else:
            margin = token_score.copy()
        cx, cy, bw, bh = boxes_cxcywh.astype(np.float64).T
        xyxy = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], axis=1)
        xyxy *= np.array([w, h, w, h], np.float64)
        xyxy[:, [0, 2]] = xyxy[:, [0, 2]].clip(0, w)
        xyxy[:, [1, 3]] = xyxy[:, [1, 3]].clip(0, h)
        keep = np.flatnonzero(score > self.box_threshold)
        if len(keep) == 0:
            return Proposals.empty(SIGNALS)
        iou = box_iou(xyxy[keep], xyxy)
        iou[np.arange(len(keep)), keep] = 0.0
        overlapping = iou > IOU_COMPETE
        second = np.where(overlapping, score[None, :], 0.0).max(axis=1)
        competing = (overlapping & (score[None, :] > self.box_threshold)).sum(axis=1)
        rank = np.argsort(np.argsort(-score, kind="stable"), kind="stable")
        area = (xyxy[keep, 2] - xyxy[keep, 0]) * (xyxy[keep, 3] - xyxy[keep, 1]) / max(h * w, 1)
        return Proposals(
            xyxy=xyxy[keep].astype(np.float32),
            score=score[keep].astype(np.float32),
            phrase=[phrases[j] for j in best[keep]],
            data={
                "token_score": token_score[keep].astype(np.float32),
                "logit_margin": margin[keep].astype(np.float32),
                "second_score": second.astype(np.float32),
                "n_competing": competing.astype(np.float32),
                "query_rank": rank[keep].astype(np.float32),
                "text_ok": (token_score[keep] > self.text_threshold).astype(np.float32),
                "area_frac": area.astype(np.float32),
            },
        )
