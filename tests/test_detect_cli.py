"""`autolabel models ...` commands and the model registry."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from autolabel.cli import app
from autolabel.errors import ModelError

runner = CliRunner()


def test_models_list_json_has_the_registry_and_presence(tmp_path, monkeypatch):
    from autolabel.detect.registry import REPO_MODELS, load_registry
    from autolabel.detect.versions import resolve_model

    root = tmp_path / "models"
    root.mkdir()
    (root / "registry.yaml").write_text((REPO_MODELS / "registry.yaml").read_text())
    monkeypatch.setenv("AUTOLABEL_MODELS_DIR", str(root))
    res = runner.invoke(app, ["models", "list", "--json"])
    assert res.exit_code == 0, res.output
    rows = {r["name"]: r for r in json.loads(res.output)}
    assert {
        "grounding-dino-tiny",
        "grounding-dino-base",
        "groundingdino-swint-ogc",
        "sam-vit-b",
        "sam-vit-h",
        "hf-sam-vit-base",
        "slimsam-77",
    } <= set(rows)
    assert rows["sam-vit-b"]["sha256"].startswith("ec2df627")
    assert not rows["sam-vit-b"]["present"]
    assert resolve_model("grounding-dino-tiny") == "IDEA-Research/grounding-dino-tiny"
    # place a file by hand -> present, and the name resolves to it
    entry = load_registry()["sam-vit-b"]
    entry.local_path().parent.mkdir(parents=True)
    entry.local_path().write_bytes(b"x")
    rows = {
        r["name"]: r for r in json.loads(runner.invoke(app, ["models", "list", "--json"]).output)
    }
    assert rows["sam-vit-b"]["present"]
    assert resolve_model("sam-vit-b", kind="sam") == str(entry.local_path())
    with pytest.raises(ModelError, match="expected a grounding-dino one"):
        resolve_model("sam-vit-b", kind="grounding-dino")
    with pytest.raises(ModelError, match=r"sam_vit_l_0b3195\.pth"):
        resolve_model("sam-vit-l", kind="sam")  # file-only model not placed
    text = runner.invoke(app, ["models", "list"]).output
    assert "grounding-dino-tiny" in text and "here" in text


def test_models_list_with_workspace(workspace):
    res = runner.invoke(app, ["models", "list", str(workspace.path), "--json"])
    assert res.exit_code == 0, res.output
    assert any(r["name"] == "grounding-dino-tiny" for r in json.loads(res.output))


def test_pull_fails_fast_offline_with_how_to_place_files(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "AUTOLABEL_MODELS_DIR": str(tmp_path)}
    (tmp_path / "registry.yaml").write_text(
        (Path(__file__).resolve().parents[1] / "models" / "registry.yaml").read_text()
    )
    proc = subprocess.run(
        [sys.executable, "-m", "autolabel.cli", "models", "pull", "sam-vit-b"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: model 'sam-vit-b'")
    assert "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth" in proc.stderr
    assert str(tmp_path / "sam-vit-b" / "sam_vit_b_01ec64.pth") in proc.stderr
    assert "Traceback" not in proc.stderr
    res = runner.invoke(app, ["models", "pull", "no-such-model"])
    assert isinstance(res.exception, ModelError) and "unknown model" in str(res.exception)


def test_info_describes_each_format(tiny_models):
    def info(target):
        res = runner.invoke(app, ["models", "info", str(target)])
        assert res.exit_code == 0, res.output
        return json.loads(res.output)

    gd = info(tiny_models["grounding-dino"])
    assert (gd["format"], gd["kind"], gd["d_model"], gd["num_queries"]) == (
        "transformers",
        "grounding-dino",
        32,
        20,
    )
    orig = info(tiny_models["grounding-dino-original"])
    assert orig["format"] == "grounding-dino-original" and orig["d_model"] == 32
    sam = info(tiny_models["sam"])
    assert sam["format"] == "segment-anything" and sam["embed_dim"] == 32
    hf = info(tiny_models["hf-sam"])
    assert hf["kind"] == "hf-sam" and hf["model_version"] == hf["model_version"].lower()
    reg = info("groundingdino-swint-ogc")
    assert reg["format"] == "registry" and reg["sha256"].startswith("3b3ca256")
    res = runner.invoke(app, ["models", "info", "no/such/thing"])
    assert isinstance(res.exception, ModelError)


def test_make_tiny_writes_loadable_models(tmp_path):
    res = runner.invoke(app, ["models", "make-tiny", "--out", str(tmp_path / "tiny")])
    assert res.exit_code == 0, res.output
    paths = json.loads(res.output)
    assert set(paths) == {"grounding-dino", "grounding-dino-original", "sam", "hf-sam"}
    assert (Path(paths["grounding-dino"]) / "model.safetensors").is_file()
    assert Path(paths["sam"]).is_file() and Path(paths["grounding-dino-original"]).is_file()
    from autolabel.detect import build_detector

    det = build_detector("grounding-dino", model=paths["grounding-dino"], box_threshold=0.0)
    import numpy as np

    out = det.detect([np.zeros((64, 96, 3), np.uint8)], ["product. photo"])[0]
    assert len(out) == 20 and set(out.phrase) <= {"product", "photo"}
