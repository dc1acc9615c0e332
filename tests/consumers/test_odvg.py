"""Open-GroundingDino reads the ODVG export the way its ``datasets/odvg.py`` does.

:class:`OdvgReader` follows ``ODVGDataset.__getitem__`` of IDEA-Research/Open-GroundingDino
(read there, rewritten here without torch): ``os.path.join(root, filename)``,
``Image.open(...).convert("RGB")`` with no EXIF handling, the image's own ``size``; in OD mode
the caption is ``" . ".join(label names of present + sampled negative labels) + " ."`` and each
box's class is the index of its label's name in that shuffled list; in VG mode the regions'
phrases form the caption. The dataset config's ``root`` is the version folder.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any

import numpy as np

from tests.support import consumers as fd


class OdvgReader:
    """Our equivalent of Open-GroundingDino's ``ODVGDataset`` (transforms left out)."""

    def __init__(self, root: str, anno: str, label_map_anno: str | None = None, max_labels=80):
        self.root = root
        self.dataset_mode = "OD" if label_map_anno else "VG"
        self.max_labels = max_labels
        if label_map_anno:
            with open(label_map_anno) as fh:
                self.label_map = json.load(fh)
            self.label_index = set(self.label_map.keys())
        with open(anno) as fh:
            self.metas = [json.loads(line) for line in fh]

    def __len__(self) -> int:
        return len(self.metas)

    def __getitem__(self, index: int) -> tuple[Any, dict[str, Any]]:
        from PIL import Image

        meta = self.metas[index]
        abs_path = os.path.join(self.root, meta["filename"])
        if not os.path.exists(abs_path):
            raise FileNotFoundError(f"{abs_path} not found.")
        image = Image.open(abs_path).convert("RGB")
        w, h = image.size
        if self.dataset_mode == "OD":
            instances = list(meta["detection"]["instances"])
            boxes = [obj["bbox"] for obj in instances]
            pos_labels = {str(obj["label"]) for obj in instances}
            neg_labels = self.label_index.difference(pos_labels)
            vg_labels = list(pos_labels)
            num_to_add = min(len(neg_labels), self.max_labels - len(pos_labels))
            if num_to_add > 0:
                vg_labels.extend(random.sample(sorted(neg_labels), num_to_add))
            random.shuffle(vg_labels)
            caption_list = [self.label_map[lb] for lb in vg_labels]
            caption_dict = {item: i for i, item in enumerate(caption_list)}
            caption = " . ".join(caption_list) + " ."
            classes = [caption_dict[self.label_map[str(obj["label"])]] for obj in instances]
        else:
            regions = list(meta["grounding"]["regions"])
            boxes = [obj["bbox"] for obj in regions]
            phrases = [obj["phrase"] for obj in regions]
            c = list(zip(boxes, phrases, strict=True))
            random.shuffle(c)
            boxes, phrases = (list(t) for t in zip(*c, strict=True))
            caption_list = list(set(phrases))
            index = {cap: i for i, cap in enumerate(caption_list)}
            classes = [index[p] for p in phrases]
            caption = " . ".join(caption_list) + " ."
        target = {
            "size": (int(h), int(w)),
            "cap_list": caption_list,
            "caption": caption,
            "boxes": np.asarray(boxes, np.float32).reshape(-1, 4),
            "labels": np.asarray(classes, np.int64),
        }
        return image, target


def _rows_with(version: Path, key: str) -> list[Path]:
    files = []
    for p in sorted(version.rglob("*.jsonl")):
        first = p.read_text(encoding="utf-8").split("\n", 1)[0]
        if first and key in json.loads(first):
            files.append(p)
    return files


def _check(reader: OdvgReader, what: str) -> int:
    n = 0
    for i in range(len(reader)):
        image, target = reader[i]
        rgb = np.asarray(image)
        assert target["size"] == rgb.shape[:2]
        phrases = [target["cap_list"][c] for c in target["labels"]]
        assert all(f"{p} ." in target["caption"] for p in phrases)
        fd.assert_on_object(
            rgb, list(zip(phrases, target["boxes"].tolist(), strict=True)), f"{what} row {i}"
        )
        n += len(phrases)
    return n


def _val_objects(version: Path) -> int:
    """Boxes in the validation split (Open-GroundingDino evaluates them from COCO)."""
    return sum(1 for r in fd.read_jsonl(version / "meta" / "manifest.jsonl") if r["split"] == "val")


def test_odvg_od_rows_on_the_pixels_open_groundingdino_loads(exported):
    random.seed(0)
    [anno] = _rows_with(exported.version, "detection")
    [label_map] = sorted(exported.version.rglob("*label_map*.json"))
    reader = OdvgReader(str(exported.version), str(anno), str(label_map))
    assert sorted(reader.label_map.values()) == sorted(fd.COLOURS)
    n = _check(reader, "ODVG OD")
    assert n + _val_objects(exported.version) == sum(len(o.objects) for o in fd.ORIGINALS)


def test_odvg_vg_rows_on_the_pixels_open_groundingdino_loads(exported):
    random.seed(0)
    [anno] = _rows_with(exported.version, "grounding")
    reader = OdvgReader(str(exported.version), str(anno))
    for meta in reader.metas:
        assert meta["grounding"]["caption"]
    n = _check(reader, "ODVG VG")
    assert n + _val_objects(exported.version) == sum(len(o.objects) for o in fd.ORIGINALS)


def test_odvg_labels_match_a_coco_validation_file_and_label_list(exported):
    [label_map_path] = sorted(exported.version.rglob("*label_map*.json"))
    label_map = {int(k): v for k, v in json.loads(label_map_path.read_text()).items()}
    assert sorted(label_map) == list(range(len(label_map)))  # 0-based, dense
    matching = []
    for p in sorted(exported.version.rglob("*.json")):
        data = json.loads(p.read_text(encoding="utf-8"))
        if isinstance(data, dict) and "categories" in data:
            if {c["id"]: c["name"] for c in data["categories"]} == label_map:
                matching.append(p)
    assert matching, "no COCO file whose category ids are the ODVG label ids"
    from pycocotools.coco import COCO

    for p in matching:  # and its boxes sit on the pixels, like the OD rows
        gt = COCO(str(p))
        for img_id, img in gt.imgs.items():
            rgb = fd.load_rgb_no_exif(exported.version / img["file_name"])
            boxes = [
                (label_map[a["category_id"]],
                 (a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2],
                  a["bbox"][1] + a["bbox"][3]))
                for a in gt.loadAnns(gt.getAnnIds(imgIds=[img_id]))
            ]  # fmt: skip
            fd.assert_on_object(rgb, boxes, f"{p.name} {img['file_name']}")
    [label_list] = sorted(exported.version.rglob("*label_list*"))
    names = json.loads(label_list.read_text(encoding="utf-8"))
    assert names == [label_map[i] for i in range(len(label_map))]
