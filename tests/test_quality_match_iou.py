"""Issue 19, cause 1: "correct" means IoU >= quality.match_iou (0.9), not 0.5.

A box 40 px short on each side still overlaps its object at IoU ~0.6: for crops it is wrong.
Calibration labels, audit outcomes, the estimate and ``autolabel eval`` all use the match IoU.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from autolabel.config import Config, QualityConfig
from autolabel.constants import MATCH_IOU
from autolabel.store.select import decision_correct, load_current, load_decisions
from tests.support.quality import (
    TRUE_BOX,
    add_images,
    add_run,
    add_seed_items,
    shifted,
    write_truth,
)

LOOSE = shifted(TRUE_BOX, 0.7)  # correct at 0.5, wrong at 0.9
TIGHT = shifted(TRUE_BOX, 0.95)


def test_quality_section_defaults_to_the_shared_match_iou():
    assert QualityConfig().match_iou == MATCH_IOU == 0.9
    assert Config().quality.match_iou == MATCH_IOU


@pytest.mark.parametrize(
    ("action", "new_iou", "expected"),
    [
        ("accept", None, True),
        ("adjust", 0.95, True),  # a nudge: the proposal was right
        ("adjust", 0.7, False),  # a real correction: the proposal was wrong (was True at 0.5)
        ("adjust", 0.3, False),
        ("reject", None, False),
    ],
)
def test_an_adjust_below_the_match_iou_makes_the_proposal_wrong(action, new_iou, expected):
    box = TRUE_BOX if new_iou is None else shifted(TRUE_BOX, new_iou)
    assert decision_correct(action, TRUE_BOX, box) is expected


def test_seed_original_labels_use_the_match_iou(workspace):
    from autolabel.select.run import labelled_examples
    from autolabel.store.select import load_seed_boxes

    ids = add_images(workspace, 2)
    add_run(workspace, {ids[0]: [(LOOSE, 0.9), (TIGHT, 0.8)], ids[1]: [(TIGHT, 0.7)]})
    add_seed_items(workspace, ids)
    cur = load_current(workspace)
    idx, y, _ = labelled_examples(cur, load_decisions(workspace), load_seed_boxes(workspace))
    got = {tuple(np.round(cur.xyxy[i], 1)): int(v) for i, v in zip(idx, y, strict=True)}
    assert got[tuple(np.round(LOOSE, 1))] == 0
    assert got[tuple(np.round(TIGHT, 1))] == 1


def test_eval_counts_loose_boxes_wrong_and_reports_ap75(workspace, tmp_path):
    from autolabel.evaluate import evaluate

    ids = add_images(workspace, 4)
    # two images with a loose box, two with a tight one; all auto-accepted
    add_run(workspace, {i: [(LOOSE if k < 2 else TIGHT, 0.9)] for k, i in enumerate(ids)})
    workspace.conn.execute("UPDATE proposals SET route = 'auto', p_correct = 0.99")
    truth = write_truth(workspace, tmp_path / "truth.jsonl", ids)
    res = evaluate(workspace, truth, tmp_path / "eval")
    assert res["match_iou"] == 0.9
    assert res["auto_precision"] == pytest.approx(0.5)  # was 1.0 at IoU 0.5
    assert res["auto_precision_50"] == pytest.approx(1.0)
    assert res["dataset_recall"] == pytest.approx(0.5)
    assert res["proposal_precision"] == pytest.approx(0.5)
    assert {"ap50", "ap75", "ap"} <= set(res)
    assert res["ap75"] < res["ap50"]
    looser = evaluate(workspace, truth, tmp_path / "eval5", match_iou=0.5)
    assert looser["auto_precision"] == pytest.approx(1.0)


def test_eval_cli_takes_the_match_iou_from_the_config(workspace, tmp_path):
    from typer.testing import CliRunner

    from autolabel.cli import app

    ids = add_images(workspace, 2)
    add_run(workspace, {ids[0]: [(LOOSE, 0.9)], ids[1]: [(TIGHT, 0.9)]})
    workspace.conn.execute("UPDATE proposals SET route = 'auto', p_correct = 0.99")
    truth = write_truth(workspace, tmp_path / "truth.jsonl", ids)
    runner = CliRunner()
    r = runner.invoke(app, ["eval", str(workspace.path), "--truth", str(truth), "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["auto_precision"] == pytest.approx(0.5)
    (workspace.path / "config.yaml").write_text("quality:\n  match_iou: 0.5\n")
    r = runner.invoke(app, ["eval", str(workspace.path), "--truth", str(truth)])
    assert r.exit_code == 0, r.output
    assert "AP75" in r.output and "IoU >= 0.5" in r.output
