"""The spot-check gallery (issue 18 item 6): auto-accepted boxes with their source size and
upscale factor, filters, and flags that count as audit outcomes in the estimate."""

from __future__ import annotations

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient

from autolabel.config import ExportConfig, ReviewConfig
from autolabel.review.app import create_app
from autolabel.review.queue import ReviewQueue, upscale_factor
from autolabel.select.run import precision_estimate
from autolabel.store import queue as sq
from autolabel.store.labels import iter_labels
from tests.support.review import auto_workspace

ANN = {"X-Reviewer": "ann"}
BASE = "http://127.0.0.1:8765"


@pytest.mark.parametrize(
    ("box", "size", "resize", "expected"),
    [
        ([0, 0, 224, 100], 448, "fit", 2.0),
        ([0, 0, 896, 100], 448, "fit", 0.5),
        ([0, 0, 896, 224], 448, "short-side", 2.0),
        ([10, 10, 10, 50], 448, "fit", 448 / 40),
    ],
)
def test_upscale_factor_is_export_size_over_the_scaled_side(box, size, resize, expected):
    assert upscale_factor(box, size, resize) == pytest.approx(expected)


def test_gallery_lists_auto_accepted_boxes_with_size_and_upscale(workspace):
    auto_ids = auto_workspace(workspace)
    q = ReviewQueue(workspace)
    g = q.gallery(export_size=448)
    assert g["total"] == len(auto_ids)  # audited boxes a person accepted are "reviewed"
    assert g["phrases"] == ["bag", "shoe"]
    first = g["items"][0]  # the most enlarged first: the 100 px thumbnail, 4.48x
    assert first["box"] == [600, 1800, 700, 1900] and first["upscale"] == pytest.approx(4.48)
    assert (first["width"], first["height"]) == (1080, 2340)
    ups = [it["upscale"] for it in g["items"]]
    assert ups == sorted(ups, reverse=True)
    shoes = q.gallery(phrase="shoe")["items"]
    assert {it["phrase"] for it in shoes} == {"shoe"} and len(shoes) == 3
    sure = q.gallery(min_score=0.89)["items"]
    assert all(it["score"] >= 0.89 for it in sure) and len(sure) == 3
    band = q.gallery(min_score=0.75, max_score=0.86, order="score")["items"]
    assert [it["score"] for it in band] == [0.8, 0.85]
    assert len(q.gallery(limit=2, offset=1)["items"]) == 2


def test_flag_counts_as_a_wrong_audit_outcome_and_unflag_restores(workspace):
    auto_ids = auto_workspace(workspace)
    q = ReviewQueue(workspace)
    before = precision_estimate(workspace)
    assert (before["n_audited"], before["n_correct"], before["precision"]) == (3, 3, 1.0)
    thumb = q.gallery()["items"][0]["proposal_id"]
    assert thumb in auto_ids

    flagged = q.flag("ann", thumb)
    est = flagged["estimate"]
    assert (est["n_audited"], est["n_correct"]) == (4, 3)
    assert est["precision"] == pytest.approx(0.75) and est["low"] < before["low"]
    assert "0.750" in est["text"]
    assert precision_estimate(workspace)["precision"] == pytest.approx(0.75)
    # the flagged box leaves the auto-accepted set and the export
    assert thumb not in {lab.proposal_id for lab in iter_labels(workspace, include="accepted")}
    assert thumb not in {it["proposal_id"] for it in q.gallery()["items"]}
    log = sq.iter_decisions(workspace)[-1]
    assert (log["reviewer"], log["action"], log["reason"]) == (
        "ann",
        "reject",
        "flagged in gallery",
    )

    with pytest.raises(Exception, match="already decided"):
        q.flag("bob", thumb)
    back = q.unflag("ann", flagged["decision_id"])
    assert back["estimate"]["precision"] == pytest.approx(1.0)
    assert thumb in {lab.proposal_id for lab in iter_labels(workspace, include="accepted")}
    status = workspace.conn.execute(
        "SELECT status, reason FROM queue_items WHERE id = ?", (flagged["item_id"],)
    ).fetchone()
    assert tuple(status) == ("open", "audit")  # back in the queue, for a real audit


def test_only_auto_accepted_boxes_can_be_flagged(workspace):
    auto_workspace(workspace)
    with workspace.transaction() as c:
        c.execute("UPDATE proposals SET route = 'review' WHERE id = 1")
    q = ReviewQueue(workspace)
    with pytest.raises(Exception, match="expected an auto-accepted box"):
        q.flag("ann", 1)
    assert sq.item_for_proposal(workspace, 1) is not None
    assert (
        workspace.conn.execute("SELECT status FROM queue_items WHERE proposal_id = 1").fetchone()[0]
        == "withdrawn"
    )
    with pytest.raises(Exception, match="no such proposal"):
        q.flag("ann", 999)


def test_gallery_over_http(workspace, tmp_path):
    auto_workspace(workspace, tmp_path / "img")
    app = create_app(workspace.path, ReviewConfig(), export=ExportConfig(size=224))
    with TestClient(app, base_url=BASE) as c:
        page = c.get("/gallery", headers=ANN)
        assert page.status_code == 200 and "gallery.js" in page.text
        assert c.get("/static/gallery.js", headers=ANN).status_code == 200
        g = c.get("/api/gallery?phrase=bag&min_score=0.5", headers=ANN).json()
        assert {it["phrase"] for it in g["items"]} == {"bag"}
        assert g["items"][0]["upscale"] == pytest.approx(2.24)  # export size 224 / 100 px
        assert "unknown" not in g["estimate"]["text"]
        r = c.post(
            "/api/gallery/flag", headers=ANN, json={"proposal_id": g["items"][0]["proposal_id"]}
        )
        assert r.status_code == 200 and r.json()["estimate"]["n_audited"] == 4
        again = c.post(
            "/api/gallery/flag", headers=ANN, json={"proposal_id": g["items"][0]["proposal_id"]}
        )
        assert again.status_code == 409
        assert (
            c.post("/api/gallery/flag", headers=ANN, json={"proposal_id": 2**63}).status_code == 422
        )
        assert c.get("/api/gallery?order=evil", headers=ANN).status_code == 400
        assert c.get("/api/gallery?limit=100000", headers=ANN).status_code == 422
        un = c.post(
            "/api/gallery/unflag", headers=ANN, json={"decision_id": r.json()["decision_id"]}
        )
        assert un.status_code == 200 and un.json()["estimate"]["n_audited"] == 3
        assert c.post("/api/gallery/flag", json={"proposal_id": 1}).status_code == 401
        foreign = c.post(
            "/api/gallery/flag",
            headers={**ANN, "origin": "http://127.0.0.1:9"},
            json={"proposal_id": 1},
        )
        assert foreign.status_code == 403


def test_estimate_is_unknown_without_audits(workspace):
    auto_workspace(workspace, audited_ok=0)
    est = ReviewQueue(workspace).gallery()["estimate"]
    assert est["precision"] is None and "unknown" in est["text"]
    assert est["low"] is None  # no interval without audits: never a stale number
