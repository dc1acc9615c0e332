"""label-studio-sdk validates the exported tasks; boxes land on the image Label Studio shows.

Label Studio serves ``/data/local-files/?d=PATH`` from ``LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT``
and the browser shows the image EXIF-oriented; percent coordinates refer to that view.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np

from tests.support import consumers as fd


def _ls_files(version: Path) -> tuple[Path, Path]:
    [tasks] = sorted(version.rglob("labelstudio*.json"))
    [config] = sorted(version.rglob("labelstudio*.xml"))
    return tasks, config


def _tasks(exported) -> list[dict]:
    return json.loads(_ls_files(exported.version)[0].read_text(encoding="utf-8"))


def _original(exported, task: dict) -> fd.Original:
    return exported.by_path[task["meta"]["path"]]


def image_file(exported, url: str) -> Path:
    """The file Label Studio serves for ``url``: ``d`` relative to the document root, which
    is the version folder (portable) or ``/`` (``--labelstudio-root /``)."""
    d = fd.local_files_path(url)
    for root in (exported.version, Path("/")):
        if (root / d).is_file():
            return root / d
    raise AssertionError(f"{url}: no file under the version folder or /")


def test_labelstudio_sdk_validates_config_tasks_predictions_annotations(exported):
    py = fd.venv_python("labelstudio")
    tasks_path, config_path = _ls_files(exported.version)
    res = subprocess.run(
        [str(py), str(fd.CONSUMERS_DIR / "ls_driver.py"), str(config_path), str(tasks_path)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert res.returncode == 0, res.stderr[-4000:]
    report = json.loads(res.stdout)
    assert report["config_ok"] is True
    assert len(report["tasks"]) == len(fd.ORIGINALS)
    for task in report["tasks"]:
        assert task["data_ok"]
        assert task["predictions"] or task["annotations"]
        assert all(errors == [] for errors in task["predictions"]), task["predictions"]
        assert all(task["annotations"])


def test_labelstudio_boxes_on_the_image_it_shows(exported):
    from PIL import Image, ImageOps

    n = 0
    for task in _tasks(exported):
        with Image.open(image_file(exported, task["data"]["image"])) as im:
            rgb = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
        h, w = rgb.shape[:2]
        results = {}
        for obj in task.get("predictions", []) + task.get("annotations", []):
            for r in obj["result"]:
                assert (r["original_width"], r["original_height"]) == (w, h)
                v = r["value"]
                x0, y0 = v["x"] * w / 100, v["y"] * h / 100
                box = (x0, y0, x0 + v["width"] * w / 100, y0 + v["height"] * h / 100)
                results.setdefault(r["id"], (v["rectanglelabels"][0], box))
        fd.assert_on_object(rgb, list(results.values()), f"Label Studio {task['data']['image']}")
        assert len(results) == len(_original(exported, task).objects)
        n += len(results)
    assert n == sum(len(o.objects) for o in fd.ORIGINALS)


def test_labelstudio_no_partial_finished_task_and_reviewer_survives(exported):
    for task in _tasks(exported):
        orig = _original(exported, task)
        for ann in task.get("annotations", []):  # an annotation is complete, or absent
            assert len(ann["result"]) == len(orig.objects), (
                f"{orig.rel}: annotation holds {len(ann['result'])} of {len(orig.objects)} boxes"
            )
        text = json.dumps(task, ensure_ascii=False)
        for ob in orig.objects:
            if ob.reviewer:
                assert ob.reviewer in text, f"{orig.rel}: reviewer {ob.reviewer} lost"


def test_labelstudio_task_data_has_every_caption(exported):
    for task in _tasks(exported):
        orig = _original(exported, task)
        data = json.dumps(task["data"], ensure_ascii=False)
        for ob in orig.objects:
            assert json.dumps(ob.caption or ob.phrase, ensure_ascii=False) in data, orig.rel


def test_docs_describe_labelstudio_local_storage():
    text = (fd.REPO / "docs" / "export.md").read_text(encoding="utf-8")
    assert "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT" in text
    assert "LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED" in text
