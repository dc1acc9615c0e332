"""Issue 19, causes 2, 3, 4 and 8: audits per round, calibrators per detector version,
seed originals out of the auto-accepted set, budget in images.

Each test builds a small controlled world (:func:`tests.support.quality.build_world`) where
the score alone cannot tell tight boxes from loose ones or thumbnails, but a calibrated
signal can.
"""

from __future__ import annotations

import numpy as np
import pytest

from autolabel.config import QualityConfig, SelectConfig
from autolabel.select.run import precision_estimate, run_select, status_summary
from tests.support.quality import (
    TRUE_BOX,
    add_run,
    build_world,
    review_open_items,
    shifted,
)

SEL = SelectConfig(target_precision=0.9, audit_rate=0.1, diversity=0.0, exemplar_similarity=False)
QUAL = QualityConfig(min_audited=5, min_labelled=20)


def _routes_on(ws, image_ids):
    marks = ",".join("?" * len(image_ids))
    return [
        r[0]
        for r in ws.conn.execute(
            f"SELECT route FROM current_proposals WHERE image_id IN ({marks})", list(image_ids)
        )
    ]


def _open_items(ws, reasons=("uncertain", "missing", "audit")):
    marks = ",".join("?" * len(reasons))
    return ws.conn.execute(
        f"SELECT id, proposal_id, image_id, reason FROM queue_items "
        f"WHERE status = 'open' AND reason IN ({marks})",
        list(reasons),
    ).fetchall()


# ------------------------------------------------------------------------------ cause 3
def test_without_labelled_data_of_the_version_nothing_is_auto_accepted(workspace):
    build_world(workspace, 40, seed=1)
    s = run_select(workspace, SEL, quality=QUAL)
    # the raw score is not a probability: before, boxes with a high raw score were accepted
    assert s["routes"]["auto"] == 0 and s["routes"]["audit"] == 0
    assert s["can_auto"] is False
    assert any("nothing of it is auto-accepted" in w for w in s["warnings"])
    assert "only 0 labelled examples (need >= 20)" in s["warnings"][0]
    est = precision_estimate(workspace)
    assert est["precision"] is None and est["status"] == "none"
    st = status_summary(workspace)
    assert st["estimate"] is None and "nothing is auto-accepted" in st["reason"]


def test_a_new_detector_version_gets_no_calibrator_of_the_old_one(workspace):
    ids = build_world(workspace, 60, seed=2, n_seed=30)
    s1 = run_select(workspace, SEL, quality=QUAL)
    assert s1["routes"]["auto"] + s1["routes"]["audit"] > 0
    # a fine-tuned version proposes junk with high scores on the images that are not seeds
    junk = {i: [(shifted(TRUE_BOX, 0.3), 0.99, 0.99)] for i in ids[30:]}
    add_run(workspace, junk, model_version="gdino-v1")
    s2 = run_select(workspace, SEL, quality=QUAL)
    assert "auto" not in _routes_on(workspace, ids[30:])
    assert "audit" not in _routes_on(workspace, ids[30:])
    assert s1["can_auto"] is True and s2["current_version"] != s1["current_version"]
    new = s2["versions"][s2["current_version"]]
    assert new["can_auto"] is False and new["sources"]["decisions"] == 0
    assert any("gdino-v1" in w for w in s2["warnings"])


# ------------------------------------------------------------------------------ cause 4
def test_seed_originals_are_labels_not_auto_accepted_or_audited(workspace):
    from autolabel.store.labels import iter_labels

    ids = build_world(workspace, 60, seed=3, n_seed=30)
    s = run_select(workspace, SEL, quality=QUAL)
    assert set(_routes_on(workspace, ids[:30])) == {"pending"}
    assert s["n_seed_original"] == 60  # 30 seed images x 2 proposals
    queued = {r[2] for r in _open_items(workspace)}
    assert not queued & set(ids[:30])
    est = precision_estimate(workspace)
    n_auto_nonseed = sum(r in ("auto", "audit") for r in _routes_on(workspace, ids[30:]))
    assert est["n_auto"] == n_auto_nonseed > 0
    # the seed boxes are exported as labels with provenance "seed"
    seeds = [lab for lab in iter_labels(workspace) if lab.source == "seed"]
    assert sorted(lab.image_id for lab in seeds) == sorted(ids[:30])
    assert all(lab.box == pytest.approx(TRUE_BOX) for lab in seeds)
    assert not [lab for lab in iter_labels(workspace, include="reviewed") if lab.source == "seed"]


def test_seed_labels_are_exported(workspace, tmp_path):
    import json

    from autolabel.config import ExportConfig
    from autolabel.export import export_dataset

    ids = build_world(workspace, 6, seed=4, n_seed=3, image_dir=tmp_path / "images")
    run_select(workspace, SEL, quality=QUAL)
    res = export_dataset(workspace, tmp_path / "out", ExportConfig(formats=["coco"], min_size=0))
    coco = json.loads((res.path / "coco.json").read_text())
    assert len(coco["annotations"]) == 3
    assert {a["bbox"][2] for a in coco["annotations"]} == {TRUE_BOX[2] - TRUE_BOX[0]}
    manifest = [json.loads(line) for line in (res.path / "meta" / "manifest.jsonl").open()]
    assert {row["source"] for row in manifest} == {"seed"}
    assert {row["image_id"] for row in manifest} == set(ids[:3])


# ------------------------------------------------------------------------------ cause 2
def test_every_round_audits_a_fresh_sample_of_the_newly_auto_accepted(workspace):
    build_world(workspace, 70, seed=5, n_seed=30)
    s1 = run_select(workspace, SEL, quality=QUAL)
    assert s1["routes"]["audit"] >= QUAL.min_audited
    # before any audit item is reviewed the precision is unknown, and says why
    est = precision_estimate(workspace)
    assert est["precision"] is None and est["status"] == "unknown"
    assert f"only 0 of {s1['routes']['audit']} audit items" in est["reason"]
    review_open_items(workspace, reasons=("audit",))
    est = precision_estimate(workspace)
    assert est["status"] == "ok" and est["n_audited"] >= QUAL.min_audited
    assert est["low"] <= est["precision"] <= est["high"]

    # round 2: new images of the same detector version; its new auto-accepted boxes get
    # their own audit sample although earlier audits already exceed audit_rate
    more = build_world(workspace, 40, seed=6, prefix="more")
    s2 = run_select(workspace, SEL, quality=QUAL)
    assert "audit" in _routes_on(workspace, more)
    cur_v = s2["current_version"]
    assert cur_v == s1["current_version"]
    audit2 = s2["versions"][cur_v]["audit"]
    assert audit2["new_auto"] > 0
    assert audit2["audit_fresh"] == int(np.ceil(SEL.audit_rate * audit2["new_auto"]))


def test_the_estimate_never_reports_a_stale_number_after_a_version_change(workspace):
    ids = build_world(workspace, 70, seed=7, n_seed=30)
    run_select(workspace, SEL, quality=QUAL)
    review_open_items(workspace, reasons=("audit",))
    assert precision_estimate(workspace)["precision"] is not None
    # new detector version on the non-seed images: its own auto-accepted set is unaudited
    fresh = {i: [(shifted(TRUE_BOX, 0.97), 0.9, 0.95)] for i in ids[30:]}
    add_run(workspace, fresh, model_version="v2")
    run_select(workspace, SEL, quality=QUAL)
    est = precision_estimate(workspace)
    assert est["precision"] is None and est["low"] is None
    assert est["n_audited"] == 0
    assert est["status"] in ("unknown", "none"), est


# ------------------------------------------------------------------------------ cause 8
def test_budget_counts_images_and_an_item_shows_every_box_of_its_image(workspace):
    from autolabel.review.queue import ReviewQueue

    build_world(workspace, 80, seed=8, thumbnails=2)
    s = run_select(workspace, SelectConfig(budget="10%", diversity=0.0), quality=QUAL)
    items = _open_items(workspace, reasons=("uncertain", "missing"))
    assert s["budget"] == 8 and s["budget_images"] == 80
    assert len(items) <= 8
    assert len({r[2] for r in items}) == len(items)  # one item per image
    assert s["routes"]["review"] == len(items)
    payload = ReviewQueue(workspace).item(int(items[0][0]))
    assert len(payload["candidates"]) == 3  # the main box and both thumbnails
    assert payload["candidates"][0]["proposal_id"] == payload["proposal_id"]


def test_no_second_item_for_an_image_that_is_already_in_the_queue(workspace):
    build_world(workspace, 20, seed=9, thumbnails=3)
    run_select(workspace, SelectConfig(diversity=0.0), quality=QUAL)
    items = _open_items(workspace)
    assert len(items) == len({r[2] for r in items}) <= 20


def test_an_image_reviewed_once_gets_no_second_item(workspace):
    build_world(workspace, 30, seed=10, thumbnails=3)
    cfg = SelectConfig(diversity=0.0)
    run_select(workspace, cfg, quality=QUAL)
    first = {r[2] for r in _open_items(workspace, reasons=("uncertain", "missing"))}
    assert first
    review_open_items(workspace, reasons=("uncertain", "missing"))
    run_select(workspace, cfg, quality=QUAL)
    again = {r[2] for r in _open_items(workspace, reasons=("uncertain", "missing"))}
    assert not again & first
