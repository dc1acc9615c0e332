"""Export formats by name: what each needs, who writes it, and the ``--formats`` help text.

A format is an :class:`ExportFormat` in :data:`REGISTRY`; the order of registration is the
canonical order (``--formats coco,swift`` writes the same files as ``swift,coco``). Adding a
format = one writer function + one :func:`register_format` call; the CLI help and the
``all`` choice follow from the registry.

A writer receives a :class:`FormatContext` (the resolved images/items and the options that
concern files) and a :class:`FileSink` (writes text files and hard links under the version
folder and records their relative paths). Writers go through :meth:`FormatContext.chunks`
(or a split's chunks) and write files piece by piece, so memory stays bounded by a chunk of
images however many an export holds.

Split rule shared by every writer: a training file ``F`` holds the ``train`` split and
``val/F`` the ``val`` split (YOLO uses its own ``images/<split>`` folders; Open-GroundingDino
validates on ``odvg/coco_val.json``). Files for other tools than ms-swift's trainer live in
sub-folders, so ``swift sft --dataset vN/*.jsonl`` only takes ms-swift training files.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol

from autolabel.errors import InputError
from autolabel.export.formats import (
    ExportImage,
    ExportItem,
    coco_dict,
    labelstudio_config,
    labelstudio_tasks,
    labelstudio_url,
    odvg_grounding_rows,
    odvg_rows,
    qwen_vl_grounding_rows,
    swift_grounding_rows,
    swift_messages_rows,
    swift_rows,
    yolo_data_yaml,
    yolo_label_text,
)
from autolabel.export.splits import TRAIN, VAL
from autolabel.export.stream import write_json, write_json_list, write_jsonl


def jsonl(rows: Sequence[dict[str, Any]]) -> str:
    """Rows as JSON lines (sorted keys, UTF-8 kept), the byte form every export file uses."""
    return "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in rows)


def json_text(obj: Any) -> str:
    """One JSON document (sorted keys, indent 1, trailing newline)."""
    return json.dumps(obj, ensure_ascii=False, sort_keys=True, indent=1) + "\n"


@dataclass
class FileSink:
    """Writes files under ``root`` and records their paths relative to it.

    Attributes:
        root: the (temporary) version folder.
        files: relative paths written so far, in write order (only when ``on_file`` is None).
        on_file: called with each relative path instead of keeping the list (a streaming
            export records them on disk).
    """

    root: Path
    files: list[str] = field(default_factory=list)
    on_file: Callable[[str], None] | None = None
    _folders: set[str] = field(default_factory=set, repr=False)

    def _path(self, rel: str) -> str:
        """``root/rel`` with its folder created (os.path: pathlib would intern every name)."""
        path = os.path.join(str(self.root), rel)
        folder = os.path.dirname(path)
        if folder not in self._folders:
            os.makedirs(folder, exist_ok=True)
            self._folders.add(folder)
        return path

    def _record(self, rel: str) -> None:
        if self.on_file is not None:
            self.on_file(rel)
        else:
            self.files.append(rel)

    def text(self, rel: str, text: str) -> None:
        """Write ``text`` (UTF-8) to ``root/rel``, creating folders."""
        path = self._path(rel)
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(text)
        self._record(rel)

    @contextmanager
    def open(self, rel: str) -> Iterator[IO[str]]:
        """A UTF-8 text file ``root/rel`` to write piece by piece (recorded when opened)."""
        path = self._path(rel)
        self._record(rel)
        with open(path, "w", encoding="utf-8") as fh:
            yield fh

    def link(self, rel: str, source_rel: str) -> None:
        """Make ``root/rel`` a hard link to ``root/source_rel`` (a copy where links fail)."""
        import shutil

        path = self._path(rel)
        source = os.path.join(str(self.root), source_rel)
        try:
            os.link(source, path)
        except OSError:
            shutil.copyfile(source, path)
        self._record(rel)

    def split_text(self, rel: str, split: str, text: str) -> None:
        """Write a split's file: ``rel`` for ``train``, ``val/rel`` for ``val``."""
        self.text(split_path(rel, split), text)

    def split_open(self, rel: str, split: str) -> Any:
        """:meth:`open` for a split's file (``rel`` for ``train``, ``val/rel`` for ``val``)."""
        return self.open(split_path(rel, split))


def split_path(rel: str, split: str) -> str:
    """Where a split's file goes: ``rel`` for ``train``, ``val/rel`` for ``val``."""
    return rel if split == TRAIN else f"{VAL}/{rel}"


class ImageChunks(Protocol):
    """Re-iterable images of an export with a chunked view (see ``export.stream``)."""

    def __iter__(self) -> Iterator[ExportImage]: ...

    def __len__(self) -> int: ...

    def chunks(self) -> Iterator[Sequence[ExportImage]]: ...


def _chunks(images: Iterable[ExportImage]) -> Iterator[Sequence[ExportImage]]:
    """``images.chunks()`` when it streams, else the whole sequence as one chunk."""
    if hasattr(images, "chunks"):
        yield from images.chunks()
    else:
        yield list(images)


@dataclass(frozen=True)
class SplitImages:
    """The images of one split, read chunk by chunk from the export's images."""

    split: str
    source: Sequence[ExportImage] | ImageChunks

    def chunks(self) -> Iterator[list[ExportImage]]:
        """The split's images, a bounded chunk at a time, in order."""
        for chunk in _chunks(self.source):
            picked = [im for im in chunk if im.split == self.split]
            if picked:
                yield picked

    def __iter__(self) -> Iterator[ExportImage]:
        for chunk in self.chunks():
            yield from chunk


@dataclass(frozen=True)
class FormatContext:
    """What a writer may use.

    Attributes:
        images: exported originals with their items, ordered by image id (each knows its
            split and its bundle file); a plain sequence or a streaming
            :class:`ImageChunks` (writers go through :meth:`chunks`).
        items: every exported item (images' items, flattened in the same order).
        version: the export version name.
        instruction: user turn of ``swift-messages`` rows.
        labelstudio_root: Label Studio's local-files document root; empty = the version
            folder (portable: image URLs are then relative to the bundle).
        model_versions: run id -> detector version (Label Studio predictions).
        final: the version folder once renamed into place.
        names: the categories (sorted distinct phrases of all items); None = computed from
            ``images``.
        has_val: whether any image is in the ``val`` split; None = computed from ``images``.
    """

    images: Sequence[ExportImage] | ImageChunks
    items: Iterable[ExportItem]
    version: str
    instruction: str
    labelstudio_root: str
    model_versions: Mapping[int, str | None]
    final: Path = Path(".")
    names: Sequence[str] | None = None
    has_val: bool | None = None

    def chunks(self) -> Iterator[Sequence[ExportImage]]:
        """The images, a bounded chunk at a time, in order."""
        return _chunks(self.images)

    def categories(self) -> list[str]:
        """The category names shared by COCO, YOLO, ODVG and Label Studio."""
        if self.names is not None:
            return list(self.names)
        return sorted({it.label.phrase for ch in self.chunks() for im in ch for it in im.items})

    def any_val(self) -> bool:
        """True when some image is in the ``val`` split."""
        if self.has_val is not None:
            return self.has_val
        return any(im.split == VAL for ch in self.chunks() for im in ch)

    def splits(self) -> list[tuple[str, SplitImages]]:
        """``[(split, images)]``: train (always, maybe empty), then val when it has images."""
        train = (TRAIN, SplitImages(TRAIN, self.images))
        return [train, *([(VAL, SplitImages(VAL, self.images))] if self.any_val() else [])]


Writer = Callable[[FormatContext, FileSink], None]


@dataclass(frozen=True)
class ExportFormat:
    """One export format.

    Attributes:
        name: the ``--formats`` name.
        needs_crops: True when the format points at crops (without such a format no crop
            is cut).
        writer: writes the format's files.
        description: one phrase for the CLI help.
    """

    name: str
    needs_crops: bool
    writer: Writer
    description: str


REGISTRY: dict[str, ExportFormat] = {}
ALIASES = {"swift-objects": "swift-grounding"}
"""Old names still accepted by ``--formats`` (``swift-objects`` rows are now
``swift-grounding``'s; one file, so a glob over the version cannot take them twice)."""


def register_format(fmt: ExportFormat) -> None:
    """Add (or replace) a format; new names go after the built-in ones.

    Raises:
        InputError: the name is empty, ``all`` or contains a comma.
    """
    if not fmt.name or fmt.name == "all" or "," in fmt.name:
        raise InputError(
            f"format name: expected a name without commas (not 'all'), got {fmt.name!r}"
        )
    REGISTRY[fmt.name] = fmt


def format_names() -> tuple[str, ...]:
    """Every registered format name, in canonical order."""
    return tuple(REGISTRY)


def needs_crops(formats: Sequence[str]) -> bool:
    """True when any of ``formats`` needs the crops cut."""
    return any(REGISTRY[f].needs_crops for f in formats)


def formats_help() -> str:
    """The ``--formats`` help text, generated from the registry."""
    names = ", ".join(f"{f.name} ({f.description})" for f in REGISTRY.values())
    return f"Comma-separated: {names}, or all (default: export.formats)."


def parse_formats(value: str | Sequence[str]) -> tuple[str, ...]:
    """``"swift,coco"`` or a list -> validated tuple in canonical order (``all`` = every one).

    Raises:
        InputError: no name, or a name that is not registered.
    """
    known = format_names()
    parts = value.split(",") if isinstance(value, str) else list(value)
    names = [p.strip() for p in parts if p.strip()]
    if not names:
        raise InputError(f"formats: expected at least one of {', '.join(known)}, got none")
    if "all" in names:
        return known
    names = [ALIASES.get(n, n) for n in names]
    bad = [n for n in names if n not in REGISTRY]
    if bad:
        raise InputError(
            f"formats: expected names from {', '.join(known)} (or all), got {', '.join(bad)}"
        )
    return tuple(f for f in known if f in names)


def write_formats(ctx: FormatContext, formats: Sequence[str], sink: FileSink) -> None:
    """Run the writer of each format in ``formats`` (canonical order)."""
    for name in formats:
        REGISTRY[name].writer(ctx, sink)


def _file(im: ExportImage) -> str:
    return im.file


def _items(images: Iterable[ExportImage]) -> list[ExportItem]:
    return [it for im in images for it in im.items]


# -- built-in writers (each streams chunk by chunk) ------------------------------------------
def _swift(ctx: FormatContext, sink: FileSink) -> None:
    for split, images in ctx.splits():
        with sink.split_open("swift.jsonl", split) as fh:
            for chunk in images.chunks():
                write_jsonl(fh, swift_rows(_items(chunk)))


def _swift_messages(ctx: FormatContext, sink: FileSink) -> None:
    for split, images in ctx.splits():
        with sink.split_open("swift_messages.jsonl", split) as fh:
            for chunk in images.chunks():
                write_jsonl(fh, swift_messages_rows(_items(chunk), instruction=ctx.instruction))


def _swift_grounding(ctx: FormatContext, sink: FileSink) -> None:
    for split, images in ctx.splits():
        with sink.split_open("swift_grounding.jsonl", split) as fh:
            for chunk in images.chunks():
                write_jsonl(fh, swift_grounding_rows(chunk, _file))


def _qwen_vl_grounding(ctx: FormatContext, sink: FileSink) -> None:
    for split, images in ctx.splits():
        with sink.split_open("qwen_vl/grounding.jsonl", split) as fh:
            for chunk in images.chunks():
                write_jsonl(fh, qwen_vl_grounding_rows(chunk, _file))


def _write_coco(
    fh: IO[str], images: SplitImages, *, version: str, names: Sequence[str], first: int = 1
) -> None:
    """``json_text(coco_dict(all images))`` written chunk by chunk (byte-identical)."""

    def part(key: str) -> Iterator[Any]:
        for chunk in images.chunks():
            yield from coco_dict(
                chunk, _file, version=version, names=names, first_category_id=first
            )[key]

    head = coco_dict([], _file, version=version, names=names, first_category_id=first)
    lazy = {"images": part("images"), "annotations": part("annotations")}
    write_json(fh, {k: v for k, v in head.items() if k not in lazy}, lazy)


def _coco(ctx: FormatContext, sink: FileSink) -> None:
    names = ctx.categories()
    for split, images in ctx.splits():
        with sink.split_open("coco.json", split) as fh:
            _write_coco(fh, images, version=ctx.version, names=names)


def _yolo(ctx: FormatContext, sink: FileSink) -> None:
    names = ctx.categories()
    class_ids = {n: i for i, n in enumerate(names)}
    for split, images in ctx.splits():
        for im in images:
            bundle_rel = _bundle_rel(ctx, im)
            sink.link(f"yolo/images/{split}/{os.path.basename(bundle_rel)}", bundle_rel)
            sink.text(f"yolo/labels/{split}/{im.name}.txt", yolo_label_text(im, class_ids))
    sink.text("yolo/data.yaml", yolo_data_yaml(names, has_val=ctx.any_val()))


def _bundle_rel(ctx: FormatContext, im: ExportImage) -> str:
    """The image's bundle file relative to the version folder (whatever ``--absolute-paths``)."""
    if os.path.isabs(im.file):
        return str(Path(im.file).relative_to(ctx.final))
    return im.file


def _labelstudio(ctx: FormatContext, sink: FileSink) -> None:
    def url(im: ExportImage) -> str:
        if not ctx.labelstudio_root:
            return labelstudio_url(_bundle_rel(ctx, im))
        return labelstudio_url(
            os.path.relpath(ctx.final / _bundle_rel(ctx, im), ctx.labelstudio_root)
        )

    versions = dict(ctx.model_versions)

    def tasks() -> Iterator[dict[str, Any]]:
        for chunk in ctx.chunks():
            yield from labelstudio_tasks(chunk, model_versions=versions, image_url=url)

    with sink.open("labelstudio.json") as fh:
        write_json_list(fh, tasks())
    sink.text("labelstudio_config.xml", labelstudio_config(ctx.categories()))


def _odvg(ctx: FormatContext, sink: FileSink) -> None:
    names = ctx.categories()
    train = SplitImages(TRAIN, ctx.images)
    with sink.open("odvg/od.jsonl") as fh:
        for chunk in train.chunks():
            write_jsonl(fh, odvg_rows(chunk, _file, names)[0])
    with sink.open("odvg/vg.jsonl") as fh:
        for chunk in train.chunks():
            write_jsonl(fh, odvg_grounding_rows(chunk, _file))
    sink.text("odvg/label_map.json", json_text(odvg_rows([], _file, names)[1]))
    sink.text("odvg/label_list.json", json_text(names))
    if ctx.any_val():  # Open-GroundingDino evaluates on COCO files whose category ids are label ids
        with sink.open("odvg/coco_val.json") as fh:
            val = SplitImages(VAL, ctx.images)
            _write_coco(fh, val, version=ctx.version, names=names, first=0)


for _fmt in (
    ExportFormat("swift", True, _swift, "crop + caption rows, ms-swift pre-training form"),
    ExportFormat("swift-messages", True, _swift_messages, "ms-swift SFT rows on crops"),
    ExportFormat("swift-grounding", False, _swift_grounding, "ms-swift grounding rows"),
    ExportFormat("qwen-vl-grounding", False, _qwen_vl_grounding, "Qwen-VL v1 grounding text"),
    ExportFormat("coco", False, _coco, "COCO detection JSON"),
    ExportFormat("yolo", False, _yolo, "YOLO labels + data.yaml"),
    ExportFormat("labelstudio", False, _labelstudio, "Label Studio tasks + config"),
    ExportFormat("odvg", False, _odvg, "Open-GroundingDino OD/VG rows"),
):
    register_format(_fmt)
del _fmt
