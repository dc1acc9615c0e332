"""Export formats by name: what each needs, who writes it, and the ``--formats`` help text.

A format is an :class:`ExportFormat` in :data:`REGISTRY`; the order of registration is the
canonical order (``--formats coco,swift`` writes the same files as ``swift,coco``). Adding a
format = one writer function + one :func:`register_format` call; the CLI help and the
``all`` choice follow from the registry.

A writer receives a :class:`FormatContext` (the resolved images/items and the options that
concern files) and a :class:`FileSink` (writes text files and symlinks under the version
folder and records their relative paths).
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
    odvg_rows,
    swift_grounding_rows,
    swift_messages_rows,
    swift_objects_rows,
    swift_rows,
    yolo_data_yaml,
    yolo_label_text,
)
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

    def symlink(self, rel: str, target: str) -> None:
        """Create ``root/rel`` pointing at ``target`` (an original image, never copied)."""
        os.symlink(target, self._path(rel))
        self._record(rel)


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
class FormatContext:
    """What a writer may use.

    Attributes:
        images: exported originals with their items, ordered by image id (a plain sequence
            or a streaming :class:`ImageChunks`: writers go through :meth:`chunks` so memory
            stays bounded by a chunk).
        items: every exported item (images' items, flattened in the same order).
        version: the export version name.
        instruction: user turn of ``swift-messages`` rows.
        labelstudio_root: folder Label Studio serves the originals from.
        model_versions: run id -> detector version (Label Studio predictions).
        names: the categories (sorted distinct phrases of all items); None = computed from
            ``images``.
    """

    images: Sequence[ExportImage] | ImageChunks
    items: Iterable[ExportItem]
    version: str
    instruction: str
    labelstudio_root: str
    model_versions: Mapping[int, str | None]
    names: Sequence[str] | None = None

    def chunks(self) -> Iterator[Sequence[ExportImage]]:
        """The images, a bounded chunk at a time, in order."""
        return _chunks(self.images)

    def categories(self) -> list[str]:
        """The category names shared by COCO, YOLO, ODVG and Label Studio."""
        if self.names is not None:
            return list(self.names)
        return sorted({it.label.phrase for ch in self.chunks() for im in ch for it in im.items})


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


def _original(im: ExportImage) -> str:
    return im.path


# -- built-in writers (each streams chunk by chunk) ------------------------------------------
def _items(chunk: Sequence[ExportImage]) -> list[ExportItem]:
    return [it for im in chunk for it in im.items]


def _swift(ctx: FormatContext, sink: FileSink) -> None:
    with sink.open("swift.jsonl") as fh:
        for chunk in ctx.chunks():
            write_jsonl(fh, swift_rows(_items(chunk)))


def _swift_messages(ctx: FormatContext, sink: FileSink) -> None:
    with sink.open("swift_messages.jsonl") as fh:
        for chunk in ctx.chunks():
            write_jsonl(fh, swift_messages_rows(_items(chunk), instruction=ctx.instruction))


def _swift_grounding(ctx: FormatContext, sink: FileSink) -> None:
    with sink.open("swift_grounding.jsonl") as fh:
        for chunk in ctx.chunks():
            write_jsonl(fh, swift_grounding_rows(chunk, _original))


def _swift_objects(ctx: FormatContext, sink: FileSink) -> None:
    with sink.open("swift_objects.jsonl") as fh:
        for chunk in ctx.chunks():
            write_jsonl(fh, swift_objects_rows(chunk, _original))


def _coco(ctx: FormatContext, sink: FileSink) -> None:
    names = ctx.categories()

    def part(key: str) -> Iterator[Any]:
        for chunk in ctx.chunks():
            yield from coco_dict(chunk, _original, version=ctx.version, names=names)[key]

    head = coco_dict([], _original, version=ctx.version, names=names)
    lazy = {"images": part("images"), "annotations": part("annotations")}
    with sink.open("coco.json") as fh:
        write_json(fh, {k: v for k, v in head.items() if k not in lazy}, lazy)


def _yolo(ctx: FormatContext, sink: FileSink) -> None:
    names = ctx.categories()
    class_ids = {n: i for i, n in enumerate(names)}
    (sink.root / "yolo" / "images").mkdir(parents=True, exist_ok=True)
    for chunk in ctx.chunks():
        for im in chunk:
            ext = os.path.splitext(im.path)[1].lower() or ".jpg"
            sink.symlink(f"yolo/images/{im.name}{ext}", im.path)
            sink.text(f"yolo/labels/{im.name}.txt", yolo_label_text(im, class_ids))
    sink.text("yolo/data.yaml", yolo_data_yaml(names))


def _labelstudio(ctx: FormatContext, sink: FileSink) -> None:
    versions = dict(ctx.model_versions)

    def tasks() -> Iterator[dict[str, Any]]:
        for chunk in ctx.chunks():
            yield from labelstudio_tasks(chunk, model_versions=versions, root=ctx.labelstudio_root)

    with sink.open("labelstudio.json") as fh:
        write_json_list(fh, tasks())
    sink.text("labelstudio_config.xml", labelstudio_config(ctx.categories()))


def _odvg(ctx: FormatContext, sink: FileSink) -> None:
    names = ctx.categories()
    with sink.open("odvg.jsonl") as fh:
        for chunk in ctx.chunks():
            write_jsonl(fh, odvg_rows(chunk, _original, names=names)[0])
    sink.text("odvg_label_map.json", json_text(odvg_rows([], _original, names=names)[1]))


for _fmt in (
    ExportFormat("swift", True, _swift, "crop + caption rows"),
    ExportFormat("swift-messages", True, _swift_messages, "ms-swift messages rows on crops"),
    ExportFormat("swift-grounding", False, _swift_grounding, "Qwen-VL grounding text"),
    ExportFormat("swift-objects", False, _swift_objects, "ms-swift objects rows"),
    ExportFormat("coco", False, _coco, "COCO detection JSON"),
    ExportFormat("yolo", False, _yolo, "YOLO labels + data.yaml"),
    ExportFormat("labelstudio", False, _labelstudio, "Label Studio tasks + config"),
    ExportFormat("odvg", False, _odvg, "Open-GroundingDino OD rows"),
):
    register_format(_fmt)
del _fmt
