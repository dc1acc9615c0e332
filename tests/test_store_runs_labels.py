"""Runs/proposals storage and the derivation of final labels from the decision log."""

from __future__ import annotations

import pytest

from autolabel.errors import InputError
from autolabel.store import runs as store_runs
from autolabel.store.db import utcnow
from autolabel.store.labels import iter_labels
from tests.support.proposals import mock_proposals


def _add_images(ws, n: int) -> list[int]:
    with ws.transaction() as c:
        for i in range(n):
            c.execute(
                "INSERT INTO images(path, width, height, status, added_at) VALUES (?,?,?,?,?)",
                (f"/data/img_{i}.jpg", 100, 80, "ok", utcnow()),
            )
    return [r[0] for r in ws.conn.execute("SELECT id FROM images ORDER BY id")]


def _run(ws, prompt: str = "red square", version: str = "v1"):
    return store_runs.create_run(
        ws,
        detector="test",
        model="m",
        model_version=version,
        refiner=None,
        prompt=prompt,
        box_threshold=0.3,
        text_threshold=0.25,
    )


def _decide(ws, pid: int, action: str, *, box=None, caption=None, target=None) -> int:
    image_id = ws.conn.execute("SELECT image_id FROM proposals WHERE id=?", (pid,)).fetchone()[0]
    x0, y0, x1, y1 = box or (None,) * 4
    cur = ws.conn.execute(
        "INSERT INTO decisions(proposal_id, image_id, reviewer, action, x0, y0, x1, y1, caption,"
        " target_id, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
        (pid, image_id, "ann", action, x0, y0, x1, y1, caption, target, utcnow()),
    )
    return int(cur.lastrowid)


def test_run_key_depends_on_everything_that_changes_results():
    base = dict(
        detector="d",
        model_version="v",
        refiner=None,
        prompt="a",
        box_threshold=0.3,
        text_threshold=0.2,
    )
    k = store_runs.run_key(**base)
    assert k == store_runs.run_key(**base)
    for field, value in [("prompt", "b"), ("model_version", "w"), ("box_threshold", 0.31)]:
        assert store_runs.run_key(**{**base, field: value}) != k


def test_pending_images_and_write_batch_resume(workspace):
    ids = _add_images(workspace, 5)
    run = _run(workspace)
    assert store_runs.count_pending_images(workspace, run.key) == 5
    props = mock_proposals([[1, 2, 30, 40], [5, 5, 9, 9]], score=[0.9, 0.4], token_score=[0.8, 0.3])
    n = store_runs.write_batch(
        workspace, run, [(ids[0], props), (ids[1], props[:0])], [(ids[2], "truncated")]
    )
    assert n == 2
    pending = [r["id"] for r in store_runs.iter_pending_images(workspace, run.key)]
    assert pending == ids[3:]
    # writing the same image again (a resumed run racing) is a no-op
    assert store_runs.write_batch(workspace, run, [(ids[0], props)]) == 0
    got_ids, got = store_runs.load_proposals(workspace, ids[0])
    assert len(got_ids) == 2
    assert got.data["token_score"].tolist() == pytest.approx([0.8, 0.3])
    results = store_runs.run_results(workspace, run.key)
    assert set(results) == {ids[0], ids[1]}
    assert results[ids[1]] == []
    # a new run with another key sees every image as pending; limit is honoured
    other = _run(workspace, prompt="blue circle")
    assert len(list(store_runs.iter_pending_images(workspace, other.key, limit=2))) == 2


def test_current_proposals_follow_the_latest_run(workspace):
    (img,) = _add_images(workspace, 1)
    r1, r2 = _run(workspace, version="v1"), _run(workspace, version="v2")
    store_runs.write_batch(workspace, r1, [(img, mock_proposals([[0, 0, 10, 10]]))])
    store_runs.write_batch(workspace, r2, [(img, mock_proposals([[1, 1, 5, 5], [2, 2, 6, 6]]))])
    ids, props = store_runs.load_proposals(workspace, img)
    assert len(ids) == 2 and props.xyxy[0].tolist() == [1, 1, 5, 5]


def test_labels_follow_routes_and_decision_log(workspace):
    imgs = _add_images(workspace, 4)
    run = _run(workspace)
    store_runs.write_batch(
        workspace, run, [(i, mock_proposals([[10, 10, 50, 50]], phrase=["cat"])) for i in imgs]
    )
    p = [r[0] for r in workspace.conn.execute("SELECT id FROM proposals ORDER BY id")]
    workspace.conn.execute("UPDATE proposals SET route='auto' WHERE id=?", (p[0],))
    workspace.conn.execute("UPDATE proposals SET route='audit' WHERE id=?", (p[1],))
    workspace.conn.execute("UPDATE proposals SET route='review' WHERE id IN (?,?)", (p[2], p[3]))

    assert [lab.proposal_id for lab in iter_labels(workspace)] == [p[0], p[1]]
    # reviewer rejects the audit item, adjusts one review item; the other stays unreviewed
    _decide(workspace, p[1], "reject")
    d_adj = _decide(workspace, p[2], "adjust", box=(12, 12, 40, 44), caption="a grey cat")
    labels = {lab.proposal_id: lab for lab in iter_labels(workspace)}
    assert set(labels) == {p[0], p[2]}
    assert labels[p[2]].box == (12, 12, 40, 44)
    assert labels[p[2]].caption == "a grey cat"
    assert labels[p[2]].source == "reviewed" and labels[p[2]].reviewer == "ann"
    assert labels[p[0]].source == "auto" and labels[p[0]].reviewer is None
    assert [lab.proposal_id for lab in iter_labels(workspace, include="auto")] == [p[0]]
    assert [lab.proposal_id for lab in iter_labels(workspace, include="reviewed")] == [p[2]]
    assert {lab.proposal_id for lab in iter_labels(workspace, include="all")} == {p[0], p[2], p[3]}
    # undo the adjustment: the item is no longer labelled; the caption edit was part of it
    _decide(workspace, p[2], "undo", target=d_adj)
    assert [lab.proposal_id for lab in iter_labels(workspace)] == [p[0]]
    # since_proposal_id filters
    assert list(iter_labels(workspace, since_proposal_id=p[0])) == []


def test_labels_reject_unknown_include(workspace):
    with pytest.raises(InputError, match="expected one of"):
        list(iter_labels(workspace, include="everything"))
