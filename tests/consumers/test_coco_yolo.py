"""pycocotools and ultralytics read the export; boxes land on the pixels they load."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from tests.support import consumers as fd

N_OBJECTS = sum(len(o.objects) for o in fd.ORIGINALS)


def _coco_files(version: Path) -> list[Path]:
    """The COCO detection files of the export: ``coco.json`` (train) and ``val/coco.json``."""
    files = sorted(version.glob("coco*.json")) + sorted(version.glob("val/coco*.json"))
    assert files, f"no COCO file in {sorted(p.name for p in version.iterdir())}"
    return files


def _resolve(file_name: str, root: Path) -> Path:
    """COCO ``file_name``: absolute, or relative to the image root (the version folder)."""
    p = Path(file_name)
    return p if p.is_absolute() else root / p


def test_pycocotools_cocoeval_of_the_labels_against_themselves_is_ap_1(exported):
    fd.require("pycocotools", "eval")
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    n_anns = 0
    for path in _coco_files(exported.version):
        gt = COCO(str(path))
        if not gt.getAnnIds():
            continue
        dets = [
            {"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"],
             "score": 1.0}
            for a in gt.dataset["annotations"]
        ]  # fmt: skip
        ev = COCOeval(gt, gt.loadRes(dets), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
        assert ev.stats[0] == pytest.approx(1.0) and ev.stats[8] == pytest.approx(1.0)
        assert {c["name"] for c in gt.dataset["categories"]} <= set(fd.COLOURS)
        n_anns += len(gt.getAnnIds())
    assert n_anns >= N_OBJECTS  # every label is in some COCO file


@pytest.mark.parametrize("loader", ["PIL", "cv2"])
def test_coco_boxes_on_the_pixels_loaded_without_exif(exported, loader):
    """torchvision ``CocoDetection`` / Open-GroundingDino open COCO images with PIL and no
    ``exif_transpose``; cv2 users pass IMREAD_IGNORE_ORIENTATION or decode raw buffers."""
    fd.require("pycocotools", "eval")
    import cv2
    from pycocotools.coco import COCO

    seen = 0
    for path in _coco_files(exported.version):
        gt = COCO(str(path))
        cats = {c["id"]: c["name"] for c in gt.dataset["categories"]}
        for img_id, img in gt.imgs.items():
            file = _resolve(img["file_name"], exported.version)
            if loader == "PIL":
                rgb = fd.load_rgb_no_exif(file)
            else:
                flags = cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION
                rgb = cv2.imread(str(file), flags)[..., ::-1]
            assert rgb.shape[:2] == (img["height"], img["width"]), file
            boxes = [
                (cats[a["category_id"]], (a["bbox"][0], a["bbox"][1],
                                          a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]))
                for a in gt.loadAnns(gt.getAnnIds(imgIds=[img_id]))
            ]  # fmt: skip
            fd.assert_on_object(rgb, boxes, f"COCO {file.name} ({loader})")
            seen += len(boxes)
    assert seen >= N_OBJECTS


@pytest.fixture
def yolo_data(exported, tmp_path, monkeypatch) -> dict:
    fd.require("ultralytics")
    monkeypatch.setenv("YOLO_CONFIG_DIR", str(tmp_path / "ultralytics"))
    monkeypatch.setenv("YOLO_OFFLINE", "1")
    from ultralytics.data.utils import check_det_dataset

    [yaml_path] = sorted(exported.version.rglob("data.yaml"))
    return check_det_dataset(str(yaml_path), autodownload=False)


def test_ultralytics_check_det_dataset_and_labels_on_loaded_pixels(yolo_data):
    from ultralytics.data.utils import img2label_paths, verify_image_label
    from ultralytics.utils.patches import imread

    assert yolo_data["nc"] == len(fd.COLOURS)
    assert set(yolo_data["names"].values()) == set(fd.COLOURS)
    split = fd.yolo_split_images
    images = sorted(set(split(yolo_data, "train") + split(yolo_data, "val")))
    assert len(images) == len(fd.ORIGINALS)
    n = 0
    for im_file, lb_file in zip(images, img2label_paths(images), strict=True):
        res = verify_image_label((im_file, lb_file, "", False, yolo_data["nc"], 0, 0, False))
        _im, lb, shape, _seg, _kp, nm, nf, _ne, nc, msg = res
        assert (nm, nf, nc) == (0, 1, 0), f"{im_file}: {msg}"
        bgr = imread(im_file)  # what the ultralytics dataloader decodes
        rgb = np.ascontiguousarray(bgr[..., ::-1])
        h, w = rgb.shape[:2]
        assert (h, w) == tuple(shape)
        boxes = []
        for cls, cx, cy, bw, bh in lb:
            boxes.append(
                (yolo_data["names"][int(cls)],
                 ((cx - bw / 2) * w, (cy - bh / 2) * h, (cx + bw / 2) * w, (cy + bh / 2) * h))
            )  # fmt: skip
        fd.assert_on_object(rgb, boxes, f"YOLO {os.path.basename(im_file)}")
        n += len(boxes)
    assert n == N_OBJECTS


def test_ultralytics_val_is_not_the_training_set(yolo_data):
    train = {os.path.realpath(p) for p in fd.yolo_split_images(yolo_data, "train")}
    val = {os.path.realpath(p) for p in fd.yolo_split_images(yolo_data, "val")}
    assert train and val and not train & val
    assert len(train | val) == len(fd.ORIGINALS)
