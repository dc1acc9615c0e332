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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autolabel.errors import InputError
from autolabel.export.formats import (
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


def jsonl(rows: Sequence[dict[str, Any]]) -> str:
    """Rows as JSON lines (sorted keys, UTF-8 kept), the byte form every export file uses."""
    return "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in rows)


def json_text(obj: Any) -> str:
    """One JSON document (sorted keys, indent 1, trailing newline)."""
    return json.dumps(obj, ensure_ascii=False, sort_keys=True, indent=1) + "\n"


@dataclass
class FileSink:
    """Writes files under ``root`` and remembers their paths relative to it.

    Attributes:
        root: the (temporary) version folder.
        files: relative paths written so far, in write order.
    """

    root: Path
    files: list[str] = field(default_factory=list)

    def text(self, rel: str, text: str) -> None:
        """Write ``text`` (UTF-8) to ``root/rel``, creating folders."""
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        self.files.append(rel)

    def symlink(self, rel: str, target: str) -> None:
        """Create ``root/rel`` pointing at ``target`` (an original image, never copied)."""
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target, path)
        self.files.append(rel)


@dataclass(frozen=True)
class FormatContext:
    """What a writer may use.

    Attributes:
        images: exported originals with their items, ordered by image id.
        items: every exported item (images' items, flattened in the same order).
        version: the export version name.
        instruction: user turn of ``swift-messages`` rows.
        labelstudio_root: folder Label Studio serves the originals from.
        model_versions: run id -> detector version (Label Studio predictions).
    """

    images: Sequence[ExportImage]
    items: Sequence[ExportItem]
    version: str
    instruction: str
    labelstudio_root: str
    model_versions: Mapping[int, str | None]


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


# -- built-in writers -------------------------------------------------------------------------
def _swift(ctx: FormatContext, sink: FileSink) -> None:
    sink.text("swift.jsonl", jsonl(swift_rows(ctx.items)))


def _swift_messages(ctx: FormatContext, sink: FileSink) -> None:
    rows = swift_messages_rows(ctx.items, instruction=ctx.instruction)
    sink.text("swift_messages.jsonl", jsonl(rows))


def _swift_grounding(ctx: FormatContext, sink: FileSink) -> None:
    sink.text("swift_grounding.jsonl", jsonl(swift_grounding_rows(ctx.images, _original)))


def _swift_objects(ctx: FormatContext, sink: FileSink) -> None:
    sink.text("swift_objects.jsonl", jsonl(swift_objects_rows(ctx.images, _original)))


def _coco(ctx: FormatContext, sink: FileSink) -> None:
    sink.text("coco.json", json_text(coco_dict(ctx.images, _original, version=ctx.version)))


def _yolo(ctx: FormatContext, sink: FileSink) -> None:
    names = categories(ctx.images)
    class_ids = {n: i for i, n in enumerate(names)}
    (sink.root / "yolo" / "images").mkdir(parents=True, exist_ok=True)
    for im in ctx.images:
        ext = Path(im.path).suffix.lower() or ".jpg"
        sink.symlink(f"yolo/images/{im.name}{ext}", im.path)
        sink.text(f"yolo/labels/{im.name}.txt", yolo_label_text(im, class_ids))
    sink.text("yolo/data.yaml", yolo_data_yaml(names))


def _labelstudio(ctx: FormatContext, sink: FileSink) -> None:
    tasks = labelstudio_tasks(
        ctx.images, model_versions=dict(ctx.model_versions), root=ctx.labelstudio_root
    )
    sink.text("labelstudio.json", json_text(tasks))
    sink.text("labelstudio_config.xml", labelstudio_config(categories(ctx.images)))


def _odvg(ctx: FormatContext, sink: FileSink) -> None:
    rows, label_map = odvg_rows(ctx.images, _original)
    sink.text("odvg.jsonl", jsonl(rows))
    sink.text("odvg_label_map.json", json_text(label_map))


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
