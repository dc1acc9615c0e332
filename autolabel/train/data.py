"""Training data for fine-tuning: samples from seed + reviewed boxes, prompts, label maps,
augmentation.

Grounding DINO (transformers) scores every query against every prompt token. Its loss turns
a target's ``class_labels`` into tokens through ``build_label_maps``: the prompt's tokens are
split at the delimiter ids ``[CLS]`` (101), ``[SEP]`` (102), ``.`` (1012), ``?`` (1029) and
``[PAD]`` (0), and class ``k`` is the ``k``-th run of non-delimiter tokens. So with the
prompt ``"red square. blue circle."`` a blue-circle box has ``class_labels = 1``.
:func:`phrase_class_indices` computes that mapping from the tokenizer, and targets carry
normalised ``(cx, cy, w, h)`` boxes relative to the (unpadded, resized) image.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from autolabel.errors import InputError, ModelError
from autolabel.geometry import flip_boxes, iou, scale_boxes, xyxy_to_cxcywh_norm
from autolabel.types import Prompt

# token ids that GroundingDino's build_label_maps treats as phrase delimiters
DELIMITER_IDS = (101, 102, 1012, 1029, 0)
# reject reasons that mean "this image contains no object" (compared after normalising)
NO_OBJECT_REASONS = frozenset({"no object", "no objects", "noobject", "empty", "nothing"})


@dataclass(frozen=True, eq=False)
class TrainSample:
    """One training image and its boxes.

    Attributes:
        path: image file (opened through :mod:`autolabel.imageio`).
        boxes: ``(n, 4) float32`` ``[x0, y0, x1, y1]`` in pixels of the EXIF-corrected image;
            ``n = 0`` for a negative image (a reviewer said it shows no object).
        phrases: ``n`` phrases, one per box.
        image_id: the images-table id, or None for an original that was not ingested.
        sources: ``n`` provenance strings (``seed`` / ``reviewed``).
    """

    path: str
    boxes: np.ndarray
    phrases: tuple[str, ...]
    image_id: int | None = None
    sources: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        boxes = np.asarray(self.boxes, np.float32).reshape(-1, 4)
        object.__setattr__(self, "boxes", boxes)
        if len(self.phrases) != len(boxes):
            raise InputError(
                f"{self.path}: expected one phrase per box ({len(boxes)}), got {len(self.phrases)}"
            )

    @property
    def negative(self) -> bool:
        return len(self.boxes) == 0

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "boxes": self.boxes.tolist(),
            "phrases": list(self.phrases),
            "image_id": self.image_id,
            "sources": list(self.sources),
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> TrainSample:
        return cls(
            path=d["path"],
            boxes=np.asarray(d["boxes"], np.float32).reshape(-1, 4),
            phrases=tuple(d["phrases"]),
            image_id=d.get("image_id"),
            sources=tuple(d.get("sources", ())),
        )


@dataclass
class TrainingSet:
    """Samples plus the phrase list (its order defines the prompt and the class ids)."""

    samples: list[TrainSample]
    phrases: list[str]
    counts: dict[str, int]

    @property
    def prompt(self) -> str:
        """The text the model is trained with (:attr:`autolabel.types.Prompt.text`)."""
        return build_prompt(self.phrases)


def normalize_phrase(text: str) -> str:
    """Lower-case, drop delimiter characters (``.``/``?`` split phrases), collapse spaces."""
    text = re.sub(r"[.?]", " ", str(text).lower())
    return " ".join(text.split())


def build_prompt(phrases: Sequence[str]) -> str:
    """``["red square", "blue circle"]`` -> ``"red square. blue circle."`` (``Prompt.text``).

    Raises:
        EmptyPromptError: no phrase.
    """
    return Prompt(tuple(phrases)).text


def is_no_object_reason(reason: str | None) -> bool:
    """True when a reject reason says the image contains no object at all."""
    if not reason:
        return False
    norm = " ".join(re.sub(r"[_\-]", " ", reason.lower()).split())
    return norm in NO_OBJECT_REASONS


class _BoxCollector:
    """Positive boxes per image path; same-phrase boxes overlapping by ``dedupe_iou`` merge."""

    def __init__(self, dedupe_iou: float) -> None:
        self.dedupe_iou = dedupe_iou
        self.per_image: dict[str, dict[str, Any]] = {}
        self.added = {"seed": 0, "reviewed": 0}

    def add(
        self, path: str, image_id: int | None, box: Sequence[float], phrase: str, src: str
    ) -> None:
        """Add one ``[x0, y0, x1, y1]`` box from ``src`` (``seed`` or ``reviewed``)."""
        self.added[src] += 1
        entry = self.per_image.setdefault(
            path, {"image_id": image_id, "boxes": [], "phrases": [], "sources": []}
        )
        if entry["image_id"] is None:
            entry["image_id"] = image_id
        b = np.asarray(box, np.float32)
        for i, (ob, op) in enumerate(zip(entry["boxes"], entry["phrases"], strict=True)):
            if op == phrase and iou(ob, b) >= self.dedupe_iou:
                if src == "reviewed":  # a reviewer's box wins over the seed's
                    entry["boxes"][i] = b
                    entry["sources"][i] = src
                return
        entry["boxes"].append(b)
        entry["phrases"].append(phrase)
        entry["sources"].append(src)

    def samples(self) -> list[TrainSample]:
        return [
            TrainSample(
                path=path,
                boxes=np.stack(e["boxes"]),
                phrases=tuple(e["phrases"]),
                image_id=e["image_id"],
                sources=tuple(e["sources"]),
            )
            for path, e in self.per_image.items()
        ]


def _collect_positives(ws: Any, default_phrase: str | None, dedupe_iou: float) -> _BoxCollector:
    from autolabel.store.labels import iter_labels
    from autolabel.store.train import located_seed_boxes

    boxes = _BoxCollector(dedupe_iou)
    for item in located_seed_boxes(ws):
        phrase = item["phrase"] or default_phrase
        if not phrase:
            raise InputError(
                f"seed item {item['id']}: expected a phrase (from seed captions, "
                "`seed.prompt` in the config or --prompt), got none"
            )
        boxes.add(item["path"], item["image_id"], item["box"], normalize_phrase(phrase), "seed")
    for label in iter_labels(ws, include="reviewed"):
        phrase = normalize_phrase(label.phrase)
        boxes.add(label.image_path, label.image_id, label.box, phrase, "reviewed")
    if not boxes.per_image:
        raise InputError(
            "finetune: expected located seed boxes or reviewed boxes in the workspace, got "
            "none (run `autolabel seed` and review some proposals first)"
        )
    return boxes


def _negative_samples(ws: Any, positive_paths: Iterable[str]) -> list[TrainSample]:
    """Images rejected as "no object" that have no positive box."""
    from autolabel.store.train import rejected_images

    skip = set(positive_paths)
    negatives: dict[str, int] = {}
    for rej in rejected_images(ws):
        if is_no_object_reason(rej["reason"]) and rej["path"] not in skip:
            negatives[rej["path"]] = rej["image_id"]
    return [
        TrainSample(path=path, boxes=np.zeros((0, 4)), phrases=(), image_id=image_id)
        for path, image_id in negatives.items()
    ]


def build_training_set(
    ws: Any,
    *,
    default_phrase: str | None = None,
    dedupe_iou: float = 0.9,
) -> TrainingSet:
    """Collect located seed boxes, reviewed boxes and "no object" images of a workspace.

    Positive boxes: seed items with status ``located`` and every box a reviewer accepted or
    adjusted (the adjusted box). Negative images: an effective ``reject`` decision whose
    reason means "no object" (see :data:`NO_OBJECT_REASONS`) on an image with no positive
    box. Boxes of the same phrase overlapping by ``dedupe_iou`` or more on one image are
    merged (a seed box later accepted in review counts once).

    Args:
        ws: an open :class:`autolabel.store.Workspace`.
        default_phrase: phrase for seed items without one: the first phrase of the prompt
            chosen by :func:`autolabel.steps.resolve_prompt`.

    Raises:
        InputError: no positive box at all, or a seed item without phrase and no default.
    """
    boxes = _collect_positives(ws, default_phrase, dedupe_iou)
    positives = boxes.samples()
    negatives = _negative_samples(ws, boxes.per_image)
    phrase_count: dict[str, int] = {}
    for s in positives:
        for p in s.phrases:
            phrase_count[p] = phrase_count.get(p, 0) + 1
    # most frequent phrase first, ties by name: a stable prompt for the same data
    phrases = sorted(phrase_count, key=lambda p: (-phrase_count[p], p))
    samples = positives + negatives
    counts = {
        "images": len(samples),
        "positive_images": len(positives),
        "negative_images": len(negatives),
        "boxes": sum(len(s.boxes) for s in samples),
        "seed_boxes": boxes.added["seed"],
        "reviewed_boxes": boxes.added["reviewed"],
    }
    return TrainingSet(samples=samples, phrases=phrases, counts=counts)


def split_train_val(
    samples: Sequence[TrainSample], val_split: float, *, seed: int = 0
) -> tuple[list[TrainSample], list[TrainSample]]:
    """Deterministic split; positives and negatives are split separately (stratified).

    With ``val_split > 0`` and at least 2 positive images, validation gets at least one
    positive image and training keeps at least one.
    """
    if not 0 <= val_split < 1:
        raise InputError(f"val_split: expected a fraction in [0, 1), got {val_split}")
    rng = np.random.default_rng(seed)
    train: list[TrainSample] = []
    val: list[TrainSample] = []
    positives = [s for s in samples if not s.negative]
    negatives = [s for s in samples if s.negative]
    for is_negative, group in ((False, positives), (True, negatives)):
        order = rng.permutation(len(group))
        n_val = round(len(group) * val_split)
        if val_split > 0 and not is_negative and len(group) >= 2:
            n_val = min(max(n_val, 1), len(group) - 1)
        val.extend(group[i] for i in order[:n_val])
        train.extend(group[i] for i in order[n_val:])
    return train, val


def token_groups(input_ids: Sequence[int]) -> list[list[int]]:
    """Positions of each phrase's tokens, as GroundingDino's ``build_label_maps`` sees them.

    Args:
        input_ids: one tokenised prompt, ``(T,)``.

    Returns:
        One list of token positions per phrase, in prompt order (class id = list index).
    """
    groups: list[list[int]] = []
    current: list[int] = []
    for pos, tok in enumerate(input_ids):
        if int(tok) in DELIMITER_IDS:
            if current:
                groups.append(current)
                current = []
        else:
            current.append(pos)
    if current:
        groups.append(current)
    return groups


def phrase_class_indices(
    tokenizer: Any, phrases: Sequence[str], *, max_text_len: int | None = None
) -> dict[str, int]:
    """Map each phrase to its class id in the prompt built from ``phrases``.

    Raises:
        InputError: the prompt is longer than the model's text length.
        ModelError: the tokenizer does not split the prompt into one group per phrase.
    """
    prompt = build_prompt(phrases)
    ids = list(tokenizer(prompt)["input_ids"])
    if max_text_len is not None and len(ids) > max_text_len:
        raise InputError(
            f"prompt: expected at most {max_text_len} tokens for this model, got {len(ids)} "
            f"({len(phrases)} phrases); use fewer or shorter phrases"
        )
    groups = token_groups(ids)
    if len(groups) != len(phrases):
        raise ModelError(
            f"tokenizer split the prompt {prompt!r} into {len(groups)} phrases, expected "
            f"{len(phrases)}"
        )
    out: dict[str, int] = {}
    for k, (phrase, group) in enumerate(zip(phrases, groups, strict=True)):
        expected = list(tokenizer(phrase, add_special_tokens=False)["input_ids"])
        if [ids[p] for p in group] != expected:
            raise ModelError(f"phrase {phrase!r}: token group {k} of the prompt does not match it")
        out[phrase] = k
    return out


def resize_longest(image: np.ndarray, size: int) -> tuple[np.ndarray, float, float]:
    """Resize ``(H, W, 3)`` so its longest side is ``size``; returns image, ``sx``, ``sy``."""
    from PIL import Image

    h, w = image.shape[:2]
    scale = size / max(h, w)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    if (nw, nh) == (w, h):
        return image, 1.0, 1.0
    out = np.array(Image.fromarray(image).resize((nw, nh), Image.BILINEAR))
    return out, nw / w, nh / h


def augment(
    image: np.ndarray,
    xyxy: np.ndarray,
    rng: np.random.Generator,
    *,
    max_size: int,
    hflip: bool = True,
    scale_jitter: float = 0.2,
) -> tuple[np.ndarray, np.ndarray]:
    """Random horizontal flip and scale jitter; boxes follow the image.

    Args:
        image: ``(H, W, 3) uint8``.
        xyxy: ``(n, 4)`` boxes in pixels of ``image``.
        max_size: longest side before jitter; the result's longest side is
            ``max_size * U(1 - scale_jitter, 1 + scale_jitter)``.

    Returns:
        The new image ``(H', W', 3)`` and its ``(n, 4)`` boxes in its pixels.
    """
    boxes = np.asarray(xyxy, np.float32).reshape(-1, 4)
    if hflip and rng.random() < 0.5:
        image = image[:, ::-1].copy()
        boxes = flip_boxes(boxes, image.shape[1])
    factor = 1.0 + (rng.uniform(-scale_jitter, scale_jitter) if scale_jitter > 0 else 0.0)
    size = max(16, round(max_size * factor))
    image, sx, sy = resize_longest(image, size)
    return image, scale_boxes(boxes, sx, sy)


def make_target(
    xyxy: np.ndarray, phrases: Iterable[str], class_of: dict[str, int], width: int, height: int
) -> dict[str, np.ndarray]:
    """The ``labels`` entry GroundingDino's loss expects for one image (as numpy arrays).

    Returns:
        ``{"class_labels": (n,) int64, "boxes": (n, 4) float32 normalised cxcywh}``.
    """
    phrases = list(phrases)
    missing = [p for p in phrases if p not in class_of]
    if missing:
        raise InputError(f"phrase {missing[0]!r}: expected one of {sorted(class_of)}")
    return {
        "class_labels": np.array([class_of[p] for p in phrases], np.int64),
        "boxes": xyxy_to_cxcywh_norm(xyxy, width, height),
    }
