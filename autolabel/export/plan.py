"""Planning an export (pure): which labels, file names, crop sizes -> an :class:`ExportPlan`.

Nothing here touches the disk or the database: the plan is computed from the selected labels,
the seed captions and the options, so it can be tested (and inspected) on its own. The crop
tasks it holds are run by :func:`autolabel.export.crops.run_tasks`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from autolabel.errors import InputError
from autolabel.export.crops import CropJob, ImageTask
from autolabel.export.formats import ExportItem
from autolabel.export.geometry import clip_box, expand_box, resize_plan, round_box
from autolabel.geometry import iou
from autolabel.types import Label

if TYPE_CHECKING:
    from autolabel.config import ExportConfig

SEED_IOU = 0.5
"""A seed caption applies to a label whose box overlaps the seed box by at least this IoU."""
_VERSION_OK = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_STEM_BAD = re.compile(r"[^\w.-]+")

SeedCaptions = Mapping[int, Sequence[tuple[tuple[float, float, float, float], str]]]
"""image id -> ``[(seed box xyxy, caption), ...]``."""


@dataclass(frozen=True)
class ImagePlan:
    """One original: its exported items and the crop task that cuts them.

    Attributes:
        image_id: images table id.
        name: unique file-name stem of the image in this export.
        items: the labels of this image, ordered by proposal id.
        task: the crop task (its ``jobs`` are empty when no crop is wanted).
    """

    image_id: int
    name: str
    items: tuple[ExportItem, ...]
    task: ImageTask


@dataclass(frozen=True)
class ExportPlan:
    """Everything an export will write, decided before any pixel is read.

    Attributes:
        version: the version name.
        formats: the formats, canonical order.
        want_crops: whether any format needs crops.
        images: one plan per original with at least one item, ordered by image id.
        too_small: rows of ``too_small.jsonl`` (boxes below ``min_size``).
        skipped: rows of ``skipped.jsonl`` known before cutting (boxes with no area).
    """

    version: str
    formats: tuple[str, ...]
    want_crops: bool
    images: tuple[ImagePlan, ...]
    too_small: tuple[dict[str, Any], ...]
    skipped: tuple[dict[str, Any], ...]


def check_version(version: str | None) -> None:
    """Raise :class:`InputError` unless ``version`` is None or a safe folder name."""
    if version is not None and not _VERSION_OK.match(version):
        raise InputError(
            "version: expected letters, digits, '.', '_' or '-' (max 64, not starting with "
            f"a dot), got {version!r}"
        )


def check_size(size: int, max_size: int) -> None:
    """Refuse a crop size above ``export.max_size`` (memory grows with size squared)."""
    if size > max_size:
        raise InputError(
            f"size: expected at most export.max_size = {max_size} pixels, got {size} "
            "(crops this large take ~size^2 x 12 bytes each; raise export.max_size in the "
            "config to allow it)"
        )


def pick_caption(
    label: Label,
    seeds: Sequence[tuple[tuple[float, float, float, float], str]],
    phrase_captions: Mapping[str, str] | None = None,
) -> tuple[str, str]:
    """THE text rule, so that one dataset's texts are of one kind (full captions where known).

    Reviewed caption > caption of an overlapping seed box on the same image (IoU >= 0.5: the
    seed's own box) > the one seed caption the box's phrase was derived from (``seed
    prompts``; a box found elsewhere by "white sneaker" gets "white sneaker with blue
    stripes", the same text as the seed box of that product) > the phrase itself (a phrase
    typed with ``--prompt``, or one several different captions gave).

    Args:
        label: the label (its ``caption`` is the reviewer's).
        seeds: ``[(seed box xyxy, caption), ...]`` of the label's image.
        phrase_captions: ``{phrase: caption}`` for phrases derived from exactly one seed
            caption (:func:`autolabel.store.seed.phrase_captions`).

    Returns:
        ``(caption, source)`` with source ``reviewed``, ``seed``, ``seed-phrase`` or
        ``phrase``.
    """
    if label.caption:
        return label.caption, "reviewed"
    best, best_iou = None, SEED_IOU
    for box, caption in seeds:
        v = iou(label.box, box)
        if v >= best_iou:
            best, best_iou = caption, v
    if best is not None:
        return best, "seed"
    if phrase_captions:
        full = phrase_captions.get(" ".join(label.phrase.lower().split()))
        if full:
            return full, "seed-phrase"
    return label.phrase, "phrase"


def image_names(labels: Sequence[Label]) -> dict[int, str]:
    """Unique, deterministic, file-system-safe stems per image id.

    A stem is the file name's stem with unsafe characters replaced. A stem that is unique
    (compared case-insensitively, as on case-insensitive file systems) is kept; colliding
    stems become ``<stem>-<image id>``. Such names are unique among themselves (the id after
    the last ``-`` differs), and a kept stem that equals one of them (``x-18.png`` next to
    ``x.png`` and ``sub/x.png`` with id 18) is disambiguated too, until no name repeats.
    """
    stems: dict[int, str] = {}
    for lb in labels:
        if lb.image_id not in stems:
            stems[lb.image_id] = image_stem(lb.image_path)
    return unique_names(stems)


def unique_names(stems: Mapping[int, str]) -> dict[int, str]:
    """:func:`image_names` from the stems per image id (a streaming export passes the stems
    of all its images, read in a first pass)."""
    names = dict(stems)
    plain = set(stems)  # ids still using their bare stem
    while True:
        counts: dict[str, int] = {}
        for s in names.values():
            counts[s.casefold()] = counts.get(s.casefold(), 0) + 1
        clash = [i for i in sorted(plain) if counts[names[i].casefold()] > 1]
        if not clash:
            return names
        for i in clash:
            names[i] = f"{stems[i]}-{i}"
            plain.discard(i)


def image_stem(path: str) -> str:
    """File-system-safe stem of an original (before collisions are resolved)."""
    # os.path, not pathlib: pathlib interns every path part (a table that grows with 10^6 names)
    stem = os.path.splitext(os.path.basename(path))[0]
    return _STEM_BAD.sub("_", stem).strip("._") or "image"


def skip_row(lb: Label, reason: str, detail: str) -> dict[str, Any]:
    """One ``skipped.jsonl`` row."""
    return {
        "proposal_id": lb.proposal_id,
        "image": lb.image_path,
        "box": round_box(lb.box),
        "reason": reason,
        "detail": detail,
    }


@dataclass(frozen=True)
class _Where:
    """Where crops go: ``crops_dir`` is written now, ``final`` is what the files name."""

    crops_dir: Path
    final: Path
    max_pixels: int
    max_side: int
    bundle_dir: Path | None = None
    phrase_captions: Mapping[str, str] = field(default_factory=dict)


def plan_export(
    labels: Sequence[Label],
    seeds: SeedCaptions,
    options: ExportConfig,
    *,
    formats: tuple[str, ...],
    want_crops: bool,
    version: str,
    crops_dir: Path,
    final: Path,
    max_pixels: int,
    max_side: int,
    bundle_dir: Path | None = None,
    names: Mapping[int, str] | None = None,
    phrase_captions: Mapping[str, str] | None = None,
) -> ExportPlan:
    """Decide names, captions, regions, crop sizes and skips for every label.

    Args:
        labels: the selected labels.
        seeds: seed captions per image id.
        options: the export section (size, resize, margin, min_size, absolute_paths).
        formats: the formats (canonical order), recorded in the plan.
        want_crops: whether crops are cut at all.
        version: the version name (part of every crop name).
        crops_dir: folder the crop jobs write to (the temporary version's ``crops``).
        final: the version folder once renamed in (for ``absolute_paths``).
        max_pixels: decompression-bomb guard for reading originals.
        max_side: longest-side guard for reading originals.
        bundle_dir: folder the originals' bundle copies go to (None: no copies).
        names: file-name stem per image id (default: :func:`image_names` of ``labels``;
            a streaming export passes the names resolved over all its labels).
        phrase_captions: ``{phrase: the one seed caption it was derived from}``
            (see :func:`pick_caption`).
    """
    names = image_names(labels) if names is None else names
    by_image: dict[int, list[Label]] = {}
    for lb in labels:
        by_image.setdefault(lb.image_id, []).append(lb)
    where = _Where(crops_dir, final, max_pixels, max_side, bundle_dir, phrase_captions or {})
    too_small: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    images: list[ImagePlan] = []
    for image_id in sorted(by_image):
        group = sorted(by_image[image_id], key=lambda lb: lb.proposal_id)
        plan = _plan_image(
            image_id, names[image_id], group, seeds.get(image_id, ()), options,
            want_crops=want_crops, version=version, where=where,
            too_small=too_small, skipped=skipped,
        )  # fmt: skip
        if plan is not None:
            images.append(plan)
    return ExportPlan(
        version=version,
        formats=formats,
        want_crops=want_crops,
        images=tuple(images),
        too_small=tuple(too_small),
        skipped=tuple(skipped),
    )


@dataclass(frozen=True)
class _Planned:
    """What one label turned into: an item (and maybe a crop job), or a skip row."""

    item: ExportItem | None = None
    job: CropJob | None = None
    too_small: dict[str, Any] | None = None
    skipped: dict[str, Any] | None = None


def _plan_image(
    image_id: int,
    name: str,
    group: Sequence[Label],
    seeds: Sequence[tuple[tuple[float, float, float, float], str]],
    opts: ExportConfig,
    *,
    want_crops: bool,
    version: str,
    where: _Where,
    too_small: list[dict[str, Any]],
    skipped: list[dict[str, Any]],
) -> ImagePlan | None:
    """Items and crop jobs of one image (labels ordered by proposal id); None if no item."""
    items: list[ExportItem] = []
    jobs: list[CropJob] = []
    for k, lb in enumerate(group, start=1):
        suffix = f"_{k}" if len(group) > 1 else ""
        crop_name = f"{name}_{opts.size}_{version}{suffix}.png"
        planned = _plan_label(lb, crop_name, seeds, opts, want_crops=want_crops, where=where)
        if planned.skipped is not None:
            skipped.append(planned.skipped)
        if planned.too_small is not None:
            too_small.append(planned.too_small)
        if planned.job is not None:
            jobs.append(planned.job)
        if planned.item is not None:
            items.append(planned.item)
    if not items:
        return None
    first = group[0]
    task = ImageTask(
        path=first.image_path,
        width=first.width,
        height=first.height,
        jobs=tuple(jobs),
        expected_sha256=first.image_sha256,
        max_pixels=where.max_pixels,
        max_side=where.max_side,
        bundle_dir=None if where.bundle_dir is None else str(where.bundle_dir),
        bundle_stem=name,
    )
    return ImagePlan(image_id=image_id, name=name, items=tuple(items), task=task)


def _plan_label(
    lb: Label,
    crop_name: str,
    seeds: Sequence[tuple[tuple[float, float, float, float], str]],
    opts: ExportConfig,
    *,
    want_crops: bool,
    where: _Where,
) -> _Planned:
    """Caption, crop region, size decision and crop job of one label."""
    box = clip_box(lb.box, lb.width, lb.height)
    if box[2] - box[0] < 1 or box[3] - box[1] < 1:
        return _Planned(skipped=skip_row(lb, "empty-box", "box has no area inside the image"))
    caption, source = pick_caption(lb, seeds, where.phrase_captions)
    region = expand_box(box, opts.margin, lb.width, lb.height)
    sizing = resize_plan(region[2] - region[0], region[3] - region[1], opts.size, opts.resize)
    item = ExportItem(
        label=lb,
        caption=caption,
        caption_source=source,
        crop=None,
        crop_name=crop_name,
        region=region,
        status="ok",
    )
    if not want_crops:
        return _Planned(item=replace(item, status="no-crop"))
    # upscaling is bounded too: a box is cut only if size <= max_upscale x its deciding side
    if sizing.deciding_side < max(opts.min_size, opts.size / opts.max_upscale):
        row = {
            "proposal_id": lb.proposal_id,
            "image": lb.image_path,
            "box": round_box(box),
            "side": round(sizing.deciding_side, 2),
            "min_size": opts.min_size,
            "max_upscale": opts.max_upscale,
            "resize": opts.resize,
        }
        return _Planned(item=replace(item, status="too-small"), too_small=row)
    final_crops = os.path.join(str(where.final), "crops")
    crop = os.path.join(final_crops, crop_name) if opts.absolute_paths else f"crops/{crop_name}"
    job = CropJob(
        out_path=os.path.join(str(where.crops_dir), crop_name),
        region=region,
        out_size=sizing.out_size,
        canvas=sizing.canvas,
        offset=sizing.offset,
    )
    return _Planned(item=replace(item, crop=crop), job=job)
