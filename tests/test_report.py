"""``autolabel report`` helps decide (issue 19 cause 9): every auto-accepted and audited crop
beside its source with the box drawn, source size and upscale factor, and what to do next."""

from __future__ import annotations

import json

import pytest

from autolabel.config import ExportConfig
from autolabel.report import build_report, render_html, write_report
from autolabel.store import queue as sq
from tests.support.review import auto_workspace, build_queue


def test_report_shows_auto_and_audited_crops_with_size_and_upscale(workspace, tmp_path):
    auto_ids = auto_workspace(workspace, tmp_path / "img", audited_ok=2)
    # one more audit item, rejected: a wrong outcome
    wrong = auto_ids[0]
    sq.enqueue(workspace, [wrong], "audit")
    sq.decide(workspace, "carl", sq.item_for_proposal(workspace, wrong), "reject", lease_seconds=60)

    data = build_report(workspace, export=ExportConfig(size=448))
    auto = data["crops"]["auto"]
    assert data["crops"]["n_auto"] == len(auto) == len(auto_ids) - 1
    assert auto[0]["box"] == [600, 1800, 700, 1900] and auto[0]["upscale"] == pytest.approx(4.48)
    assert (auto[0]["width"], auto[0]["height"]) == (1080, 2340)
    assert [a["upscale"] for a in auto] == sorted((a["upscale"] for a in auto), reverse=True)
    audited = data["crops"]["audited"]
    assert sorted((a["proposal_id"], a["correct"]) for a in audited) == sorted(
        [(wrong, False)] + [(p, True) for p in range(len(auto_ids) + 1, len(auto_ids) + 3)]
    )

    page = render_html(data)
    assert (
        page.count('alt="crop as exported"')
        == page.count('alt="source with box"')
        == len(auto) + len(audited)
    )
    assert "source 1080×2340" in page and "upscale ×4.48" in page
    assert '<b class="wrong">wrong</b> (reject)' in page
    assert "What to do next" in page


def test_what_to_do_next_names_items_calibration_and_the_estimate(workspace, tmp_path):
    auto_workspace(workspace, audited_ok=3)
    build_queue(workspace, 2)  # two uncertain items to review
    last = workspace.get_setting("select.last")
    calibration = {"method": "logistic", "n_examples": 40, "n_correct": 30}
    last["versions"][last["current_version"]]["calibration"] = calibration
    workspace.set_setting("select.last", last)
    nxt = build_report(workspace)["next"]
    assert nxt["review_items"] == 2 and nxt["estimate"] == pytest.approx(1.0)
    text = " ".join(nxt["lines"])
    assert "Review 2 items" in text and "autolabel review" in text
    assert "calibrated (logistic on 40 labelled boxes)" in text
    assert "1.000 (95% interval" in text and "3/3 audited" in text


def test_what_to_do_next_says_unknown_without_audits_or_calibration(workspace):
    auto_workspace(workspace, audited_ok=0)
    last = workspace.get_setting("select.last")
    uncalibrated = {"method": "none", "reason": "only 3 labelled boxes"}
    last["versions"][last["current_version"]]["calibration"] = uncalibrated
    workspace.set_setting("select.last", last)
    nxt = build_report(workspace)["next"]
    assert nxt["estimate"] is None and nxt["low"] is None
    text = " ".join(nxt["lines"])
    assert "Precision of the auto-accepted boxes: unknown" in text
    assert "not calibrated: only 3 labelled boxes" in text
    assert "The review queue is empty." in text


def test_what_to_do_next_calls_a_rate_calibrator_calibrated_and_repeats_select_warnings(
    workspace,
):
    auto_workspace(workspace, audited_ok=0)
    last = workspace.get_setting("select.last")
    rate = {"method": "rate", "n_examples": 110, "n_correct": 109, "reason": "almost all one class"}
    last["versions"][last["current_version"]]["calibration"] = rate
    last["warnings"] = ["detector version v [k]: no box reached the target precision 0.99"]
    last["versions"][last["current_version"]]["weak_sides"] = {
        "calibration": {"method": "raw-score", "reason": "only 4 labelled examples"},
        "labelled": 4, "n_current": 9, "can_auto": False,
    }  # fmt: skip
    workspace.set_setting("select.last", last)
    text = " ".join(build_report(workspace)["next"]["lines"])
    assert "9 boxes have a side on no edge" in text and "(4 so far)" in text
    assert "Calibration: calibrated (rate on 110 labelled boxes)" in text
    assert "not calibrated" not in text
    assert "Select warned: detector version v [k]: no box reached the target" in text


def test_write_report_writes_html_and_json(workspace, tmp_path):
    auto_workspace(workspace, tmp_path / "img", audited_ok=1)
    html_path, json_path = write_report(workspace, tmp_path / "out")
    data = json.loads(json_path.read_text())
    assert data["crops"]["n_auto"] == 6 and data["next"]["lines"]
    assert html_path.read_text().count("data:image/png;base64,") >= 2 * 7
