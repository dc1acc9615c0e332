"""Pair hand crops with their originals: by file-name stem, by a mapping file, or by search.

- **stem**: ``shot_0007_448_v2.png`` and ``shot_0007_crop.png`` pair with ``shot_0007.jpg``:
  the longest original stem that prefixes the crop stem and ends at a separator
  (``_ - . space``) or at the end, so ``shot_0007`` never claims ``shot_00071.png``.
- **mapping file**: CSV (``crop,original`` columns, header optional), JSON object
  ``{crop: original}`` or JSONL rows ``{"crop": ..., "original": ...}``; names may be
  absolute, relative to the folders, or bare file names.
- **search**: :class:`SearchIndex` keeps ORB descriptors of every original (computed once);
  a crop's descriptors vote for originals (a cheap shortlist of ``k``), and only the
  shortlisted originals go through the full :func:`autolabel.seed.locate.locate`.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np

from autolabel.errors import InputError

_SEPARATORS = set("_-. ")


def stem_index(originals: Iterable[Path]) -> dict[str, Path]:
    """Map each original's stem to its path (first one wins on duplicate stems)."""
    out: dict[str, Path] = {}
    for p in originals:
        out.setdefault(Path(p).stem, Path(p))
    return out


def match_stem(crop_stem: str, stems: dict[str, Path]) -> Path | None:
    """The original whose stem is the longest separator-bounded prefix of ``crop_stem``.

    Args:
        crop_stem: e.g. ``"shot_0007_448_v2"``.
        stems: from :func:`stem_index`.

    Returns:
        The path, or None when no original stem prefixes the crop stem.
    """
    for end in range(len(crop_stem), 0, -1):
        if end < len(crop_stem) and crop_stem[end] not in _SEPARATORS:
            continue
        hit = stems.get(crop_stem[:end])
        if hit is not None:
            return hit
    return None


def read_mapping(path: str | Path) -> dict[str, str]:
    """Read an explicit crop -> original mapping file (CSV, JSON or JSONL).

    Raises:
        InputError: unreadable file or rows without both names.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise InputError(f"{path}: cannot read mapping file ({exc.strerror})") from exc
    out: dict[str, str] = {}
    suffix = path.suffix.lower()
    if suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}: expected a JSON object crop -> original ({exc})") from exc
        if not isinstance(data, dict):
            raise InputError(f"{path}: expected a JSON object, got {type(data).__name__}")
        return {str(k): str(v) for k, v in data.items()}
    if suffix == ".jsonl":
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                out[str(row["crop"])] = str(row["original"])
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise InputError(
                    f'{path}:{n}: expected {{"crop": ..., "original": ...}}, got {line[:80]!r}'
                ) from exc
        return out
    for n, row in enumerate(csv.reader(text.splitlines()), 1):
        if not row or not "".join(row).strip():
            continue
        if len(row) < 2:
            raise InputError(f"{path}:{n}: expected 'crop,original', got {row!r}")
        if n == 1 and row[0].strip().lower() == "crop":
            continue
        out[row[0].strip()] = row[1].strip()
    return out


def resolve_mapping(
    mapping: dict[str, str], crops: Sequence[Path], originals: Sequence[Path]
) -> dict[Path, Path | None]:
    """Turn a name mapping into paths (matching absolute paths, relative paths or names).

    Returns:
        crop path -> original path (None if the mapping names no existing original).
    """
    by_name: dict[str, Path] = {}
    for p in originals:
        by_name.setdefault(p.name, p)
        by_name.setdefault(str(p), p)
    keyed: dict[str, str] = {}
    for k, v in mapping.items():
        keyed[k] = v
        keyed.setdefault(Path(k).name, v)
    out: dict[Path, Path | None] = {}
    for c in crops:
        target = keyed.get(str(c)) or keyed.get(c.name)
        if target is None:
            out[c] = None
            continue
        hit = by_name.get(target) or by_name.get(Path(target).name)
        if hit is None and Path(target).is_file():
            hit = Path(target)
        out[c] = hit
    return out


class SearchIndex:
    """Tiny thumbnails of many originals, for shortlisting the originals a crop may come from.

    Each original is kept as a ``side``-px (long side) grey thumbnail plus its RGB version.
    A crop is matched against every thumbnail at a few sizes with normalised
    cross-correlation (the coarse stage of :func:`autolabel.seed.locate.locate` at a much
    lower resolution), minus a colour penalty; the best ``k`` originals form the shortlist.

    Args:
        originals: paths of the originals (the index order is this order).
        load: ``path -> (H, W, 3) uint8`` RGB loader (``autolabel.imageio.load_rgb``).
        side: thumbnail long side, px.
        on_progress: called with the number of originals indexed so far.
    """

    def __init__(
        self,
        originals: Sequence[Path],
        load: Callable[[Path], np.ndarray],
        *,
        side: int = 64,
        on_progress: Callable[[int], None] | None = None,
    ) -> None:
        from autolabel.seed.locate import _resize, to_gray

        self.originals = list(originals)
        self.side = side
        self.errors: dict[int, str] = {}
        self._gray: list[np.ndarray | None] = []
        self._rgb: list[np.ndarray | None] = []
        for i, p in enumerate(self.originals):
            try:
                img = load(p)
            except Exception as exc:
                self.errors[i] = str(exc)
                self._gray.append(None)
                self._rgb.append(None)
            else:
                h, w = img.shape[:2]
                s = side / max(h, w)
                rgb = _resize(np.asarray(img[..., :3], np.float32), w * s, h * s)
                self._rgb.append(rgb)
                self._gray.append(to_gray(rgb))
            if on_progress is not None:
                on_progress(i + 1)

    def __len__(self) -> int:
        return len(self.originals)

    def scores(self, crop: np.ndarray, *, step: float = 1.15, min_side: int = 6) -> np.ndarray:
        """Coarse match score of ``crop`` against every original (higher = better).

        Args:
            crop: ``(h, w, 3) uint8`` RGB crop.
            step: size ratio between tried template sizes.
            min_side: smallest template side, thumbnail px.

        Returns:
            ``(n_originals,) float32``; -2 for unreadable originals.
        """
        import cv2

        from autolabel.seed.locate import CHROMA_TOL, _resize, to_gray

        h, w = crop.shape[:2]
        aspect = h / w
        crop_f = _resize(
            np.asarray(crop[..., :3], np.float32),
            *(
                (w * (2 * self.side / max(h, w)), h * (2 * self.side / max(h, w)))
                if max(h, w) > 2 * self.side
                else (w, h)
            ),
        )
        crop_g = to_gray(crop_f)
        cache: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}
        out = np.full(len(self.originals), -2.0, np.float32)
        for i, (g, rgb) in enumerate(zip(self._gray, self._rgb, strict=True)):
            if g is None or rgb is None:
                continue
            H, W = g.shape
            tw = min(W, H / aspect)
            best = (-2.0, 0, 0, 0, 0)
            while tw >= max(min_side, min_side / aspect):
                key = (round(tw), round(tw * aspect))
                if key not in cache:
                    cache[key] = (_resize(crop_g, *key), _resize(crop_f, *key))
                tpl = cache[key][0]
                if tpl.shape[0] <= H and tpl.shape[1] <= W and tpl.std() > 1e-3:
                    res = cv2.matchTemplate(g, tpl, cv2.TM_CCOEFF_NORMED)
                    _, mx, _, loc = cv2.minMaxLoc(res)
                    if mx > best[0]:
                        best = (mx, loc[0], loc[1], tpl.shape[1], tpl.shape[0])
                tw /= step
            mx, x, y, bw, bh = best
            if mx > -2:
                a = rgb[y : y + bh, x : x + bw] + 1.0
                b = cache[(bw, bh)][1] + 1.0 if (bw, bh) in cache else _resize(crop_f, bw, bh) + 1
                a = a / a.sum(axis=2, keepdims=True)
                b = b / b.sum(axis=2, keepdims=True)
                chroma = float(np.abs(a - b).sum(axis=2).mean())
                mx -= max(0.0, chroma - CHROMA_TOL)
            out[i] = mx
        return out

    def shortlist(self, crop: np.ndarray, k: int = 5) -> list[int]:
        """Indices of the ``k`` best-matching originals, best first."""
        sc = self.scores(crop)
        order = np.argsort(-sc, kind="stable")[:k]
        return [int(i) for i in order if sc[i] > -2]
