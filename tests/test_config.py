"""configs/default.yaml mirrors autolabel/config.py; validation errors name the key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from autolabel.config import Config, load_config
from autolabel.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
DEFAULT_YAML = REPO / "configs" / "default.yaml"


def _keys(node: dict, prefix: str = "") -> set[str]:
    out = set()
    for k, v in node.items():
        out.add(prefix + k)
        if isinstance(v, dict) and prefix == "":  # sections only; values may be dicts too
            out |= _keys(v, f"{k}.")
    return out


def test_default_yaml_has_every_key_of_the_model_and_no_other():
    data = yaml.safe_load(DEFAULT_YAML.read_text(encoding="utf-8"))
    assert _keys(data) == _keys(Config().model_dump())


def test_default_yaml_values_equal_builtin_defaults():
    assert load_config(DEFAULT_YAML).model_dump() == Config().model_dump()


def test_default_yaml_documents_every_key_with_a_comment():
    lines = DEFAULT_YAML.read_text(encoding="utf-8").splitlines()
    undocumented = []
    for i, line in enumerate(lines):
        stripped = line.strip()
        if not stripped or stripped.startswith("#") or not line.startswith("  "):
            continue
        if ":" in stripped and not lines[i - 1].strip().startswith("#"):
            undocumented.append(stripped.split(":")[0])
    assert undocumented == []


def test_imageio_guard_defaults_match_config():
    from autolabel import imageio

    assert Config().image.max_pixels == imageio.DEFAULT_MAX_PIXELS
    assert Config().image.max_side == imageio.DEFAULT_MAX_SIDE


@pytest.mark.parametrize(
    ("text", "expected_fragments"),
    [
        ("ingest:\n  batchsize: 10\n", ["unknown key", "ingest.batchsize"]),
        ("colour: red\n", ["unknown key", "colour"]),
        ("ingest:\n  batch_size: many\n", ["ingest.batch_size", "'many'"]),
        ("ingest:\n  batch_size: 0\n", ["ingest.batch_size", "greater than or equal to 1"]),
        ("detect:\n  refiner: magic\n", ["detect.refiner", "'magic'"]),
        ("select:\n  target_precision: 1.5\n", ["select.target_precision"]),
        ("- a\n- b\n", ["expected a mapping", "list"]),
        ("ingest: [1\n", ["invalid YAML"]),
    ],
)
def test_invalid_config_errors_name_the_key(tmp_path, text, expected_fragments):
    path = tmp_path / "bad.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert str(path) in message
    for fragment in expected_fragments:
        assert fragment in message


def test_missing_config_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path / "nope.yaml")


def test_overrides_beat_file_and_none_means_not_given(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("ingest:\n  batch_size: 7\n  recursive: false\n", encoding="utf-8")
    cfg = load_config(path, {"ingest.batch_size": 3, "ingest.recursive": None})
    assert cfg.ingest.batch_size == 3
    assert cfg.ingest.recursive is False
    assert cfg.image.max_side == Config().image.max_side


def test_override_of_wrong_type_names_the_key():
    with pytest.raises(ConfigError, match=r"image\.max_pixels"):
        load_config(None, {"image.max_pixels": "lots"})


def test_workspace_config_file_is_used(workspace):
    workspace.config_path.write_text("image:\n  max_side: 1234\n", encoding="utf-8")
    assert workspace.config().image.max_side == 1234
    assert workspace.config({"image.max_side": 99}).image.max_side == 99
