"""The export pipeline: labels -> crops + dataset files + manifest, atomically and reproducibly.

Layout of an export folder ``OUT``::

    OUT/LATEST              name of the newest complete version (replaced atomically)
    OUT/v1/                 one complete version (never modified after it is renamed in)
        export.json         options, counts and the list of files
        manifest.jsonl      one row per label: source, sha256, box, run, route, reviewer ...
        crops/<stem>_<size>_<version>[_<k>].png
        swift.jsonl  swift_messages.jsonl  swift_grounding.jsonl  swift_objects.jsonl
        coco.json  yolo/  labelstudio.json  labelstudio_config.xml  odvg.jsonl ...
        too_small.jsonl     boxes not cropped because they are below --min-size
        skipped.jsonl       labels left out (original missing, changed or unreadable)

A version is built in ``OUT/.tmp-<version>-<pid>`` and renamed into place only when
complete, so a crash (even ``kill -9``) leaves every earlier version and ``LATEST`` intact.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autolabel.errors import ConflictError, InputError
from autolabel.export.formats import (
    CROP_FORMATS,
    DEFAULT_INSTRUCTION,
    FORMATS,
    ExportImage,
    ExportItem,
    categories,
    coco_dict,
    labelstudio_config,
    labelstudio_tasks,
    odvg_rows,
    swift_grounding_rows,
    swift_messages_rows,
    swift_objects_rows,
    swift_rows,
    yolo_data_yaml,
    yolo_label_text,
)
from autolabel.export.geometry import (
    RESIZE_MODES,
    clip_box,
    expand_box,
    resize_plan,
    round_box,
)
from autolabel.geometry import iou
from autolabel.store.db import Workspace
from autolabel.types import Label

LATEST = "LATEST"
_VERSION_OK = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_STEM_BAD = re.compile(r"[^\w.-]+")
_TMP_RE = re.compile(r"^\.tmp-(.+)-(\d+)$")
SEED_IOU = 0.5
"""A seed caption applies to a label whose box overlaps the seed box by at least this IoU."""


@dataclass(frozen=True)
class ExportOptions:
    """What to export and how (mirrors the ``export`` config section and CLI flags)."""

    size: int = 448
    resize: str = "fit"
    margin: float = 0.0
    min_size: int = 224
    version: str | None = None
    formats: tuple[str, ...] = FORMATS
    include: str = "accepted"
    absolute_paths: bool = False
    since: str | None = None
    workers: int = 2
    instruction: str = DEFAULT_INSTRUCTION
    labelstudio_root: str = "/"
    max_pixels: int = 200_000_000
    max_side: int = 30_000


@dataclass
class ExportResult:
    """Summary of one export.

    Attributes:
        version: the version written.
        path: the version folder.
        counts: ``labels``, ``crops``, ``too_small``, ``skipped``, ``images``.
        files: files written, relative to ``path``.
    """

    version: str
    path: Path
    counts: dict[str, int] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)


def parse_formats(value: str | Sequence[str]) -> tuple[str, ...]:
    """``"swift,coco"`` or a list -> validated tuple in canonical order (``all`` = every one)."""
    parts = value.split(",") if isinstance(value, str) else list(value)
    names = [p.strip() for p in parts if p.strip()]
    if not names:
        raise InputError(f"formats: expected at least one of {', '.join(FORMATS)}, got none")
    if "all" in names:
        return FORMATS
    bad = [n for n in names if n not in FORMATS]
    if bad:
        raise InputError(
            f"formats: expected names from {', '.join(FORMATS)} (or all), got {', '.join(bad)}"
        )
    return tuple(f for f in FORMATS if f in names)


def _validate(opts: ExportOptions) -> None:
    from autolabel.store.labels import INCLUDE_CHOICES

    if opts.resize not in RESIZE_MODES:
        raise InputError(f"resize: expected one of {', '.join(RESIZE_MODES)}, got {opts.resize!r}")
    if opts.size < 8:
        raise InputError(f"size: expected at least 8 pixels, got {opts.size}")
    if opts.min_size < 0:
        raise InputError(f"min-size: expected >= 0 pixels, got {opts.min_size}")
    if not 0 <= opts.margin <= 100:
        raise InputError(f"margin: expected a percentage in 0..100, got {opts.margin}")
    if opts.include not in INCLUDE_CHOICES:
        raise InputError(
            f"include: expected one of {', '.join(INCLUDE_CHOICES)}, got {opts.include!r}"
        )
    if opts.workers < 1:
        raise InputError(f"workers: expected >= 1, got {opts.workers}")
    if opts.version is not None and not _VERSION_OK.match(opts.version):
        raise InputError(
            "version: expected letters, digits, '.', '_' or '-' (max 64, not starting with "
            f"a dot), got {opts.version!r}"
        )
    parse_formats(opts.formats)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale(out: Path) -> list[str]:
    """Remove temp folders left by crashed exports (their process is gone); returns names."""
    removed = []
    if not out.is_dir():
        return removed
    for entry in sorted(out.iterdir()):
        m = _TMP_RE.match(entry.name)
        if m and entry.is_dir() and not _pid_alive(int(m.group(2))):
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry.name)
    return removed


def read_latest(out: str | Path) -> str | None:
    """The version named in ``OUT/LATEST`` (None if there is none)."""
    p = Path(out) / LATEST
    try:
        return p.read_text(encoding="utf-8").strip() or None
    except FileNotFoundError:
        return None


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _jsonl(rows: Sequence[dict[str, Any]]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in rows)


def _json(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, sort_keys=True, indent=1) + "\n"


def pick_caption(
    label: Label, seeds: Sequence[tuple[tuple[float, float, float, float], str]]
) -> tuple[str, str]:
    """Reviewed caption > seed caption of an overlapping seed box (IoU >= 0.5) > phrase.

    Returns:
        ``(caption, source)`` with source ``reviewed``, ``seed`` or ``phrase``.
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
    return label.phrase, "phrase"


def _select_labels(ws: Workspace, opts: ExportOptions) -> tuple[list[Label], dict[str, Any]]:
    from autolabel.store import exports as store
    from autolabel.store.labels import iter_labels

    labels = list(iter_labels(ws, include=opts.include))
    info: dict[str, Any] = {}
    if opts.since:
        prev = store.get_export(ws, None if opts.since == "last" else opts.since)
        done = store.exported_proposal_ids(ws, up_to_export_id=int(prev["id"]))
        changed = store.proposals_decided_after(ws, int(prev["max_decision_id"] or 0))
        labels = [lb for lb in labels if lb.proposal_id not in done or lb.proposal_id in changed]
        info = {"since": prev["version"]}
    return labels, info


def _image_names(labels: Sequence[Label]) -> dict[int, str]:
    """Unique, file-system-safe stems per image id (``stem-<id>`` when stems collide)."""
    stems: dict[int, str] = {}
    for lb in labels:
        if lb.image_id not in stems:
            stem = _STEM_BAD.sub("_", Path(lb.image_path).stem).strip("._") or "image"
            stems[lb.image_id] = stem
    counts: dict[str, int] = {}
    for s in stems.values():
        counts[s] = counts.get(s, 0) + 1
    return {i: (s if counts[s] == 1 else f"{s}-{i}") for i, s in stems.items()}


def export_dataset(
    ws: Workspace,
    out: str | Path,
    options: ExportOptions | None = None,
    *,
    on_progress: Callable[[int, int], None] | None = None,
) -> ExportResult:
    """Export the workspace's labels as a new version under ``out``.

    Args:
        ws: the workspace.
        out: export folder (created if missing); the version goes to ``out/<version>``.
        options: see :class:`ExportOptions`.
        on_progress: called with ``(images done, images total)`` while crops are cut.

    Returns:
        The :class:`ExportResult` (version folder, counts, files).

    Raises:
        InputError: an option is invalid.
        ConflictError: ``out/<version>`` already exists.
        NotFoundError: ``since`` names no earlier export.
    """
    from autolabel.export.crops import CropJob, ImageTask, run_tasks
    from autolabel.store import exports as store
    from autolabel.store.runs import get_run

    opts = options or ExportOptions()
    _validate(opts)
    formats = parse_formats(opts.formats)
    out = Path(out).expanduser().resolve()
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: expected a folder for --out, got a file")
    out.mkdir(parents=True, exist_ok=True)
    clean_stale(out)
    existing = [p.name for p in out.iterdir() if p.is_dir() and not p.name.startswith(".")]
    version = opts.version or store.next_version(ws, existing)
    final = out / version
    if final.exists():
        raise ConflictError(
            f"{final}: version {version!r} already exists there; choose another --version "
            "or another --out (exports are never overwritten)"
        )
    max_decision, max_proposal = store.high_water_marks(ws)
    labels, since_info = _select_labels(ws, opts)
    seeds = store.seed_captions(ws)
    names = _image_names(labels)
    want_crops = bool(CROP_FORMATS & set(formats))

    tmp = out / f".tmp-{version}-{os.getpid()}"
    crops_dir = tmp / "crops"
    crops_dir.mkdir(parents=True)
    try:
        # -- plan: items per image, crop jobs ---------------------------------------------
        by_image: dict[int, list[Label]] = {}
        for lb in labels:
            by_image.setdefault(lb.image_id, []).append(lb)
        too_small: list[dict[str, Any]] = []
        skipped: list[dict[str, Any]] = []
        plans: dict[int, tuple[list[ExportItem], ImageTask]] = {}
        for image_id in sorted(by_image):
            group = sorted(by_image[image_id], key=lambda lb: lb.proposal_id)
            first = group[0]
            items: list[ExportItem] = []
            jobs: list[CropJob] = []
            for k, lb in enumerate(group, start=1):
                suffix = f"_{k}" if len(group) > 1 else ""
                crop_name = f"{names[image_id]}_{opts.size}_{version}{suffix}.png"
                caption, source = pick_caption(lb, seeds.get(image_id, ()))
                box = clip_box(lb.box, lb.width, lb.height)
                if box[2] - box[0] < 1 or box[3] - box[1] < 1:
                    skipped.append(_skip_row(lb, "empty-box", "box has no area inside the image"))
                    continue
                region = expand_box(box, opts.margin, lb.width, lb.height)
                plan = resize_plan(
                    region[2] - region[0], region[3] - region[1], opts.size, opts.resize
                )
                status, crop = "ok", None
                if not want_crops:
                    status = "no-crop"
                elif plan.deciding_side < opts.min_size:
                    status = "too-small"
                    too_small.append(
                        {
                            "proposal_id": lb.proposal_id,
                            "image": lb.image_path,
                            "box": round_box(box),
                            "side": round(plan.deciding_side, 2),
                            "min_size": opts.min_size,
                            "resize": opts.resize,
                        }
                    )
                else:
                    crop = (
                        str(final / "crops" / crop_name)
                        if opts.absolute_paths
                        else f"crops/{crop_name}"
                    )
                    jobs.append(
                        CropJob(
                            out_path=str(crops_dir / crop_name),
                            region=region,
                            out_size=plan.out_size,
                            canvas=plan.canvas,
                            offset=plan.offset,
                        )
                    )
                items.append(
                    ExportItem(
                        label=lb,
                        caption=caption,
                        caption_source=source,
                        crop=crop,
                        crop_name=crop_name,
                        region=region,
                        status=status,
                    )
                )
            if items:
                task = ImageTask(
                    path=first.image_path,
                    width=first.width,
                    height=first.height,
                    jobs=tuple(jobs),
                    expected_sha256=first.image_sha256,
                    max_pixels=opts.max_pixels,
                    max_side=opts.max_side,
                )
                plans[image_id] = (items, task)

        # -- cut crops (and hash every original) ------------------------------------------
        ids = list(plans)
        total = len(ids)
        done = 0

        def tick(_res: Any) -> None:
            nonlocal done
            done += 1
            if on_progress is not None:
                on_progress(done, total)

        results = run_tasks([plans[i][1] for i in ids], workers=opts.workers, on_done=tick)
        images: list[ExportImage] = []
        for image_id, res in zip(ids, results, strict=True):
            items, task = plans[image_id]
            if res.error is not None:
                for job in task.jobs:
                    Path(job.out_path).unlink(missing_ok=True)
                reason, _, detail = res.error.partition(": ")
                skipped.extend(_skip_row(it.label, reason, detail) for it in items)
                continue
            images.append(
                ExportImage(
                    image_id=image_id,
                    path=task.path,
                    name=names[image_id],
                    width=task.width,
                    height=task.height,
                    sha256=str(res.sha256),
                    items=tuple(items),
                )
            )

        # -- dataset files ------------------------------------------------------------------
        run_ids = sorted({it.label.run_id for im in images for it in im.items})
        runs = {rid: get_run(ws, rid) for rid in run_ids}
        all_items = [it for im in images for it in im.items]
        files = _write_formats(tmp, images, all_items, formats, opts, version, runs)
        manifest = [_manifest_row(im, it, runs, version) for im in images for it in im.items]
        _write(tmp, "manifest.jsonl", _jsonl(manifest), files)
        if too_small:
            _write(tmp, "too_small.jsonl", _jsonl(too_small), files)
        if skipped:
            skipped.sort(key=lambda r: r["proposal_id"])
            _write(tmp, "skipped.jsonl", _jsonl(skipped), files)
        counts = {
            "images": len(images),
            "labels": len(all_items),
            "crops": sum(1 for it in all_items if it.crop is not None),
            "too_small": len(too_small),
            "skipped": len(skipped),
        }
        if not want_crops:
            crops_dir.rmdir()
        files.extend(
            f"crops/{it.crop_name}"
            for it in sorted(all_items, key=lambda i: i.crop_name)
            if it.crop
        )
        summary = {
            "version": version,
            "formats": list(formats),
            "options": {
                "size": opts.size,
                "resize": opts.resize,
                "margin": opts.margin,
                "min_size": opts.min_size,
                "include": opts.include,
                "absolute_paths": opts.absolute_paths,
                "instruction": opts.instruction,
                **since_info,
            },
            "counts": counts,
            "files": sorted(files),
        }
        _write(tmp, "export.json", _json(summary), [])

        # -- commit: rename into place, then move LATEST ------------------------------------
        try:
            os.rename(tmp, final)
        except OSError as exc:
            if final.exists():  # a concurrent export took the same version name first
                raise ConflictError(
                    f"{final}: version {version!r} was written by another export meanwhile; "
                    "run again (the next free version is chosen) or pass --version"
                ) from exc
            raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _write_atomic(out / LATEST, version + "\n")
    store.record_export(
        ws,
        version=version,
        out_dir=str(out),
        formats=formats,
        items=[(it.label.proposal_id, it.crop) for it in all_items],
        max_decision_id=max_decision,
        max_proposal_id=max_proposal,
        config=summary["options"],
    )
    return ExportResult(version=version, path=final, counts=counts, files=sorted(files))


def _skip_row(lb: Label, reason: str, detail: str) -> dict[str, Any]:
    return {
        "proposal_id": lb.proposal_id,
        "image": lb.image_path,
        "box": round_box(lb.box),
        "reason": reason,
        "detail": detail,
    }


def _write(root: Path, rel: str, text: str, files: list[str]) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    files.append(rel)


def _manifest_row(im: ExportImage, it: ExportItem, runs: dict[int, Any], version: str) -> dict:
    lb = it.label
    run = runs[lb.run_id]
    return {
        "proposal_id": lb.proposal_id,
        "crop": it.crop,
        "status": it.status,
        "source_path": im.path,
        "source_sha256": im.sha256,
        "image_id": im.image_id,
        "width": im.width,
        "height": im.height,
        "box": round_box(lb.box),
        "crop_box": round_box(it.region),
        "phrase": lb.phrase,
        "caption": it.caption,
        "caption_source": it.caption_source,
        "score": round(lb.score, 4),
        "route": lb.route,
        "source": lb.source,
        "reviewer": lb.reviewer,
        "decided_at": lb.decided_at,
        "run_id": lb.run_id,
        "detector": run.detector,
        "model": run.model,
        "model_version": run.model_version,
        "prompt": run.prompt,
        "box_threshold": run.box_threshold,
        "text_threshold": run.text_threshold,
        "export_version": version,
    }


def _write_formats(
    tmp: Path,
    images: list[ExportImage],
    items: list[ExportItem],
    formats: Sequence[str],
    opts: ExportOptions,
    version: str,
    runs: dict[int, Any],
) -> list[str]:
    files: list[str] = []

    def original(im: ExportImage) -> str:
        return im.path

    if "swift" in formats:
        _write(tmp, "swift.jsonl", _jsonl(swift_rows(items)), files)
    if "swift-messages" in formats:
        rows = swift_messages_rows(items, instruction=opts.instruction)
        _write(tmp, "swift_messages.jsonl", _jsonl(rows), files)
    if "swift-grounding" in formats:
        _write(tmp, "swift_grounding.jsonl", _jsonl(swift_grounding_rows(images, original)), files)
    if "swift-objects" in formats:
        _write(tmp, "swift_objects.jsonl", _jsonl(swift_objects_rows(images, original)), files)
    if "coco" in formats:
        _write(tmp, "coco.json", _json(coco_dict(images, original, version=version)), files)
    names = categories(images)
    if "yolo" in formats:
        class_ids = {n: i for i, n in enumerate(names)}
        (tmp / "yolo" / "images").mkdir(parents=True, exist_ok=True)
        for im in images:
            ext = Path(im.path).suffix.lower() or ".jpg"
            link = tmp / "yolo" / "images" / f"{im.name}{ext}"
            os.symlink(im.path, link)
            files.append(f"yolo/images/{im.name}{ext}")
            _write(tmp, f"yolo/labels/{im.name}.txt", yolo_label_text(im, class_ids), files)
        _write(tmp, "yolo/data.yaml", yolo_data_yaml(names), files)
    if "labelstudio" in formats:
        versions = {rid: r.model_version for rid, r in runs.items()}
        tasks = labelstudio_tasks(images, model_versions=versions, root=opts.labelstudio_root)
        _write(tmp, "labelstudio.json", _json(tasks), files)
        _write(tmp, "labelstudio_config.xml", labelstudio_config(names), files)
    if "odvg" in formats:
        rows, label_map = odvg_rows(images, original)
        _write(tmp, "odvg.jsonl", _jsonl(rows), files)
        _write(tmp, "odvg_label_map.json", _json(label_map), files)
    return files
