"""A version folder is a self-contained bundle: copy it elsewhere, move the originals away,
and every file any format references still resolves, inside the copy."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import consumers as fd


def _inside(root: Path, ref: str, base: Path | None = None) -> tuple[bool, Path]:
    """Resolve ``ref`` (absolute, or relative to ``base``/``root``); ``(inside root, path)``."""
    p = Path(ref)
    p = p if p.is_absolute() else (base or root) / p
    real = Path(os.path.realpath(p))
    return real.is_file() and real.is_relative_to(root.resolve()), p


def _kind(bundle: Path, p: Path) -> str:
    """``swift``, ``coco``, ``odvg``, ``yolo``, ``meta``, ... from a file's place."""
    parts = [q for q in p.relative_to(bundle).parts if q != "val"]
    return parts[0].split("_")[0].split(".")[0]


def _refs(bundle: Path) -> Iterator[tuple[str, str, Path | None]]:
    """``(kind, reference, base folder)`` for every file reference of every format."""
    for p in sorted(bundle.rglob("*.jsonl")):
        kind = _kind(bundle, p)
        for row in fd.read_jsonl(p):
            if "images" in row:  # ms-swift: relative to ROOT_IMAGE_DIR = the bundle
                for im in row["images"]:
                    yield kind, im, None
            elif "image" in row and "text" in row:
                yield kind, row["image"], None
            elif "filename" in row:  # ODVG: relative to the dataset config's root
                yield kind, row["filename"], None
            elif "source_path" in row:  # manifest: crop and bundle file
                if row["crop"]:
                    yield kind, row["crop"], None
                yield kind, row["file"], None
    for p in sorted(bundle.rglob("*.json")):
        data = json.loads(p.read_text(encoding="utf-8"))
        if isinstance(data, dict) and "images" in data and "annotations" in data:  # COCO
            for im in data["images"]:
                yield _kind(bundle, p), im["file_name"], None
        elif isinstance(data, list) and data and "predictions" in data[0]:  # Label Studio
            for task in data:
                yield _kind(bundle, p), fd.local_files_path(task["data"]["image"]), None
    for p in sorted(bundle.rglob("*.txt")):  # YOLO labels need their image next door
        if "labels" in p.parts:
            images = Path(str(p.parent).replace("/labels", "/images"))
            [img] = [q for q in images.iterdir() if q.stem == p.stem]
            yield "yolo", str(img), None


@pytest.fixture
def bundle(exported, tmp_path) -> Iterator[Path]:
    copy = tmp_path / "elsewhere" / exported.version.name
    shutil.copytree(exported.version, copy, symlinks=True)  # like cp -a / rsync -a
    moved = exported.photos.with_name("photos-moved-away")
    exported.photos.rename(moved)
    try:
        yield copy
    finally:
        moved.rename(exported.photos)


def test_bundle_copied_elsewhere_without_originals_resolves_every_reference(exported, bundle):
    refs = list(_refs(bundle))
    kinds = {kind for kind, _r, _b in refs}
    assert {"swift", "coco", "labelstudio", "odvg", "yolo", "meta", "qwen"} <= kinds, kinds
    broken = []
    for what, ref, base in refs:
        ok, _path = _inside(bundle, ref, base)
        if not ok:
            broken.append(f"{what}: {ref}")
    assert not broken, f"{len(broken)} of {len(refs)} references broken, e.g. {broken[:5]}"
    # no file uses the old locations (provenance - the manifest's source_path, Label Studio's
    # task meta - may name the originals; it is not a reference)
    for p in bundle.rglob("*"):
        if not p.is_file() or p.suffix not in (".json", ".jsonl", ".yaml", ".txt", ".xml", ".md"):
            continue
        if _kind(bundle, p) == "meta":
            continue
        text = p.read_text(encoding="utf-8")
        if _kind(bundle, p) == "labelstudio" and p.suffix == ".json":
            text = json.dumps([t["data"] for t in json.loads(text)])
        assert str(exported.photos) not in text, f"{p.name} names the originals' folder"
        assert str(exported.version) not in text, f"{p.name} names the export folder"


def test_bundle_yolo_dataset_loads_from_the_copy(exported, bundle, tmp_path, monkeypatch):
    fd.require("ultralytics")
    monkeypatch.setenv("YOLO_CONFIG_DIR", str(tmp_path / "ultralytics"))
    from ultralytics.data.utils import check_det_dataset, verify_image_label

    [yaml_path] = sorted(bundle.rglob("data.yaml"))
    data = check_det_dataset(str(yaml_path), autodownload=False)
    assert Path(data["path"]).resolve().is_relative_to(bundle.resolve())
    images = fd.yolo_split_images(data, "train") + fd.yolo_split_images(data, "val")
    assert len(set(images)) == len(fd.ORIGINALS)
    from ultralytics.data.utils import img2label_paths

    for im, lb in zip(images, img2label_paths(images), strict=True):
        assert Path(os.path.realpath(im)).is_relative_to(bundle.resolve()), im
        res = verify_image_label((im, lb, "", False, data["nc"], 0, 0, False))
        assert res[0] is not None, f"{im}: {res[-1]}"
