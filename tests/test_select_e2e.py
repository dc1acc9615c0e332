"""End to end: synthetic screenshots with known truth, a simulated imperfect detector,
two select rounds with a simulated reviewer, then `autolabel eval`."""

from __future__ import annotations

import json

import numpy as np
import pytest

from autolabel.evaluate import evaluate, load_truth
from autolabel.select.run import precision_estimate, run_select
from autolabel.store.select import load_current, load_queue
from tests.support.simulate import (
    build_simulated_workspace,
    review_proposal,
    simulated_reviewer_action,
)


def _review(ws, truth, reasons) -> int:
    """Decide every open queue item with one of ``reasons`` like a careful reviewer."""
    cur = load_current(ws)
    box_of = {int(i): cur.xyxy[j] for j, i in enumerate(cur.ids)}
    img_of = {int(i): int(cur.image_id[j]) for j, i in enumerate(cur.ids)}
    q = load_queue(ws)
    n = 0
    for pid, status, reason in zip(q.proposal_id, q.status, q.reason, strict=True):
        if status != "open" or reason not in reasons:
            continue
        pid = int(pid)
        action, box = simulated_reviewer_action(box_of[pid], truth.boxes[img_of[pid]])
        review_proposal(ws, pid, action, box=box)
        n += 1
    return n


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    from autolabel.store import Workspace

    root = tmp_path_factory.mktemp("sel_e2e")
    ws = Workspace.create(root / "ws")
    truth_path = build_simulated_workspace(ws, root / "images", n_images=120, seed=3)
    yield ws, truth_path, root
    ws.close()


def test_two_rounds_beat_random_and_audit_covers_true_precision(simulated):
    ws, truth_path, root = simulated
    truth = load_truth(ws, truth_path)
    cfg = ws.config(
        {"select.budget": "25%", "select.audit_rate": 0.15, "select.target_precision": 0.9}
    ).select

    # round 1: nothing labelled yet -> raw score, and it says so
    s1 = run_select(ws, cfg)
    assert s1["calibration"]["method"] == "raw-score"
    assert "labelled examples" in s1["calibration"]["reason"]
    n_routable = s1["n_routable"]
    assert s1["routes"]["review"] <= int(np.ceil(0.25 * n_routable))
    assert _review(ws, truth, {"uncertain", "missing", "audit"}) > 20

    # round 2: refit on the decisions; decided boxes keep their route
    s2 = run_select(ws, cfg)
    assert s2["calibration"]["method"] == "logistic"
    assert s2["calibration"]["n_examples"] >= 20
    assert s2["n_fixed"] >= 20
    assert s2["queue"]["skipped"] == 0
    _review(ws, truth, {"audit"})

    res = evaluate(ws, truth_path, root / "eval")
    assert (root / "eval" / "eval.json").exists()
    assert (root / "eval" / "budget_curve.png").stat().st_size > 1000
    assert 0 < res["ap50"] <= 1 and 0 <= res["ap"] <= res["ap50"]

    curve = res["budget_curve"]
    frac = np.array(curve["fractions"])
    sel = np.array(curve["selector"]["precision"])
    rnd = np.array(curve["random"]["precision"])
    upto = frac <= max(res["budget_fraction"], 0.25) + 1e-9
    assert np.all(sel[upto] >= rnd[upto] - 1e-9), (sel, rnd)
    assert res["selector_auc"] > res["random_auc"]
    mid = (frac > 0) & (frac < 1)
    assert np.mean(sel[mid] > rnd[mid]) > 0.8

    est = precision_estimate(ws)
    assert est["n_audited"] >= 5
    true_p = res["true_auto_precision"]
    assert est["low"] <= true_p <= est["high"], (est, true_p)
    # the calibrated auto-accepted set is better than what the detector alone proposes
    assert res["auto_precision"] > res["n_truth_boxes"] / res["n_proposals"]


def test_eval_cli_and_status_show_the_estimate(simulated):
    from typer.testing import CliRunner

    from autolabel.cli import app

    ws, truth_path, root = simulated
    runner = CliRunner()
    out = root / "eval_cli"
    r = runner.invoke(app, ["eval", str(ws.path), "--truth", str(truth_path), "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "AP50" in r.output and "budget curve" in r.output
    saved = json.loads((out / "eval.json").read_text())
    assert set(saved["budget_curve"]) == {"fractions", "selector", "random", "score"}
    r = runner.invoke(app, ["status", str(ws.path), "--json"])
    assert r.exit_code == 0, r.output
    status = json.loads(r.output)
    assert status["auto_precision"]["audited"] >= 1
    assert 0 <= status["auto_precision"]["low"] <= status["auto_precision"]["high"] <= 1


def test_seed_boxes_calibrate_the_first_round(tmp_path):
    """With located seed items, the first select already fits a calibration that uses the
    seed-derived signals, and beats the raw score's auto-accept precision."""
    from autolabel.store import Workspace

    with Workspace.create(tmp_path / "ws") as ws:
        truth_path = build_simulated_workspace(
            ws, tmp_path / "images", n_images=60, seed=5, n_seed=24
        )
        cfg = ws.config({"select.target_precision": 0.9, "select.diversity": 0.0}).select
        s = run_select(ws, cfg)
        cal = s["calibration"]
        assert cal["method"] == "logistic", cal
        assert cal["sources"]["seed"] >= 20 and cal["sources"]["decisions"] == 0
        assert {"exemplar_sim", "size_outlier", "aspect_outlier", "margin"} <= set(cal["columns"])
        assert (tmp_path / "ws" / "cache" / "crop_embeddings.npz").exists()
        res = evaluate(ws, truth_path, tmp_path / "eval")
        # at most n_truth of the proposals can be right (here about a third), yet the
        # auto-accepted ones are
        assert res["n_auto"] >= 10
        base_rate_bound = res["n_truth_boxes"] / res["n_proposals"]
        assert res["auto_precision"] >= max(0.85, base_rate_bound + 0.4)
        assert res["calibration"]["ece"] < 0.2
