"""Pure conversions from exported items to dataset formats.

Every function takes already-resolved records (:class:`ExportItem`, :class:`ExportImage`)
and returns plain Python rows/dicts/text; writing files is the caller's job. Boxes are in
pixels of the EXIF-corrected original unless a format says otherwise; full-image formats
reference the image's bundle file (:attr:`ExportImage.file`), whose stored pixels are upright,
so loaders that ignore EXIF orientation see the pixels the boxes refer to.

Formats (registered by name in :mod:`autolabel.export.registry`):
    ``swift``: ``{"image": crop, "text": caption}`` rows (the seed article's form).
    ``swift-messages``: ms-swift's standard ``{"messages": [...], "images": [crop]}`` rows.
    ``swift-grounding``: full image, ms-swift's grounding rows with ``<ref-object>``/
        ``<bbox>`` placeholders and ``objects`` in real pixels; ms-swift converts them to each
        model's convention (Qwen2-VL 0..1000 special tokens, Qwen2.5-VL absolute pixels).
    ``qwen-vl-grounding``: full image, Qwen-VL (v1) literal grounding text
        ``<ref>phrase</ref><box>(x1,y1),(x2,y2)</box>`` in 0..1000 coordinates; ms-swift passes
        it through verbatim, so it is right for Qwen-VL v1 only.
    ``coco``: COCO detection JSON (``bbox`` = ``[x, y, w, h]``), categories = phrases.
    ``yolo``: ``labels/<split>/<name>.txt`` (``class cx cy w h`` normalised) + ``data.yaml``.
    ``labelstudio``: Label Studio tasks with predictions (percent coordinates).
    ``odvg``: Open-GroundingDino's OD and VG JSONL rows, label map and label list.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from autolabel.export.geometry import Box, to_norm1000, to_yolo
from autolabel.types import Label

DEFAULT_INSTRUCTION = "Describe the product in the image."


@dataclass(frozen=True)
class ExportItem:
    """One label as exported.

    Attributes:
        label: the dataset label (box in original EXIF-corrected pixels).
        caption: reviewed caption, else seed caption, else phrase.
        caption_source: ``reviewed``, ``seed`` or ``phrase``.
        crop: crop path as written into the dataset files (None when not cut).
        crop_name: crop file name (even when not cut: the name it would have).
        region: crop region (box + margin, clipped) in original pixels.
        status: ``ok``, ``too-small`` (no crop, full-image formats only) or ``no-crop``.
    """

    label: Label
    caption: str
    caption_source: str
    crop: str | None
    crop_name: str
    region: Box
    status: str = "ok"


@dataclass(frozen=True)
class ExportImage:
    """One original with its exported items (items ordered by proposal id).

    Attributes:
        image_id: images table id.
        path: absolute path of the original.
        name: unique file-name stem used for this image in the export.
        width: EXIF-corrected width.
        height: EXIF-corrected height.
        sha256: content hash checked at export time.
        items: the labels of this image.
        file: what full-image formats write as the image: the bundle copy (upright pixels),
            relative to the version folder or absolute (``--absolute-paths``).
        split: ``train`` or ``val``.
    """

    image_id: int
    path: str
    name: str
    width: int
    height: int
    sha256: str
    items: tuple[ExportItem, ...]
    file: str = ""
    split: str = "train"


def _r(v: float, nd: int = 2) -> float:
    return float(round(float(v), nd))


def categories(images: Sequence[ExportImage]) -> list[str]:
    """Sorted distinct phrases (category order shared by COCO, YOLO and ODVG)."""
    return sorted({it.label.phrase for im in images for it in im.items})


# -- ms-swift ------------------------------------------------------------------------------
def swift_rows(items: Sequence[ExportItem]) -> list[dict[str, Any]]:
    """``{"image": crop, "text": caption}`` per cut crop."""
    return [{"image": it.crop, "text": it.caption} for it in items if it.crop is not None]


def swift_messages_rows(
    items: Sequence[ExportItem], *, instruction: str = DEFAULT_INSTRUCTION
) -> list[dict[str, Any]]:
    """ms-swift standard multimodal SFT rows: user ``<image>instruction``, assistant caption."""
    return [
        {
            "messages": [
                {"role": "user", "content": f"<image>{instruction}"},
                {"role": "assistant", "content": it.caption},
            ],
            "images": [it.crop],
        }
        for it in items
        if it.crop is not None
    ]


def _phrase_groups(image: ExportImage) -> list[tuple[str, list[ExportItem]]]:
    groups: dict[str, list[ExportItem]] = {}
    for it in image.items:
        groups.setdefault(it.label.phrase, []).append(it)
    return sorted(groups.items())


def grounding_text(phrase: str, box: Box, width: int, height: int) -> str:
    """``<ref>phrase</ref><box>(x1,y1),(x2,y2)</box>`` with 0..1000 integer coordinates."""
    q = to_norm1000(box, width, height)
    return f"<ref>{phrase}</ref><box>({q[0]},{q[1]}),({q[2]},{q[3]})</box>"


def qwen_vl_grounding_rows(
    images: Sequence[ExportImage], image_ref: Callable[[ExportImage], str]
) -> list[dict[str, Any]]:
    """Qwen-VL (v1) rows, one per (image, phrase): the assistant lists every box of the phrase
    as literal ``<ref>``/``<box>`` text (0..1000). Not for Qwen2-VL / Qwen2.5-VL."""
    rows = []
    for im in images:
        for phrase, items in _phrase_groups(im):
            answer = "".join(
                grounding_text(phrase, it.label.box, im.width, im.height) for it in items
            )
            rows.append(
                {
                    "messages": [
                        {
                            "role": "user",
                            "content": f"<image>Find <ref>{phrase}</ref> in the image.",
                        },
                        {"role": "assistant", "content": answer},
                    ],
                    "images": [image_ref(im)],
                }
            )
    return rows


GROUNDING_INSTRUCTION = "<image>Find the <ref-object> in the image."
"""User turn of ``swift-grounding`` rows (ms-swift fills ``<ref-object>`` from ``objects``)."""


def swift_grounding_rows(
    images: Sequence[ExportImage], image_ref: Callable[[ExportImage], str]
) -> list[dict[str, Any]]:
    """ms-swift grounding rows, one per (image, phrase): ``<ref-object>``/``<bbox>``
    placeholders and ``objects`` with real-pixel boxes, which ms-swift turns into each model's
    own grounding tokens and coordinates."""
    rows = []
    for im in images:
        for phrase, items in _phrase_groups(im):
            rows.append(
                {
                    "messages": [
                        {"role": "user", "content": GROUNDING_INSTRUCTION},
                        {"role": "assistant", "content": "<bbox>" * len(items)},
                    ],
                    "images": [image_ref(im)],
                    "objects": {
                        "ref": [phrase],
                        "bbox": [[_r(v) for v in it.label.box] for it in items],
                        "bbox_type": "real",
                    },
                }
            )
    return rows


# -- COCO ----------------------------------------------------------------------------------
def coco_dict(
    images: Sequence[ExportImage],
    image_ref: Callable[[ExportImage], str],
    *,
    version: str,
    names: Sequence[str] | None = None,
    first_category_id: int = 1,
) -> dict[str, Any]:
    """COCO detection dataset; image ids are workspace ids, annotation ids proposal ids.

    Args:
        images: the images (one split or all).
        image_ref: ``file_name`` of an image.
        version: export version (``info.version``).
        names: category names in id order (default: :func:`categories` of ``images``), so
            train and val files share ids.
        first_category_id: id of the first category: 1 (COCO's habit) or 0 (the ODVG
            label ids, for Open-GroundingDino's validation file).
    """
    cats = list(names) if names is not None else categories(images)
    cat_id = {c: i + first_category_id for i, c in enumerate(cats)}
    out_images, anns = [], []
    for im in images:
        out_images.append(
            {"id": im.image_id, "file_name": image_ref(im), "width": im.width, "height": im.height}
        )
        for it in im.items:
            x0, y0, x1, y1 = it.label.box
            w, h = x1 - x0, y1 - y0
            anns.append(
                {
                    "id": it.label.proposal_id,
                    "image_id": im.image_id,
                    "category_id": cat_id[it.label.phrase],
                    "bbox": [_r(x0), _r(y0), _r(w), _r(h)],
                    "area": _r(w * h),
                    "iscrowd": 0,
                    "score": _r(it.label.score, 4),
                    "caption": it.caption,
                }
            )
    return {
        "info": {"description": "autolabel export", "version": version},
        "licenses": [],
        "images": out_images,
        "annotations": anns,
        "categories": [{"id": cat_id[c], "name": c, "supercategory": "object"} for c in cats],
    }


# -- YOLO ----------------------------------------------------------------------------------
def yolo_label_text(image: ExportImage, class_ids: Mapping[str, int]) -> str:
    """One ``class cx cy w h`` line per box (normalised, 6 decimals)."""
    lines = []
    for it in image.items:
        cx, cy, w, h = to_yolo(it.label.box, image.width, image.height)
        lines.append(f"{class_ids[it.label.phrase]} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}")
    return "".join(line + "\n" for line in lines)


def yolo_data_yaml(names: Sequence[str], *, has_val: bool = True) -> str:
    """Ultralytics ``data.yaml``; ``path`` is left out so it defaults to the yaml's folder.

    ``val`` is the validation split (``images/val``); an export without one (a single image
    group, or ``val_fraction`` 0) points ``val`` at the training images and says so.
    """
    import json

    lines = [
        "# autolabel export (YOLO detection); images/<split>/ are hard links to ../images/",
        "train: images/train",
    ]
    if has_val:
        lines.append("val: images/val")
    else:
        lines.append("val: images/train  # no validation split in this export")
    lines.append(f"nc: {len(names)}")
    lines.append("names:")
    lines.extend(f"  {i}: {json.dumps(n, ensure_ascii=False)}" for i, n in enumerate(names))
    return "\n".join(lines) + "\n"


# -- Label Studio --------------------------------------------------------------------------
def labelstudio_url(path: str) -> str:
    """Local-files URL for Label Studio: ``path`` is relative to
    ``LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT`` (the version folder by default)."""
    from urllib.parse import quote

    return "/data/local-files/?d=" + quote(path.replace(os.sep, "/"))


def _ls_result(it: ExportItem, width: int, height: int, with_score: bool) -> dict[str, Any]:
    x0, y0, x1, y1 = it.label.box
    res: dict[str, Any] = {
        "id": f"p{it.label.proposal_id}",
        "type": "rectanglelabels",
        "from_name": "label",
        "to_name": "image",
        "original_width": width,
        "original_height": height,
        "image_rotation": 0,
        "value": {
            "x": x0 / width * 100,
            "y": y0 / height * 100,
            "width": (x1 - x0) / width * 100,
            "height": (y1 - y0) / height * 100,
            "rotation": 0,
            "rectanglelabels": [it.label.phrase],
        },
    }
    if with_score:
        res["score"] = _r(it.label.score, 4)
    return res


def labelstudio_tasks(
    images: Sequence[ExportImage],
    *,
    model_versions: Mapping[int, str | None],
    image_url: Callable[[ExportImage], str],
) -> list[dict[str, Any]]:
    """Label Studio import tasks, one per image.

    Every box is in a prediction (one per run, ``model_version`` = the detector's version).
    An image whose boxes were all reviewed also gets them as one annotation (a finished
    task); an image with some auto-accepted boxes gets no annotation, so Label Studio never
    shows a finished task holding part of the boxes. Reviewers, per-box captions and sources
    are kept in ``meta`` (and every caption in ``data.captions``).

    Args:
        images: exported images.
        model_versions: run id -> model version string.
        image_url: the ``data.image`` URL of an image.
    """
    tasks = []
    for im in images:
        by_run: dict[int, list[ExportItem]] = {}
        for it in im.items:
            by_run.setdefault(it.label.run_id, []).append(it)
        predictions = []
        for run_id in sorted(by_run):
            items = by_run[run_id]
            predictions.append(
                {
                    "model_version": model_versions.get(run_id) or f"run-{run_id}",
                    "score": _r(sum(i.label.score for i in items) / len(items), 4),
                    "result": [_ls_result(i, im.width, im.height, True) for i in items],
                }
            )
        captions = [it.caption for it in im.items]
        reviewers = sorted({it.label.reviewer for it in im.items if it.label.reviewer})
        task: dict[str, Any] = {
            "data": {
                "image": image_url(im),
                "caption": "; ".join(dict.fromkeys(captions)),
                "captions": captions,
            },
            "meta": {
                "image_id": im.image_id,
                "path": im.path,
                "sha256": im.sha256,
                "split": im.split,
                "reviewers": reviewers,
                "boxes": [
                    {
                        "id": f"p{it.label.proposal_id}",
                        "caption": it.caption,
                        "source": it.label.source,
                        "reviewer": it.label.reviewer,
                    }
                    for it in im.items
                ],
            },
            "predictions": predictions,
        }
        if all(it.label.source == "reviewed" for it in im.items):
            task["annotations"] = [
                {"result": [_ls_result(i, im.width, im.height, False) for i in im.items]}
            ]
        tasks.append(task)
    return tasks


def labelstudio_config(names: Sequence[str]) -> str:
    """The labeling config XML matching :func:`labelstudio_tasks`."""
    from xml.sax.saxutils import quoteattr

    labels = "\n".join(f"    <Label value={quoteattr(n)}/>" for n in names)
    return (
        "<View>\n"
        '  <Image name="image" value="$image"/>\n'
        '  <RectangleLabels name="label" toName="image">\n'
        f"{labels}\n"
        "  </RectangleLabels>\n"
        "</View>\n"
    )


# -- ODVG ----------------------------------------------------------------------------------
def odvg_rows(
    images: Sequence[ExportImage],
    image_ref: Callable[[ExportImage], str],
    names: Sequence[str] | None = None,
) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """Open-GroundingDino OD rows (``detection.instances``) and the label map ``{id: name}``.

    Label ids are 0-based indexes into ``names`` (default :func:`categories` of ``images``).
    """
    names = list(names) if names is not None else categories(images)
    ids = {n: i for i, n in enumerate(names)}
    rows = []
    for im in images:
        rows.append(
            {
                "filename": image_ref(im),
                "height": im.height,
                "width": im.width,
                "detection": {
                    "instances": [
                        {
                            "bbox": [_r(v) for v in it.label.box],
                            "label": ids[it.label.phrase],
                            "category": it.label.phrase,
                        }
                        for it in im.items
                    ]
                },
            }
        )
    return rows, {str(i): n for n, i in ids.items()}


def odvg_grounding_rows(
    images: Sequence[ExportImage], image_ref: Callable[[ExportImage], str]
) -> list[dict[str, Any]]:
    """Open-GroundingDino VG rows: ``grounding.regions`` (box + phrase) and a caption made of
    the image's phrases the way its OD loader builds one (``"a . b ."``)."""
    rows = []
    for im in images:
        phrases = sorted({it.label.phrase for it in im.items})
        rows.append(
            {
                "filename": image_ref(im),
                "height": im.height,
                "width": im.width,
                "grounding": {
                    "caption": " . ".join(phrases) + " .",
                    "regions": [
                        {"bbox": [_r(v) for v in it.label.box], "phrase": it.label.phrase}
                        for it in im.items
                    ],
                },
            }
        )
    return rows
