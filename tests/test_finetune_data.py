"""Fine-tuning data: phrase -> class ids as GroundingDino's loss sees them, boxes, augmentation,
splits, the workspace training set, AP50 and version folders. No training here (fast)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from autolabel.detect import versions
from autolabel.errors import InputError
from autolabel.store import runs as store_runs
from autolabel.store.db import utcnow
from autolabel.train import data as td
from autolabel.train.metrics import average_precision, best_f1_threshold
from tests.support.proposals import mock_proposals


@pytest.fixture(scope="module")
def tiny_processor():
    from autolabel.detect.tiny import tiny_grounding_dino_processor

    return tiny_grounding_dino_processor()


# -- phrase indices ------------------------------------------------------------------------
@pytest.mark.parametrize(
    "phrases",
    [
        ["red square"],
        ["red square", "blue circle", "green triangle"],
        ["product photo", "handbag", "white sneaker"],
    ],
)
def test_phrase_indices_match_transformers_label_maps(tiny_processor, phrases):
    import torch
    from transformers.models.grounding_dino.modeling_grounding_dino import build_label_maps

    tok = tiny_processor.tokenizer
    class_of = td.phrase_class_indices(tok, phrases)
    assert sorted(class_of.values()) == list(range(len(phrases)))
    ids = tok(td.build_prompt(phrases), return_tensors="pt")["input_ids"]
    label_map = build_label_maps(torch.zeros(1, 5, 32), ids)[0]  # (n_classes, 32)
    assert label_map.shape[0] == len(phrases)
    for phrase, k in class_of.items():
        # the tokens the loss assigns to class k decode back to exactly that phrase
        positions = torch.nonzero(label_map[k][: ids.shape[1]]).flatten()
        assert tok.decode(ids[0, positions]) == phrase


def test_make_target_maps_each_box_to_its_phrase(tiny_processor):
    phrases = ["red square", "blue circle", "green triangle"]
    class_of = td.phrase_class_indices(tiny_processor.tokenizer, phrases)
    boxes = np.array([[0, 0, 10, 20], [50, 40, 100, 80], [10, 10, 30, 30]], np.float32)
    t = td.make_target(boxes, ["blue circle", "green triangle", "blue circle"], class_of, 100, 80)
    assert t["class_labels"].tolist() == [1, 2, 1]
    np.testing.assert_allclose(t["boxes"][1], [0.75, 0.75, 0.5, 0.5])
    assert t["boxes"].dtype == np.float32 and (t["boxes"] >= 0).all() and (t["boxes"] <= 1).all()
    with pytest.raises(InputError, match="expected one of"):
        td.make_target(boxes[:1], ["yellow star"], class_of, 100, 80)


def test_too_long_prompt_is_a_clear_error(tiny_processor):
    with pytest.raises(InputError, match="at most 8 tokens"):
        td.phrase_class_indices(tiny_processor.tokenizer, ["red square"] * 5, max_text_len=8)


def test_normalize_phrase_removes_delimiters():
    assert td.normalize_phrase("  White  Sneaker. ") == "white sneaker"
    assert td.normalize_phrase("what?") == "what"


# -- geometry and augmentation ---------------------------------------------------------------
@pytest.mark.parametrize("seed", range(6))
def test_augment_moves_boxes_with_the_pixels(seed):
    img = np.zeros((60, 80, 3), np.uint8)
    box = np.array([[10, 20, 30, 50]], np.float32)
    img[20:50, 10:30] = [255, 0, 0]
    out, b = td.augment(img, box, np.random.default_rng(seed), max_size=120, scale_jitter=0.3)
    assert 0.7 * 120 - 1 <= max(out.shape[:2]) <= 1.3 * 120 + 1
    x0, y0, x1, y1 = np.round(b[0]).astype(int)
    inside = out[y0 + 2 : y1 - 2, x0 + 2 : x1 - 2]
    assert inside[..., 0].min() > 200 and inside[..., 1].max() < 50
    red = out[..., 0] > 128
    assert red.sum() <= (x1 - x0 + 2) * (y1 - y0 + 2)  # nothing red outside the box


def test_split_is_deterministic_and_stratified():
    pos = [td.TrainSample(f"p{i}", [[0, 0, 1, 1]], ("a",)) for i in range(10)]
    neg = [td.TrainSample(f"n{i}", np.zeros((0, 4)), ()) for i in range(5)]
    train, val = td.split_train_val(pos + neg, 0.2, seed=3)
    again = td.split_train_val(pos + neg, 0.2, seed=3)
    assert [s.path for s in train] == [s.path for s in again[0]]
    assert sum(not s.negative for s in val) == 2 and sum(s.negative for s in val) == 1
    assert {s.path for s in train}.isdisjoint({s.path for s in val})
    tr2, va2 = td.split_train_val(pos[:2], 0.1)
    assert len(tr2) == 1 and len(va2) == 1  # at least one on each side
    assert td.split_train_val(pos, 0.0)[1] == []


@pytest.mark.parametrize(
    "reason, expected",
    [
        ("no_object", True),
        ("No object", True),
        ("empty", True),
        ("wrong_object", False),
        (None, False),
        ("", False),
    ],
)
def test_no_object_reasons(reason, expected):
    assert td.is_no_object_reason(reason) is expected


# -- metrics -------------------------------------------------------------------------------
def test_average_precision_behaviour():
    gt = [
        (np.array([[0, 0, 10, 10]]), np.array([0])),
        (np.array([[20, 20, 40, 40]]), np.array([0])),
    ]
    perfect = [(g[0], np.array([0.9]), np.array([0])) for g in gt]
    assert average_precision(perfect, gt) == pytest.approx(1.0)
    shifted = [(g[0] + 8, np.array([0.9]), np.array([0])) for g in gt]  # IoU < 0.5
    assert average_precision(shifted, gt) == 0.0
    wrong_class = [(g[0], np.array([0.9]), np.array([1])) for g in gt]
    assert average_precision(wrong_class, gt) == 0.0
    # a confident false positive ranked first halves precision at the first hit
    fp_first = [
        (np.array([[0, 0, 10, 10], [50, 50, 60, 60]]), np.array([0.5, 0.95]), np.array([0, 0])),
        (gt[1][0], np.array([0.4]), np.array([0])),
    ]
    ap = average_precision(fp_first, gt)
    assert 0.5 < ap < 1.0
    thr, f1 = best_f1_threshold(fp_first, gt)
    assert thr == pytest.approx(0.4) and f1 == pytest.approx(0.8)


# -- versions ------------------------------------------------------------------------------
def _fake_version(root: Path, name: str, meta: dict | None = None) -> Path:
    d = root / "models" / name
    d.mkdir(parents=True)
    if meta is not None:
        (d / "metadata.json").write_text(json.dumps(meta))
    return d


def test_versions_listing_and_resolution(tmp_path):
    assert versions.latest_version_dir(tmp_path) is None
    assert versions.next_version_number(tmp_path) == 1
    _fake_version(tmp_path, "gdino-v1", {"version": "gdino-v1"})
    v10 = _fake_version(tmp_path, "gdino-v10", {"version": "gdino-v10"})
    _fake_version(tmp_path, "gdino-v2", {"version": "gdino-v2"})
    _fake_version(tmp_path, "gdino-v11.partial", None)
    _fake_version(tmp_path, "gdino-v12", None)  # no metadata: not finished
    assert [v.name for v in versions.list_versions(tmp_path)] == [
        "gdino-v1",
        "gdino-v2",
        "gdino-v10",
    ]
    assert versions.latest_version_dir(tmp_path) == v10
    assert versions.resolve_version(tmp_path, "latest") == v10
    assert versions.resolve_version(tmp_path, "v2").name == "gdino-v2"
    assert versions.next_version_number(tmp_path) == 13
    assert versions.find_partial(tmp_path).name == "gdino-v11.partial"
    with pytest.raises(InputError, match="expected one of"):
        versions.resolve_version(tmp_path, "gdino-v7")
    rows = versions.version_rows(tmp_path)
    assert [r["name"] for r in rows] == ["gdino-v1", "gdino-v2", "gdino-v10"] and all(
        r["present"] for r in rows
    )


# -- the workspace training set -------------------------------------------------------------
def _png(path: Path, w: int = 64, h: int = 48) -> str:
    Image.fromarray(np.zeros((h, w, 3), np.uint8)).save(path)
    return str(path)


def _image(ws, path: str) -> int:
    with ws.transaction() as c:
        cur = c.execute(
            "INSERT INTO images(path, width, height, status, added_at) VALUES (?,?,?,?,?)",
            (path, 64, 48, "ok", utcnow()),
        )
    return int(cur.lastrowid)


def record_decision(ws, reviewer, pid, action, *, box=None, reason=None) -> int:
    """Append a decision row (as the review app does) for test set-up."""
    image_id = ws.conn.execute("SELECT image_id FROM proposals WHERE id=?", (pid,)).fetchone()[0]
    x0, y0, x1, y1 = box or (None,) * 4
    cur = ws.conn.execute(
        "INSERT INTO decisions(proposal_id, image_id, reviewer, action, x0, y0, x1, y1, reason,"
        " created_at) VALUES (?,?,?,?,?,?,?,?,?,?)",
        (pid, image_id, reviewer, action, x0, y0, x1, y1, reason, utcnow()),
    )
    return int(cur.lastrowid)


def test_build_training_set_from_seed_reviews_and_rejects(workspace, tmp_path):
    paths = [_png(tmp_path / f"im{i}.png") for i in range(5)]
    ids = [_image(workspace, p) for p in paths]
    with workspace.transaction() as c:
        c.execute(
            "INSERT INTO seed_items(crop_path, original_path, image_id, x0, y0, x1, y1, score, "
            "status, phrase, added_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            ("c0.png", paths[0], ids[0], 5, 5, 30, 30, 0.9, "located", "Red Square", utcnow()),
        )
        c.execute(
            "INSERT INTO seed_items(crop_path, status, added_at) VALUES (?,?,?)",
            ("c1.png", "not_found", utcnow()),
        )
    run = store_runs.create_run(
        workspace,
        detector="t",
        model="m",
        model_version="v",
        refiner=None,
        prompt="red square",
        box_threshold=0.3,
        text_threshold=0.25,
    )
    store_runs.write_batch(
        workspace,
        run,
        [
            (ids[0], mock_proposals([[6, 5, 30, 31]], phrase=["red square"])),  # = the seed box
            (ids[1], mock_proposals([[1, 1, 20, 20], [30, 20, 50, 40]], phrase=["red square"] * 2)),
            (ids[2], mock_proposals([[1, 1, 9, 9]], phrase=["red square"])),
            (ids[3], mock_proposals([[2, 2, 8, 8]], phrase=["red square"])),
        ],
    )
    pid = {
        (r["image_id"], r["x0"]): r["id"]
        for r in workspace.conn.execute("SELECT id, image_id, x0 FROM proposals")
    }
    record_decision(workspace, "ann", pid[(ids[0], 6)], "accept")
    record_decision(workspace, "ann", pid[(ids[1], 1)], "adjust", box=(2, 2, 22, 22))
    record_decision(workspace, "ann", pid[(ids[1], 30)], "reject", reason="wrong_object")
    record_decision(workspace, "ann", pid[(ids[2], 1)], "reject", reason="no_object")
    d = record_decision(workspace, "ann", pid[(ids[3], 2)], "reject", reason="no_object")
    workspace.conn.execute(
        "INSERT INTO decisions(reviewer, action, target_id, created_at) VALUES (?,?,?,?)",
        ("ann", "undo", d, utcnow()),
    )
    ts = td.build_training_set(workspace)
    by_path = {s.path: s for s in ts.samples}
    assert ts.phrases == ["red square"]
    # seed box and the accepted proposal on the same object count once, the reviewer's box wins
    assert len(by_path[paths[0]].boxes) == 1 and by_path[paths[0]].sources == ("reviewed",)
    np.testing.assert_allclose(by_path[paths[1]].boxes, [[2, 2, 22, 22]])  # adjusted box
    assert by_path[paths[2]].negative  # rejected as "no object"
    assert paths[3] not in by_path  # its reject was undone
    assert paths[4] not in by_path  # never proposed or seeded
    assert ts.counts["negative_images"] == 1 and ts.counts["seed_boxes"] == 1
    assert ts.counts["reviewed_boxes"] == 2 and ts.prompt == "red square."


def test_build_training_set_needs_boxes(workspace):
    with pytest.raises(InputError, match="expected located seed boxes or reviewed boxes"):
        td.build_training_set(workspace)
