"""Validates Label Studio tasks with label-studio-sdk; run by the labelstudio venv's python.

Usage: ls_driver.py CONFIG_XML TASKS_JSON  ->  prints one JSON object:
``{"config_ok": bool, "tasks": [{"data_ok", "predictions": [errors...], "annotations": [ok...]}]}``
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(config_path: str, tasks_path: str) -> None:
    from label_studio_sdk.label_interface import LabelInterface

    config = Path(config_path).read_text(encoding="utf-8")
    li = LabelInterface(config)
    try:
        li.validate()
        config_ok = True
    except Exception as exc:  # the SDK raises various types for an invalid config
        config_ok = f"{type(exc).__name__}: {exc}"
    out = []
    for task in json.loads(Path(tasks_path).read_text(encoding="utf-8")):
        data_ok = all(
            task["data"].get(obj.value_name) is not None
            for obj in li.objects
            if obj.value_is_variable
        )
        preds = [li.validate_prediction(p, return_errors=True) for p in task.get("predictions", [])]
        anns = [bool(li.validate_annotation(a)) for a in task.get("annotations", [])]
        out.append({"data_ok": data_ok, "predictions": preds, "annotations": anns})
    print(json.dumps({"config_ok": config_ok, "tasks": out}))


if __name__ == "__main__":
    main(*sys.argv[1:])
