"""Core records: :class:`Proposals` (parallel numpy arrays), :class:`Prompt` and the rows the
store returns."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from autolabel.errors import EmptyPromptError, ShapeError

#: Characters that end a phrase: Grounding DINO's delimiters ``.`` and ``?`` (and their
#: full-width forms), ``;`` and line breaks.
PROMPT_DELIMITERS = re.compile(r"[.?;\n。．？；]")


@dataclass(frozen=True)
class Prompt:
    """What to detect: distinct phrases in order, e.g. ``("white sneaker", "handbag")``.

    Build it with :meth:`parse`; phrases are lower-case, single-spaced, free of delimiter
    characters and never empty; duplicates keep their first position. Two prompts are equal
    when their phrases are.

    Attributes:
        phrases: the phrases, at least one.
    """

    phrases: tuple[str, ...]

    def __post_init__(self) -> None:
        if not self.phrases:
            raise EmptyPromptError("prompt: expected at least one phrase, got none")

    @classmethod
    def parse(cls, value: str | Prompt | Iterable[str]) -> Prompt:
        """Parse ``"White sneaker. handbag"``, ``"白色运动鞋。手提包"`` or ``["a", "b"]``.

        A string is split at ``.``, ``?``, ``;``, line breaks and their full-width forms;
        list items are single phrases (delimiters inside them become spaces).

        Raises:
            EmptyPromptError: no phrase is left (``""``, ``" . "``, ``[]``).
        """
        if isinstance(value, Prompt):
            return value
        if isinstance(value, str):
            parts: Iterable[str] = PROMPT_DELIMITERS.split(value)
        else:
            parts = [str(v) for v in value]
        phrases: list[str] = []
        for part in parts:
            phrase = " ".join(PROMPT_DELIMITERS.sub(" ", part).lower().split())
            if phrase and phrase not in phrases:
                phrases.append(phrase)
        if not phrases:
            raise EmptyPromptError(
                f"prompt: expected phrases separated by '. ' (e.g. 'white sneaker. handbag'), "
                f"got {value!r}"
            )
        return cls(tuple(phrases))

    @classmethod
    def first_of(cls, *candidates: str | Prompt | Iterable[str] | None) -> Prompt:
        """The one precedence rule: the first candidate given wins.

        Callers pass ``(flag, workspace prompt, config prompt)`` in that order; see
        ``autolabel.commands._common.resolve_prompt``.

        Raises:
            EmptyPromptError: every candidate is None or empty, or the winner has no phrase.
        """
        for candidate in candidates:
            if candidate is None or (isinstance(candidate, str) and not candidate.strip()):
                continue
            return cls.parse(candidate)
        raise EmptyPromptError(
            "no prompt: expected --prompt 'white sneaker. handbag', a workspace prompt (set "
            "by `autolabel seed prompts` or an earlier `propose --prompt`) or propose.prompt / "
            "seed.prompt in the config, got none"
        )

    @property
    def text(self) -> str:
        """The text the detector reads: ``"white sneaker. handbag."``."""
        return ". ".join(self.phrases) + "."

    def __str__(self) -> str:
        """The stored and shown form: ``"white sneaker. handbag"`` (workspace, run keys)."""
        return ". ".join(self.phrases)

    @property
    def first(self) -> str:
        """The first phrase (the one given to boxes that have none)."""
        return self.phrases[0]


def _as_array(value: Any, dtype: Any, name: str) -> np.ndarray:
    try:
        return np.asarray(value, dtype=dtype)
    except (TypeError, ValueError) as exc:
        raise ShapeError(f"{name}: expected values convertible to {dtype}, got {exc}") from exc


@dataclass(frozen=True, eq=False)
class Proposals:
    """Boxes proposed for one image, as parallel arrays of length ``n``.

    Attributes:
        xyxy: ``(n, 4) float32`` boxes ``[x0, y0, x1, y1]`` in pixels of the EXIF-corrected
            image.
        score: ``(n,) float32`` detector confidence, higher = more likely correct.
        phrase: ``(n,)`` object array of prompt phrases (str).
        mask: optional ``(n, H, W) bool`` instance masks.
        data: extra per-box signals, each an array whose first dimension is ``n``.
    """

    xyxy: np.ndarray
    score: np.ndarray
    phrase: np.ndarray
    mask: np.ndarray | None = None
    data: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        xyxy = _as_array(self.xyxy, np.float32, "xyxy")
        if xyxy.size == 0:
            xyxy = xyxy.reshape(0, 4)
        if xyxy.ndim != 2 or xyxy.shape[1] != 4:
            raise ShapeError(f"xyxy: expected shape (n, 4), got {xyxy.shape}")
        n = xyxy.shape[0]
        score = _as_array(self.score, np.float32, "score").reshape(-1)
        if score.shape != (n,):
            raise ShapeError(f"score: expected shape ({n},), got {score.shape}")
        phrase = np.empty(n, dtype=object)
        raw_phrase = list(self.phrase) if not isinstance(self.phrase, str) else [self.phrase]
        if len(raw_phrase) != n:
            raise ShapeError(f"phrase: expected {n} strings, got {len(raw_phrase)}")
        for i, p in enumerate(raw_phrase):
            phrase[i] = str(p)
        mask = self.mask
        if mask is not None:
            mask = np.asarray(mask).astype(bool, copy=False)
            if mask.ndim != 3 or mask.shape[0] != n:
                raise ShapeError(f"mask: expected shape ({n}, H, W), got {mask.shape}")
        data: dict[str, np.ndarray] = {}
        for key, value in dict(self.data).items():
            arr = np.asarray(value)
            if arr.ndim == 0 or arr.shape[0] != n:
                raise ShapeError(
                    f"data[{key!r}]: expected first dimension {n}, got shape {arr.shape}"
                )
            data[key] = arr
        object.__setattr__(self, "xyxy", xyxy)
        object.__setattr__(self, "score", score)
        object.__setattr__(self, "phrase", phrase)
        object.__setattr__(self, "mask", mask)
        object.__setattr__(self, "data", data)

    @classmethod
    def empty(cls, data_keys: Iterable[str] = ()) -> Proposals:
        """Return a ``Proposals`` with no boxes (optionally with empty signal arrays)."""
        return cls(
            xyxy=np.zeros((0, 4), np.float32),
            score=np.zeros(0, np.float32),
            phrase=np.empty(0, dtype=object),
            data={k: np.zeros(0, np.float32) for k in data_keys},
        )

    def __len__(self) -> int:
        return int(self.xyxy.shape[0])

    def __getitem__(self, index: int | slice | Sequence[int] | np.ndarray) -> Proposals:
        """Select boxes by int, slice, int array or boolean mask; always returns Proposals."""
        if isinstance(index, (int, np.integer)):
            index = [int(index)]
        idx = np.asarray(index) if not isinstance(index, slice) else index
        if isinstance(idx, np.ndarray):
            if idx.dtype == bool:
                if idx.shape != (len(self),):
                    raise ShapeError(
                        f"boolean index: expected shape ({len(self)},), got {idx.shape}"
                    )
            elif idx.size == 0:
                idx = idx.astype(np.int64)
            elif not np.issubdtype(idx.dtype, np.integer):
                raise ShapeError(f"index: expected int or bool array, got dtype {idx.dtype}")
        return Proposals(
            xyxy=self.xyxy[idx],
            score=self.score[idx],
            phrase=self.phrase[idx],
            mask=None if self.mask is None else self.mask[idx],
            data={k: v[idx] for k, v in self.data.items()},
        )

    @classmethod
    def merge(cls, items: Sequence[Proposals]) -> Proposals:
        """Concatenate several ``Proposals``.

        Signals present in only some inputs are filled with NaN for the others. Masks are kept
        only if every non-empty input has masks of the same ``(H, W)``.
        """
        items = [p for p in items]
        if not items:
            return cls.empty()
        nonempty = [p for p in items if len(p)] or items[:1]
        keys: list[str] = []
        for p in items:
            keys.extend(k for k in p.data if k not in keys)
        data: dict[str, np.ndarray] = {}
        for k in keys:
            parts = []
            for p in nonempty:
                if k in p.data:
                    parts.append(np.asarray(p.data[k]))
                else:
                    parts.append(np.full(len(p), np.nan, np.float32))
            data[k] = np.concatenate(parts) if parts else np.zeros(0, np.float32)
        masks = [p.mask for p in nonempty]
        mask = None
        if all(m is not None for m in masks):
            shapes = {m.shape[1:] for m in masks}  # type: ignore[union-attr]
            if len(shapes) > 1:
                raise ShapeError(f"merge: masks must share (H, W), got {sorted(shapes)}")
            mask = np.concatenate(masks)  # type: ignore[arg-type]
        return cls(
            xyxy=np.concatenate([p.xyxy for p in nonempty]),
            score=np.concatenate([p.score for p in nonempty]),
            phrase=np.concatenate([p.phrase for p in nonempty]),
            mask=mask,
            data=data,
        )

    def with_data(self, **signals: np.ndarray) -> Proposals:
        """Return a copy with extra per-box signals added (or replaced)."""
        return Proposals(self.xyxy, self.score, self.phrase, self.mask, {**self.data, **signals})

    def signals_row(self, i: int) -> dict[str, float]:
        """Return box ``i``'s scalar signals as a JSON-friendly dict (NaN -> omitted)."""
        out: dict[str, float] = {}
        for k, v in self.data.items():
            val = v[i]
            if np.ndim(val) == 0:
                f = float(val)
                if not np.isnan(f):
                    out[k] = f
        return out


@dataclass(frozen=True)
class ImageRecord:
    """One row of the images table.

    ``status`` is ``ok``, ``error`` (``error`` holds ``reason`` or ``reason: detail``) or
    ``duplicate`` (same content hash as image ``duplicate_of``). ``width``/``height`` are of
    the EXIF-corrected image; ``size`` is in bytes.
    """

    id: int
    path: str
    sha256: str | None
    width: int | None
    height: int | None
    status: str
    error: str | None = None
    format: str | None = None
    size: int | None = None
    duplicate_of: int | None = None


@dataclass(frozen=True)
class SeedItem:
    """One hand crop and where it was found (``box`` in original pixels, or None)."""

    id: int
    crop_path: str
    original_path: str | None
    image_id: int | None
    box: tuple[float, float, float, float] | None
    score: float | None
    status: str
    caption: str | None
    phrase: str | None


@dataclass(frozen=True)
class Run:
    """A propose run: which model with which prompt and thresholds."""

    id: int
    detector: str
    model: str
    model_version: str
    refiner: str | None
    prompt: str
    box_threshold: float
    text_threshold: float
    key: str
    config: Mapping[str, Any]
    started_at: str
    finished_at: str | None


@dataclass(frozen=True)
class Label:
    """A box that ended up in the dataset (auto-accepted or reviewed), with provenance."""

    proposal_id: int
    image_id: int
    image_path: str
    image_sha256: str | None
    width: int
    height: int
    box: tuple[float, float, float, float]
    phrase: str
    caption: str | None
    score: float
    route: str
    source: str
    run_id: int
    reviewer: str | None
    decided_at: str | None
