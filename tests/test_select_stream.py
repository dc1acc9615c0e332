"""Select reads the stored signals a chunk at a time (issue 20: flat memory): the chunked
reads and the per-row signals must equal the whole-column computation they replace."""

from __future__ import annotations

import numpy as np
import pytest

from autolabel.errors import InputError
from autolabel.select.calibrate import FEATURES, LazyFeatures, feature_matrix
from autolabel.select.layout import fit_layout, layout_signals
from autolabel.select.route import plan_routes
from autolabel.select.run import row_signals
from autolabel.select.signals import group_codes, group_competition, size_aspect_outliers
from autolabel.store.images import ScannedFile, find_image, write_scanned
from autolabel.store.select import load_current, read_signals
from tests.support.proposals import store_finished_run

SEED = {
    "image_id": np.array([1, 2, 3, 4], np.int64),
    "xyxy": np.array([[10, 10, 60, 40], [5, 8, 70, 52], [20, 15, 90, 60], [0, 0, 40, 30]], float),
    "wh": np.array([[200, 100], [200, 100], [160, 120], [200, 100]], float),
}


def _images(ws, n):
    files = [
        ScannedFile(f"/nowhere/s_{i:03d}.png", 1, 1, f"sha{i}", 200 - i, 100 + i, "PNG")
        for i in range(n)
    ]
    write_scanned(ws, files)
    return [find_image(ws, f.path).id for f in files]


def _run(ws, results, version):
    return store_finished_run(
        ws, results, detector="sim", model="sim", model_version=version, prompt="obj",
        box_threshold=0.1, text_threshold=0.1,
    )  # fmt: skip


@pytest.fixture
def stored(workspace, mock_proposals):
    """40 images, two runs (the second re-proposes every third image: the first run's rows
    of those images are not current, so current ids have gaps); images differ in which
    signals their boxes carry (some none of snap_sides / n_competing)."""
    rng = np.random.default_rng(3)
    ids = _images(workspace, 40)

    def props(i, k):
        x0 = rng.uniform(0, 100, k)
        y0 = rng.uniform(0, 50, k)
        boxes = np.stack([x0, y0, x0 + rng.uniform(5, 90, k), y0 + rng.uniform(5, 45, k)], 1)
        extra = {"token_score": rng.uniform(0, 1, k)}
        if i % 2:
            extra["snap_sides"] = rng.integers(0, 5, k).astype(float)
        if i % 5 == 0:
            extra["n_competing"] = rng.integers(0, 4, k).astype(float)
        phrase = rng.choice(["cat", "dog"], k).tolist()
        return mock_proposals(boxes, score=rng.uniform(0, 1, k), phrase=phrase, **extra)

    _run(workspace, [(iid, props(i, 1 + i % 4)) for i, iid in enumerate(ids)], "v1")
    again = [(iid, props(i + 1, 2 + i % 3)) for i, iid in enumerate(ids) if i % 3 == 0]
    _run(workspace, again, "v2")
    return workspace


def test_read_signals_equals_the_loaded_columns_in_any_order(stored):
    full = load_current(stored)
    n = len(full)
    assert n > 60 and {"token_score", "snap_sides", "n_competing"} <= set(full.signals)
    rng = np.random.default_rng(0)
    for rows in (
        np.arange(n),  # dense: one range scan over the gaps of replaced rows
        np.sort(rng.choice(n, 25, replace=False)),
        rng.permutation(n)[:30],  # any order
        np.r_[rng.choice(n, 10), rng.choice(n, 10)],  # repeated rows
        np.arange(0, n, 9),
    ):
        got = read_signals(stored, full.ids[rows], batch=7)  # small batches: several queries
        for k, col in full.signals.items():
            expect = col[rows]
            if np.isnan(expect).all():
                assert k not in got or np.isnan(got[k]).all()
            else:
                np.testing.assert_array_equal(got[k], expect)
    # ids of no proposal, and a mix: NaN rows
    unknown = np.array([10**9, int(full.ids[0]), 10**9 + 7], np.int64)
    got = read_signals(stored, unknown)
    assert np.isnan(got["token_score"][[0, 2]]).all()
    assert got["token_score"][1] == full.signals["token_score"][0]
    assert read_signals(stored, np.zeros(0, np.int64)) == {}


def test_load_current_with_named_signals_loads_only_those(stored):
    full = load_current(stored)
    some = load_current(stored, signals=("snap_sides", "never_stored"))
    assert set(some.signals) == {"snap_sides", "never_stored"}
    np.testing.assert_array_equal(some.signals["snap_sides"], full.signals["snap_sides"])
    assert np.isnan(some.signals["never_stored"]).all() and len(some) == len(full)
    for name in ("ids", "image_id", "run_id", "xyxy", "score", "phrase_code", "width"):
        np.testing.assert_array_equal(getattr(some, name), getattr(full, name))
    assert some.route.tolist() == full.route.tolist() and some.phrases == full.phrases
    # a small fetch size: many chunks, same arrays
    np.testing.assert_array_equal(load_current(stored, chunk=7).xyxy, full.xyxy)
    some.drop_columns("xyxy", "signals", "run_id")
    assert len(some) == len(full) and some.xyxy.shape == (0, 4) and some.signals == {}
    assert some.run_id.dtype == np.int64 and some.run_id.size == 0
    np.testing.assert_array_equal(some.p_correct, full.p_correct)
    with pytest.raises(InputError, match="other than ids, got 'phrases'"):
        some.drop_columns("phrases")
    with pytest.raises(InputError, match="got 'ids'"):
        some.drop_columns("ids")


@pytest.mark.parametrize("seed", [SEED, {k: v[:0] for k, v in SEED.items()}])
def test_row_signals_features_equal_the_whole_column_features(stored, seed):
    """The features select assesses, made a chunk of rows at a time from the store, equal
    the features of every box's whole columns (how select made them before)."""
    full = load_current(stored)
    wh = np.stack([full.width, full.height], axis=1).astype(np.float64)
    sig = dict(full.signals)
    margin, comp = group_competition(full.score, group_codes(full.image_id, full.phrase_code))
    sig["margin"] = margin
    sig["n_competing"] = np.where(np.isnan(sig["n_competing"]), comp, sig["n_competing"])
    if seed["xyxy"].shape[0]:
        sig["size_outlier"], sig["aspect_outlier"] = size_aspect_outliers(
            full.xyxy, wh, seed["xyxy"], seed["wh"]
        )
    prior = fit_layout(seed["xyxy"], seed["wh"], export_size=448)
    sig.update(layout_signals(full.xyxy, wh, prior, export_size=448))
    sig["exemplar_sim"] = np.linspace(0, 1, len(full))
    expect = feature_matrix(full.score, sig)
    assert not np.isnan(expect[:, FEATURES.index("margin")]).any()

    cur = load_current(stored, signals=("snap_sides",))
    rs = row_signals(
        stored, cur, seed, export_size=448, extra={"exemplar_sim": sig["exemplar_sim"]}
    )
    lazy = LazyFeatures(cur.score, rs)
    n = len(cur)
    rng = np.random.default_rng(1)
    for rows in (np.arange(n), rng.permutation(n)[:17], np.array([3, 3, 0], np.int64)):
        np.testing.assert_array_equal(lazy.rows(rows), expect[rows])
    parts = [(r, x) for r, x in lazy.chunks(11)]
    assert len(parts) == -(-n // 11)
    np.testing.assert_array_equal(np.concatenate([x for _, x in parts]), expect)
    up = layout_signals(full.xyxy, wh, prior, export_size=448)["upscale"]
    from autolabel.select.layout import suspicious_upscale

    np.testing.assert_array_equal(rs.suspicious_upscale(chunk=5), suspicious_upscale(up))


def test_group_competition_matches_a_per_group_loop():
    rng = np.random.default_rng(7)
    n = 400
    group = rng.integers(0, 60, n) * 1000 + rng.integers(0, 3, n)  # sparse codes
    score = np.round(rng.uniform(0, 1, n), 2)  # ties
    margin, comp = group_competition(score, group)
    for g in np.unique(group):
        rows = np.flatnonzero(group == g)
        s = np.sort(score[rows])[::-1]
        second = s[1] if rows.size > 1 else 0.0
        best_row = rows[np.argmax(score[rows])]  # first of the best ones, in row order
        for r in rows:
            want = score[r] - (second if r == best_row else s[0])
            assert margin[r] == pytest.approx(want, abs=0)
        assert (comp[rows] == rows.size - 1).all()


def test_plan_routes_same_for_dense_and_sparse_image_ids():
    """Routing indexes images by id less the smallest when ids are dense, by rank otherwise:
    the plan is the same either way."""
    rng = np.random.default_rng(5)
    n = 300
    img = rng.integers(0, 80, n)
    p = rng.uniform(0, 1, n)

    def plan(ids):
        return plan_routes(
            p, ids, target_precision=0.9, budget=20, audit_rate=0.1, reject_below=0.2,
            rng=np.random.default_rng(0), explore_share=0.25, max_per_image=1,
        )  # fmt: skip

    dense, sparse = plan(img + 5), plan(img * 10**9 + 3)
    assert dense.route.tolist() == sparse.route.tolist()
    assert dense.reason.tolist() == sparse.reason.tolist()
    np.testing.assert_array_equal(dense.priority, sparse.priority)
    assert set(dense.route.tolist()) >= {"review", "rejected"}


def test_compact_load_keeps_every_value(stored):
    """Boxes and scores are held as float32 only while every value is exactly one; a value
    that is not turns the column back to float64 without rounding anything."""
    full = load_current(stored)
    small = load_current(stored, compact=True, chunk=7)
    assert small.xyxy.dtype == np.float32 and small.score.dtype == np.float32
    np.testing.assert_array_equal(small.xyxy.astype(np.float64), full.xyxy)
    np.testing.assert_array_equal(small.score.astype(np.float64), full.score)
    last = int(full.ids[-1])  # in the last fetch chunk: the rows before it are float32 already
    with stored.transaction() as c:
        c.execute("UPDATE proposals SET x0 = 0.1, score = 0.3 WHERE id = ?", (last,))
    full = load_current(stored)
    small = load_current(stored, compact=True, chunk=7)
    assert small.xyxy.dtype == np.float64 and small.score.dtype == np.float64
    np.testing.assert_array_equal(small.xyxy, full.xyxy)
    np.testing.assert_array_equal(small.score, full.score)
    assert small.xyxy[-1, 0] == 0.1 and small.score[-1] == 0.3
