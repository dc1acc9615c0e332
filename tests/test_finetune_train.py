"""Fine-tuning the tiny random-init Grounding DINO.

- on an easy generated task (one red square per image, prompt "red square") the loss falls
  and validation AP50 ends clearly above the starting checkpoint's;
- an interrupted run resumes from its checkpoint and ends exactly where an uninterrupted
  one does; a resume with other settings is refused unless --restart;
- the CLI trains a version from a workspace's seed boxes, `propose --model latest` uses it,
  records its version and skips images a person already decided.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from autolabel.config import FinetuneConfig
from autolabel.detect import versions
from autolabel.errors import ConflictError
from autolabel.train.data import TrainingSet, TrainSample
from autolabel.train.loop import finetune
from tests.support.finetune import red_squares, seeded_workspace
from tests.support.propose import propose_settings


def training_set(samples: list[TrainSample]) -> TrainingSet:
    return TrainingSet(samples, ["red square"], {"images": len(samples)})


@pytest.fixture(autouse=True)
def _one_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)  # deterministic and polite on a shared CPU
    yield
    torch.set_num_threads(before)


@pytest.mark.slow
def test_easy_task_loss_falls_and_val_ap50_rises(tmp_path, tiny_models):
    samples = red_squares(tmp_path / "imgs", 40)
    opts = FinetuneConfig(
        epochs=8,
        lr=2e-3,
        batch_size=4,
        max_size=64,
        val_split=0.25,
        patience=8,
        warmup_steps=5,
        scale_jitter=0.1,
        device="cpu",
        checkpoint_every=0,
    )
    events: list[dict] = []
    res = finetune(
        tmp_path / "ws",
        training_set(samples),
        base=str(tiny_models["grounding-dino"]),
        options=opts,
        callback=events.append,
    )
    assert not res.interrupted and res.path == tmp_path / "ws" / "models" / "gdino-v1"
    losses = [h["loss"] for h in res.history]
    assert len(losses) == 8 * 8  # 30 train images / batch 4 = 8 steps per epoch
    assert np.mean(losses[-8:]) < 0.5 * np.mean(losses[:8])
    val = res.metadata["validation"]
    assert val["ap50_before"] < 0.05
    assert val["ap50_after"] >= val["ap50_before"] + 0.25, val
    assert val["ap50_after"] == pytest.approx(max(e["ap50"] for e in val["per_epoch"]))
    # metadata: base, data counts, prompt, calibrated threshold, time
    meta = json.loads((res.path / "metadata.json").read_text())
    assert meta["base"] == str(tiny_models["grounding-dino"])
    assert meta["data"]["train_images"] == 30 and meta["data"]["val_images"] == 10
    assert meta["prompt"] == "red square." and meta["class_ids"] == {"red square": 0}
    assert 0 < meta["thresholds"]["box_threshold"] <= 1
    assert "choose_thresholds" in meta["thresholds"]["calibration"]  # the seed sweep, reused
    assert meta["training"]["seconds"] > 0 and meta["created_at"]
    assert not (tmp_path / "ws" / "models" / "gdino-v1.partial").exists()
    assert [e["event"] for e in events][:2] == ["start", "eval"] and events[-1]["event"] == "done"
    # the saved version loads and resizes like training did
    from transformers import AutoProcessor

    proc = AutoProcessor.from_pretrained(res.path)
    assert proc.image_processor.size["longest_edge"] == 64


def test_interrupted_run_resumes_where_it_stopped(tmp_path, tiny_models):
    samples = red_squares(tmp_path / "imgs", 10, seed=1)
    base = str(tiny_models["grounding-dino"])
    opts = FinetuneConfig(
        epochs=2,
        lr=1e-3,
        batch_size=2,
        max_size=64,
        val_split=0.2,
        device="cpu",
        checkpoint_every=0,
        patience=5,
    )
    full = finetune(tmp_path / "a", training_set(samples), base=base, options=opts)
    assert full.steps == 8  # 8 train images / batch 2 = 4 steps x 2 epochs

    first = finetune(tmp_path / "b", training_set(samples), base=base, options=opts, stop_at_step=3)
    assert first.interrupted and first.steps == 3 and first.path is None
    assert (first.partial_dir / "last.pt").exists()
    assert versions.list_versions(tmp_path / "b") == []
    with pytest.raises(ConflictError, match="differs in: lr"):
        finetune(
            tmp_path / "b",
            None,
            base=base,
            options=opts.model_copy(update={"lr": 5e-4}),
        )
    second = finetune(tmp_path / "b", None, base=base, options=opts)
    assert second.resumed_from_step == 3 and second.steps == 8
    assert [h["step"] for h in second.history] == list(range(1, 9))
    # same data order, augmentation and dropout draws: the same losses as without the stop
    np.testing.assert_allclose(
        [h["loss"] for h in second.history], [h["loss"] for h in full.history], rtol=1e-4
    )
    assert second.path.name == "gdino-v1" and not first.partial_dir.exists()
    assert second.metadata["training"]["resumed_from_step"] == 3


def test_restart_discards_an_interrupted_run(tmp_path, tiny_models):
    samples = red_squares(tmp_path / "imgs", 6, seed=2)
    base = str(tiny_models["grounding-dino"])
    opts = FinetuneConfig(epochs=1, batch_size=2, max_size=64, val_split=0.0, device="cpu")
    first = finetune(tmp_path, training_set(samples), base=base, options=opts, stop_at_step=1)
    assert first.interrupted
    res = finetune(tmp_path, training_set(samples), base=base, options=opts, restart=True)
    assert res.resumed_from_step == 0 and res.steps == 3
    assert res.metadata["validation"]["ap50_before"] is None  # no validation split
    assert res.metadata["thresholds"]["box_threshold"] is None


def test_cli_finetune_then_propose_latest(tmp_path, tiny_models):
    from autolabel import propose
    from autolabel.cli import app
    from autolabel.detect.base import model_version_of
    from autolabel.store import Workspace
    from autolabel.store import runs as store_runs
    from autolabel.store.db import utcnow

    samples = red_squares(tmp_path / "imgs", 8, seed=4)
    ws_path = tmp_path / "ws"
    ids = seeded_workspace(ws_path, samples, n_seed=6)
    cli = CliRunner()
    args = [
        "finetune",
        str(ws_path),
        "--max-steps",
        "2",
        "--max-size",
        "64",
        "--device",
        "cpu",
        "--batch-size",
        "2",
        "--val-split",
        "0.34",
        "--quiet",
        "--json",
        "--base",
        str(tiny_models["grounding-dino"]),
    ]
    out = cli.invoke(app, args)
    assert out.exit_code != 0 and "expected a phrase" in str(out.exception)  # no phrase yet
    out = cli.invoke(app, [*args, "--prompt", "Red square"])
    assert out.exit_code == 0, out.output
    meta = json.loads(out.output)
    assert meta["version"] == "gdino-v1" and meta["prompt"] == "red square."
    assert meta["data"]["seed_boxes"] == 6 and meta["training"]["steps"] == 2
    assert meta["data"]["train_images"] + meta["data"]["val_images"] == 6

    with Workspace.open(ws_path) as ws:
        # a human decision on one image: the new version must not re-propose it
        run0 = store_runs.create_run(
            ws,
            detector="t",
            model="m",
            model_version="v0",
            refiner=None,
            prompt="red square",
            box_threshold=0.3,
            text_threshold=0.25,
        )
        from tests.support.proposals import mock_proposals

        decided = ids[samples[7].path]
        store_runs.write_batch(ws, run0, [(decided, mock_proposals([[1, 1, 9, 9]]))])
        pid = ws.conn.execute("SELECT id FROM proposals").fetchone()[0]
        ws.conn.execute(
            "INSERT INTO decisions(proposal_id, image_id, reviewer, action, created_at) "
            "VALUES (?,?,?,?,?)",
            (pid, decided, "ann", "accept", utcnow()),
        )
        settings = propose_settings(
            ws, prompt="red square", model="latest", device="cpu", workers=0
        )
        assert settings.detect.model == str(ws_path / "models" / "gdino-v1")
        summary = propose.run_propose(ws, settings)
        assert summary.images == 7  # 8 images, one already decided by a person
        run = store_runs.get_run(ws, max(r["id"] for r in store_runs.list_runs(ws)))
        assert run.model_version == model_version_of(ws_path / "models" / "gdino-v1")


def test_a_run_that_fails_before_training_leaves_nothing_to_resume(tmp_path):
    from autolabel.errors import ModelError

    samples = red_squares(tmp_path / "imgs", 3)
    opts = FinetuneConfig(epochs=1, max_size=64, device="cpu")
    with pytest.raises(ModelError, match="does not exist"):
        finetune(tmp_path, training_set(samples), base=str(tmp_path / "nope"), options=opts)
    assert versions.find_partial(tmp_path) is None and versions.list_versions(tmp_path) == []


def test_grad_accumulation_early_stopping_and_freezing(tmp_path, tiny_models):
    samples = red_squares(tmp_path / "imgs", 10, seed=5)
    base = str(tiny_models["grounding-dino"])
    # 8 train images, batch 2 = 4 batches, 2 accumulated per update = 2 updates per epoch;
    # a learning rate too small to change anything: no epoch beats the start, so training
    # stops after `patience` epochs and the version keeps the starting weights
    opts = FinetuneConfig(
        epochs=5,
        lr=1e-12,
        batch_size=2,
        grad_accum=2,
        patience=1,
        max_size=64,
        val_split=0.2,
        device="cpu",
        warmup_steps=0,
    )
    res = finetune(tmp_path / "ws", training_set(samples), base=base, options=opts)
    tr = res.metadata["training"]
    assert res.steps == 2 and tr["epochs_run"] == 1 and tr["stopped_early"]
    assert tr["weights"].startswith("base")
    assert res.metadata["validation"]["ap50_after"] == pytest.approx(
        res.metadata["validation"]["ap50_before"]
    )


def test_freeze_options(tiny_models):
    from transformers import GroundingDinoForObjectDetection

    from autolabel.train.loop import apply_freeze

    model = GroundingDinoForObjectDetection.from_pretrained(tiny_models["grounding-dino"])
    counts = {}
    for freeze in ("none", "text", "backbone"):
        counts[freeze] = apply_freeze(model, freeze)["trainable_params"]
        text = [p.requires_grad for p in model.model.text_backbone.parameters()]
        image = [p.requires_grad for p in model.model.backbone.parameters()]
        assert all(text) == (freeze == "none") and not any(text) == (freeze != "none")
        assert all(image) == (freeze != "backbone")
        assert all(p.requires_grad for p in model.bbox_embed.parameters())  # heads always train
    assert counts["none"] > counts["text"] > counts["backbone"] > 0


def test_a_partial_run_without_a_checkpoint_is_restarted_from_the_workspace(tmp_path, tiny_models):
    """A run killed before its first checkpoint leaves ``run.json`` only: nothing to resume.

    The next ``finetune`` must start a fresh run from the workspace's data (it used to skip
    collecting the data because ``run.json`` existed, then discard the folder and fail with
    "expected training samples").
    """
    from autolabel.store import Workspace
    from autolabel.train.loop import finetune_workspace

    samples = red_squares(tmp_path / "imgs", 4, seed=6)
    ws_path = tmp_path / "ws"
    seeded_workspace(ws_path, samples, n_seed=4)
    partial = versions.models_dir(ws_path) / "gdino-v1.partial"
    partial.mkdir(parents=True)
    (partial / "run.json").write_text(json.dumps({"base": "x", "options": {}}))
    opts = FinetuneConfig(
        base=str(tiny_models["grounding-dino"]),
        max_steps=1,
        max_size=64,
        batch_size=2,
        val_split=0.0,
        device="cpu",
    )
    with Workspace.open(ws_path) as ws:
        res = finetune_workspace(
            ws, options=opts, default_model="unused", default_phrase="red square"
        )
    assert res.resumed_from_step == 0 and res.steps == 1
    assert [v.name for v in versions.list_versions(ws_path)] == ["gdino-v1"]
    assert versions.find_partial(ws_path) is None
