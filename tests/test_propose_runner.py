"""Runner unit tests: geometry, grouping, prompt/settings resolution, fault isolation.

A small deterministic detector stands in for the model here so the runner's own logic
(batching, isolation, transactions, resume) is tested fast; tests/test_propose_tiny.py runs
the same paths with the tiny Grounding DINO through ``build_detector``.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from autolabel import propose
from autolabel.errors import ConfigError, InputError, ModelError
from autolabel.store import runs as store_runs
from autolabel.types import Proposals
from tests.support.propose import make_bright_images, propose_settings, register


class BrightDetector:
    """Boxes the brightest 8x8 block of each image; fails on images whose mean is 13."""

    name = "bright"
    model_id = "test/bright"
    model_version = "bright-1"
    box_threshold = 0.1
    text_threshold = 0.1

    def __init__(self, fail_value: int | None = None, fail_all: bool = False) -> None:
        self.calls: list[int] = []
        self.fail_value = fail_value
        self.fail_all = fail_all

    def detect(self, images, prompts):
        assert len(images) == len(prompts)
        self.calls.append(len(images))
        if self.fail_all:
            raise RuntimeError("CUDA out of memory (simulated)")
        if len({im.shape for im in images}) > 1:
            raise AssertionError("runner mixed shapes in one batch")
        out = []
        for im in images:
            if self.fail_value is not None and int(im[0, 0, 0]) == self.fail_value:
                raise RuntimeError("bad tensor")
            g = im.mean(axis=2)
            h, w = g.shape
            best, by, bx = -1.0, 0, 0
            for y in range(0, h - 7, 4):
                for x in range(0, w - 7, 4):
                    v = float(g[y : y + 8, x : x + 8].mean())
                    if v > best:
                        best, by, bx = v, y, x
            phrase = prompts[0].split(". ")[0]
            out.append(
                Proposals(
                    xyxy=[[bx, by, bx + 8, by + 8]],
                    score=[best / 255.0],
                    phrase=[phrase],
                    data={"logit_margin": np.array([0.5], np.float32)},
                )
            )
        return out


def settings(**kw) -> propose.ProposeSettings:
    base = dict(prompt="bright square. dark", batch_size=4, workers=2, prefetch=2, max_size=128)
    base.update(kw)
    return propose.ProposeSettings.of(**base)


# -- pure functions ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("white sneaker. handbag", "white sneaker. handbag"),
        (" white  sneaker.handbag. ", "white sneaker. handbag"),
        ("dog", "dog"),
        ("...", ConfigError),
        ("", ConfigError),
    ],
)
def test_prompt_text_in_run_keys(text, expected):
    from autolabel.types import Prompt

    if isinstance(expected, type):
        with pytest.raises(expected):
            Prompt.parse(text)
    else:
        assert str(Prompt.parse(text)) == expected


@pytest.mark.parametrize(
    ("w", "h", "max_size", "expected"),
    [
        (100, 50, 800, (50, 100, 1.0)),
        (1600, 800, 800, (400, 800, 0.5)),
        (1170, 2532, 800, (800, 370, 800 / 2532)),
        (3, 3000, 300, (300, 1, 0.1)),
    ],
)
def test_input_shape(w, h, max_size, expected):
    fh, fw, scale = propose.input_shape(w, h, max_size)
    assert (fh, fw) == expected[:2]
    assert scale == pytest.approx(expected[2])


def test_rescale_maps_back_and_clips(mock_proposals):
    p = mock_proposals([[10, 20, 50, 40], [0, 0, 200, 200]], logit_margin=[0.1, 0.2])
    out = propose.rescale(p, 0.5, 0.25, width=300, height=500)
    np.testing.assert_allclose(out.xyxy[0], [20, 80, 100, 160])
    np.testing.assert_allclose(out.xyxy[1], [0, 0, 300, 500])  # clipped to the image
    np.testing.assert_allclose(out.data["logit_margin"], [0.1, 0.2])


def test_group_by_shape_batches_share_a_shape_and_keep_every_row():
    rng = np.random.default_rng(1)
    sizes = [(64, 96), (96, 64), (80, 80), (1000, 3000)]
    rows = []
    for i in range(500):
        w, h = sizes[int(rng.integers(0, len(sizes)))]
        rows.append({"id": i, "width": w, "height": h})
    rows.append({"id": 999, "width": None, "height": None})
    batches = list(propose.group_by_shape(iter(rows), batch_size=8, max_size=800, window=32))
    ids = sorted(r["id"] for b in batches for r in b)
    assert ids == sorted(r["id"] for r in rows)
    for b in batches:
        assert 1 <= len(b) <= 8
        assert len({(r["width"], r["height"]) for r in b}) == 1
    full = sum(len(b) == 8 for b in batches)
    assert full >= len(rows) // 8 - len(sizes) * 3  # little padding waste: mostly full


def test_group_by_shape_holds_a_bounded_window():
    held_max = 0
    seen = 0

    def rows():
        nonlocal seen
        for i in range(10_000):
            seen += 1
            yield {"id": i, "width": 10 + i % 50, "height": 10}  # 50 shapes, never a full batch

    emitted = 0
    for b in propose.group_by_shape(rows(), batch_size=64, max_size=800, window=100):
        emitted += len(b)
        held_max = max(held_max, seen - emitted)
    assert emitted == 10_000
    assert held_max <= 101


# -- settings ---------------------------------------------------------------------------------
def test_resolve_settings_precedence(workspace):
    with pytest.raises(ConfigError, match="--prompt"):
        propose_settings(workspace)
    workspace.set_setting("seed.prompt", "red dress")
    workspace.set_setting("seed.thresholds", {"box_threshold": 0.2, "text_threshold": 0.15})
    s = propose_settings(workspace)
    assert s.prompt == "red dress"
    assert (s.detect.box_threshold, s.detect.text_threshold) == (0.2, 0.15)
    s = propose_settings(workspace, prompt="shoe.bag", box_threshold=0.5, batch_size=3)
    assert s.prompt == "shoe. bag"
    assert (s.detect.box_threshold, s.detect.text_threshold, s.propose.batch_size) == (0.5, 0.15, 3)
    workspace.config_path.write_text("propose:\n  prompt: hat\n  workers: 0\n")
    s = propose_settings(workspace)
    # one precedence rule: flag > the workspace's prompt (the last --prompt) > config
    assert (s.prompt, s.propose.workers) == ("shoe. bag", 0)
    with pytest.raises(ConfigError, match="engine"):
        propose_settings(workspace, engine="spark")


def test_resolve_model_latest(tmp_path):
    from autolabel.detect.versions import resolve_model

    assert resolve_model("some/hub-id", workspace=tmp_path) == "some/hub-id"
    with pytest.raises(InputError, match="fine-tuned version"):
        resolve_model("latest", workspace=tmp_path)
    for v in (1, 2, 10):
        d = tmp_path / "models" / f"gdino-v{v}"
        d.mkdir(parents=True)
        (d / "metadata.json").write_text("{}")
    assert Path(resolve_model("latest", workspace=tmp_path)).name == "gdino-v10"
    assert Path(resolve_model("gdino-v2", workspace=tmp_path)) == tmp_path / "models" / "gdino-v2"


# -- runs with a deterministic detector -----------------------------------------------------
def test_run_stores_every_image_in_original_pixels(workspace, tmp_path):
    paths = make_bright_images(tmp_path / "imgs", 30, big_every=10)  # some images get shrunk
    register(workspace, paths)
    det = BrightDetector()
    summary = propose.run_propose(workspace, settings(), detector=det)
    assert (summary.images, summary.errors, summary.proposals) == (30, 0, 30)
    assert not summary.interrupted
    res = store_runs.run_results(workspace, summary.key)
    assert len(res) == 30
    from PIL import Image

    for (_image_id, boxes), p in zip(sorted(res.items()), paths, strict=True):
        arr = np.asarray(Image.open(p))
        (x0, y0, x1, y1, _score, phrase) = boxes[0]
        assert phrase == "bright square"
        crop = arr[int(y0) : int(np.ceil(y1)), int(x0) : int(np.ceil(x1))]
        assert crop.mean() > 200, (p, boxes)  # the box lies on the bright square
    assert max(det.calls) == 4
    # a second run with the same key has nothing left to do
    again = propose.run_propose(workspace, settings(), detector=BrightDetector())
    assert again.pending == 0 and again.images == 0
    # the run row records model, prompt, thresholds, counts and its end
    row = store_runs.list_runs(workspace)[0]
    assert (row["model"], row["model_version"], row["prompt"]) == (
        "test/bright",
        "bright-1",
        "bright square. dark",
    )
    assert (row["n_images"], row["n_proposals"]) == (30, 30)
    assert row["finished_at"] is not None


def test_batch_size_and_workers_do_not_change_results(tmp_path):
    from autolabel.store import Workspace

    paths = make_bright_images(tmp_path / "imgs", 25, big_every=6)
    results = []
    for i, (bs, workers) in enumerate([(1, 0), (8, 2), (5, 1)]):
        with Workspace.create(tmp_path / f"ws{i}") as ws:
            register(ws, paths)
            s = propose.run_propose(
                ws, settings(batch_size=bs, workers=workers), detector=BrightDetector()
            )
            res = store_runs.run_results(ws, s.key)
            results.append({Path(ws_path): v for ws_path, v in _by_path(ws, res).items()})
    assert results[0] == results[1] == results[2]


def _by_path(ws, res):
    from autolabel.store.images import get_image

    return {get_image(ws, i).path: v for i, v in res.items()}


def test_bad_files_are_recorded_and_the_run_goes_on(workspace, tmp_path):
    paths = make_bright_images(tmp_path / "imgs", 10)
    bad = tmp_path / "imgs"
    (bad / "not_image.png").write_text("hello, not a png")
    trunc = bad / "truncated.png"
    trunc.write_bytes(paths[0].read_bytes()[:200])
    missing = bad / "gone.png"
    missing.write_bytes(paths[1].read_bytes())
    register(workspace, [*paths, bad / "not_image.png", trunc, missing])
    missing.unlink()
    summary = propose.run_propose(workspace, settings(), detector=BrightDetector())
    assert (summary.images, summary.errors) == (10, 3)
    rows = store_runs.run_errors(workspace, summary.key)
    reasons = sorted(v.split(":")[0] for v in rows.values())
    assert reasons == ["not-an-image", "not-found", "truncated"]
    assert store_runs.count_pending_images(workspace, summary.key) == 0


def test_model_error_on_one_image_is_isolated(workspace, tmp_path):
    paths = make_bright_images(tmp_path / "imgs", 21)  # marker values 40..46; fail on 43
    register(workspace, paths)
    det = BrightDetector(fail_value=43)
    summary = propose.run_propose(workspace, settings(batch_size=4), detector=det)
    assert summary.errors == 3  # images 3, 10, 17
    assert summary.images == 18
    errs = list(store_runs.run_errors(workspace, summary.key).values())
    assert len(errs) == 3
    assert all("model-error: RuntimeError: bad tensor" in e for e in errs)
    assert 1 in det.calls  # retried one by one


def test_model_failing_everywhere_stops_with_model_error(workspace, tmp_path):
    register(workspace, make_bright_images(tmp_path / "imgs", 12))
    with pytest.raises(ModelError, match="every image of the first batch"):
        propose.run_propose(
            workspace, settings(batch_size=4), detector=BrightDetector(fail_all=True)
        )


def test_stop_event_finishes_the_batch_in_flight_then_resumes(workspace, tmp_path):
    register(workspace, make_bright_images(tmp_path / "imgs", 24))
    stop = threading.Event()
    done = []

    def progress(n, _props):
        done.append(n)
        if len(done) == 2:
            stop.set()

    s1 = propose.run_propose(
        workspace, settings(batch_size=4), detector=BrightDetector(), progress=progress, stop=stop
    )
    assert s1.interrupted and s1.images == 8
    assert store_runs.list_runs(workspace)[0]["finished_at"] is None
    s2 = propose.run_propose(workspace, settings(batch_size=4), detector=BrightDetector())
    assert s2.pending == 16 and s2.images == 16 and s2.key == s1.key
    assert len(store_runs.run_results(workspace, s1.key)) == 24


def test_limit_and_different_prompt_make_a_new_key(workspace, tmp_path):
    register(workspace, make_bright_images(tmp_path / "imgs", 10))
    s1 = propose.run_propose(workspace, settings(limit=3), detector=BrightDetector())
    assert s1.images == 3
    s2 = propose.run_propose(workspace, settings(prompt="other"), detector=BrightDetector())
    assert s2.key != s1.key and s2.images == 10
    # current_proposals: the latest run that finished an image wins
    n = workspace.conn.execute("SELECT COUNT(*) FROM current_proposals").fetchone()[0]
    assert n == 10


def test_ctrl_c_stops_after_the_batch_in_flight_and_twice_aborts(workspace, tmp_path):
    import os
    import signal

    register(workspace, make_bright_images(tmp_path / "imgs", 24))
    stop = threading.Event()
    notices = []
    sent = []

    def progress(n, _props):
        if not sent:
            sent.append(n)
            os.kill(os.getpid(), signal.SIGINT)  # handled: sets stop, no exception

    with propose.graceful_interrupt(stop, lambda: notices.append(1)):
        s = propose.run_propose(
            workspace, settings(batch_size=4), detector=BrightDetector(), progress=progress,
            stop=stop,
        )  # fmt: skip
        assert stop.is_set() and notices == [1]
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)  # a second Ctrl-C aborts
    assert s.interrupted and s.images == 4
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert store_runs.count_pending_images(workspace, s.key) == 20
