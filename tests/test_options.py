"""Options mapped once: Config.with_flags, the Prompt value object and its one precedence rule,
and `autocrop` making exactly the library calls of the stage commands for every config key."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from autolabel import steps
from autolabel.config import Config, load_config
from autolabel.errors import ConfigError, EmptyPromptError
from autolabel.store import Workspace
from autolabel.types import Prompt


# -- Config.with_flags ------------------------------------------------------------------------
def test_with_flags_applies_given_flags_on_a_validated_copy():
    cfg = load_config(None)
    out = cfg.with_flags({"select.budget": 50, "ingest.workers": None, "export.size": 224})
    assert (out.select.budget, out.export.size) == (50, 224)
    assert out.ingest.workers == cfg.ingest.workers  # None = flag not given
    assert cfg.export.size == Config().export.size  # the original is untouched
    assert cfg.with_flags({}) is cfg and cfg.with_flags({"export.size": None}) is cfg


@pytest.mark.parametrize(
    ("flags", "fragment"),
    [
        ({"export.size": 2}, "export.size"),
        ({"select.method": "magic"}, "select.method"),
        ({"select.colour": 1}, "unknown key 'select.colour'"),
        ({"nosection.key": 1}, "unknown key 'nosection'"),
    ],
)
def test_with_flags_rejects_invalid_values_naming_the_key(flags, fragment):
    with pytest.raises(ConfigError, match=fragment.replace(".", r"\.")):
        load_config(None).with_flags(flags)


def test_config_sections_are_frozen():
    cfg = load_config(None)
    with pytest.raises(ValueError, match="frozen"):
        cfg.export.size = 10  # type: ignore[misc]
    with pytest.raises(ValueError, match="frozen"):
        cfg.export = cfg.export  # type: ignore[misc]


def test_preset_is_below_the_file_and_the_flags(tmp_path):
    preset = {"select.target_precision": 0.98, "export.formats": ["swift"]}
    assert load_config(None, preset=preset).select.target_precision == 0.98
    path = tmp_path / "c.yaml"
    path.write_text("select:\n  target_precision: 0.9\n", encoding="utf-8")
    cfg = load_config(path, preset=preset)
    assert (cfg.select.target_precision, cfg.export.formats) == (0.9, ["swift"])
    assert cfg.with_flags({"select.target_precision": 0.5}).select.target_precision == 0.5


# -- Prompt -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "phrases", "error"),
    [
        ("white sneaker. handbag", ("white sneaker", "handbag"), None),
        ("White  Sneaker .handbag.", ("white sneaker", "handbag"), None),
        ("a. b . c", ("a", "b", "c"), None),
        ("cup; bowl\nplate? cup", ("cup", "bowl", "plate"), None),
        ("白色运动鞋。手提包；杯子", ("白色运动鞋", "手提包", "杯子"), None),
        (["red square", "Blue. circle"], ("red square", "blue circle"), None),
        (("product photo",), ("product photo",), None),
        ("", None, EmptyPromptError),
        (" . .。 ", None, EmptyPromptError),
        ([], None, EmptyPromptError),
        (["", " . "], None, EmptyPromptError),
    ],
)
def test_prompt_parse(value, phrases, error):
    if error is not None:
        with pytest.raises(error, match="expected"):
            Prompt.parse(value)
        return
    prompt = Prompt.parse(value)
    assert prompt.phrases == phrases
    assert prompt.first == phrases[0]


def test_prompt_text_forms_and_equality():
    prompt = Prompt.parse("White sneaker.handbag")
    assert prompt.text == "white sneaker. handbag."  # what Grounding DINO reads
    assert str(prompt) == "white sneaker. handbag"  # stored in the workspace and run keys
    assert prompt == Prompt.parse(["white sneaker", "handbag"]) == Prompt.parse(str(prompt))
    assert prompt != Prompt.parse("handbag. white sneaker")  # order is the class order
    assert Prompt.parse(prompt) is prompt
    assert len({prompt, Prompt.parse("white sneaker. handbag")}) == 1
    with pytest.raises(EmptyPromptError):
        Prompt(())


def test_empty_prompt_error_is_a_config_error():
    assert issubclass(EmptyPromptError, ConfigError)


# -- the one precedence rule --------------------------------------------------------------------
@pytest.mark.parametrize(
    ("flag", "setting", "config", "expected"),
    [
        ("flag", "workspace", "propose:\n  prompt: config\n", "flag"),
        (None, "workspace", "propose:\n  prompt: config\n", "workspace"),
        (None, None, "propose:\n  prompt: config\n", "config"),
        (None, None, "seed:\n  prompt: seed config\n", "seed config"),
        (None, None, "seed:\n  prompt: s\npropose:\n  prompt: p\n", "p"),
        ("  ", "workspace", "", "workspace"),  # a blank flag is no flag
        (None, None, "", None),
    ],
)
def test_resolve_prompt_flag_then_workspace_then_config(workspace, flag, setting, config, expected):
    workspace.config_path.write_text(config, encoding="utf-8")
    if setting is not None:
        workspace.set_setting(steps.WORKSPACE_PROMPT, setting)
    cfg = steps.load_options(workspace)
    if expected is None:
        with pytest.raises(EmptyPromptError, match="no prompt"):
            steps.resolve_prompt(workspace, cfg, flag)
        assert steps.resolve_prompt(workspace, cfg, flag, required=False) is None
        return
    assert steps.resolve_prompt(workspace, cfg, flag) == Prompt.parse(expected)


def _fake_summary() -> SimpleNamespace:
    return SimpleNamespace(
        images=0,
        proposals=0,
        errors=0,
        images_per_second=0.0,
        interrupted=False,
        run_id=1,
        key="k",
        seconds=0.0,
        error_examples=[],
        as_dict=lambda: {},
    )


def test_propose_prompt_becomes_the_workspace_prompt_and_finetune_finds_it(tmp_path, monkeypatch):
    """The bug: finetune on a workspace proposed with --prompt "product photo" failed with
    "expected a phrase ... got none" (seed boxes without captions had no phrase)."""
    import autolabel.propose
    import autolabel.train.loop
    from autolabel.cli import app
    from autolabel.store.db import utcnow
    from autolabel.store.images import ScannedFile, write_scanned

    ws_path = tmp_path / "ws"
    with Workspace.create(ws_path) as ws:
        write_scanned(ws, [ScannedFile(path="/x/a.jpg", size=1, mtime_ns=0, width=64, height=64)])
        image_id = ws.conn.execute("SELECT id FROM images").fetchone()[0]
        with ws.transaction() as c:
            c.execute(
                "INSERT INTO seed_items(crop_path, original_path, image_id, x0, y0, x1, y1, "
                "score, status, phrase, added_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                ("c.png", "/x/a.jpg", image_id, 1, 1, 30, 30, 0.9, "located", None, utcnow()),
            )
    seen: dict[str, Any] = {}
    monkeypatch.setattr(autolabel.propose, "run_propose", lambda ws, s, **kw: _fake_summary())

    def fake_train(path, training, **kw):
        seen["phrases"] = training.phrases
        # no version folder written: nothing for the champion/challenger check to judge
        return SimpleNamespace(version="gdino-v1", path=None, metadata={}, interrupted=False)

    monkeypatch.setattr(autolabel.train.loop, "finetune", fake_train)
    cli = CliRunner()
    out = cli.invoke(app, ["propose", str(ws_path), "--prompt", "Product photo", "--json", "-q"])
    assert out.exit_code == 0, out.output
    with Workspace.open(ws_path) as ws:
        assert ws.get_setting(steps.WORKSPACE_PROMPT) == "product photo"
    out = cli.invoke(app, ["finetune", str(ws_path), "--json", "--quiet"])
    assert out.exit_code == 0, (out.output, out.exception)
    assert seen["phrases"] == ["product photo"]
    # --prompt wins, and only its first phrase names the boxes without one
    out = cli.invoke(app, ["finetune", str(ws_path), "--json", "-q", "--prompt", "cup. bowl"])
    assert out.exit_code == 0, (out.output, out.exception)
    assert seen["phrases"] == ["cup"]


# -- autocrop honours every config key as the stage commands do -------------------------------
NON_DEFAULT: dict[str, Any] = {
    "ingest.recursive": False,
    "ingest.extensions": ["png"],
    "ingest.batch_size": 7,
    "ingest.hash_bytes": 4096,
    "ingest.follow_symlinks": False,
    "ingest.workers": 3,
    "ingest.retry_errors": True,
    "image.max_pixels": 1_000_000,
    "image.max_side": 5000,
    "seed.min_match_score": 0.5,
    "seed.min_verify_score": 0.9,
    "seed.prompt": "blue cup",
    "seed.prompt_map": {"mug": "cup"},
    "seed.target_recall": 0.8,
    "seed.search_top_k": 3,
    "seed.max_phrases": 2,
    "seed.workers": 1,
    "detect.detector": "exemplar",
    "detect.model": "some/other-model",
    "detect.refiner": "sam",
    "detect.refiner_model": "sam.pth",
    "detect.device": "cpu",
    "detect.dtype": "float16",
    "detect.box_threshold": 0.5,
    "detect.text_threshold": 0.4,
    "detect.max_size": 640,
    "detect.exemplar_scale_step": 1.2,
    "detect.exemplar_coarse_side": 300,
    "propose.prompt": "green hat",
    "propose.batch_size": 3,
    "propose.limit": 5,
    "propose.engine": "ray",
    "propose.ray_address": "auto",
    "propose.workers": 1,
    "propose.prefetch": 2,
    "propose.ray_actors": 2,
    "propose.ray_cpus_per_actor": 1.0,
    "propose.ray_gpus_per_actor": 0.5,
    "select.target_precision": 0.9,
    "select.budget": 50,
    "select.audit_rate": 0.1,
    "select.reject_below": 0.1,
    "select.explore_share": 0.25,
    "select.seed": 3,
    "select.method": "isotonic",
    "select.diversity": 0.5,
    "select.exemplar_similarity": False,
    "select.max_image_loads": 10,
    "select.max_per_image": 2,
    "review.host": "0.0.0.0",
    "review.port": 9000,
    "review.lease_seconds": 60.0,
    "review.preview_max_side": 800,
    "export.size": 224,
    "export.max_size": 2048,
    "export.max_upscale": 4.0,
    "export.resize": "pad",
    "export.margin": 5.0,
    "export.min_size": 32,
    "export.version": "v9",
    "export.formats": ["coco"],
    "export.include": "all",
    "export.absolute_paths": True,
    "export.workers": 1,
    "export.engine": "ray",
    "export.ray_address": "auto",
    "export.ray_actors": 3,
    "export.ray_cpus_per_actor": 1.0,
    "export.instruction": "Name the product.",
    "export.labelstudio_root": "/data",
    "export.val_fraction": 0.25,
    "quality.match_iou": 0.8,
    "quality.min_audited": 5,
    "quality.min_labelled": 12,
    "quality.min_recall": 0.5,
}
"""A valid non-default value for every key of the sections autocrop runs."""

AUTOCROP_SECTIONS = (
    "ingest", "image", "seed", "detect", "propose", "select", "review", "export", "quality"
)  # fmt: skip
#: what every run of the test has (a prompt; the keys autocrop presets, set explicitly)
BASE = {"seed.prompt": "base thing", "select.target_precision": 0.95, "export.formats": ["swift"]}
#: keys that only matter with another key set
CONTEXT = {
    "detect.exemplar_scale_step": {"detect.detector": "exemplar"},
    "detect.exemplar_coarse_side": {"detect.detector": "exemplar"},
}
#: callbacks and per-command destinations: not options
IGNORED_ARGS = {"on_progress", "progress", "on_start", "stop", "log", "on_ready", "callback"}


def test_non_default_values_cover_every_key_of_the_autocrop_sections():
    defaults = Config().model_dump()
    keys = {f"{s}.{k}" for s in AUTOCROP_SECTIONS for k in defaults[s]}
    assert set(NON_DEFAULT) == keys
    for key, value in NON_DEFAULT.items():
        section, name = key.split(".")
        assert defaults[section][name] != value, key
    assert set(defaults) - set(AUTOCROP_SECTIONS) == {"finetune"}  # autocrop never trains


def _plain(value: Any, tokens: dict[str, str]) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    elif hasattr(value, "model_dump"):
        value = value.model_dump()
    if isinstance(value, dict):
        return {str(k): _plain(v, tokens) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v, tokens) for v in value]
    if isinstance(value, Path):
        value = str(value)
    if isinstance(value, str):
        for real, token in tokens.items():
            value = value.replace(real, token)
    return value


class Recorder:
    """Replaces the stages' library entry points; keeps what each received (no ws, no
    callbacks), with the workspace and output folders replaced by tokens."""

    def __init__(self, monkeypatch, tokens: dict[str, str]) -> None:
        import autolabel.detect.versions
        import autolabel.export
        import autolabel.ingest
        import autolabel.propose
        import autolabel.review.server
        import autolabel.seed.bootstrap
        import autolabel.seed.calibrate
        import autolabel.select.run
        import autolabel.store.exports

        self.tokens = tokens
        self.calls: dict[str, list[Any]] = {}
        self.summary = _fake_summary()
        report = SimpleNamespace(
            added=0,
            errors=0,
            seen=1,  # an IN_DIR without images is an error of autocrop
            crops=0,
            located=0,
            not_found=0,
            no_original=0,
            skipped=0,
            as_dict=lambda: {},
        )
        calibration = {"box_threshold": 0.3, "f1": 0.0, "precision": 0.0, "recall": 0.0, "n": 0}
        selected = {"routes": {}, "queue": {}, "n_proposals": 0}

        def record(name: str, result: Any, skip: int = 1):
            def fake(*args: Any, **kwargs: Any) -> Any:
                kept = {k: v for k, v in kwargs.items() if k not in IGNORED_ARGS}
                self.calls.setdefault(name, []).append(_plain([args[skip:], kept], tokens))
                return result(*args, **kwargs) if callable(result) else result

            return fake

        def prompts(ws: Any, **kw: Any) -> dict[str, Any]:
            return {"prompt": kw.get("prompt") or "x", "items": 0, "phrases": {}}

        def exported(ws: Any, out: Path, opts: Any, **kw: Any) -> Any:
            return SimpleNamespace(version="v1", path=Path(out), counts={"crops": 0})

        mp = monkeypatch
        mp.setattr(autolabel.ingest, "ingest", record("ingest", report))
        mp.setattr(autolabel.seed.bootstrap, "add_seed_crops", record("seed add", report))
        mp.setattr(
            autolabel.seed.bootstrap, "seed_exemplars", lambda ws, p: (["c.png"], ["t"], [None])
        )
        mp.setattr(autolabel.seed.calibrate, "derive_prompts", record("seed prompts", prompts))
        mp.setattr(autolabel.seed.calibrate, "calibration_inputs", lambda ws, p: ({}, p))
        mp.setattr(autolabel.seed.calibrate, "calibrate", record("calibrate", calibration))
        mp.setattr(autolabel.propose, "run_propose", record("propose", self.summary))
        mp.setattr(autolabel.select.run, "run_select", record("select", selected))
        mp.setattr(autolabel.export, "export_dataset", record("export", exported, skip=2))
        mp.setattr(
            autolabel.store.exports, "labels_changed_since_last_export", lambda ws, **kw: True
        )
        mp.setattr(steps, "has_export_labels", lambda ws, cfg: True)  # exports are refused
        mp.setattr(autolabel.review.server, "serve", record("review", None))
        # as on a machine with Grounding DINO weights: without them autocrop alone switches
        # to the weight-free regions detector (tests/test_regions_wiring.py)
        mp.setattr(autolabel.detect.versions, "weights_available", lambda *a, **k: True)


def _write_config(ws_path: Path, values: dict[str, Any]) -> None:
    data: dict[str, Any] = {}
    for dotted, value in values.items():
        section, key = dotted.split(".")
        data.setdefault(section, {})[key] = value
    (ws_path / "config.yaml").write_text(yaml.safe_dump(data), encoding="utf-8")


@pytest.fixture(scope="module")
def autocrop_inputs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("keys")
    paths = {name: root / name for name in ("in", "crops", "originals")}
    for p in paths.values():
        p.mkdir()
    paths["captions"] = root / "captions.jsonl"
    paths["captions"].write_text(json.dumps({"image": "a.png", "text": "a mug"}) + "\n")
    for name in ("stage-ws", "stage-out", "autocrop-ws", "autocrop-out"):
        paths[name] = root / name
    Workspace.create(paths["stage-ws"]).close()
    Workspace.create(paths["autocrop-ws"]).close()
    return paths


def _run_both(monkeypatch, paths: dict[str, Path], values: dict[str, Any]) -> tuple[dict, dict]:
    """The library calls of the stage commands and of autocrop under the same config."""
    from autolabel.cli import app
    from autolabel.pipeline import autocrop, review_then_export

    results = []
    for kind in ("stage", "autocrop"):
        ws, out = paths[f"{kind}-ws"], paths[f"{kind}-out"]
        _write_config(ws, values)
        tokens = {str(ws.resolve()): "<ws>", str(ws): "<ws>"}
        tokens.update({str(out.resolve()): "<out>", str(out): "<out>"})
        with monkeypatch.context() as mp:
            rec = Recorder(mp, tokens)
            if kind == "stage":
                seed = ["--crops", str(paths["crops"]), "--originals", str(paths["originals"])]
                for args in (
                    ["ingest", str(ws), str(paths["in"]), "--json"],
                    ["seed", "add", str(ws), *seed, "--captions", str(paths["captions"]), "--json"],
                    ["seed", "prompts", str(ws), "--json"],
                    ["seed", "calibrate", str(ws), "--json"],
                    ["propose", str(ws), "--json", "--quiet"],
                    ["select", str(ws), "--json"],
                    ["export", str(ws), "--out", str(out), "--json", "--quiet"],
                    ["review", str(ws)],
                ):
                    res = CliRunner().invoke(app, args)
                    assert res.exit_code == 0, (args, res.output, res.exception)
            else:
                # the base run calibrated this workspace already; calibrate again so both
                # sides make the same calls (skipping an unchanged calibration is tested in
                # test_first_run)
                from autolabel.steps import CALIBRATION_KEY
                from autolabel.store import Workspace

                if (ws / "autolabel.db").exists():
                    with Workspace.open(ws) as w:
                        w.set_setting(CALIBRATION_KEY, None)
                autocrop(
                    paths["in"],
                    out,
                    seed_crops=paths["crops"],
                    originals=paths["originals"],
                    captions=paths["captions"],
                    workspace=ws,
                )
                review_then_export(ws, out)
                rec.calls["export"] = rec.calls["export"][-1:]  # the one after review
        results.append(rec.calls)
    return results[0], results[1]


_BASE_RUNS: dict[str, tuple[dict, dict]] = {}


@pytest.mark.parametrize("key", sorted(NON_DEFAULT))
def test_autocrop_honours_every_config_key_as_the_stage_command_does(
    monkeypatch, autocrop_inputs, key
):
    base = {**BASE, **CONTEXT.get(key, {})}
    cache_key = json.dumps(base, sort_keys=True)
    if cache_key not in _BASE_RUNS:
        _BASE_RUNS[cache_key] = _run_both(monkeypatch, autocrop_inputs, base)
    stage_base, autocrop_base = _BASE_RUNS[cache_key]
    stage, auto = _run_both(monkeypatch, autocrop_inputs, {**base, key: NON_DEFAULT[key]})
    assert stage_base == autocrop_base
    assert (
        set(stage)
        == set(auto)
        == {
            "ingest",
            "seed add",
            "seed prompts",
            "calibrate",
            "propose",
            "select",
            "export",
            "review",
        }
    )
    for name in stage:
        assert stage[name] == auto[name], name
    changed = [name for name in stage if stage[name] != stage_base[name]]
    assert changed, f"{key}: no library call received the new value"


def test_autocrop_defaults_are_a_preset_the_config_overrides(monkeypatch, autocrop_inputs):
    from autolabel.pipeline import autocrop

    paths = autocrop_inputs
    ws, out = paths["autocrop-ws"], paths["autocrop-out"]
    for config, precision, formats in (
        ({}, 0.98, ["swift"]),
        ({"select.target_precision": 0.9, "export.formats": ["coco"]}, 0.9, ["coco"]),
    ):
        _write_config(ws, {"seed.prompt": "thing", **config})
        with monkeypatch.context() as mp:
            rec = Recorder(mp, {})
            autocrop(paths["in"], out, workspace=ws)
            flagged = autocrop(paths["in"], out, workspace=ws, target_precision=0.5, size=64)
        (select_cfg,), _ = rec.calls["select"][0]  # run_select(ws, cfg.select)
        (export_opts,), _ = rec.calls["export"][0]  # export_dataset(ws, out, opts)
        assert select_cfg["target_precision"] == precision
        assert export_opts["formats"] == formats
        assert rec.calls["select"][1][0][0]["target_precision"] == 0.5
        assert rec.calls["export"][1][0][0]["size"] == 64
        assert flagged["workspace"] == str(ws.resolve())
