"""The export pipeline: labels -> crops + dataset files + manifest, atomically and reproducibly.

Layout of an export folder ``OUT``::

    OUT/LATEST              name of the newest complete version (replaced atomically)
    OUT/v1/                 one complete, self-contained version (a bundle: every path in it
                            is relative to it; never modified after it is renamed in)
        export.json  TRAINING.md   options, counts, files; training commands
        images/<stem>.<ext>        the originals: hard links (copies across file systems),
                                   upright re-encoded copies of EXIF-rotated ones
        crops/<stem>_<size>_<version>[_<k>].png
        swift.jsonl  swift_messages.jsonl  swift_grounding.jsonl   (train split)
        val/...                    the same files for the val split
        coco.json  labelstudio.json  labelstudio_config.xml
        yolo/  odvg/  qwen_vl/     other tools' files, out of reach of ``vN/*.jsonl``
        meta/manifest.jsonl        one row per label: source, sha256, box, split, reviewer ...
        meta/too_small.jsonl       boxes not cropped because they are below --min-size
        meta/skipped.jsonl         labels left out (original missing, changed or unreadable)

A version is built in ``OUT/.tmp-<version>-<pid>`` and renamed into place only when
complete, so a crash (even ``kill -9``) leaves every earlier version and ``LATEST`` intact;
the next export cleans or adopts what a killed one left (:mod:`autolabel.export.recover`).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from autolabel.errors import ConflictError, InputError
from autolabel.export.formats import ExportImage, ExportItem
from autolabel.export.geometry import round_box
from autolabel.export.plan import (
    ExportPlan,
    check_size,
    check_version,
    plan_export,
    skip_row,
)
from autolabel.export.recover import Adopted, recover, write_commit
from autolabel.export.registry import (
    FileSink,
    FormatContext,
    json_text,
    jsonl,
    needs_crops,
    parse_formats,
    write_formats,
)
from autolabel.store.db import Workspace
from autolabel.types import Label

if TYPE_CHECKING:
    from autolabel.config import ExportConfig, ImageConfig

LATEST = "LATEST"


@dataclass
class ExportResult:
    """Summary of one export.

    Attributes:
        version: the version written.
        path: the version folder.
        counts: ``labels``, ``crops``, ``too_small``, ``skipped``, ``images``,
            ``train_images``, ``val_images``.
        files: files written, relative to ``path``.
    """

    version: str
    path: Path
    counts: dict[str, int] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)

    def training_commands(self) -> list[tuple[str, str]]:
        """``[(what for, command)]``: ms-swift commands for this version, ROOT_IMAGE_DIR set."""
        from autolabel.export.training import swift_commands

        return swift_commands(str(self.path), self.files)


def clean_stale(out: Path) -> list[str]:
    """Remove leftovers of dead exports (see :func:`autolabel.export.recover.clean_stale`)."""
    from autolabel.export.recover import clean_stale as clean

    return clean(out)


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


def _write_latest(out: Path, version: str) -> None:
    if read_latest(out) != version:
        _write_atomic(out / LATEST, version + "\n")


def _select_labels(
    ws: Workspace, include: str, since: str | None
) -> tuple[list[Label], dict[str, Any]]:
    from autolabel.store import exports as store
    from autolabel.store.labels import iter_labels

    labels = list(iter_labels(ws, include=include))
    info: dict[str, Any] = {}
    if since:
        prev = store.get_export(ws, None if since == "last" else since)
        done = store.exported_proposal_ids(ws, up_to_export_id=int(prev["id"]))
        changed = store.proposals_decided_after(ws, int(prev["max_decision_id"] or 0))
        labels = [lb for lb in labels if lb.proposal_id not in done or lb.proposal_id in changed]
        info = {"since": prev["version"]}
    return labels, info


def export_dataset(
    ws: Workspace,
    out: str | Path,
    options: ExportConfig | None = None,
    *,
    since: str | None = None,
    image: ImageConfig | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> ExportResult:
    """Export the workspace's labels as a new version under ``out``.

    Plan (pure) -> cut crops -> write dataset files -> commit (rename + ``LATEST`` + record).

    Args:
        ws: the workspace.
        out: export folder (created if missing); the version goes to ``out/<version>``.
        options: the ``export`` config section (default: its defaults).
        since: ``"last"`` or a version name: only labels new or changed since that export.
        image: the ``image`` config section (size guards for reading originals).
        on_progress: called with ``(images done, images total)`` while crops are cut.

    Returns:
        The :class:`ExportResult` (version folder, counts, files).

    Raises:
        InputError: an unknown format or an unsafe version name.
        DatabaseDamagedError: ``PRAGMA quick_check`` finds damage (nothing is written).
        ConflictError: ``out/<version>`` already exists.
        NotFoundError: ``since`` names no earlier export.
    """
    from autolabel.config import ExportConfig, ImageConfig
    from autolabel.store import exports as store

    opts = options if options is not None else ExportConfig()
    guards = image if image is not None else ImageConfig()
    ws.check_integrity()  # a damaged database must not export partially with exit 0
    formats = parse_formats(opts.formats)
    check_version(opts.version)
    check_size(opts.size, opts.max_size)
    out, adopted = _prepare_out(out, ws)
    request = _request(formats, opts, since)
    marks = store.high_water_marks(ws)
    for done in adopted:  # a killed run of this very export: finishing it is the result
        if done.request == request and done.marks == marks and opts.version in (None, done.version):
            return ExportResult(done.version, out / done.version, done.counts, done.files)
    version = opts.version or store.next_version(ws, _existing_versions(out))
    final = out / version
    if final.exists():
        raise ConflictError(
            f"{final}: version {version!r} already exists there; choose another --version "
            "or another --out (exports are never overwritten)"
        )
    max_decision, max_proposal = marks
    labels, since_info = _select_labels(ws, opts.include, since)
    tmp = out / f".tmp-{version}-{os.getpid()}"
    crops_dir = tmp / "crops"
    crops_dir.mkdir(parents=True)
    (tmp / "images").mkdir()
    try:
        plan = plan_export(
            labels, store.seed_captions(ws), opts,
            formats=formats, want_crops=needs_crops(formats), version=version,
            crops_dir=crops_dir, final=final,
            max_pixels=guards.max_pixels, max_side=guards.max_side, bundle_dir=tmp / "images",
        )  # fmt: skip
        images, skipped = _cut(plan, opts, final=final, on_progress=on_progress)
        summary = _write(ws, tmp, final, plan, images, skipped, opts, since_info)
        items = [it for im in images for it in im.items]
        commit = write_commit(
            out, version=version, request=request, marks=marks,
            items=[(it.label.proposal_id, it.crop) for it in items], config=summary["options"],
        )  # fmt: skip
        try:
            _rename_into_place(tmp, final, version)
        except BaseException:
            commit.unlink(missing_ok=True)
            raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _write_latest(out, version)
    store.record_export(
        ws,
        version=version,
        out_dir=str(out),
        formats=formats,
        items=[(it.label.proposal_id, it.crop) for it in items],
        max_decision_id=max_decision,
        max_proposal_id=max_proposal,
        config=summary["options"],
    )
    commit.unlink(missing_ok=True)
    return ExportResult(
        version=version, path=final, counts=summary["counts"], files=summary["files"]
    )


def _prepare_out(out: str | Path, ws: Workspace) -> tuple[Path, list[Adopted]]:
    """Resolve and create the export folder; clean or adopt leftovers of killed exports
    (:func:`autolabel.export.recover.recover`).

    Raises:
        InputError: ``out`` is a file, or lies inside an ingested folder (its crops would be
            ingested back as new images) or inside the workspace.
    """
    from autolabel.store.images import ingested_root_of

    path = Path(out).expanduser().resolve()
    if path.exists() and not path.is_dir():
        raise InputError(f"{path}: expected a folder for --out, got a file")
    root = ingested_root_of(ws, str(path))
    if root is not None:
        raise InputError(
            f"--out {path} is inside the ingested folder {root}: expected an export folder "
            "outside every ingested folder (its crops would be ingested back as new images)"
        )
    path.mkdir(parents=True, exist_ok=True)
    return path, recover(ws, path, _write_latest)


def _request(formats: tuple[str, ...], opts: ExportConfig, since: str | None) -> dict[str, Any]:
    """What an export was asked for (JSON-normalised), to recognise a re-run after a kill."""
    body = {"formats": list(formats), "options": opts.model_dump(exclude={"workers"}),
            "since": since}  # fmt: skip
    return json.loads(json.dumps(body, sort_keys=True, default=str))


def _existing_versions(out: Path) -> list[str]:
    return [p.name for p in out.iterdir() if p.is_dir() and not p.name.startswith(".")]


def _cut(
    plan: ExportPlan,
    opts: ExportConfig,
    *,
    final: Path,
    on_progress: Callable[[int, int], None] | None,
) -> tuple[list[ExportImage], list[dict[str, Any]]]:
    """Cut the crops, hash every original and put it into the bundle, split the images;
    returns the usable images and all skips."""
    from autolabel.export.crops import run_tasks
    from autolabel.export.splits import assign_splits

    total = len(plan.images)
    done = 0

    def tick(_res: Any) -> None:
        nonlocal done
        done += 1
        if on_progress is not None:
            on_progress(done, total)

    results = run_tasks([p.task for p in plan.images], workers=opts.workers, on_done=tick)
    usable = []
    skipped = list(plan.skipped)
    for p, res in zip(plan.images, results, strict=True):
        if res.error is not None:
            for job in p.task.jobs:
                Path(job.out_path).unlink(missing_ok=True)
            reason, _, detail = res.error.partition(": ")
            skipped.extend(skip_row(it.label, reason, detail) for it in p.items)
            continue
        usable.append((p, res))
    splits = assign_splits(
        {p.image_id: str(res.sha256) for p, res in usable},
        {p.image_id: res.dhash for p, res in usable},
        val_fraction=opts.val_fraction,
    )
    images: list[ExportImage] = []
    for p, res in usable:
        rel = f"images/{res.bundle_file}"
        images.append(
            ExportImage(
                image_id=p.image_id,
                path=p.task.path,
                name=p.name,
                width=p.task.width,
                height=p.task.height,
                sha256=str(res.sha256),
                items=p.items,
                file=str(final / rel) if opts.absolute_paths else rel,
                split=splits[p.image_id],
            )
        )
    return images, skipped


def _write(
    ws: Workspace,
    tmp: Path,
    final: Path,
    plan: ExportPlan,
    images: list[ExportImage],
    skipped: list[dict[str, Any]],
    opts: ExportConfig,
    since_info: dict[str, Any],
) -> dict[str, Any]:
    """Write the formats, manifest, too_small/skipped lists and export.json; returns it."""
    from autolabel.export.training import training_markdown
    from autolabel.store.runs import get_run

    items = [it for im in images for it in im.items]
    runs = {rid: get_run(ws, rid) for rid in sorted({it.label.run_id for it in items})}
    ctx = FormatContext(
        images=images,
        items=items,
        version=plan.version,
        instruction=opts.instruction,
        labelstudio_root=opts.labelstudio_root,
        model_versions={rid: r.model_version for rid, r in runs.items()},
        final=final,
    )
    sink = FileSink(tmp)
    write_formats(ctx, plan.formats, sink)
    manifest = [_manifest_row(im, it, runs, plan.version) for im in images for it in im.items]
    sink.text("meta/manifest.jsonl", jsonl(manifest))
    if plan.too_small:
        sink.text("meta/too_small.jsonl", jsonl(plan.too_small))
    if skipped:
        sink.text("meta/skipped.jsonl", jsonl(sorted(skipped, key=lambda r: r["proposal_id"])))
    if not plan.want_crops:
        (tmp / "crops").rmdir()
    crops = sorted((it for it in items if it.crop), key=lambda i: i.crop_name)
    bundle = sorted(f"images/{Path(im.file).name}" for im in images)
    files = sorted([*sink.files, *bundle, *(f"crops/{it.crop_name}" for it in crops)])
    sink.text("TRAINING.md", training_markdown(files))
    files = sorted([*files, "TRAINING.md"])
    summary = {
        "version": plan.version,
        "formats": list(plan.formats),
        "options": {
            "size": opts.size,
            "resize": opts.resize,
            "margin": opts.margin,
            "min_size": opts.min_size,
            "include": opts.include,
            "absolute_paths": opts.absolute_paths,
            "instruction": opts.instruction,
            "val_fraction": opts.val_fraction,
            **since_info,
        },
        "counts": {
            "images": len(images),
            "train_images": sum(1 for im in images if im.split == "train"),
            "val_images": sum(1 for im in images if im.split == "val"),
            "labels": len(items),
            "crops": sum(1 for it in items if it.crop is not None),
            "too_small": len(plan.too_small),
            "skipped": len(skipped),
        },
        "files": files,
    }
    (tmp / "export.json").write_text(json_text(summary), encoding="utf-8")
    return summary


def _rename_into_place(tmp: Path, final: Path, version: str) -> None:
    """The commit point: the complete temp folder becomes ``final`` in one rename."""
    try:
        os.rename(tmp, final)
    except OSError as exc:
        if final.exists():  # a concurrent export took the same version name first
            raise ConflictError(
                f"{final}: version {version!r} was written by another export meanwhile; "
                "run again (the next free version is chosen) or pass --version"
            ) from exc
        raise


def _manifest_row(
    im: ExportImage, it: ExportItem, runs: dict[int, Any], version: str
) -> dict[str, Any]:
    lb = it.label
    run = runs[lb.run_id]
    return {
        "proposal_id": lb.proposal_id,
        "crop": it.crop,
        "status": it.status,
        "source_path": im.path,
        "source_sha256": im.sha256,
        "file": im.file,
        "split": im.split,
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
