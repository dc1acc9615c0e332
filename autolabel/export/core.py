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

Streaming: labels are read, planned and cut in image-id chunks through a temporary SQLite
spill file (:mod:`autolabel.export.stream`) and the writers read the images back chunk by
chunk, so peak memory does not grow with the number of labels. The two whole-export passes,
file names (unique over all images) and the train/val split (near-duplicate groups over all
images), run as SQL in the spill file, so they hold no per-image entry in memory either.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from autolabel.errors import ConflictError, InputError
from autolabel.export.chunks import ChunkPlanner, Event
from autolabel.export.formats import ExportImage, ExportItem
from autolabel.export.geometry import round_box
from autolabel.export.plan import (
    ImagePlan,
    check_size,
    check_version,
    image_stem,
    skip_row,
)
from autolabel.export.recover import Adopted, recover, write_commit
from autolabel.export.registry import (
    FileSink,
    FormatContext,
    needs_crops,
    parse_formats,
    write_formats,
)
from autolabel.export.stream import Spill, SpilledImages, SpilledItems, write_json, write_jsonl
from autolabel.store.db import Workspace

if TYPE_CHECKING:
    from autolabel.config import ExportConfig, ImageConfig
    from autolabel.export.crops import TaskResult

LATEST = "LATEST"


@dataclass
class ExportResult:
    """Summary of one export.

    Attributes:
        version: the version written.
        path: the version folder.
        counts: ``labels``, ``crops``, ``too_small``, ``skipped``, ``images``,
            ``train_images``, ``val_images``.
        files: files written, relative to ``path``, with the per-image folders (``crops``,
            ``images``, ``yolo/images``, ``yolo/labels``) listed by their folder name;
            ``export.json`` lists every file.
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


def local_events(
    ws: Workspace,
    planner: ChunkPlanner,
    *,
    include: str,
    since: tuple[int, int] | None,
    workers: int,
) -> Iterator[Event]:
    """The local engine: plan chunk by chunk here, cut in ``workers`` processes (streaming)."""
    from autolabel.export.crops import iter_run_tasks
    from autolabel.store.labels import iter_label_chunks

    def pairs() -> Iterator[tuple[Any, Any]]:
        for labels in iter_label_chunks(
            ws, include=include, since=since, images_per_chunk=CHUNK_IMAGE_IDS
        ):
            plan = planner.plan(labels)
            yield ("rows", plan.too_small, plan.skipped), None
            for p in plan.images:
                yield ("image", p, None), p.task

    for (kind, a, b), res in iter_run_tasks(pairs(), workers=workers):
        yield (kind, a, b) if kind == "rows" else (kind, a, res)


CHUNK_IMAGE_IDS = 1000
"""Image ids per label query (and per Ray read task)."""


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

    Streaming: a cheap first pass over the selected labels resolves the file names; then
    labels are planned and cut chunk by chunk (plan -> cut) into a spill file, the images are
    split, and the formats are written from the spill (write) before the commit (commit file,
    rename, ``LATEST``, record). With ``options.engine == "ray"`` planning and cutting run on
    Ray Data (:mod:`autolabel.export.ray_engine`); the files are byte-identical.

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
    from autolabel.store.seed import phrase_captions

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
    since_marks, since_info = _since(ws, since)
    tmp = out / f".tmp-{version}-{os.getpid()}"
    crops_dir = tmp / "crops"
    crops_dir.mkdir(parents=True)
    (tmp / "images").mkdir()
    spill_dir = out / f".tmp-spill-{version}-{os.getpid()}"
    spill_dir.mkdir()
    commit: Path | None = None
    try:
        with Spill(spill_dir / "spill.sqlite") as spill:
            total, renamed = _names(ws, spill, opts.include, since_marks)
            planner = ChunkPlanner(
                options=opts, seeds=store.seed_captions(ws), renamed=renamed,
                formats=formats, version=version, crops_dir=crops_dir, final=final,
                max_pixels=guards.max_pixels, max_side=guards.max_side,
                bundle_dir=tmp / "images", phrase_captions=phrase_captions(ws),
            )  # fmt: skip
            events = _engine_events(ws, planner, opts, since_marks)
            cut = _consume(events, spill, tmp, opts, final=final, total=total,
                           on_progress=on_progress)  # fmt: skip
            summary = _write(ws, tmp, final, spill, cut, planner, opts, since_info)

            def items() -> Iterator[tuple[int, str | None]]:
                for chunk in spill.image_chunks():
                    for im in chunk:
                        for it in im.items:
                            yield it.label.proposal_id, it.crop

            commit = write_commit(
                out, version=version, request=request, marks=marks, items=items(),
                config=summary["options"],
            )  # fmt: skip
            _rename_into_place(tmp, final, version)
            _write_latest(out, version)
            store.record_export(
                ws,
                version=version,
                out_dir=str(out),
                formats=formats,
                items=items(),
                max_decision_id=max_decision,
                max_proposal_id=max_proposal,
                config=summary["options"],
            )
            commit.unlink(missing_ok=True)
            files = spill.summary_files()
    except BaseException:
        if commit is not None and not final.exists():
            commit.unlink(missing_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        shutil.rmtree(spill_dir, ignore_errors=True)
    return ExportResult(version=version, path=final, counts=summary["counts"], files=files)


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


def _since(ws: Workspace, since: str | None) -> tuple[tuple[int, int] | None, dict[str, Any]]:
    """``(export id, its max decision id)`` of the ``--since`` export, and the info row."""
    from autolabel.store import exports as store

    if not since:
        return None, {}
    prev = store.get_export(ws, None if since == "last" else since)
    return (int(prev["id"]), int(prev["max_decision_id"] or 0)), {"since": prev["version"]}


def _names(
    ws: Workspace, spill: Spill, include: str, since: tuple[int, int] | None
) -> tuple[int, dict[int, str]]:
    """First, cheap pass: the stem of every selected image; returns the image count and the
    names that differ from their stems (:meth:`Spill.resolve_names`: ``unique_names`` in SQL)."""
    from autolabel.store.labels import iter_label_chunks

    for labels in iter_label_chunks(
        ws, include=include, since=since, images_per_chunk=CHUNK_IMAGE_IDS
    ):
        spill.add_stems((lb.image_id, image_stem(lb.image_path)) for lb in labels)
    return spill.n_stems(), spill.resolve_names()


def _engine_events(
    ws: Workspace, planner: ChunkPlanner, opts: ExportConfig, since: tuple[int, int] | None
) -> Iterator[Event]:
    if opts.engine == "ray":
        from autolabel.export.ray_engine import ray_events

        return ray_events(ws, planner, opts, include=opts.include, since=since)
    return local_events(ws, planner, include=opts.include, since=since, workers=opts.workers)


@dataclass
class _Cut:
    """What the cut pass learnt: counts, phrases, runs, and images per split."""

    labels: int = 0
    crops: int = 0
    too_small: int = 0
    phrases: set[str] = field(default_factory=set)
    run_ids: set[int] = field(default_factory=set)
    splits: dict[str, int] = field(default_factory=dict)


def _consume(
    events: Iterator[Event],
    spill: Spill,
    tmp: Path,
    opts: ExportConfig,
    *,
    final: Path,
    total: int,
    on_progress: Callable[[int, int], None] | None,
) -> _Cut:
    """Turn the engine's events into spilled images (each pointing at its bundle file),
    skip rows and ``meta/too_small.jsonl``; then split the usable images."""
    cut = _Cut()
    done = 0
    too_small_fh = None
    try:
        for kind, a, b in events:
            if kind == "rows":
                if a:
                    if too_small_fh is None:
                        (tmp / "meta").mkdir(exist_ok=True)
                        too_small_fh = open(tmp / "meta" / "too_small.jsonl", "w", encoding="utf-8")
                        spill.add_file("meta/too_small.jsonl")
                    write_jsonl(too_small_fh, a)
                    cut.too_small += len(a)
                spill.add_skipped(b)
                continue
            done += 1
            _take_image(a, b, spill, cut, opts, final)
            if on_progress is not None:
                on_progress(done, total)
    finally:
        if too_small_fh is not None:
            too_small_fh.close()
    cut.splits = spill.assign_splits(opts.val_fraction)
    return cut


def _take_image(
    p: ImagePlan, res: TaskResult, spill: Spill, cut: _Cut, opts: ExportConfig, final: Path
) -> None:
    if res.error is not None:
        for job in p.task.jobs:
            Path(job.out_path).unlink(missing_ok=True)
        reason, _, detail = res.error.partition(": ")
        spill.add_skipped(skip_row(it.label, reason, detail) for it in p.items)
        return
    rel = f"images/{res.bundle_file}"
    spill.add_image(
        ExportImage(
            image_id=p.image_id,
            path=p.task.path,
            name=p.name,
            width=p.task.width,
            height=p.task.height,
            sha256=str(res.sha256),
            items=p.items,
            file=os.path.join(str(final), rel) if opts.absolute_paths else rel,
        ),
        dhash=res.dhash,
    )
    spill.add_file(rel)
    for it in p.items:
        cut.labels += 1
        cut.phrases.add(it.label.phrase)
        cut.run_ids.add(it.label.run_id)
    crops = [f"crops/{it.crop_name}" for it in p.items if it.crop is not None]
    cut.crops += len(crops)
    spill.add_files(crops)


def _write(
    ws: Workspace,
    tmp: Path,
    final: Path,
    spill: Spill,
    cut: _Cut,
    planner: ChunkPlanner,
    opts: ExportConfig,
    since_info: dict[str, Any],
) -> dict[str, Any]:
    """Write the formats, manifest, skipped list, TRAINING.md and export.json from the spill;
    returns the summary (with ``files`` left out: they are streamed into export.json)."""
    from autolabel.export.splits import TRAIN, VAL
    from autolabel.export.training import training_markdown
    from autolabel.store.runs import get_run

    runs = {rid: get_run(ws, rid) for rid in sorted(cut.run_ids)}
    images = SpilledImages(spill)
    n_val = cut.splits.get(VAL, 0)
    ctx = FormatContext(
        images=images,
        items=SpilledItems(images),
        version=planner.version,
        instruction=opts.instruction,
        labelstudio_root=opts.labelstudio_root,
        model_versions={rid: r.model_version for rid, r in runs.items()},
        final=final,
        names=sorted(cut.phrases),
        has_val=n_val > 0,
    )
    sink = FileSink(tmp, on_file=spill.add_file)
    write_formats(ctx, planner.formats, sink)
    with sink.open("meta/manifest.jsonl") as fh:
        for chunk in images.chunks():
            write_jsonl(
                fh,
                (_manifest_row(im, it, runs, planner.version) for im in chunk for it in im.items),
            )
    if spill.n_skipped:
        with sink.open("meta/skipped.jsonl") as fh:
            write_jsonl(fh, spill.skipped())
    if not needs_crops(planner.formats):
        (tmp / "crops").rmdir()
    sink.text("TRAINING.md", training_markdown(spill.summary_files()))
    summary = {
        "version": planner.version,
        "formats": list(planner.formats),
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
            "images": spill.n_images,
            "train_images": cut.splits.get(TRAIN, 0),
            "val_images": n_val,
            "labels": cut.labels,
            "crops": cut.crops,
            "too_small": cut.too_small,
            "skipped": spill.n_skipped,
        },
    }
    with open(tmp / "export.json", "w", encoding="utf-8") as fh:
        write_json(fh, summary, {"files": spill.files()})
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
