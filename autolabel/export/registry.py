"""Export formats by name: what each needs, who writes it, and the ``--formats`` help text.

A format is an :class:`ExportFormat` in :data:`REGISTRY`; the order of registration is the
canonical order (``--formats coco,swift`` writes the same files as ``swift,coco``). Adding a
format = one writer function + one :func:`register_format` call; the CLI help and the
``all`` choice follow from the registry.

A writer receives a :class:`FormatContext` (the resolved images/items and the options that
concern files) and a :class:`FileSink` (writes text files and hard links under the version
folder and records their relative paths).

Split rule shared by every writer: a training file ``F`` holds the ``train`` split and
``val/F`` the ``val`` split (YOLO uses its own ``images/<split>`` folders; Open-GroundingDino
validates on ``odvg/coco_val.json``). Files for other tools than ms-swift's trainer live in
sub-folders, so ``swift sft --dataset vN/*.jsonl`` only takes ms-swift training files.
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

    def link(self, rel: str, source_rel: str) -> None:
        """Make ``root/rel`` a hard link to ``root/source_rel`` (a copy where links fail)."""
        import shutil

        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(self.root / source_rel, path)
        except OSError:
            shutil.copyfile(self.root / source_rel, path)
        self.files.append(rel)

    def split_text(self, rel: str, split: str, text: str) -> None:
        """Write a split's file: ``rel`` for ``train``, ``val/rel`` for ``val``."""
        self.text(rel if split == TRAIN else f"{VAL}/{rel}", text)


@dataclass(frozen=True)
class FormatContext:
    """What a writer may use.

    Attributes:
        images: exported originals with their items, ordered by image id (each knows its
            split and its bundle file).
        items: every exported item (images' items, flattened in the same order).
        version: the export version name.
        instruction: user turn of ``swift-messages`` rows.
        labelstudio_root: Label Studio's local-files document root; empty = the version
            folder (portable: image URLs are then relative to the bundle).
        model_versions: run id -> detector version (Label Studio predictions).
        final: the version folder once renamed into place.
    """

    images: Sequence[ExportImage]
    items: Sequence[ExportItem]
    version: str
    instruction: str
    labelstudio_root: str
    model_versions: Mapping[int, str | None]
    final: Path = Path(".")

    def splits(self) -> list[tuple[str, list[ExportImage]]]:
        """``[(split, images)]``: train (always, maybe empty), then val when it has images."""
        train = [im for im in self.images if im.split == TRAIN]
        val = [im for im in self.images if im.split == VAL]
        return [(TRAIN, train), *([(VAL, val)] if val else [])]


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


def _items(images: Sequence[ExportImage]) -> list[ExportItem]:
    return [it for im in images for it in im.items]


# -- built-in writers -------------------------------------------------------------------------
def _swift(ctx: FormatContext, sink: FileSink) -> None:
    for split, images in ctx.splits():
        sink.split_text("swift.jsonl", split, jsonl(swift_rows(_items(images))))


def _swift_messages(ctx: FormatContext, sink: FileSink) -> None:
    for split, images in ctx.splits():
        rows = swift_messages_rows(_items(images), instruction=ctx.instruction)
        sink.split_text("swift_messages.jsonl", split, jsonl(rows))


def _swift_grounding(ctx: FormatContext, sink: FileSink) -> None:
    for split, images in ctx.splits():
        sink.split_text("swift_grounding.jsonl", split, jsonl(swift_grounding_rows(images, _file)))


def _qwen_vl_grounding(ctx: FormatContext, sink: FileSink) -> None:
    for split, images in ctx.splits():
        rows = qwen_vl_grounding_rows(images, _file)
        sink.split_text("qwen_vl/grounding.jsonl", split, jsonl(rows))


def _coco(ctx: FormatContext, sink: FileSink) -> None:
    names = categories(ctx.images)
    for split, images in ctx.splits():
        coco = coco_dict(images, _file, version=ctx.version, names=names)
        sink.split_text("coco.json", split, json_text(coco))


def _yolo(ctx: FormatContext, sink: FileSink) -> None:
    names = categories(ctx.images)
    class_ids = {n: i for i, n in enumerate(names)}
    for split, images in ctx.splits():
        for im in images:
            bundle_rel = _bundle_rel(ctx, im)
            sink.link(f"yolo/images/{split}/{Path(bundle_rel).name}", bundle_rel)
            sink.text(f"yolo/labels/{split}/{im.name}.txt", yolo_label_text(im, class_ids))
    has_val = any(im.split == VAL for im in ctx.images)
    sink.text("yolo/data.yaml", yolo_data_yaml(names, has_val=has_val))


def _bundle_rel(ctx: FormatContext, im: ExportImage) -> str:
    """The image's bundle file relative to the version folder (whatever ``--absolute-paths``)."""
    p = Path(im.file)
    return str(p.relative_to(ctx.final)) if p.is_absolute() else im.file


def _labelstudio(ctx: FormatContext, sink: FileSink) -> None:
    def url(im: ExportImage) -> str:
        if not ctx.labelstudio_root:
            return labelstudio_url(_bundle_rel(ctx, im))
        return labelstudio_url(
            os.path.relpath(ctx.final / _bundle_rel(ctx, im), ctx.labelstudio_root)
        )

    tasks = labelstudio_tasks(ctx.images, model_versions=dict(ctx.model_versions), image_url=url)
    sink.text("labelstudio.json", json_text(tasks))
    sink.text("labelstudio_config.xml", labelstudio_config(categories(ctx.images)))


def _odvg(ctx: FormatContext, sink: FileSink) -> None:
    names = categories(ctx.images)
    train = [im for im in ctx.images if im.split == TRAIN]
    rows, label_map = odvg_rows(train, _file, names)
    sink.text("odvg/od.jsonl", jsonl(rows))
    sink.text("odvg/vg.jsonl", jsonl(odvg_grounding_rows(train, _file)))
    sink.text("odvg/label_map.json", json_text(label_map))
    sink.text("odvg/label_list.json", json_text(names))
    val = [im for im in ctx.images if im.split == VAL]
    if val:  # Open-GroundingDino evaluates on COCO files whose category ids are label ids
        coco = coco_dict(val, _file, version=ctx.version, names=names, first_category_id=0)
        sink.text("odvg/coco_val.json", json_text(coco))


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
