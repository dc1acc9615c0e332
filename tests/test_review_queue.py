"""Review queue semantics over the store: claims, leases, decisions, skips, undo, labels."""

from __future__ import annotations

import pytest

from autolabel.errors import ConflictError, InputError, NotFoundError
from autolabel.review.queue import ReviewQueue, validate_box
from autolabel.store import queue as sq
from autolabel.store import runs as store_runs
from autolabel.store.labels import iter_labels
from tests.support.proposals import mock_proposals
from tests.support.review import build_queue

LEASE = 60.0


def item_status(ws, item_id: int) -> str:
    return ws.conn.execute("SELECT status FROM queue_items WHERE id = ?", (item_id,)).fetchone()[0]


def test_next_claims_by_priority_and_never_twice(workspace):
    build_queue(workspace, 5, priorities=[0.1, 0.9, 0.5, 0.9, 0.0])
    q = ReviewQueue(workspace, lease_seconds=LEASE)
    got = [q.next(name)["priority"] for name in ["ann", "bob", "cy", "ann", "bob"]]
    assert got == [0.9, 0.9, 0.5, 0.1, 0.0]
    assert q.next("cy") is None
    claimed = workspace.conn.execute(
        "SELECT COUNT(DISTINCT id), COUNT(*) FROM queue_items WHERE status = 'claimed'"
    ).fetchone()
    assert tuple(claimed) == (5, 5)


def test_item_payload_has_box_reason_candidates(workspace):
    build_queue(workspace, 1, per_image=3)
    item = ReviewQueue(workspace).next("ann")
    assert item["reason"] == "uncertain"
    assert item["width"] == 320 and item["height"] == 240
    assert item["candidates"][0]["proposal_id"] == item["proposal_id"]
    assert len(item["candidates"]) == 3
    assert item["candidates"][0]["box"] == item["box"]


def test_expired_lease_is_reclaimed_by_another_reviewer(workspace):
    build_queue(workspace, 1)
    item_id = sq.claim_next(workspace, "ann", lease_seconds=10, now=1000.0)
    assert sq.claim_next(workspace, "bob", lease_seconds=10, now=1005.0) is None
    assert sq.claim_next(workspace, "bob", lease_seconds=10, now=1011.0) == item_id
    with pytest.raises(ConflictError, match="bob holds it now"):
        sq.decide(workspace, "ann", item_id, "accept", lease_seconds=10, now=1012.0)
    assert workspace.conn.execute("SELECT COUNT(*) FROM decisions").fetchone()[0] == 0
    sq.decide(workspace, "bob", item_id, "accept", lease_seconds=10, now=1013.0)
    assert item_status(workspace, item_id) == "done"


def test_lost_lease_decision_allowed_when_nobody_else_holds_it(workspace):
    build_queue(workspace, 1)
    item_id = sq.claim_next(workspace, "ann", lease_seconds=10, now=1000.0)
    # the lease ran out long ago but nobody claimed the item: the decision stands
    sq.decide(workspace, "ann", item_id, "reject", reason="no_object", lease_seconds=10, now=9e9)
    assert item_status(workspace, item_id) == "done"


def test_renew_keeps_the_item_from_others(workspace):
    build_queue(workspace, 1)
    item_id = sq.claim_next(workspace, "ann", lease_seconds=10, now=1000.0)
    assert sq.renew(workspace, "ann", lease_seconds=10, now=1008.0) == 1
    assert sq.claim_next(workspace, "bob", lease_seconds=10, now=1015.0) is None
    assert sq.held_items(workspace, "ann", now=1015.0) == [item_id]
    assert sq.release(workspace, "ann", [item_id]) == 1
    assert sq.claim_next(workspace, "bob", lease_seconds=10, now=1016.0) == item_id


def test_decided_item_conflicts_with_clear_message(workspace):
    build_queue(workspace, 1)
    q = ReviewQueue(workspace, lease_seconds=LEASE)
    item = q.next("ann")
    q.decide("ann", item["item_id"], "accept")
    with pytest.raises(ConflictError, match=r"already decided by ann \(accept"):
        q.decide("bob", item["item_id"], "reject")
    with pytest.raises(NotFoundError, match="no such item"):
        q.decide("bob", 999, "accept")


def test_accept_and_adjust_become_labels_immediately(workspace):
    pids = build_queue(workspace, 3)
    workspace.conn.execute("UPDATE proposals SET route = 'review'")
    q = ReviewQueue(workspace, lease_seconds=LEASE)
    assert list(iter_labels(workspace)) == []
    a, b, c = (q.next("ann") for _ in range(3))
    q.decide("ann", a["item_id"], "accept")
    q.decide("ann", b["item_id"], "adjust", box=[1, 2, 101.5, 102])
    q.decide("ann", c["item_id"], "reject", reason="wrong_object")
    labels = {lab.proposal_id: lab for lab in iter_labels(workspace)}
    assert set(labels) == {a["proposal_id"], b["proposal_id"]}
    assert labels[a["proposal_id"]].box == tuple(a["box"])
    assert labels[b["proposal_id"]].box == (1.0, 2.0, 101.5, 102.0)
    assert labels[b["proposal_id"]].source == "reviewed"
    assert labels[b["proposal_id"]].reviewer == "ann"
    assert sorted(pids) == sorted([a["proposal_id"], b["proposal_id"], c["proposal_id"]])


def test_undo_reopens_items_in_reverse_order(workspace):
    build_queue(workspace, 3)
    workspace.conn.execute("UPDATE proposals SET route = 'review'")
    q = ReviewQueue(workspace, lease_seconds=LEASE)
    a, b = q.next("ann"), q.next("ann")
    q.decide("ann", a["item_id"], "accept")
    q.decide("ann", b["item_id"], "adjust", box=[0, 0, 50, 50])
    first = q.undo("ann")
    assert first["action"] == "adjust" and first["item"]["item_id"] == b["item_id"]
    assert item_status(workspace, b["item_id"]) == "claimed"
    # after the undo the proposal's own box is back, and the label is gone
    assert first["item"]["box"] == b["box"]
    assert {lab.proposal_id for lab in iter_labels(workspace)} == {a["proposal_id"]}
    second = q.undo("ann")
    assert second["item"]["item_id"] == a["item_id"]
    assert list(iter_labels(workspace)) == []
    # the reviewer can decide the item again; the log keeps all five rows
    q.decide("ann", a["item_id"], "reject")
    actions = [r[0] for r in workspace.conn.execute("SELECT action FROM decisions ORDER BY id")]
    assert actions == ["accept", "adjust", "undo", "undo", "reject"]


def test_undo_only_own_decisions(workspace):
    build_queue(workspace, 1)
    q = ReviewQueue(workspace, lease_seconds=LEASE)
    item = q.next("ann")
    did = q.decide("ann", item["item_id"], "accept")
    with pytest.raises(NotFoundError, match="bob has no decision left to undo"):
        q.undo("bob")
    with pytest.raises(ConflictError, match="made by ann"):
        q.undo("bob", decision_id=did)
    q.undo("ann", decision_id=did)
    with pytest.raises(ConflictError, match="already undone"):
        q.undo("ann", decision_id=did)


def test_skip_goes_to_someone_else(workspace):
    build_queue(workspace, 2, priorities=[1.0, 0.5])
    q = ReviewQueue(workspace, lease_seconds=LEASE)
    top = q.next("ann")
    q.decide("ann", top["item_id"], "skip")
    assert item_status(workspace, top["item_id"]) == "open"
    assert q.next("ann")["item_id"] != top["item_id"]
    assert q.next("ann") is None  # the skipped one is not offered to ann again
    assert q.next("bob")["item_id"] == top["item_id"]


def test_caption_edit_keeps_item_and_feeds_labels(workspace):
    build_queue(workspace, 1)
    q = ReviewQueue(workspace, lease_seconds=LEASE)
    item = q.next("ann")
    q.decide("ann", item["item_id"], "caption", caption="  a grey tabby cat ")
    assert item_status(workspace, item["item_id"]) == "claimed"
    assert q.item(item["item_id"])["caption"] == "a grey tabby cat"
    q.decide("ann", item["item_id"], "accept")
    (label,) = iter_labels(workspace)
    assert label.caption == "a grey tabby cat"
    q.undo("ann")  # the accept
    q.undo("ann")  # the caption
    assert q.item(item["item_id"])["caption"] is None


@pytest.mark.parametrize(
    ("box", "size", "expected", "error"),
    [
        ([0, 0, 10, 10], (100, 50), (0, 0, 10, 10), None),
        ([-0.5, 1, 100.4, 50], (100, 50), (0, 1, 100, 50), None),
        ([5, 5, 5, 9], (100, 50), None, "x1 > x0"),
        ([10, 0, 0, 10], (100, 50), None, "x1 > x0"),
        ([0, 0, 120, 10], (100, 50), None, "inside the 100x50 image"),
        ([0, 0, 10], (100, 50), None, "4 finite numbers"),
        ([0, 0, "x", 1], (100, 50), None, "4 numbers"),
        ([0, 0, float("nan"), 1], (100, 50), None, "finite"),
    ],
)
def test_validate_box(box, size, expected, error):
    if error:
        with pytest.raises(InputError, match=error):
            validate_box(box, *size)
    else:
        assert validate_box(box, *size) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("action", "kwargs", "error"),
    [
        ("approve", {}, "expected one of accept"),
        ("adjust", {}, "expected a box"),
        ("accept", {"box": [0, 0, 5, 5]}, "only an adjust decision takes a box"),
        ("reject", {"reason": "ugly"}, "no_object, wrong_object"),
        ("caption", {"caption": "   "}, "1-2000 characters"),
        ("caption", {}, "expected a caption"),
    ],
)
def test_bad_decisions_are_input_errors_and_change_nothing(workspace, action, kwargs, error):
    build_queue(workspace, 1)
    q = ReviewQueue(workspace, lease_seconds=LEASE)
    item = q.next("ann")
    with pytest.raises(InputError, match=error):
        q.decide("ann", item["item_id"], action, **kwargs)
    assert workspace.conn.execute("SELECT COUNT(*) FROM decisions").fetchone()[0] == 0
    assert item_status(workspace, item["item_id"]) == "claimed"


def test_enqueue_validates_and_updates_open_items(workspace):
    pids = build_queue(workspace, 2)
    with pytest.raises(InputError, match="expected one of uncertain"):
        sq.enqueue(workspace, pids, "maybe")
    with pytest.raises(NotFoundError, match=r"no such proposal ids \[999\]"):
        sq.enqueue(workspace, [999], "audit")
    with pytest.raises(InputError, match="expected 2 values"):
        sq.enqueue(workspace, pids, "audit", [1.0])
    assert sq.enqueue(workspace, pids, "audit", [0.2, 0.7]) == 2
    item = ReviewQueue(workspace).next("ann")
    assert (item["reason"], item["priority"], item["proposal_id"]) == ("audit", 0.7, pids[1])
    assert sq.withdraw(workspace, pids) == 1  # the claimed one stays
    assert ReviewQueue(workspace).next("bob") is None


def test_reviewer_tokens(workspace):
    token = sq.add_reviewer(workspace, "ann")
    assert sq.reviewer_for_token(workspace, token) == "ann"
    assert sq.reviewer_for_token(workspace, token + "x") is None
    stored = workspace.conn.execute("SELECT token_sha256 FROM reviewers").fetchone()[0]
    assert token not in stored
    with pytest.raises(ConflictError, match="already exists"):
        sq.add_reviewer(workspace, "ann")
    with pytest.raises(InputError, match="reviewer name"):
        sq.add_reviewer(workspace, "../etc")
    assert [r["name"] for r in sq.list_reviewers(workspace)] == ["ann"]
    sq.remove_reviewer(workspace, "ann")
    assert sq.count_reviewers(workspace) == 0


def test_image_boxes_match_current_proposals_view_across_runs(workspace):
    build_queue(workspace, 3, per_image=2)
    image_ids = [r[0] for r in workspace.conn.execute("SELECT id FROM images ORDER BY id")]
    rerun = store_runs.create_run(
        workspace,
        detector="test",
        model="m",
        model_version="v2",
        refiner=None,
        prompt="cat",
        box_threshold=0.3,
        text_threshold=0.25,
    )
    # the new run finishes image 1 with one box and image 2 with none; image 3 keeps run 1
    store_runs.write_batch(
        workspace,
        rerun,
        [
            (image_ids[0], mock_proposals([[1, 1, 9, 9]], score=[0.7])),
            (image_ids[1], mock_proposals()),
        ],
    )
    for image_id in image_ids:
        view = [
            r[0]
            for r in workspace.conn.execute(
                "SELECT id FROM current_proposals WHERE image_id = ? ORDER BY score DESC, id",
                (image_id,),
            )
        ]
        assert [b["proposal_id"] for b in sq.image_boxes(workspace, image_id)] == view
    assert len(sq.image_boxes(workspace, image_ids[0])) == 1
    assert sq.image_boxes(workspace, image_ids[1]) == []
    assert len(sq.image_boxes(workspace, image_ids[2])) == 2


def test_undo_skip_claims_the_item_back_if_still_free(workspace):
    build_queue(workspace, 2, priorities=[1.0, 0.5])
    q = ReviewQueue(workspace, lease_seconds=LEASE)
    top = q.next("ann")
    q.decide("ann", top["item_id"], "skip")
    back = q.undo("ann")
    assert back["action"] == "skip" and back["item"]["item_id"] == top["item_id"]
    assert back["item"]["claimed_by"] == "ann"
    q.decide("ann", top["item_id"], "skip")
    assert q.next("bob")["item_id"] == top["item_id"]
    gone = q.undo("ann")  # bob holds it now: the undo is logged, the item stays with bob
    assert gone["item"] is None
    assert q.item(top["item_id"])["claimed_by"] == "bob"
