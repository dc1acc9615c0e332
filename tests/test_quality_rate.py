"""Issue 19: a detector that is (almost) always right still gets auto-accepted, honestly.

With (almost) only correct labelled boxes no logistic / isotonic fit exists, and before,
nothing was ever auto-accepted (every crop went to a person). The ``rate`` calibrator
estimates P(correct) from the reviewed boxes scored at or below each box; seed originals
(which the detector learned from) do not count.
"""

from __future__ import annotations

import numpy as np
import pytest

from autolabel.config import QualityConfig, SelectConfig
from autolabel.select.calibrate import FEATURES, fit_calibrator, fit_rate_calibrator
from autolabel.select.run import precision_estimate, run_select
from tests.support.quality import TRUE_BOX, add_images, add_run, review_open_items, shifted

QUAL = QualityConfig(min_audited=5, min_labelled=20)


def _X(score):
    X = np.full((len(score), len(FEATURES)), np.nan)
    X[:, 0] = score
    return X


def test_rate_calibrator_pools_reviewed_boxes_into_monotone_blocks():
    rng = np.random.default_rng(0)
    s = rng.uniform(0.5, 0.9, 60)
    y = np.ones(60, int)
    low = np.argsort(s)
    y[low[:2]] = 0  # the two lowest-scored boxes were wrong
    full = fit_calibrator(_X(s), y, min_examples=20)
    assert not full.fitted and "almost all one class" in full.reason
    cal = fit_rate_calibrator(s, y, min_examples=20, why=full.reason)
    assert cal.method == "rate" and cal.n_examples == 60 and cal.n_correct == 58
    mid = float(s[low[30]])
    p = cal.predict(_X([0.95, mid, float(s[low[0]]), 0.3]))
    # the 58 correct ones are one block: a wrong box among the lowest scores does not pull
    # the top down; the two wrong ones are a block of their own, too small to act on
    assert p[0] == pytest.approx(58.5 / 59)
    # a box inside the block is vouched for by the block's boxes at or below it (29 here)
    assert p[1] == pytest.approx(29.5 / 30)
    assert p[2] == pytest.approx(0.5 / 3)
    assert p[3] == pytest.approx(0.3 * 0 + min(0.3, 0.5 / 3))  # below every reviewed score
    assert cal.supported(_X([0.95, mid, float(s[low[0]]), 0.3])).tolist() == [
        True, True, False, False,
    ]  # fmt: skip
    # a wrong box inside the top block does pull it down
    y2 = np.ones(60, int)
    y2[low[45]] = 0
    top = fit_rate_calibrator(s, y2, min_examples=20)
    assert top.predict(_X([0.95]))[0] < 0.99
    # 49 correct in a row is what 0.99 takes
    assert fit_rate_calibrator(np.ones(48), np.ones(48)).predict(_X([1.0]))[0] < 0.99
    assert fit_rate_calibrator(np.ones(49), np.ones(49)).predict(_X([1.0]))[0] >= 0.99
    few = fit_rate_calibrator(s[:10], y[:10], min_examples=20)
    assert not few.fitted and "only 10 reviewed boxes" in few.reason


def test_monotone_blocks_merge_small_top_blocks_down():
    from autolabel.select.calibrate import monotone_blocks

    s = np.arange(41, dtype=float)
    y = np.ones(41, int)
    y[30] = 0  # 30 correct, a wrong one, 10 correct
    starts, n, k = monotone_blocks(s, y, 20)
    assert n.tolist() == [41.0] and k.tolist() == [40.0]  # the 10 on top are too few alone
    starts, n, k = monotone_blocks(s, y, 5)
    assert n.tolist() == [31.0, 10.0] and k.tolist() == [30.0, 10.0]
    assert starts.tolist() == [0.0, 31.0]
    assert np.all(np.diff(k / n) >= 0)


def _world(ws, n, *, wrong=(), seed=0):
    """n images, one box each, scores increasing with the image; every box tight (correct
    at 0.9) except those whose score rank is in ``wrong``: loose (IoU 0.75)."""
    rng = np.random.default_rng(seed)
    ids = add_images(ws, n)
    scores = np.sort(rng.uniform(0.55, 0.99, n))
    boxes = {}
    for k, i in enumerate(ids):
        box = shifted(TRUE_BOX, 0.75 if k in wrong else rng.uniform(0.93, 0.99))
        boxes[i] = [(box, float(scores[k]))]
    add_run(ws, boxes, model_version="regions-v1")
    return ids


def _budgeted(budget: int, **kw) -> SelectConfig:
    """Target 0.99, ``budget`` review items, no diversity, exemplar similarity or exploring
    unless ``kw`` says otherwise."""
    base = {"diversity": 0.0, "exemplar_similarity": False, "explore_share": 0.0}
    return SelectConfig(target_precision=0.99, budget=budget, **{**base, **kw})


def _routes(ws):
    return dict(ws.conn.execute("SELECT route, COUNT(*) FROM current_proposals GROUP BY route"))


def test_an_always_right_detector_is_auto_accepted_after_enough_reviews(workspace):
    _world(workspace, 120)
    sel = _budgeted(60, audit_rate=0.02)
    s1 = run_select(workspace, sel, quality=QUAL)
    assert s1["routes"]["auto"] + s1["routes"]["audit"] == 0
    assert review_open_items(workspace) == 60  # the 60 most doubtful (lowest scores)
    s2 = run_select(workspace, sel, quality=QUAL)
    info = s2["versions"][s2["current_version"]]
    assert info["calibration"]["method"] == "rate" and info["can_auto"] is True
    assert "almost all one class" in info["calibration"]["reason"]
    assert s2["routes"]["auto"] + s2["routes"]["audit"] == 60
    assert s2["expected_precision"] == pytest.approx(60.5 / 61, abs=1e-4)
    assert s2["routes"]["audit"] >= 5  # a fresh audit sample backs the estimate
    review_open_items(workspace, reasons=("audit",))
    est = precision_estimate(workspace, QUAL)
    assert est["status"] == "ok" and est["n_audited"] >= 5
    assert est["audit_only"]["precision"] == 1.0 and est["method"] == "pooled"
    assert est["prior_n"] == 60  # the 60 reviewed boxes, all below the auto-accepted ones
    assert 0.98 < est["precision"] < 1.0 and est["low"] < est["precision"] < est["high"]


def test_select_says_how_many_more_reviews_lift_a_rate_set_to_the_target(workspace):
    _world(workspace, 120)
    sel = _budgeted(40, audit_rate=0.02)
    run_select(workspace, sel, quality=QUAL)
    assert review_open_items(workspace) == 40
    s = run_select(workspace, sel, quality=QUAL)
    assert s["routes"]["auto"] == 0 and s["versions"][s["current_version"]]["can_auto"]
    (line,) = [w for w in s["warnings"] if "no box reached" in w]
    # 40 of 40 right: (40.5 / 41) < 0.99; 49 of 49 reach it
    assert f"the best P(correct) is {40.5 / 41:.4f}" in line
    assert "40 reviewed boxes behind it; about 9 more correct review(s)" in line
    assert fit_rate_calibrator(np.ones(49), np.ones(49)).predict(_X([1.0]))[0] >= 0.99


def test_seed_originals_do_not_vouch_for_the_detector_that_learned_from_them(workspace):
    from tests.support.quality import add_seed_items

    ids = _world(workspace, 80)
    add_seed_items(workspace, ids[40:])  # 40 correct seed labels, no review
    sel = SelectConfig(target_precision=0.99, diversity=0.0, exemplar_similarity=False)
    s = run_select(workspace, sel, quality=QUAL)
    assert s["routes"]["auto"] + s["routes"]["audit"] == 0
    assert any("only 0 reviewed boxes" in w for w in s["warnings"])


@pytest.mark.parametrize(
    ("wrong", "p_top", "auto"),
    [((0, 1), 58.5 / 59, 60), ((40, 50), 58.5 / 61, 0)],
    ids=["wrong-among-the-lowest", "wrong-among-the-highest"],
)
def test_where_the_wrong_reviewed_boxes_are_decides(workspace, wrong, p_top, auto):
    _world(workspace, 120, wrong=wrong)
    sel = _budgeted(60)
    run_select(workspace, sel, quality=QUAL)
    review_open_items(workspace)  # the 60 lowest: 58 accepts, the 2 loose ones adjusted
    s = run_select(workspace, sel, quality=QUAL)
    assert s["versions"][s["current_version"]]["calibration"]["method"] == "rate"
    assert s["routes"]["auto"] + s["routes"]["audit"] == auto
    p = workspace.conn.execute(
        "SELECT MAX(p_correct) FROM current_proposals p WHERE NOT EXISTS "
        "(SELECT 1 FROM decisions d WHERE d.proposal_id = p.id)"
    ).fetchone()[0]
    assert p == pytest.approx(p_top, abs=1e-4)


@pytest.mark.parametrize(("detector", "auto"), [("test", True), ("regions", False)])
def test_seed_labels_calibrate_only_a_detector_that_did_not_learn_from_them(
    workspace, detector, auto
):
    from tests.support.quality import build_world

    build_world(workspace, 60, seed=2, n_seed=30, detector=detector)
    sel = SelectConfig(target_precision=0.9, diversity=0.0, exemplar_similarity=False)
    s = run_select(workspace, sel, quality=QUAL)
    info = s["versions"][s["current_version"]]
    assert (s["routes"]["auto"] + s["routes"]["audit"] > 0) is auto
    assert info["sources"]["seed"] == (60 if auto else 0)  # 30 seed images x 2 boxes
    if not auto:
        assert "60 boxes on seed originals do not count" in info["calibration"]["reason"]


def test_a_set_audited_whole_is_known_exactly():
    from autolabel.select.stats import estimate_from_outcomes

    ctx = {"selected": True, "version": "k", "can_auto": True}
    whole = estimate_from_outcomes(
        {"n_auto": 5, "n_audit": 5, "n_audited": 5, "n_correct": 4}, ctx, min_audited=10
    )
    assert whole["status"] == "ok" and whole["precision"] == whole["low"] == whole["high"] == 0.8
    assert "every one of the 5" in whole["reason"]
    part = estimate_from_outcomes(
        {"n_auto": 6, "n_audit": 5, "n_audited": 5, "n_correct": 5}, ctx, min_audited=10
    )
    assert part["status"] == "unknown" and part["precision"] is None
    big = estimate_from_outcomes(
        {"n_auto": 300, "n_audit": 10, "n_audited": 10, "n_correct": 10}, ctx, min_audited=10
    )
    assert big["precision"] == 1.0 and big["low"] < 0.75 and big["high"] == 1.0


def test_part_of_the_budget_explores_the_likely_right_boxes():
    from autolabel.select.route import _explore

    p = np.linspace(0.01, 0.99, 200)
    ranked = np.argsort(np.abs(p - 0.5))  # most uncertain first
    rng = np.random.default_rng(0)
    out = _explore(ranked, p, 40, 0.5, rng)
    assert out.size == 40 and np.unique(out).size == 40
    assert out.tolist()[::2] == ranked[:20].tolist()  # the 20 most uncertain, in order
    explored = out[1::2]
    assert (p[explored] >= 0.5).all() and not np.isin(explored, ranked[:20]).any()
    assert p[explored].max() > 0.9  # drawn over the whole likely-right range
    assert _explore(ranked, p, 40, 0.0, rng).tolist() == ranked[:40].tolist()
    assert _explore(ranked, p, 500, 0.5, rng).tolist() == ranked.tolist()  # no cap needed


@pytest.mark.parametrize(("share", "auto"), [(0.5, True), (0.0, False)])
def test_exploring_reaches_auto_accept_sooner(workspace, share, auto):
    """Uncertainty sampling alone keeps reviewing the lowest scores (and the top of the
    score range never gets the reviews that would vouch for it); a random half of the
    budget among likely-right boxes builds that evidence."""
    _world(workspace, 300, wrong=(30, 50), seed=1)  # among the 60 most uncertain
    sel = _budgeted(60, explore_share=share)
    run_select(workspace, sel, quality=QUAL)
    scores = workspace.conn.execute(
        "SELECT p.score FROM queue_items q JOIN proposals p ON p.id = q.proposal_id"
    ).fetchall()
    assert (sum(s > 0.7 for (s,) in scores) >= 20) is auto  # half explores
    review_open_items(workspace)
    s = run_select(workspace, sel, quality=QUAL)
    assert (s["routes"]["auto"] + s["routes"]["audit"] > 0) is auto


def test_audits_pool_with_the_reviewed_boxes_behind_a_rate_set():
    from autolabel.select.stats import estimate_from_outcomes, format_estimate

    out = {"n_auto": 442, "n_audit": 19, "n_audited": 19, "n_correct": 18}
    ctx = {"selected": True, "version": "k", "can_auto": True, "expected_precision": 0.992}
    alone = estimate_from_outcomes(out, ctx)
    pooled = estimate_from_outcomes(out, {**ctx, "prior_n": 74})
    assert alone["method"] == "audits" and alone["precision"] == pytest.approx(18 / 19)
    assert pooled["method"] == "pooled" and pooled["audit_only"] == {
        k: alone[k] for k in ("precision", "low", "high")
    }
    # (74 * 0.992 + 18 + 0.5) / (74 + 19 + 1): the audits move it, the reviews steady it
    assert pooled["precision"] == pytest.approx((74 * 0.992 + 18.5) / 94)
    assert pooled["low"] < pooled["precision"] < pooled["high"] < 1.0
    assert pooled["high"] - pooled["low"] < alone["high"] - alone["low"]
    assert "pooled with 74 reviewed boxes" in format_estimate(pooled)
    clean = estimate_from_outcomes({**out, "n_correct": 19}, {**ctx, "prior_n": 74})
    assert clean["high"] == 1.0 and clean["precision"] < 1.0  # nothing rules out perfection
    # bad audits still pull it down: the prior is not a veto
    bad = estimate_from_outcomes({**out, "n_correct": 12}, {**ctx, "prior_n": 74})
    assert bad["precision"] < 0.93 and bad["high"] < 0.97


def test_two_seed_crops_of_one_picture_in_one_original_export_one_label(workspace):
    """Two hand crops of the same product located in the same original: one picture, one
    label (before, the export carried the picture twice and one of them counted wrong)."""
    from autolabel.store.labels import iter_labels
    from autolabel.store.seed import upsert_seed_items
    from autolabel.store.select import sync_seed_labels

    ids = add_images(workspace, 2)
    path = {
        i: workspace.conn.execute("SELECT path FROM images WHERE id = ?", (i,)).fetchone()[0]
        for i in ids
    }
    rows = [
        (0, ids[0], TRUE_BOX, 0.97),
        (1, ids[0], shifted(TRUE_BOX, 0.95), 0.99),  # the same picture, located better
        (2, ids[0], (10.0, 290.0, 60.0, 340.0), 0.9),  # another object on that image
        (3, ids[1], TRUE_BOX, 0.95),
    ]
    upsert_seed_items(workspace, [
        {"crop_path": f"/nonexistent/c{k}.png", "original_path": path[img], "image_id": img,
         "box": tuple(box), "score": sc, "status": "located", "phrase": "product"}
        for k, img, box, sc in rows
    ])  # fmt: skip
    sync_seed_labels(workspace)
    labels = sorted((lab.image_id, round(lab.box[0], 1)) for lab in iter_labels(workspace))
    kept = round(shifted(TRUE_BOX, 0.95)[0], 1)
    assert labels == sorted([(ids[0], kept), (ids[0], 10.0), (ids[1], TRUE_BOX[0])])
    assert sync_seed_labels(workspace) == 0  # stable


def test_the_rate_calibrator_does_not_vouch_for_unusual_layouts():
    from autolabel.select.calibrate import FEATURES

    j = FEATURES.index("aspect_outlier")
    n = 60
    X = _X(np.linspace(0.5, 0.9, n))
    X[:, j] = np.linspace(0.0, 1.5, n)  # every correct reviewed box: aspect outlier <= 1.5
    cal = fit_rate_calibrator(X[:, 0], np.ones(n, int), min_examples=20, X=X)
    assert cal.describe()["envelope"] == {"aspect_outlier": 1.5}
    rows = _X([0.95, 0.95, 0.95])
    rows[:, j] = [1.2, 3.0, np.nan]
    assert cal.supported(rows).tolist() == [True, False, True]  # NaN: not measured
    assert cal.predict(rows)[1] == cal.predict(rows)[0]  # P stays; it is not auto-accepted


def test_a_box_that_duplicates_an_adjusted_box_is_not_auto_accepted(workspace):
    """A reviewer moved a half-picture box onto the whole picture; the detector's own box
    of the whole picture on that image is a duplicate of the adjusted box, not of the
    half box it started from (both were exported before)."""
    from tests.support.simulate import review_proposal

    ids = add_images(workspace, 80)
    half = (TRUE_BOX[0], TRUE_BOX[1], (TRUE_BOX[0] + TRUE_BOX[2]) / 2, TRUE_BOX[3])
    boxes = {i: [(shifted(TRUE_BOX, 0.96), 0.99)] for i in ids}
    boxes[ids[0]] = [(half, 0.6), (shifted(TRUE_BOX, 0.96), 0.99)]
    add_run(workspace, boxes, model_version="regions-v1")
    pid = workspace.conn.execute(
        "SELECT id FROM proposals WHERE image_id = ? ORDER BY score LIMIT 1", (ids[0],)
    ).fetchone()[0]
    review_proposal(workspace, pid, "adjust", box=TRUE_BOX)
    sel = SelectConfig(target_precision=0.5, diversity=0.0, exemplar_similarity=False)
    run_select(workspace, sel, quality=QUAL)
    route = workspace.conn.execute(
        "SELECT route FROM current_proposals WHERE image_id = ? AND id != ?", (ids[0], pid)
    ).fetchone()[0]
    assert route == "rejected"  # dropped as a duplicate (P(correct) 0), never exported


def test_an_image_full_of_auto_accepted_boxes_gets_no_review_item():
    from autolabel.select.route import plan_routes

    p = np.array([0.999, 0.6, 0.999, 0.6, 0.6])
    image = np.array([1, 1, 2, 2, 3])
    kw = dict(
        target_precision=0.99, budget=None, audit_rate=0.0, reject_below=0.05,
        rng=np.random.default_rng(0),
    )  # fmt: skip
    full = plan_routes(p, image, max_per_image=1, **kw)
    assert full.route.tolist() == ["auto", "pending", "auto", "pending", "review"]
    loose = plan_routes(p, image, max_per_image=2, **kw)
    assert loose.route.tolist() == ["auto", "review", "auto", "review", "review"]


def test_two_seed_boxes_of_one_picture_do_not_teach_two_crops_per_image(workspace):
    from autolabel.select.dedupe import learned_max_per_image
    from autolabel.store.seed import upsert_seed_items
    from autolabel.store.select import load_seed_boxes

    ids = add_images(workspace, 3)
    path = {
        i: workspace.conn.execute("SELECT path FROM images WHERE id = ?", (i,)).fetchone()[0]
        for i in ids
    }
    rows = [(ids[0], TRUE_BOX), (ids[0], shifted(TRUE_BOX, 0.95)), (ids[1], TRUE_BOX),
            (ids[2], TRUE_BOX)]  # fmt: skip
    upsert_seed_items(workspace, [
        {"crop_path": f"/nonexistent/c{k}.png", "original_path": path[img], "image_id": img,
         "box": tuple(box), "score": 0.9, "status": "located", "phrase": "product"}
        for k, (img, box) in enumerate(rows)
    ])  # fmt: skip
    seed = load_seed_boxes(workspace)
    assert sorted(seed["image_id"].tolist()) == sorted(ids)
    assert learned_max_per_image(seed["image_id"]) == 1


def test_boxes_with_a_side_on_no_edge_are_vouched_for_only_by_their_own_reviews(workspace):
    from autolabel.select.calibrate import weak_sides

    rows = _X([0.9, 0.9, 0.9])
    rows[:, FEATURES.index("snap_sides")] = [4.0, 3.0, np.nan]
    assert weak_sides(rows).tolist() == [False, True, False]  # NaN: no edge refiner
    # 120 boxes, scores rising with the image; ten high-scored ones have a side on no edge
    # and four of those are loose: reviews of the well-edged boxes must not vouch for them
    rng = np.random.default_rng(0)
    ids = add_images(workspace, 120)
    scores = np.sort(rng.uniform(0.55, 0.99, 120))
    weak = set(range(100, 110))
    boxes, sides = {}, {}
    for k, i in enumerate(ids):
        box = shifted(TRUE_BOX, 0.75 if k in (101, 103, 105, 107) else 0.95)
        boxes[i], sides[i] = [(box, float(scores[k]))], [3.0 if k in weak else 4.0]
    add_run(workspace, boxes, model_version="regions-v1", signals={"snap_sides": sides})
    sel = _budgeted(60, audit_rate=0.02)
    run_select(workspace, sel, quality=QUAL)
    assert review_open_items(workspace) == 60  # the 60 lowest scores: all well-edged
    s = run_select(workspace, sel, quality=QUAL)
    info = s["versions"][s["current_version"]]
    assert info["calibration"]["method"] == "rate" and info["can_auto"] is True
    assert info["weak_sides"]["labelled"] == 0 and info["weak_sides"]["n_current"] == 10
    assert info["weak_sides"]["can_auto"] is False
    assert "only 0 labelled examples" in info["weak_sides"]["calibration"]["reason"]
    from autolabel.select.run import select_state

    assert select_state(workspace)["weak_sides"] == {
        "n_current": 10, "labelled": 0, "can_auto": False, "method": "raw-score",
    }  # fmt: skip
    route = dict(workspace.conn.execute("SELECT image_id, route FROM current_proposals").fetchall())
    assert {route[ids[k]] for k in weak} <= {"review", "pending"}
    assert all(route[ids[k]] in ("auto", "audit") for k in range(60, 120) if k not in weak)
