"""First-run experience (issue 18): fast offline failures, inputs that produce nothing,
autocrop OUT_DIR as a workspace, per-folder export versions, one progress bar per stage.

Every error case checks the user-facing contract: one line on stderr starting ``error:``
(below the progress bars of stages that ran), a non-zero exit code, no traceback.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from autolabel.store import Workspace
from autolabel.store import exports as store_exports
from autolabel.store import runs as store_runs
from autolabel.synth import make_screenshot, make_seed_set
from tests.support.proposals import mock_proposals

REPO = Path(__file__).resolve().parents[1]


def _env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", **extra}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    return env


def _cli(*args: str, env: dict[str, str] | None = None, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "autolabel", *args],
        capture_output=True,
        text=True,
        env=env or _env(),
        **kw,
    )


def _assert_one_line_error(res: subprocess.CompletedProcess, *needles: str) -> str:
    assert res.returncode != 0, res.stdout
    assert "Traceback" not in res.stderr, res.stderr
    # progress bars of stages that ran before the error may stand above it
    lines = [line for line in res.stderr.splitlines() if line.strip() and "━" not in line]
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def _closed_port() -> int:
    """A 127.0.0.1 port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _offline_env(tmp_path: Path) -> dict[str, str]:
    """The hub unreachable (a closed local port), no offline variable, an empty cache."""
    env = _env(
        HF_ENDPOINT=f"http://127.0.0.1:{_closed_port()}",
        HF_HOME=str(tmp_path / "hf-home"),
        AUTOLABEL_MODELS_DIR=str(tmp_path / "models"),
    )
    env.pop("HF_HUB_OFFLINE", None)
    env.pop("TRANSFORMERS_OFFLINE", None)
    return env


# -- 2: offline without HF_HUB_OFFLINE ------------------------------------------------------------
def test_model_load_with_unreachable_hub_fails_in_one_line_within_10s(tmp_path: Path):
    Workspace.create(tmp_path / "ws").close()
    env = _offline_env(tmp_path)
    t0 = time.perf_counter()
    res = _cli(
        "propose",
        str(tmp_path / "ws"),
        "--detector",
        "grounding-dino",
        "--prompt",
        "product photo",
        env=env,
        timeout=60,
    )
    elapsed = time.perf_counter() - t0
    line = _assert_one_line_error(
        res, "unreachable", "autolabel models pull IDEA-Research/grounding-dino-tiny"
    )
    assert res.returncode == 2, line
    assert elapsed <= 10, f"took {elapsed:.1f} s"


@pytest.mark.parametrize("name", ["IDEA-Research/grounding-dino-tiny", "grounding-dino-tiny"])
def test_models_pull_accepts_hub_ids_and_fails_fast_offline(tmp_path: Path, name: str):
    t0 = time.perf_counter()
    res = _cli("models", "pull", name, env=_offline_env(tmp_path), timeout=60)
    elapsed = time.perf_counter() - t0
    line = _assert_one_line_error(res, "unreachable", "grounding-dino-tiny")
    assert "unknown model" not in line
    assert elapsed <= 10, f"took {elapsed:.1f} s"


def test_models_pull_unknown_name_lists_the_registry(tmp_path: Path):
    res = _cli("models", "pull", "no-such-model", env=_offline_env(tmp_path), timeout=60)
    _assert_one_line_error(res, "unknown model 'no-such-model'", "grounding-dino-tiny")


def test_pulled_registry_model_is_found_by_its_hub_id(tmp_path: Path, monkeypatch):
    from autolabel.detect.versions import resolve_model

    monkeypatch.setenv("AUTOLABEL_MODELS_DIR", str(tmp_path))
    hub_id = "IDEA-Research/grounding-dino-tiny"
    assert resolve_model(hub_id, kind="grounding-dino") == hub_id  # not pulled: the hub id
    folder = tmp_path / "grounding-dino-tiny"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "grounding-dino"}')
    assert resolve_model(hub_id, kind="grounding-dino") == str(folder)


# -- 3: inputs that produce nothing ---------------------------------------------------------------
def test_autocrop_with_empty_in_dir_and_seed_is_an_error(tmp_path: Path):
    make_seed_set(tmp_path / "seed", 2, seed=0, size=(180, 320))
    (tmp_path / "empty").mkdir()
    res = _cli(
        "autocrop",
        str(tmp_path / "empty"),
        str(tmp_path / "crops"),
        "--seed",
        str(tmp_path / "seed" / "crops"),
        "--originals",
        str(tmp_path / "seed" / "originals"),
        "--detector",
        "exemplar",
        timeout=120,
    )
    _assert_one_line_error(res, "IN_DIR", "found none")
    assert "crops written" not in res.stdout
    assert not list((tmp_path / "crops").glob("v*"))


def test_export_of_an_empty_workspace_writes_nothing(tmp_path: Path):
    Workspace.create(tmp_path / "ws").close()
    res = _cli("export", str(tmp_path / "ws"), "--out", str(tmp_path / "out"))
    _assert_one_line_error(res, "nothing to export", "nothing was written")
    assert res.returncode == 2
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


# -- 4: an autocrop OUT_DIR is a WORKSPACE ---------------------------------------------------------
@pytest.mark.parametrize(
    "args", [("status",), ("status", "--json"), ("seed", "list"), ("models", "list")]
)
def test_commands_find_the_workspace_inside_an_autocrop_out_dir(tmp_path: Path, args):
    out = tmp_path / "crops"
    Workspace.create(out / ".autolabel").close()
    res = _cli(*args, str(out))
    assert res.returncode == 0, res.stderr
    assert "Traceback" not in res.stderr
    if args[0] == "status":
        assert str((out / ".autolabel").resolve()) in res.stdout


def test_a_folder_that_is_no_workspace_is_still_one_line(tmp_path: Path):
    (tmp_path / "plain").mkdir()
    _assert_one_line_error(_cli("status", str(tmp_path / "plain")), "not an autolabel workspace")


# -- 5: numbers and names -----------------------------------------------------------------------
def _workspace_with_auto_labels(root: Path) -> Path:
    from autolabel.ingest import ingest

    photos = root / "photos"
    photos.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(2):
        px = rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)
        Image.fromarray(px).save(photos / f"p{i}.png")
    ws = Workspace.create(root / "ws")
    try:
        ingest(ws, [photos], workers=1)
        run = store_runs.create_run(
            ws,
            detector="grounding-dino",
            model="tiny",
            model_version="mv",
            refiner=None,
            prompt="thing",
            box_threshold=0.3,
            text_threshold=0.25,
        )
        ids = [int(r[0]) for r in ws.conn.execute("SELECT id FROM images ORDER BY id")]
        boxes = [(10, 10, 90, 80)]
        store_runs.write_batch(ws, run, [(i, mock_proposals(boxes, phrase=["thing"])) for i in ids])
        store_runs.finish_run(ws, run)
        pids = [int(r[0]) for r in ws.conn.execute("SELECT id FROM proposals")]
        store_exports.set_routes(ws, pids, "auto")
    finally:
        ws.close()
    return root / "ws"


def test_export_versions_are_numbered_per_output_folder(tmp_path: Path):
    ws = _workspace_with_auto_labels(tmp_path)
    first = _cli("export", str(ws), "--out", str(tmp_path / "a"), "--min-size", "8", "--json")
    assert first.returncode == 0, first.stderr
    other = _cli("export", str(ws), "--out", str(tmp_path / "b"), "--min-size", "8", "--json")
    assert other.returncode == 0, other.stderr
    again = _cli("export", str(ws), "--out", str(tmp_path / "a"), "--min-size", "8", "--json")
    assert again.returncode == 0, again.stderr
    assert sorted(p.name for p in (tmp_path / "a").iterdir() if p.is_dir()) == ["v1", "v2"]
    assert sorted(p.name for p in (tmp_path / "b").iterdir() if p.is_dir()) == ["v1"]


@pytest.mark.parametrize(
    ("args", "usage"),
    [
        (("autocrop",), "Usage: autolabel autocrop [OPTIONS] IN_DIR OUT_DIR"),
        (("ingest",), "Usage: autolabel ingest [OPTIONS] WORKSPACE FOLDER..."),
        (("demo",), "Usage: autolabel demo [OPTIONS] [DIRECTORY]"),
    ],
)
def test_usage_lines_name_arguments_without_braces(args, usage, capsys):
    from autolabel.cli import main

    with pytest.raises(SystemExit):
        main([*args, "--help"])
    first = capsys.readouterr().out.splitlines()[0]
    assert first == usage


def test_status_shows_the_auto_count_once(tmp_path: Path):
    ws = _workspace_with_auto_labels(tmp_path)
    res = _cli("status", str(ws))
    assert res.returncode == 0, res.stderr
    assert len(re.findall(r"\bauto \d+", res.stdout)) == 1, res.stdout


# -- 1 + 5: autocrop on 50 images: a bar per stage, a quiet re-run, Ctrl-C -----------------------
FAST_EXEMPLAR = (
    "detect:\n  exemplar_scale_step: 1.15\n  exemplar_coarse_side: 240\nexport:\n  min_size: 32\n"
)


def _autocrop_inputs(root: Path, n: int) -> list[str]:
    shots = root / "shots"
    shots.mkdir(parents=True)
    rng = np.random.default_rng(3)
    for i in range(n):
        img, _box, _ = make_screenshot(rng, size=(180, 320))
        img.save(shots / f"img_{i:03d}.jpg", quality=90)
    make_seed_set(root / "seed", 3, seed=1, size=(180, 320))
    ws = Workspace.create(root / "crops" / ".autolabel")
    ws.config_path.write_text(FAST_EXEMPLAR, encoding="utf-8")
    ws.close()
    seed = root / "seed"
    return [
        "autocrop",
        str(shots),
        str(root / "crops"),
        "--seed",
        str(seed / "crops"),
        "--originals",
        str(seed / "originals"),
        "--captions",
        str(seed / "captions.jsonl"),
        "--detector",
        "exemplar",
    ]


@pytest.mark.slow
def test_autocrop_on_50_images_shows_progress_for_every_stage(tmp_path: Path):
    args = _autocrop_inputs(tmp_path, 50)
    res = _cli(*args, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    # a bar (count of total, rate) for each stage with a count; select logs its steps
    bars = {
        "ingest": r"ingest .* 50/\?.* files/s",
        "seed add": r"seed add .* 3/3 .* crops/s",
        "seed calibrate": r"seed calibrate .* 3/3 .* img/s",
        "propose": r"propose .* 53/53 .* img/s",
        "export": r"export .* (\d+)/\1 .* img/s",
    }
    for stage, pattern in bars.items():
        assert re.search(pattern, res.stderr), f"no {stage} bar in:\n{res.stderr}"
    assert "[select] loaded" in res.stdout
    # the summary counts IN_DIR's images, and names the seed originals separately
    assert "images seen: 50 in IN_DIR" in res.stdout
    assert "also holds 3 other images" in res.stdout
    # a no-op re-run: seed crops skipped as unchanged, calibration kept, nothing exported
    again = _cli(*args, timeout=900)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "0 located in their originals" in again.stdout
    assert "3 unchanged (skipped)" in again.stdout
    assert "kept the thresholds" in again.stdout
    assert "[seed calibrate] ..." not in again.stdout
    assert re.search(r"seed add .* 0/0", again.stderr), again.stderr


@pytest.mark.slow
def test_ctrl_c_in_autocrop_says_how_to_resume(tmp_path: Path):
    args = _autocrop_inputs(tmp_path, 50)
    proc = subprocess.Popen(
        [sys.executable, "-m", "autolabel", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(PYTHONUNBUFFERED="1"),
    )
    assert proc.stdout is not None
    seen = []
    for line in proc.stdout:  # wait until propose has started
        seen.append(line)
        if line.startswith("[propose] ..."):
            break
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 130, "".join(seen) + out + err
    assert "stopped; re-run the same command to resume" in err
    assert "Traceback" not in err
    res = _cli(*args, timeout=900)  # and the re-run finishes the job
    assert res.returncode == 0, res.stderr[-3000:]
    assert "crops written" in res.stdout
