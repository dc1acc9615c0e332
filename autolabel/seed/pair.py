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
import threading
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np

from autolabel.errors import InputError

_SEPARATORS = set("_-. ")
#: In the search's stage 1 a smaller template must beat a larger one by this much.
STAGE1_TIE = 0.03


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
    """Small thumbnails of many originals, for shortlisting the originals a crop may come from.

    Each original is kept as an RGB ``uint8`` thumbnail of ``side`` px on the long side
    (~15 KB at 96 px). A crop is matched in two stages, both with normalised
    cross-correlation over a range of sizes (the coarse stage of
    :func:`autolabel.seed.locate.locate` at a lower resolution):

    1. every original at ``side / 2`` px; thumbnails of equal shape are stacked into one tall
       image so each template size is a single ``cv2.matchTemplate`` call;
    2. the best ``stage2`` originals at ``side`` px with finer size steps, minus the colour
       penalty of :func:`autolabel.seed.locate.chroma_distance`.

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
        side: int = 96,
        on_progress: Callable[[int], None] | None = None,
    ) -> None:
        from autolabel.seed.locate import _resize

        self.originals = list(originals)
        self.side = side
        self.errors: dict[int, str] = {}
        self._rgb: list[np.ndarray | None] = []
        for i, p in enumerate(self.originals):
            try:
                img = load(p)
            except Exception as exc:  # an unreadable original is skipped, not fatal
                self.errors[i] = str(exc)
                self._rgb.append(None)
            else:
                h, w = img.shape[:2]
                s = side / max(h, w)
                self._rgb.append(_resize(np.ascontiguousarray(img[..., :3]), w * s, h * s))
            if on_progress is not None:
                on_progress(i + 1)
        self._groups: list[tuple[np.ndarray, np.ndarray, int, int]] | None = None
        self._groups_lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.originals)

    def _small_groups(self) -> list[tuple[np.ndarray, np.ndarray, int, int]]:
        """Stage-1 thumbnails grouped by shape and tiled into mosaics of ``cols`` columns:
        ``[(indices, (rows*h, cols*w) float32 mosaic, h, w)]``.

        Built once, under a lock, and published only when complete: seed add searches from
        several threads, and a half-built list made a crop ``not_found`` (score -1).
        """
        with self._groups_lock:
            if self._groups is None:
                from autolabel.seed.locate import _resize, to_gray

                by_shape: dict[tuple[int, int], list[tuple[int, np.ndarray]]] = {}
                for i, rgb in enumerate(self._rgb):
                    if rgb is None:
                        continue
                    h, w = rgb.shape[:2]
                    g = to_gray(_resize(rgb, w / 2, h / 2))
                    by_shape.setdefault(g.shape, []).append((i, g))
                groups = []
                for (h, w), items in by_shape.items():
                    n = len(items)
                    cols = max(1, min(n, round(np.sqrt(n * h / w))))
                    rows = -(-n // cols)
                    mosaic = np.zeros((rows * h, cols * w), np.float32)
                    for k, (_, g) in enumerate(items):
                        r, c = divmod(k, cols)
                        mosaic[r * h : (r + 1) * h, c * w : (c + 1) * w] = g
                    groups.append((np.array([i for i, _ in items]), mosaic, h, w))
                self._groups = groups
        return self._groups

    def _stage1(
        self, crop_g: np.ndarray, step: float, min_side: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Best NCC per original over template sizes, and its box in stage-1 pixels.

        Returns:
            ``(scores (n,), boxes (n, 4))``; -2 / zeros for unreadable originals.
        """
        import cv2

        from autolabel.seed.locate import _resize

        aspect = crop_g.shape[0] / crop_g.shape[1]
        out = np.full(len(self.originals), -2.0, np.float32)
        boxes = np.zeros((len(self.originals), 4), np.float32)
        for idx, mosaic, H, W in self._small_groups():
            n = len(idx)
            rows, cols = mosaic.shape[0] // H, mosaic.shape[1] // W
            tw = min(W, H / aspect)
            while tw >= max(min_side, min_side / aspect):
                tpl = _resize(crop_g, tw, tw * aspect)
                th, tw_ = tpl.shape
                tw /= step
                if th > H or tw_ > W or tpl.std() < 1e-3:
                    continue
                res = np.full(mosaic.shape, -2.0, np.float32)
                r = cv2.matchTemplate(mosaic, tpl, cv2.TM_CCOEFF_NORMED)
                res[: r.shape[0], : r.shape[1]] = np.nan_to_num(r, nan=-2.0)
                # only windows that lie inside one tile
                hv, wv = H - th + 1, W - tw_ + 1
                res = res.reshape(rows, H, cols, W)[:, :hv, :, :wv]
                flat = res.transpose(0, 2, 1, 3).reshape(rows * cols, hv * wv)[:n]
                arg = flat.argmax(axis=1)
                best = flat[np.arange(n), arg]
                # sizes run large to small: a smaller box (e.g. a thumbnail of the same photo)
                # must win clearly to replace a larger one
                better = best > out[idx] + STAGE1_TIE
                out[idx[better]] = best[better]
                y, x = np.divmod(arg[better], wv)
                boxes[idx[better]] = np.stack([x, y, x + tw_, y + th], axis=1)
        return out, boxes

    def shortlist(
        self,
        crop: np.ndarray,
        k: int = 5,
        *,
        load: Callable[[Path], np.ndarray] | None = None,
        rescore: int = 20,
        step: float = 1.12,
        min_side: int = 6,
    ) -> list[int]:
        """Indices of the ``k`` originals that best match ``crop``, best first.

        Stage 1 ranks every original on small thumbnails; with ``load``, the best
        ``rescore`` are then loaded and re-ranked by
        :func:`autolabel.seed.locate.score_box` at the stage-1 box (full-resolution
        verification, which tells apart originals that merely show similar content).

        Args:
            crop: ``(h, w, 3) uint8`` RGB crop.
            k: shortlist length.
            load: loader for the re-ranking (None = stage 1 only).
            rescore: originals re-ranked.
            step: size ratio between template sizes in stage 1.
            min_side: smallest template side in stage 1, px.
        """
        from autolabel.seed.locate import _resize, score_box, to_gray

        h, w = crop.shape[:2]
        s = 0.5 * min(1.0, 2 * self.side / max(h, w))
        crop_g = to_gray(_resize(np.ascontiguousarray(crop[..., :3]), w * s, h * s))
        s1, boxes = self._stage1(crop_g, step, min_side)
        order = [int(i) for i in np.argsort(-s1, kind="stable") if s1[i] > -2]
        if load is None:
            return order[:k]
        scored = []
        for i in order[:rescore]:
            try:
                img = load(self.originals[i])
            except Exception:  # an unreadable original is skipped, not fatal
                continue
            f = max(img.shape[:2]) / (self.side / 2)  # original px per stage-1 px
            b = boxes[i] * f
            sc, _ = score_box(crop, img, (float(b[0]), float(b[1]), float(b[2]), float(b[3])))
            scored.append((sc, i))
        scored.sort(key=lambda t: -t[0])
        return [i for _, i in scored[:k]]
