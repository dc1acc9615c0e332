"""Propose with the tiny random-init Grounding DINO through ``build_detector``.

- a 200-image run equals the union of runs killed with SIGKILL at random points;
- batch size 1 and 8 give the same proposals;
- bad files are recorded and do not stop the run (through the CLI);
- the refiner adds its signals.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from autolabel import propose
from autolabel.store import Workspace
from autolabel.store import runs as store_runs
from tests.support.propose import PROMPT, assert_same, by_path, make_images, register, settings


@pytest.fixture(scope="module")
def images200(tmp_path_factory) -> list[Path]:
    return make_images(tmp_path_factory.mktemp("imgs200"), 200)


@pytest.fixture(scope="module")
def tiny_detector(tiny_models):
    from autolabel.detect import build_detector

    return build_detector(
        "grounding-dino",
        model=str(tiny_models["grounding-dino"]),
        device="cpu",
        box_threshold=0.3,
        text_threshold=0.25,
    )


def test_tiny_run_finds_boxes_with_signals(tmp_path, tiny_models, tiny_detector):
    with Workspace.create(tmp_path / "ws") as ws:
        register(ws, make_images(tmp_path / "imgs", 16))
        s = propose.run_propose(ws, settings(tiny_models), detector=tiny_detector)
        assert (s.images, s.errors) == (16, 0)
        assert s.proposals > 0, "the tiny model at threshold 0.3 should propose something"
        res = store_runs.run_results(ws, s.key)
        assert len(res) == 16
        ids, props = store_runs.load_proposals(ws, next(i for i, v in res.items() if v))
        assert len(ids) == len(props) > 0
        assert set(props.phrase) <= {"red square", "blue circle"}
        assert props.data, "detector signals are stored with each proposal"
        assert props.xyxy.min() >= 0 and props.xyxy[:, 2].max() <= 128


def test_batch_size_1_and_8_give_the_same_proposals(tmp_path, tiny_models, tiny_detector):
    paths = make_images(tmp_path / "imgs", 40, seed=3)
    results = []
    for bs in (1, 8):
        with Workspace.create(tmp_path / f"ws{bs}") as ws:
            register(ws, paths)
            s = propose.run_propose(
                ws, settings(tiny_models, batch_size=bs), detector=tiny_detector
            )
            assert s.images == 40
            results.append(by_path(ws, s.key))
    assert sum(len(v) for v in results[0].values()) > 0
    assert_same(results[0], results[1])


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "autolabel.cli", *args]


def _wait_done(ws_path: Path, target: int, proc: subprocess.Popen, timeout: float = 240) -> int:
    """Poll the workspace until ``target`` images are finished (or the process ends)."""
    t_end = time.monotonic() + timeout
    with Workspace.open(ws_path) as ws:
        while time.monotonic() < t_end:
            runs = store_runs.list_runs(ws)
            if runs:
                done = 200 - store_runs.count_pending_images(ws, runs[-1]["key"])
                if done >= target or proc.poll() is not None:
                    return done
            elif proc.poll() is not None:
                return 0
            time.sleep(0.05)
    raise AssertionError(f"propose did not reach {target} images in {timeout} s")


@pytest.mark.slow
def test_sigkill_at_random_points_then_resume_equals_uninterrupted(
    tmp_path, tiny_models, tiny_detector, images200
):
    model = str(tiny_models["grounding-dino"])
    # uninterrupted reference (in-process, same model files and settings)
    with Workspace.create(tmp_path / "ref") as ws:
        register(ws, images200)
        s = propose.run_propose(ws, settings(tiny_models), detector=tiny_detector)
        assert s.images == 200
        reference = by_path(ws, s.key)
        ref_rows = ws.conn.execute("SELECT COUNT(*) FROM proposals").fetchone()[0]
    assert ref_rows > 0

    ws_path = tmp_path / "killed"
    with Workspace.create(ws_path) as ws:
        register(ws, images200)
    args = _cli(
        "propose", str(ws_path), "--prompt", PROMPT, "--model", model, "--device", "cpu",
        "--box-threshold", "0.3", "--text-threshold", "0.25", "--batch-size", "8", "--quiet",
    )  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    rng = random.Random(int(time.time()))
    done = 0
    kills = []
    for upper in (90, 170):
        target = rng.randint(done + 1, upper)
        proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            done = _wait_done(ws_path, target, proc)
            time.sleep(rng.uniform(0, 0.3))  # land anywhere: mid-batch, mid-write
            assert proc.poll() is None, f"finished before the kill: {proc.stderr.read()!r}"
            os.kill(proc.pid, signal.SIGKILL)
        finally:
            proc.wait()
        assert proc.returncode == -signal.SIGKILL
        with Workspace.open(ws_path) as ws:
            key = store_runs.list_runs(ws)[-1]["key"]
            done = 200 - store_runs.count_pending_images(ws, key)
        kills.append(done)
        assert 0 < done < 200, kills
    # the same command again, to completion (in-process: saves an interpreter start-up)
    from typer.testing import CliRunner

    from autolabel.cli import app

    finish = CliRunner().invoke(app, args[3:])
    assert finish.exit_code == 0, finish.output
    with Workspace.open(ws_path) as ws:
        runs = store_runs.list_runs(ws)
        # a resumed run continues the killed run's row: one run, as if never interrupted
        assert len(runs) == 1, runs
        assert runs[-1]["finished_at"] is not None
        assert runs[-1]["n_images"] >= 200
        resumed = by_path(ws, runs[-1]["key"])
        rows = ws.conn.execute("SELECT COUNT(*) FROM proposals").fetchone()[0]
    assert_same(reference, resumed)
    assert rows == ref_rows, "no proposal lost or duplicated"


def test_cli_records_bad_files_and_goes_on(tmp_path, tiny_models):
    from typer.testing import CliRunner

    from autolabel.cli import app

    folder = tmp_path / "imgs"
    paths = make_images(folder, 6)
    (folder / "text.png").write_text("not an image")
    (folder / "cut.png").write_bytes(paths[0].read_bytes()[:150])
    ws_path = tmp_path / "ws"
    with Workspace.create(ws_path) as ws:
        register(ws, [*paths, folder / "text.png", folder / "cut.png"])
    result = CliRunner().invoke(
        app,
        ["propose", str(ws_path), "--prompt", PROMPT, "--model", str(tiny_models["grounding-dino"]),
         "--device", "cpu", "--batch-size", "4", "--quiet", "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    import json

    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert (summary["images"], summary["errors"]) == (6, 2)
    with Workspace.open(ws_path) as ws:
        errs = store_runs.run_errors(ws, summary["key"])
    assert sorted(e.split(":")[0] for e in errs.values()) == ["not-an-image", "truncated"]


def test_cli_without_prompt_is_a_clean_error(tmp_path):
    ws_path = tmp_path / "ws"
    Workspace.create(ws_path).close()
    proc = subprocess.run(
        _cli("propose", str(ws_path)), capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: no prompt"), proc.stderr
    assert "Traceback" not in proc.stderr


def test_refiner_adds_mask_signals(tmp_path, tiny_models, tiny_detector):
    with Workspace.create(tmp_path / "ws") as ws:
        register(ws, make_images(tmp_path / "imgs", 4))
        base = propose.run_propose(ws, settings(tiny_models), detector=tiny_detector)
        s = settings(tiny_models, refiner="sam", refiner_model=str(tiny_models["sam"]))
        refined = propose.run_propose(ws, s, detector=tiny_detector)
        assert refined.key != base.key and refined.images == 4
        a, b = store_runs.run_results(ws, base.key), store_runs.run_results(ws, refined.key)
        assert sum(map(len, a.values())) == sum(map(len, b.values())) > 0
        image_id = next(i for i, v in b.items() if v)
        _, props = store_runs.load_proposals(ws, image_id)  # current = the refined run
        assert {"sam_iou", "sam_stability"} <= set(props.data)
        assert np.isfinite(props.data["sam_iou"]).all()
