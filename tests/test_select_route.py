"""Routing policy and diversity: pure functions on arrays."""

from __future__ import annotations

import numpy as np
import pytest

from autolabel.errors import InputError
from autolabel.select.diversity import (
    EmbeddingCache,
    assign_clusters,
    cluster_images,
    diverse_priority,
    k_center_greedy,
)
from autolabel.select.route import (
    auto_accept_mask,
    parse_budget,
    plan_routes,
    review_value,
)


@pytest.mark.parametrize(
    ("budget", "n", "expected", "error"),
    [
        (None, 100, None, None),
        ("", 100, None, None),
        ("500", 100, 500, None),
        (20, 100, 20, None),
        ("10%", 1000, 100, None),
        ("2.5%", 100, 3, None),
        ("-3", 100, None, InputError),
        ("abc", 100, None, InputError),
        ("150%", 100, None, InputError),
        ("1.5", 100, None, InputError),
    ],
)
def test_parse_budget(budget, n, expected, error):
    if error:
        with pytest.raises(error, match="budget: expected"):
            parse_budget(budget, n)
    else:
        assert parse_budget(budget, n) == expected


def test_auto_accept_is_the_largest_set_meeting_the_target():
    rng = np.random.default_rng(0)
    p = rng.uniform(0.3, 1.0, 500)
    for target in (0.8, 0.9, 0.99):
        mask = auto_accept_mask(p, target)
        assert p[mask].mean() >= target
        # adding the best excluded box would break the target
        rest = p[~mask & (p >= 0.5)]
        if rest.size:
            assert np.append(p[mask], rest.max()).mean() < target
        # the set is a top-k by p
        if mask.any() and (~mask).any():
            assert p[mask].min() >= p[~mask].max()
    assert not auto_accept_mask(np.array([0.4, 0.45]), 0.1).any()  # below the 0.5 floor
    with pytest.raises(InputError):
        auto_accept_mask(p, 1.5)


def test_review_value_peaks_at_half():
    v = review_value(np.array([0.0, 0.25, 0.5, 0.75, 1.0]))
    np.testing.assert_allclose(v, [0, 0.5, 1, 0.5, 0])


def _plan(p, image_id, **kw):
    args = dict(
        target_precision=0.95,
        budget=None,
        audit_rate=0.0,
        reject_below=0.05,
        rng=np.random.default_rng(0),
    )
    args.update(kw)
    return plan_routes(np.asarray(p, float), np.asarray(image_id), **args)


def test_plan_routes_partitions_and_orders_by_value():
    p = np.array([0.999, 0.995, 0.5, 0.6, 0.9, 0.01, 0.3])
    plan = _plan(p, np.arange(7), target_precision=0.97)  # adding 0.9 gives a mean of 0.965
    assert plan.route.tolist() == [
        "auto",
        "auto",
        "review",
        "review",
        "review",
        "rejected",
        "review",
    ]
    assert plan.expected_precision == pytest.approx(0.997)
    assert plan.auto_cutoff == pytest.approx(0.995)
    # most informative (closest to 0.5) first
    queued = np.flatnonzero(plan.reason == "uncertain")
    order = queued[np.argsort(-plan.priority[queued])]
    assert order.tolist() == [2, 3, 6, 4]
    assert plan.counts()["queue_uncertain"] == 4


def test_budget_caps_the_queue_and_leaves_the_rest_pending():
    p = np.linspace(0.2, 0.8, 50)
    plan = _plan(p, np.arange(50), budget=10)
    assert (plan.route == "review").sum() == 10
    assert (plan.route == "pending").sum() == 40
    # the 10 queued are the ones closest to 0.5
    queued = np.flatnonzero(plan.route == "review")
    assert np.abs(p[queued] - 0.5).max() <= np.abs(p[plan.route == "pending"] - 0.5).min()


def test_missing_object_item_for_images_with_nothing_kept():
    # image 1: everything below reject_below, best at 0.04 -> one 'missing' item
    # image 2: best at 0.01 (too weak) -> nothing
    p = np.array([0.99, 0.04, 0.03, 0.01])
    img = np.array([0, 1, 1, 2])
    plan = _plan(p, img, target_precision=0.9)
    assert plan.reason.tolist() == ["", "missing", "", ""]
    assert plan.route.tolist() == ["auto", "review", "rejected", "rejected"]
    # an image that already has a human-accepted box needs no missing item
    plan = _plan(p, img, target_precision=0.9, image_has_label=np.array([0, 1, 1, 0], bool))
    assert "missing" not in plan.reason.tolist()


def test_audit_sample_size_and_stability():
    rng = np.random.default_rng(5)
    p = rng.uniform(0.97, 1.0, 1000)
    plan = _plan(p, np.arange(1000), audit_rate=0.05, target_precision=0.9)
    audit = plan.route == "audit"
    assert audit.sum() == 50
    assert (plan.reason[audit] == "audit").all()
    # audit items sit at random priorities (reviewers cannot tell them apart)
    assert plan.priority[audit].std() > 0.1
    # re-run with the same auto-accepted set, keeping the open audit items: no new draws
    again = _plan(
        p,
        np.arange(1000),
        audit_rate=0.05,
        target_precision=0.9,
        keep_audit=audit,
        was_auto=np.ones(1000, bool),
    )
    assert ((again.route == "audit") == audit).all()


def test_k_center_greedy_covers_better_than_random():
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 10, (8, 2))
    x = np.concatenate([c + rng.normal(0, 0.3, (50, 2)) for c in centres])
    picks = k_center_greedy(x, 8)
    assert len(set(picks.tolist())) == 8
    # one pick per blob
    blob = np.repeat(np.arange(8), 50)
    assert len(set(blob[picks].tolist())) == 8
    labels = assign_clusters(x, x[picks])
    for b in range(8):
        assert len(set(labels[blob == b].tolist())) == 1
    assert k_center_greedy(x, 0).size == 0


def test_cluster_images_gives_unreadable_images_their_own_label():
    x = np.array([[0.0, 0], [0.1, 0], [5, 5], [np.nan, np.nan], [np.nan, np.nan]])
    lab = cluster_images(x, k=2)
    assert lab[0] == lab[1] != lab[2]
    assert len({lab[3], lab[4], lab[0], lab[2]}) == 4


def test_diversity_spreads_near_duplicates():
    # 20 near-duplicate images of high value, 5 distinct ones of slightly lower value
    value = np.r_[np.full(20, 0.95), np.full(5, 0.8)]
    cluster = np.r_[np.zeros(20, int), np.arange(1, 6)]
    plain = np.argsort(-diverse_priority(value, cluster, decay=1.0), kind="stable")[:10]
    spread = np.argsort(-diverse_priority(value, cluster, decay=0.7), kind="stable")[:10]
    assert (cluster[plain] == 0).all()
    assert (cluster[spread] == 0).sum() <= 5
    assert set(range(1, 6)) <= set(cluster[spread].tolist())
    # within a cluster the order by value is kept
    v = np.array([0.3, 0.9, 0.6])
    pr = diverse_priority(v, np.zeros(3, int), decay=0.5)
    assert np.argsort(-pr).tolist() == [1, 2, 0]


def test_embedding_cache_roundtrip(tmp_path):
    cache = EmbeddingCache(tmp_path / "c.npz")
    emb, found = cache.lookup(np.array([1, 2]), 3)
    assert not found.any() and np.isnan(emb).all()
    cache.put(np.array([2, 7]), np.array([[1, 2, 3], [4, 5, 6]], np.float32))
    cache.save()
    again = EmbeddingCache(tmp_path / "c.npz")
    emb, found = again.lookup(np.array([7, 1, 2]), 3)
    assert found.tolist() == [True, False, True]
    assert emb[0].tolist() == [4, 5, 6] and emb[2].tolist() == [1, 2, 3]
    (tmp_path / "c.npz").write_bytes(b"garbage")
    assert not EmbeddingCache(tmp_path / "c.npz").lookup(np.array([7]), 3)[1].any()
