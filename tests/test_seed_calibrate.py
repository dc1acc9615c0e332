"""Threshold calibration: the pure sweep, and end to end on a seed workspace."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from autolabel.errors import InputError
from autolabel.seed.bootstrap import add_seed_crops
from autolabel.seed.calibrate import (
    calibrate,
    choose_thresholds,
    derive_prompts,
    match_counts,
)
from autolabel.store.seed import list_seed_items
from autolabel.synth import make_seed_set
from autolabel.types import Proposals


def props(boxes, scores, tokens=None) -> Proposals:
    n = len(boxes)
    data = {} if tokens is None else {"token_score": np.asarray(tokens, np.float32)}
    return Proposals(np.asarray(boxes, np.float32).reshape(n, 4), scores, ["x"] * n, data=data)


TRUE = [0, 0, 10, 10]
FAR = [50, 50, 60, 60]


def test_match_counts_is_one_to_one() -> None:
    truth = np.array([TRUE], float)
    # two boxes on the same object: one tp, one fp
    assert match_counts(np.array([TRUE, [0, 0, 10, 11]]), np.array([0.9, 0.8]), truth) == (1, 1, 0)
    assert match_counts(np.zeros((0, 4)), np.zeros(0), truth) == (0, 0, 1)
    assert match_counts(np.array([FAR]), np.array([0.9]), truth) == (0, 1, 1)
    assert match_counts(np.array([FAR]), np.array([0.9]), np.zeros((0, 4))) == (0, 1, 0)


def test_sweep_separates_true_from_false_boxes() -> None:
    rng = np.random.default_rng(0)
    preds, truths = [], []
    for _ in range(20):
        # true box scores in [0.5, 0.9], clutter in [0.1, 0.4]
        preds.append(props([TRUE, FAR], [rng.uniform(0.5, 0.9), rng.uniform(0.1, 0.4)]))
        truths.append(np.array([TRUE], float))
    r = choose_thresholds(preds, truths)
    assert r["f1"] == 1.0 and r["precision"] == 1.0 and r["recall"] == 1.0
    low_true = min(float(p.score[0]) for p in preds)
    high_false = max(float(p.score[1]) for p in preds)
    assert high_false < r["box_threshold"] <= low_true
    assert r["n"] == 20 and r["n_images"] == 20 and r["tp"] == 20 and r["fp"] == 0
    assert r["text_threshold"] == 0.0  # no token_score signal


def test_text_threshold_is_swept_when_signal_exists() -> None:
    # box scores cannot separate; the text signal can
    preds = [props([TRUE, FAR], [0.6, 0.6], tokens=[0.8, 0.2]) for _ in range(5)]
    truths = [np.array([TRUE], float)] * 5
    r = choose_thresholds(preds, truths)
    assert r["f1"] == 1.0 and 0.2 < r["text_threshold"] <= 0.8


def test_target_recall_trades_precision() -> None:
    # 10 images; true boxes with scores 0.1..1.0, one false box per image at 0.55
    preds = [props([TRUE, FAR], [0.1 * (i + 1), 0.55]) for i in range(10)]
    truths = [np.array([TRUE], float)] * 10
    best_f1 = choose_thresholds(preds, truths)
    high = choose_thresholds(preds, truths, target_recall=0.9)
    assert high["recall"] >= 0.9
    assert high["box_threshold"] <= 0.2 < best_f1["box_threshold"]
    assert "precision at recall" in high["objective"]
    impossible = choose_thresholds(
        [props([FAR], [0.9])], [np.array([TRUE], float)], target_recall=0.5
    )
    assert "not reachable" in impossible["objective"] and impossible["recall"] == 0.0


@pytest.mark.parametrize(
    ("preds", "truths", "match"),
    [
        ([props([TRUE], [0.5])], [], "one truth array per prediction"),
        ([props([TRUE], [0.5])], [np.zeros((0, 4))], "at least one true"),
    ],
)
def test_sweep_errors(preds, truths, match) -> None:
    with pytest.raises(InputError, match=match):
        choose_thresholds(preds, truths)


@pytest.fixture
def seeded(tmp_path: Path, workspace):
    truth = make_seed_set(tmp_path / "s", 4, seed=12)
    add_seed_crops(
        workspace,
        tmp_path / "s" / "crops",
        originals_dir=tmp_path / "s" / "originals",
        captions=tmp_path / "s" / "captions.jsonl",
    )
    return workspace, truth


def test_derive_prompts_sets_phrases_and_setting(seeded) -> None:
    ws, _ = seeded
    result = derive_prompts(ws)
    assert ws.get_setting("seed.prompt") == result["prompt"]
    items = list_seed_items(ws)
    assert all(it.phrase and it.phrase in result["prompt"].split(". ") for it in items)
    manual = derive_prompts(ws, prompt="Product. thing")
    assert manual["prompt"] == "product. thing"
    assert {it.phrase for it in list_seed_items(ws)} == {"product"}


def test_derive_prompts_needs_captions_or_prompt(tmp_path: Path, workspace) -> None:
    with pytest.raises(InputError, match="no seed items"):
        derive_prompts(workspace)
    make_seed_set(tmp_path / "s", 1, seed=2)
    add_seed_crops(workspace, tmp_path / "s" / "crops")  # no captions
    with pytest.raises(InputError, match="--prompt"):
        derive_prompts(workspace)


def test_calibrate_with_exemplar_detector_leaves_each_crop_out_on_its_original(
    seeded, monkeypatch
) -> None:
    import autolabel.detect as detect

    ws, _ = seeded
    derive_prompts(ws)
    sizes: list[int] = []
    real_build = detect.build_detector

    def spy(name, **opts):
        sizes.append(len(opts["exemplars"]))
        return real_build(name, **opts)

    monkeypatch.setattr(detect, "build_detector", spy)
    result = calibrate(ws, detector="exemplar", prompt=ws.get_setting("seed.prompt"))
    stored = ws.get_setting("seed.thresholds")
    # leave-one-out: each original's own product is not an exemplar, so on 4 different
    # products the sweep may find nothing; such thresholds are never adopted (issue 19)
    assert stored == (result if result["adopted"] else None)
    assert result["n"] == 4 and result["n_images"] == 4
    # one detector with all 4 crops, then per original one without the crop cut from it
    assert sizes == [4, 3, 3, 3, 3]
    assert 0.05 <= result["box_threshold"] <= 0.95
    assert result["detector"] == "exemplar" and result["prompt"] == ws.get_setting("seed.prompt")


def test_calibrate_with_tiny_grounding_dino(seeded, tiny_models) -> None:
    ws, _ = seeded
    derive_prompts(ws, prompt="product")
    result = calibrate(
        ws,
        prompt="product",
        detector="grounding-dino",
        options={"model": str(tiny_models["grounding-dino"]), "device": "cpu"},
    )
    assert set(result) >= {"box_threshold", "text_threshold", "f1", "precision", "recall", "n"}
    assert result["n"] == 4 and 0 <= result["f1"] <= 1
    stored = ws.get_setting("seed.thresholds")
    if result["adopted"]:  # a random tiny model usually fails: then nothing is stored
        assert stored["model_version"] == result["model_version"]
    else:
        assert stored is None and result["warning"]


def test_calibrate_needs_located_boxes(workspace) -> None:
    with pytest.raises(InputError, match="no located seed boxes"):
        calibrate(workspace, detector="exemplar", prompt="product")


# -- issue 19, cause 7: calibration failures are never silent ---------------------------------
class _FakeDetector:
    """Finds the seed boxes of the first ``hits`` images (score 0.9), nothing elsewhere."""

    model_id = "fake"
    model_version = "fake-1"

    def __init__(self, truths, hits):
        self.truths, self.hits, self.seen = list(truths), hits, 0

    def detect(self, images, prompts):
        out = []
        for _ in images:
            t = np.asarray(self.truths[self.seen], np.float32).reshape(-1, 4)
            keep = self.seen < self.hits
            self.seen += 1
            boxes = t if keep else np.zeros((0, 4), np.float32)
            out.append(Proposals(boxes, np.full(len(boxes), 0.9, np.float32), ["x"] * len(boxes)))
        return out


def _fake(monkeypatch, ws, hits):
    import autolabel.detect as detect
    from autolabel.store.seed import seed_boxes_by_image

    by_image = seed_boxes_by_image(ws)
    truths = [[b for b, _ in by_image[i]] for i in sorted(by_image)]
    monkeypatch.setattr(detect, "build_detector", lambda name, **o: _FakeDetector(truths, hits))
    return len(truths)


@pytest.mark.parametrize(
    ("hits", "adopted", "needle"),
    [
        (0, False, "F1 0.00"),  # found nothing: printed as "F1 0.00" and adopted before
        (1, False, "recall 0.25 on 4 seed boxes is below quality.min_recall 0.3"),
        (4, True, None),
    ],
)
def test_failed_calibration_is_not_adopted_and_says_why(seeded, monkeypatch, hits, adopted, needle):
    ws, _ = seeded
    earlier = {"box_threshold": 0.4, "text_threshold": 0.25, "detector": "grounding-dino"}
    ws.set_setting("seed.thresholds", earlier)
    assert _fake(monkeypatch, ws, hits) == 4
    result = calibrate(ws, detector="grounding-dino", prompt="product", options={})
    assert result["adopted"] is adopted
    if adopted:
        assert result["warning"] is None and result["recall"] == 1.0
        assert ws.get_setting("seed.thresholds") == result
    else:
        warning = result["warning"]
        assert needle in warning and "\n" not in warning
        assert "keeping the earlier box_threshold 0.4" in warning
        assert "seed prompts" in warning  # what to do
        assert ws.get_setting("seed.thresholds") == earlier


def test_failed_calibration_without_earlier_thresholds_keeps_the_defaults(seeded, monkeypatch):
    ws, _ = seeded
    _fake(monkeypatch, ws, 0)
    result = calibrate(ws, detector="grounding-dino", prompt="product", options={})
    assert not result["adopted"] and ws.get_setting("seed.thresholds") is None
    assert "configured detect.box_threshold" in result["warning"]


def test_threshold_problem_needs_enough_seed_boxes():
    from autolabel.seed.calibrate import threshold_problem

    ok = {"n": 10, "f1": 0.8, "recall": 0.7}
    assert threshold_problem(ok) is None
    assert "only 2 located seed boxes" in threshold_problem({**ok, "n": 2})
    assert "below quality.min_recall 0.8" in threshold_problem(ok, min_recall=0.8)


def test_seed_calibrate_cli_prints_the_warning(seeded, monkeypatch, capsys):
    from autolabel.cli import main

    ws, _ = seeded
    derive_prompts(ws, prompt="product")
    _fake(monkeypatch, ws, 0)
    with pytest.raises(SystemExit) as exc:
        main(["seed", "calibrate", str(ws.path)])
    assert exc.value.code in (0, None)
    err = capsys.readouterr().err
    assert "warning: seed calibrate: box_threshold" in err and "not adopted" in err
