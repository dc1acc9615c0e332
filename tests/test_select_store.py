"""Select against a real workspace: routes written, queue kept in sync across re-runs,
decided / claimed items never touched, labelled examples from decisions and seed boxes."""

from __future__ import annotations

import numpy as np
import pytest

from autolabel.select.run import labelled_examples, run_select
from autolabel.store.images import ScannedFile, find_image, write_scanned
from autolabel.store.labels import iter_labels
from autolabel.store.queue import claim_next
from autolabel.store.select import (
    load_current,
    load_decisions,
    load_queue,
)
from tests.support.proposals import store_finished_run
from tests.support.simulate import review_proposal


def _add_images(ws, n):
    files = [
        ScannedFile(f"/nowhere/img_{i:03d}.png", 1, 1, f"sha{i}", 200, 100, "PNG") for i in range(n)
    ]
    write_scanned(ws, files)
    return [find_image(ws, f.path).id for f in files]


def _propose(ws, image_ids, boxes_scores, *, version="v1", mock):
    results = [
        (iid, mock(boxes, score=scores, token_score=tokens))
        for iid, (boxes, scores, tokens) in zip(image_ids, boxes_scores, strict=True)
    ]
    return store_finished_run(
        ws, results, detector="sim", model="sim", model_version=version, prompt="obj",
        box_threshold=0.1, text_threshold=0.1,
    )  # fmt: skip


def _cfg(ws, **kw):
    base = {"select.diversity": 0.0, "select.audit_rate": 0.0, "select.target_precision": 0.9}
    base.update({f"select.{k}": v for k, v in kw.items()})
    return ws.config(base).select


@pytest.fixture
def small(workspace, mock_proposals):
    ids = _add_images(workspace, 6)
    scores = [0.99, 0.98, 0.6, 0.5, 0.4, 0.02]
    data = [([[10, 10, 50, 50]], [s], [s]) for s in scores]
    _propose(workspace, ids, data, mock=mock_proposals)
    return workspace, ids


def _routes(ws):
    cur = load_current(ws)
    return dict(zip(cur.ids.tolist(), cur.route.tolist(), strict=True)), cur


def test_first_select_routes_and_fills_the_queue(small):
    ws, _ = small
    summary = run_select(ws, _cfg(ws))
    routes, cur = _routes(ws)
    # no labelled box of this detector version: the raw score orders the queue, but
    # nothing is auto-accepted (issue 19, cause 3)
    assert [routes[i] for i in sorted(routes)] == ["review"] * 5 + ["rejected"]
    assert not np.isnan(cur.p_correct).any()
    # the route names are the constants themselves, not one str per row from the database:
    # a str kept from every row pinned its chunk's memory (peak RSS at 250k proposals)
    from autolabel.constants import ROUTES

    assert all(any(r is name for name in ROUTES) for r in cur.route)
    assert summary["calibration"]["method"] == "raw-score"
    assert summary["warnings"] and not summary["can_auto"]
    q = load_queue(ws)
    assert sorted(q.proposal_id.tolist()) == sorted(cur.ids[:5].tolist())
    assert set(q.reason.tolist()) == {"uncertain"}
    assert list(iter_labels(ws)) == []
    assert ws.get_setting("select.last")["routes"]["auto"] == 0


def test_rerun_never_touches_decided_or_claimed_and_withdraws_the_rest(small):
    ws, _ = small
    run_select(ws, _cfg(ws))
    _, cur = _routes(ws)
    a, b, c = (int(i) for i in cur.ids[2:5])
    # the reviewer claims the top item (0.5 is the most uncertain) and rejects another
    item = claim_next(ws, "ann", lease_seconds=60)
    claimed_pid = int(
        ws.conn.execute("SELECT proposal_id FROM queue_items WHERE id = ?", (item,)).fetchone()[0]
    )
    assert claimed_pid == b
    review_proposal(ws, a, "reject")

    # budget 0: nothing new may be queued; the last open item is withdrawn
    summary = run_select(ws, _cfg(ws, budget="0"))
    assert summary["n_fixed"] == 2
    q = load_queue(ws)
    status = dict(zip(q.proposal_id.tolist(), q.status.tolist(), strict=True))
    assert {k: status[k] for k in (a, b, c)} == {a: "done", b: "claimed", c: "withdrawn"}
    routes, _ = _routes(ws)
    assert routes[b] == "review"  # claimed: left alone
    assert routes[c] == "pending"  # over budget
    # the rejected box is out of the dataset
    assert a not in {lab.proposal_id for lab in iter_labels(ws, include="all")}

    # a larger budget re-opens the withdrawn item
    run_select(ws, _cfg(ws))
    q = load_queue(ws)
    status = dict(zip(q.proposal_id.tolist(), q.status.tolist(), strict=True))
    assert status[c] == "open"


def test_new_run_withdraws_open_items_of_replaced_proposals(small, mock_proposals):
    ws, ids = small
    run_select(ws, _cfg(ws))
    old = set(load_queue(ws).proposal_id.tolist())
    # a newer model re-proposes image 3 with a confident box
    _propose(
        ws, [ids[3]], [([[10, 10, 50, 50]], [0.995], [0.995])], version="v2", mock=mock_proposals
    )
    run_select(ws, _cfg(ws))
    q = load_queue(ws)
    status = dict(zip(q.proposal_id.tolist(), q.status.tolist(), strict=True))
    replaced = [pid for pid in old if pid not in set(load_current(ws).ids.tolist())]
    assert len(replaced) == 1
    assert status[replaced[0]] == "withdrawn"


def test_labelled_examples_from_decisions_and_seed_boxes(small):
    ws, ids = small
    _, cur = _routes(ws)
    review_proposal(ws, int(cur.ids[0]), "accept")
    review_proposal(ws, int(cur.ids[1]), "adjust", box=[10, 10, 52, 51])  # small fix
    review_proposal(ws, int(cur.ids[2]), "adjust", box=[100, 60, 150, 95])  # wrong box
    did = review_proposal(ws, int(cur.ids[3]), "reject")
    from autolabel.store.queue import undo

    undo(ws, "sim", decision_id=did, lease_seconds=60)  # undone: no label
    seed = {
        "image_id": np.array([ids[4], ids[5]]),
        "xyxy": np.array([[12, 12, 50, 50], [100, 50, 190, 90]], float),
        "wh": np.array([[200, 100], [200, 100]], float),
    }
    idx, y, sources = labelled_examples(cur, load_decisions(ws), seed)
    got = dict(zip(cur.ids[idx].tolist(), y.tolist(), strict=True))
    assert got == {
        int(cur.ids[0]): 1,
        int(cur.ids[1]): 1,
        int(cur.ids[2]): 0,
        int(cur.ids[4]): 1,  # matches its seed box
        int(cur.ids[5]): 0,  # the seed box is elsewhere
    }
    assert sources == {"decisions": 3, "seed": 2}


def test_estimate_counts_decided_audit_items_of_the_current_set(workspace):
    from autolabel.config import QualityConfig
    from autolabel.select.run import precision_estimate
    from autolabel.store.select import auto_set
    from tests.support.quality import build_world

    build_world(workspace, 100, seed=11, n_seed=30, loose_share=0.0)
    quality = QualityConfig(min_audited=5)
    cfg = _cfg(workspace, audit_rate=0.25)
    s = run_select(workspace, cfg, quality=quality)
    q = load_queue(workspace)
    audit = q.proposal_id[q.reason == "audit"]
    assert audit.size == s["routes"]["audit"] >= 10
    for k, pid in enumerate(audit[:6]):
        review_proposal(workspace, int(pid), "accept" if k < 4 else "reject")
    aset = auto_set(workspace, s["current_version"], min_p=s["auto_cutoff"])
    assert (int(aset.audited.sum()), int(aset.correct.sum())) == (6, 4)
    assert int((aset.audit_open | aset.audited).sum()) == audit.size
    est = precision_estimate(workspace, quality)
    assert (est["n_audited"], est["n_correct"], est["n_auto"]) == (6, 4, aset.ids.size)
    assert est["precision"] == pytest.approx(4 / 6)
    assert est["low"] < 4 / 6 < est["high"]
    # re-running with the same auto-accepted set keeps the open audit items, draws no more
    run_select(workspace, cfg, quality=quality)
    q = load_queue(workspace)
    assert ((q.reason == "audit") & (q.status != "withdrawn")).sum() == audit.size
