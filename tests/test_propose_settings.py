"""How propose resolves thresholds and detector options from flags, versions and the seed."""

from __future__ import annotations

import json

import pytest

from autolabel.errors import ConfigError
from autolabel.propose import EXEMPLAR_DEFAULT_THRESHOLD
from autolabel.store.db import utcnow
from tests.support.propose import propose_settings as resolve_settings


def _version(ws, name: str, thresholds: dict) -> None:
    folder = ws.path / "models" / name
    folder.mkdir(parents=True)
    (folder / "metadata.json").write_text(json.dumps({"thresholds": thresholds}))


def test_fine_tuned_version_thresholds_beat_seed_thresholds(workspace):
    workspace.set_setting(
        "seed.thresholds",
        {"detector": "grounding-dino", "box_threshold": 0.5, "text_threshold": 0.4},
    )
    s = resolve_settings(workspace, prompt="red square")
    assert (s.detect.box_threshold, s.detect.text_threshold) == (0.5, 0.4)
    _version(workspace, "gdino-v1", {"box_threshold": 0.31, "text_threshold": 0.22})
    _version(workspace, "gdino-v2", {"box_threshold": 0.27, "text_threshold": 0.18})
    s = resolve_settings(workspace, prompt="red square", model="latest")
    assert s.detect.model.endswith("gdino-v2")
    assert (s.detect.box_threshold, s.detect.text_threshold) == (0.27, 0.18)
    s = resolve_settings(workspace, prompt="red square", model="gdino-v1")
    assert (s.detect.box_threshold, s.detect.text_threshold) == (0.31, 0.22)
    # flags still win
    s = resolve_settings(workspace, prompt="red square", model="latest", box_threshold=0.9)
    assert s.detect.box_threshold == 0.9 and s.detect.text_threshold == 0.18


def test_seed_thresholds_of_another_detector_are_ignored(workspace):
    workspace.set_setting("seed.thresholds", {"detector": "exemplar", "box_threshold": 0.85})
    cfg = workspace.config()
    s = resolve_settings(workspace, prompt="red square")
    assert s.detect.box_threshold == cfg.detect.box_threshold


def test_exemplar_detector_takes_seed_crops_as_exemplars(workspace, tmp_path):
    with pytest.raises(ConfigError, match="seed crops"):
        resolve_settings(workspace, prompt="cup", detector="exemplar")
    with workspace.transaction() as c:
        for i, status in enumerate(("located", "not_found")):
            c.execute(
                "INSERT INTO seed_items(crop_path, status, phrase, added_at) VALUES (?,?,?,?)",
                (
                    str(tmp_path / f"crop_{i}.png"),
                    status,
                    "white cup" if i == 0 else None,
                    utcnow(),
                ),
            )
    s = resolve_settings(workspace, prompt="cup", detector="exemplar")
    kw = s.detector_kwargs()
    assert kw["exemplars"] == [str(tmp_path / "crop_0.png")]  # located crops only
    assert kw["phrases"] == ["white cup"]
    assert kw["box_threshold"] == EXEMPLAR_DEFAULT_THRESHOLD
    assert "model" not in kw and "text_threshold" not in kw


def test_model_v2_means_the_workspace_version_as_in_finetune(workspace):
    from autolabel.errors import InputError
    from autolabel.train.loop import resolve_base

    _version(workspace, "gdino-v1", {"box_threshold": 0.31})
    _version(workspace, "gdino-v2", {"box_threshold": 0.27})
    for name in ("v2", "gdino-v2"):
        s = resolve_settings(workspace, prompt="red square", model=name)
        assert s.detect.model == str(workspace.path / "models" / "gdino-v2"), name
        assert s.detect.model == resolve_base(workspace.path, name, default_model="unused"), name
        assert s.detect.box_threshold == 0.27
    assert resolve_settings(workspace, prompt="x", model="latest").detect.model == resolve_base(
        workspace.path, "latest", default_model="unused"
    )
    for name in ("v7", "gdino-v7"):
        with pytest.raises(InputError, match="expected one of"):
            resolve_settings(workspace, prompt="red square", model=name)
        with pytest.raises(InputError, match="expected one of"):
            resolve_base(workspace.path, name, default_model="unused")


def test_settings_take_their_defaults_from_the_config_sections():
    from autolabel.config import DetectConfig, ImageConfig, ProposeConfig
    from autolabel.propose import ProposeSettings

    s = ProposeSettings(prompt="cup")
    assert (s.detect, s.propose, s.image) == (DetectConfig(), ProposeConfig(), ImageConfig())
    t = ProposeSettings.of("cup", batch_size=3, box_threshold=0.1, max_side=99, refiner=None)
    assert (t.propose.batch_size, t.detect.box_threshold, t.image.max_side) == (3, 0.1, 99)
    assert t.refiner is None and t.detect.refiner == "none"
    assert s.replace(engine="ray").propose.engine == "ray" and s.propose.engine == "local"
    rec = t.record()
    assert rec["batch_size"] == 3 and rec["prompt"] == "cup" and rec["refiner"] is None


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"batch_sise": 3}, "batch_sise"),
        ({"engine": "spark"}, "propose"),
        ({"box_threshold": 2.0}, "detect"),
    ],
)
def test_bad_settings_are_config_errors(options, match):
    from autolabel.propose import ProposeSettings

    with pytest.raises(ConfigError, match=match):
        ProposeSettings.of("cup", **options)


def test_cli_propose_model_v2_names_the_workspace_version(workspace):
    from typer.testing import CliRunner

    from autolabel.cli import app
    from autolabel.errors import InputError

    _version(workspace, "gdino-v1", {})
    res = CliRunner().invoke(app, ["propose", str(workspace.path), "-p", "cup", "--model", "v2"])
    assert isinstance(res.exception, InputError), res.output  # the CLI prints it on one line
    assert str(res.exception) == "model version 'v2': expected one of ['gdino-v1']"
