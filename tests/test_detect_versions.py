"""The one model-name resolver: versions, ``latest``, registry names, paths, hub ids."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from autolabel.detect import versions
from autolabel.errors import InputError, ModelError


def _version(root: Path, n: int) -> Path:
    d = root / "models" / f"gdino-v{n}"
    d.mkdir(parents=True)
    (d / "metadata.json").write_text(json.dumps({"thresholds": {"box_threshold": n / 10}}))
    return d


@pytest.mark.parametrize(
    ("name", "expected"),
    [("latest", "gdino-v3"), ("v1", "gdino-v1"), ("gdino-v3", "gdino-v3"), ("v3", "gdino-v3")],
)
def test_workspace_names(tmp_path, name, expected):
    for n in (1, 3):
        _version(tmp_path, n)
    assert Path(versions.resolve_model(name, workspace=tmp_path)).name == expected


@pytest.mark.parametrize(
    ("name", "workspace", "match"),
    [
        ("v2", True, r"expected one of \['gdino-v1'\]"),
        ("latest", False, "expected a workspace"),
        ("gdino-v1", False, "expected a workspace"),
    ],
)
def test_unknown_or_homeless_versions_are_input_errors(tmp_path, name, workspace, match):
    _version(tmp_path, 1)
    with pytest.raises(InputError, match=match):
        versions.resolve_model(name, workspace=tmp_path if workspace else None)


def test_latest_without_versions_says_so(tmp_path):
    with pytest.raises(InputError, match="fine-tuned version for 'latest', got none"):
        versions.resolve_model("latest", workspace=tmp_path)


def test_paths_and_hub_ids_pass_through(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "v9").mkdir()  # a plain folder named like a version, no such version
    assert versions.resolve_model("v9", workspace=tmp_path / "ws") == "v9"
    assert versions.resolve_model("v9") == "v9"
    for name in ("org/model", str(tmp_path / "weights.pth"), "./some/folder"):
        assert versions.resolve_model(name, workspace=tmp_path) == name


def test_registry_names_resolve_by_kind():
    assert versions.resolve_model("grounding-dino-tiny") == "IDEA-Research/grounding-dino-tiny"
    with pytest.raises(ModelError, match="expected a sam one"):
        versions.resolve_model("grounding-dino-tiny", kind="sam")


def test_version_names_and_thresholds(tmp_path):
    assert versions.looks_like_version("v2") and versions.looks_like_version("gdino-v12")
    assert not versions.looks_like_version("2") and not versions.looks_like_version("gdino-2")
    d = _version(tmp_path, 4)
    assert versions.version_thresholds(d) == {"box_threshold": 0.4}
    assert versions.version_thresholds(tmp_path) == {}
    assert versions.version_name(4) == "gdino-v4" and versions.next_version_number(tmp_path) == 5
