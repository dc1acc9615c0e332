"""``seed add``: import hand crops, pair each with its original, locate it, store the result.

Pairing order per crop: an explicit mapping file, else the file-name stem, else a search
over all originals (cheap thumbnail shortlist, then the full locate on the shortlist). A crop
that cannot be located confidently is stored as ``not_found`` (box None) — it still serves
as an exemplar and as caption data; without any originals it is ``no_original``. A crop whose
box fails the strict full-resolution check is ``not_found`` with ``info["flag"] = "loose"``
and its best box in ``info["best_box"]``: a seed box is exact or it is not used.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from autolabel.constants import IMAGE_SUFFIXES
from autolabel.errors import ImageError, InputError
from autolabel.seed.captions import (
    match_captions,
    phrase_from_caption,
    read_captions,
    sidecar_caption,
)
from autolabel.seed.locate import DEFAULT_MIN_SCORE, DEFAULT_VERIFY_SCORE, Match, locate
from autolabel.seed.pair import (
    SearchIndex,
    match_stem,
    read_mapping,
    resolve_mapping,
    stem_index,
)
from autolabel.store.db import Workspace
from autolabel.types import Prompt

#: A search stops early once a shortlisted original matches at least this well.
EARLY_STOP_SCORE = 0.95


@dataclass
class SeedAddReport:
    """Counts of one ``seed add`` call (``loose``: found but failing the strict full-resolution
    check, counted in ``not_found`` too)."""

    crops: int = 0
    located: int = 0
    not_found: int = 0
    no_original: int = 0
    loose: int = 0
    skipped: int = 0
    errors: int = 0
    paired_by: dict[str, int] = field(
        default_factory=lambda: {"mapping": 0, "stem": 0, "search": 0}
    )
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "crops": self.crops,
            "located": self.located,
            "not_found": self.not_found,
            "no_original": self.no_original,
            "loose": self.loose,
            "skipped": self.skipped,
            "errors": self.errors,
            "paired_by": dict(self.paired_by),
            "seconds": round(self.seconds, 3),
        }


def list_images(folder: Path, *, recursive: bool = True) -> list[Path]:
    """Image files under ``folder`` (sorted, absolute).

    Raises:
        InputError: the folder does not exist.
    """
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise InputError(f"{folder}: expected a folder of images, got no such folder")
    it = folder.rglob("*") if recursive else folder.glob("*")
    return sorted(p.resolve() for p in it if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _sha256(path: Path) -> str:
    from autolabel.ingest import file_sha256

    return file_sha256(str(path))


def ensure_image(ws: Workspace, path: Path) -> int | None:
    """The images-table id of ``path``, adding the row (hash + header) if missing."""
    from autolabel.ingest import WalkItem, scan_file
    from autolabel.store.images import find_image, write_scanned

    spath = str(path)
    rec = find_image(ws, spath)
    if rec is None:
        st = path.stat()
        write_scanned(ws, [scan_file(WalkItem(spath, st.st_size, st.st_mtime_ns, None))])
        rec = find_image(ws, spath)
    if rec is None or rec.status == "error":
        return None
    return rec.id


def _locate_best(
    crop: np.ndarray,
    candidates: Sequence[int],
    originals: Sequence[Path],
    load: Callable[[Path], np.ndarray],
    min_score: float,
    min_verify: float = DEFAULT_VERIFY_SCORE,
) -> tuple[Match, int | None, list[dict[str, Any]]]:
    best: tuple[Match, int | None] = (Match(None, -1.0, 0.0, "not_found"), None)
    tried = []
    for i in candidates:
        try:
            m = locate(crop, load(originals[i]), min_score=min_score, min_verify=min_verify)
        except ImageError:
            continue
        tried.append({"original": str(originals[i]), "score": round(m.score, 4)})
        if m.status == "located" and (best[0].status != "located" or m.score > best[0].score):
            best = (m, i)
        elif best[0].status != "located" and m.score > best[0].score:
            best = (m, None)
        if best[0].status == "located" and best[0].score >= EARLY_STOP_SCORE:
            break
    return best[0], best[1], tried


def _tally(ws: Workspace, rows: list[dict[str, Any]], report: SeedAddReport) -> None:
    """Register located originals as images and count the rows into ``report``."""
    for row in rows:
        if row["status"] == "located" and row.get("original_path"):
            row["image_id"] = ensure_image(ws, Path(row["original_path"]))
        setattr(report, row["status"], getattr(report, row["status"]) + 1)
        if "error" in row["info"]:
            report.errors += 1
        if row["info"].get("flag") == "loose":
            report.loose += 1
        pb = row["info"].get("paired_by")
        if pb in report.paired_by:
            report.paired_by[pb] += 1


def add_seed_crops(
    ws: Workspace,
    crops_dir: str | Path,
    *,
    originals_dir: str | Path | None = None,
    captions: str | Path | None = None,
    mapping: str | Path | None = None,
    min_score: float = DEFAULT_MIN_SCORE,
    min_verify: float = DEFAULT_VERIFY_SCORE,
    search_top_k: int = 5,
    prompt_map: Mapping[str, str] | None = None,
    redo: bool = False,
    workers: int = 2,
    on_progress: Callable[[int, int], None] | None = None,
) -> SeedAddReport:
    """Import hand crops into the workspace's seed set.

    Args:
        ws: open workspace.
        crops_dir: folder of crops (searched recursively).
        originals_dir: folder of originals (recursively); None = crops only.
        captions: caption file (``.jsonl``/``.json``/``.csv``); without it sidecar ``.txt``
            files are used.
        mapping: explicit crop -> original file (see :func:`autolabel.seed.pair.read_mapping`).
        min_score: locate score needed for ``located``.
        min_verify: full-resolution score the side-refined box needs for ``located``; a
            crop found but below it is ``not_found`` with ``info["flag"] == "loose"``.
        search_top_k: originals shortlisted per crop when pairing by search.
        prompt_map: caption -> phrase overrides (config ``seed.prompt_map``).
        redo: re-locate crops already stored with the same content.
        workers: threads locating in parallel (OpenCV releases the GIL).
        on_progress: ``(done, total)`` callback.

    Returns:
        A :class:`SeedAddReport`.

    Raises:
        InputError: missing folders, no crops, unreadable caption/mapping files.
    """
    from autolabel.imageio import load_rgb
    from autolabel.store.seed import known_crops, upsert_seed_items

    t0 = time.perf_counter()
    report = SeedAddReport()
    crops = list_images(Path(crops_dir))
    if not crops:
        raise InputError(
            f"{crops_dir}: expected crop images ({', '.join(IMAGE_SUFFIXES)}), found none"
        )
    originals = list_images(Path(originals_dir)) if originals_dir is not None else []
    crop_set = set(crops)
    originals = [p for p in originals if p not in crop_set]
    caption_of: dict[Path, str] = {}
    if captions is not None:
        cap_path = Path(captions)
        caption_of = match_captions(read_captions(cap_path), crops, base=cap_path.parent.resolve())
    mapped: dict[Path, Path | None] = {}
    if mapping is not None:
        mapped = resolve_mapping(read_mapping(mapping), crops, originals)
    stems = stem_index(originals)
    known = known_crops(ws) if not redo else {}

    todo: list[tuple[Path, str]] = []
    for c in crops:
        sha = _sha256(c)
        if not redo and str(c) in known and known[str(c)] == sha:
            report.skipped += 1
            continue
        todo.append((c, sha))
    report.crops = len(crops)
    if on_progress is not None:  # the total is known before the slow part (search index)
        on_progress(0, len(todo))

    index: SearchIndex | None = None
    need_search = any(mapped.get(c) is None and match_stem(c.stem, stems) is None for c, _ in todo)
    if originals and need_search:
        index = SearchIndex(originals, load_rgb)

    def work(item: tuple[Path, str]) -> dict[str, Any]:
        c, sha = item
        caption = caption_of.get(c) or sidecar_caption(c)
        row: dict[str, Any] = {
            "crop_path": str(c),
            "crop_sha256": sha,
            "caption": caption,
            "phrase": phrase_from_caption(caption, prompt_map) or None,
            "status": "no_original",
            "info": {},
        }
        try:
            crop = load_rgb(c)
        except ImageError as exc:
            row["status"] = "not_found"
            row["info"] = {"error": str(exc)}
            return row
        paired_by, original = None, mapped.get(c)
        if original is not None:
            paired_by = "mapping"
        else:
            original = match_stem(c.stem, stems)
            paired_by = "stem" if original is not None else None
        if original is not None:
            try:
                m = locate(crop, load_rgb(original), min_score=min_score, min_verify=min_verify)
            except ImageError as exc:
                row.update(status="not_found", original_path=str(original))
                row["info"] = {"paired_by": paired_by, "error": str(exc)}
                return row
            row["original_path"] = str(original)
            tried: list[dict[str, Any]] = []
        elif index is not None and len(index):
            paired_by = "search"
            shortlist = index.shortlist(crop, k=search_top_k, load=load_rgb)
            m, hit, tried = _locate_best(
                crop, shortlist, originals, load_rgb, min_score, min_verify
            )
            row["original_path"] = None if hit is None else str(originals[hit])
        else:
            return row
        row["score"] = float(m.score)
        row["status"] = m.status
        row["box"] = m.box
        row["info"] = {
            "paired_by": paired_by,
            "verify": None if m.verify is None else round(m.verify, 4),
            "scale": round(m.scale, 5),
            "crop_size": [int(crop.shape[1]), int(crop.shape[0])],
            **m.info,
        }
        if tried:
            row["info"]["search"] = tried
        return row

    rows: list[dict[str, Any]] = []
    done = 0
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for row in pool.map(work, todo):
            rows.append(row)
            done += 1
            if on_progress is not None:
                on_progress(done, len(todo))
    _tally(ws, rows, report)
    upsert_seed_items(ws, rows)
    report.seconds = time.perf_counter() - t0
    return report


def seed_exemplars(ws: Workspace, prompt: str) -> tuple[list[str], list[str], list[int | None]]:
    """The seed crops to use as exemplars for the weight-free ``exemplar`` detector.

    Located crops are preferred (they are known to show the object); with none located every
    seed crop is used. Each exemplar's phrase is its seed phrase, else the first phrase of
    ``prompt``.

    Returns:
        ``(crop_paths, phrases, image_ids)`` in seed-item order; ``image_ids`` name the
        original each crop was located in (None when not located), which lets calibration
        leave a crop out on its own original.
    """
    from autolabel.store.seed import list_seed_items

    items = list_seed_items(ws, status="located") or list_seed_items(ws)
    first = Prompt.parse(prompt).first if prompt and prompt.strip() else "object"
    return (
        [it.crop_path for it in items],
        [it.phrase or first for it in items],
        [it.image_id for it in items],
    )
