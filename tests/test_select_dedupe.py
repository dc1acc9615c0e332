"""Issue 19 cause 5: one crop per object — duplicates, thumbnails, layout and upscale."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from autolabel.select.dedupe import (
    content_signatures,
    duplicate_mask,
    learned_max_per_image,
    one_crop_per_object,
    smaller_copies,
)
from autolabel.select.layout import (
    fit_layout,
    layout_features,
    layout_signals,
    suspicious_upscale,
    upscale_factor,
)
from autolabel.synth import make_screenshot


def _shot_with_copies(seed: int):
    """A screenshot with the main photo, a smaller copy of it and thumbnails of others."""
    rng = np.random.default_rng(seed)
    shot, box, meta = make_screenshot(
        rng, size=(360, 640), same_photo_distractors=1, other_distractors=2
    )
    same = [d["box"] for d in meta["distractors"] if d["photo"] == meta["photo"]]
    other = [d["box"] for d in meta["distractors"] if d["photo"] != meta["photo"]]
    return np.asarray(shot), list(box), same, other


def test_smaller_copy_found_only_for_the_same_picture() -> None:
    found = 0
    for seed in range(6):
        img, main, same, other = _shot_with_copies(seed)
        if not same:
            continue
        boxes = np.array([main, same[0], *other], np.float64)
        copy_of = smaller_copies(boxes, content_signatures(img, boxes))
        assert copy_of[0] == -1  # the main photo copies nothing
        assert copy_of[1] == 0, seed  # the thumbnail is a copy of the main photo
        assert np.all(copy_of[2:] == -1)  # other products are not copies
        found += 1
    assert found >= 3


def test_signatures_ignore_brightness_and_size() -> None:
    img, main, _, _ = _shot_with_copies(1)
    brighter = np.clip(img.astype(np.float64) * 1.2 + 10, 0, 255).astype(np.uint8)
    a = content_signatures(img, np.array([main]))
    b = content_signatures(brighter, np.array([main]))
    assert float(a[0] @ b[0]) > 0.97


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        # same phrase, IoU >= 0.5 with a better box: dropped
        ({}, [False, True, False]),
        # the overlapping box was accepted by a person: it stays, the other one goes
        ({"accepted": [False, True, False]}, [True, False, False]),
        # a person rejected the best box: it leaves the contest, the next one is kept
        ({"ignore": [True, False, False]}, [False, False, False]),
        # one crop per image: the third (separate) box goes too
        ({"max_per_image": 1}, [False, True, True]),
    ],
)
def test_duplicate_mask(kwargs, expected) -> None:
    xyxy = [[10, 10, 110, 110], [14, 12, 112, 108], [200, 200, 260, 260]]
    drop = duplicate_mask(
        np.array(xyxy, float),
        np.zeros(3, int),
        np.zeros(3, int),
        np.array([0.9, 0.8, 0.7]),
        **{k: np.array(v) if isinstance(v, list) else v for k, v in kwargs.items()},
    )
    assert drop.tolist() == expected


def test_duplicate_mask_in_small_tables_decides_alike(monkeypatch: pytest.MonkeyPatch) -> None:
    """Images are decided in tables of a bounded size (memory flat in the image count): the
    split changes nothing."""
    import autolabel.select.dedupe as dd

    rng = np.random.default_rng(5)
    n = 3000
    img = rng.integers(0, 700, n)  # 1 to ~12 boxes an image: several size buckets
    xy = rng.uniform(0, 80, (n, 2))
    xyxy = np.c_[xy, xy + rng.uniform(20, 60, (n, 2))]
    kwargs = dict(
        accepted=rng.random(n) < 0.05, ignore=rng.random(n) < 0.05, max_per_image=3,
    )  # fmt: skip
    args = (xyxy, img, rng.integers(0, 2, n), rng.random(n))
    whole = duplicate_mask(*args, **kwargs)
    monkeypatch.setattr(dd, "_TABLE_CELLS", 40)  # a handful of images per table
    assert 0 < whole.sum() < n
    assert np.array_equal(duplicate_mask(*args, **kwargs), whole)


def test_other_phrase_is_not_a_duplicate() -> None:
    xyxy = np.array([[10, 10, 110, 110], [12, 12, 110, 110]], float)
    drop = duplicate_mask(xyxy, np.zeros(2, int), np.array([0, 1]), np.array([0.9, 0.8]))
    assert not drop.any()


def test_thumbnail_scoring_above_the_main_photo_loses() -> None:
    """The thumbnail's detector score is higher; it is still the one dropped."""
    checked = 0
    for seed in range(6):
        img, main, same, _ = _shot_with_copies(seed)
        if not same:
            continue
        boxes = np.array([same[0], main], np.float64)
        drop, stats = one_crop_per_object(
            boxes,
            np.zeros(2, int),
            np.zeros(2, int),
            np.array([0.95, 0.6]),
            accepted=np.zeros(2, bool),
            ignore=np.zeros(2, bool),
            load=lambda _i, img=img: img,
        )
        assert drop.tolist() == [True, False], seed
        assert stats["copies"] == 1
        checked += 1
    assert checked >= 3


def test_seed_box_counts_as_accepted() -> None:
    img, main, _, other = _shot_with_copies(2)
    boxes = np.array([[v + 2 for v in main], other[0]], np.float64)
    drop, stats = one_crop_per_object(
        boxes,
        np.zeros(2, int),
        np.zeros(2, int),
        np.array([0.9, 0.4]),
        accepted=np.zeros(2, bool),
        ignore=np.zeros(2, bool),
        load=lambda _i: img,
        seed_xyxy=np.array([main], np.float64),
        seed_image_id=np.array([0]),
    )
    assert drop[0] and not drop[1]
    assert stats["duplicates"] == 1


@pytest.mark.parametrize("by_image", [False, True])
def test_one_crop_per_object_in_chunks_of_images_decides_alike(by_image: bool) -> None:
    """Images are decided a chunk at a time (memory flat in the box count): the same drops,
    the same counts, the same images loaded up to ``max_loads``, as in one pass — rows in
    any order, or already by image (then nothing is sorted)."""
    import autolabel.select.dedupe as dd

    shots, mains, rows = {}, {}, []
    for i in range(8):  # images in shuffled row order, each with copies and extra boxes
        img, main, same, other = _shot_with_copies(i)
        shots[10 + i], mains[10 + i] = img, main
        for b, p in ((main, 0.6), *((x, 0.9) for x in same), *((x, 0.5) for x in other)):
            rows.append((10 + i, list(b), p))
        rows.append((10 + i, [v + 3 for v in main], 0.7))  # a duplicate of the main photo
    rng = np.random.default_rng(0)
    rows = [rows[j] for j in rng.permutation(len(rows))]
    if by_image:
        rows.sort(key=lambda r: r[0])  # stable: shuffled within each image
    img_id = np.array([r[0] for r in rows])
    xyxy = np.array([r[1] for r in rows], np.float64)
    n = len(rows)
    loads: list[list[int]] = [[], []]

    def loader(log: list[int]):
        def load(i: int) -> np.ndarray:
            log.append(i)
            return shots[i]

        return load

    seed_box = np.array([[v + 1 for v in mains[12]]], float)
    kw = dict(
        accepted=np.arange(n) == 4, ignore=np.arange(n) == 7,
        seed_xyxy=seed_box, seed_image_id=np.array([12]), max_per_image=2, max_loads=5,
    )  # fmt: skip
    args = (xyxy, img_id, np.zeros(n, int), np.array([r[2] for r in rows]))
    table = (  # every proposal, then the seed box, in one table
        np.r_[xyxy, seed_box], np.r_[img_id, 12], np.r_[args[2], -1], np.r_[args[3], 1.0],
        np.r_[kw["accepted"], True], np.r_[kw["ignore"], False],
    )  # fmt: skip
    one_pass = dd._decide_images(table, n, loader(loads[0]), 2, 5, 0.0)
    assert one_pass[1]["copies"] >= 3 and one_pass[1]["duplicates"] >= 3
    assert one_pass[1]["images_loaded"] == 5 and len(loads[0]) == 5
    chunked = one_crop_per_object(*args, load=loader(loads[1]), chunk=3, **kw)  # ~an image
    assert np.array_equal(chunked[0], one_pass[0])
    assert chunked[1] == one_pass[1]
    assert loads[1] == loads[0]


def test_copy_candidates_are_the_images_with_a_possible_copy() -> None:
    """The vectorised per-image test agrees with a plain loop: an image is a candidate when
    a live box with P >= min_p has a live box >= MIN_AREA_RATIO larger apart from it."""
    import autolabel.select.dedupe as dd
    from autolabel.geometry import box_iou

    def plain(b, img, p, live, min_p):
        out = []
        for i in np.unique(img[live]):
            r = np.flatnonzero((img == i) & live)
            area = (b[r, 2] - b[r, 0]) * (b[r, 3] - b[r, 1])
            larger = area[None, :] >= dd.MIN_AREA_RATIO * area[:, None]
            apart = box_iou(b[r], b[r]) < 0.1
            if (larger & apart)[p[r] >= min_p].any():
                out.append((int(i), r))
        return out

    rng = np.random.default_rng(1)
    for trial in range(12):
        n = int(rng.integers(0, 1500))
        img = rng.integers(0, max(1, n // int(rng.integers(1, 20))), n)
        xy = rng.uniform(0, 100, (n, 2))
        b = np.c_[xy, xy + rng.uniform(0, 60, (n, 2))]
        b[rng.random(n) < 0.02] = np.nan
        p, live = rng.random(n), rng.random(n) < 0.9
        want = plain(b, img, p, live, 0.3)
        got = list(dd._copy_candidates(b, img, p, live, 0.3))
        assert [i for i, _ in got] == [i for i, _ in want], trial
        assert all(np.array_equal(x, y) for (_, x), (_, y) in zip(got, want, strict=True))
        assert n < 100 or len(want) > 0  # the draw has candidates to find


def test_max_per_image_learned_from_the_seed() -> None:
    assert learned_max_per_image(np.array([1, 2, 3])) == 1
    assert learned_max_per_image(np.array([1, 1, 2])) is None
    assert learned_max_per_image(np.array([], int)) is None


def test_layout_signal_separates_thumbnails_from_main_photos() -> None:
    seeds, thumbs, mains = [], [], []
    for seed in range(12):
        _, main, same, other = _shot_with_copies(seed)
        (seeds if seed < 6 else mains).append(main)
        if seed >= 6:
            thumbs.extend(same + other)
    wh = lambda k: np.tile([360.0, 640.0], (k, 1))  # noqa: E731
    prior = fit_layout(np.array(seeds), wh(len(seeds)), export_size=448)
    assert prior is not None and prior.n == 6
    sig_m = layout_signals(np.array(mains), wh(len(mains)), prior, export_size=448)
    sig_t = layout_signals(np.array(thumbs), wh(len(thumbs)), prior, export_size=448)
    assert np.median(sig_t["layout_outlier"]) > np.max(sig_m["layout_outlier"])
    # thumbnails are upscaled > 1.5x beyond the seed's own upscaling; main photos are not
    assert suspicious_upscale(sig_t["upscale"]).mean() > 0.8
    assert not suspicious_upscale(sig_m["upscale"]).any()


def test_layout_features_and_upscale_values() -> None:
    f = layout_features(np.array([[0, 0, 50, 100]]), np.array([[100, 200]]))
    assert np.allclose(f, [[np.log(0.25), 0.25, 0.25, np.log(0.5)]])
    assert np.allclose(upscale_factor(np.array([[0, 0, 50, 224]]), 448), [2.0])
    assert np.isnan(upscale_factor(np.array([[0, 0, 50, 224]]), None)).all()
    assert fit_layout(np.zeros((2, 4)), np.ones((2, 2))) is None  # too few seed boxes


def _workspace_with_thumbnails(tmp_path: Path, n_images: int = 12):
    """Screenshots with proposals on the main photo (score 0.6) and on a same-photo thumbnail
    (score 0.95); the first four originals have located seed boxes on the main photo."""
    from PIL import Image

    from autolabel.ingest import ingest
    from autolabel.store import Workspace
    from autolabel.store.images import find_image
    from autolabel.store.runs import create_run, finish_run, write_batch
    from autolabel.store.seed import upsert_seed_items
    from tests.support.proposals import mock_proposals

    ws = Workspace.create(tmp_path / "ws")
    folder = tmp_path / "shots"
    folder.mkdir()
    cases = []
    seed = 0
    while len(cases) < n_images:
        img, main, same, _ = _shot_with_copies(seed)
        seed += 1
        if not same:
            continue
        name = f"shot_{len(cases):03d}.png"
        Image.fromarray(img).save(folder / name)
        cases.append((name, main, same[0]))
    ingest(ws, [folder], workers=1)
    run = create_run(
        ws,
        detector="simulated",
        model="simulated",
        model_version="sim",
        refiner=None,
        prompt="product",
        box_threshold=0.3,
        text_threshold=0.25,
    )
    results, seeds, where = [], [], {}
    for k, (name, main, thumb) in enumerate(cases):
        rec = find_image(ws, str((folder / name).resolve()))
        props = mock_proposals([thumb, main], score=[0.95, 0.6], phrase=["product"] * 2)
        results.append((rec.id, props))
        where[rec.id] = (main, thumb)
        if k < 4:
            seeds.append(
                {
                    "crop_path": str(tmp_path / f"crop_{k}.png"),
                    "original_path": rec.path,
                    "image_id": rec.id,
                    "box": main,
                    "score": 1.0,
                    "status": "located",
                    "phrase": "product",
                }
            )
    write_batch(ws, run, results)
    finish_run(ws, run)
    upsert_seed_items(ws, seeds)
    return ws, where


def test_select_never_auto_accepts_the_thumbnail(tmp_path: Path) -> None:
    from autolabel.geometry import iou
    from autolabel.select.run import run_select
    from autolabel.store.select import load_current

    ws, where = _workspace_with_thumbnails(tmp_path)
    with ws:
        cfg = ws.config({"select.diversity": 0.0, "select.exemplar_similarity": False}).select
        summary = run_select(ws, cfg, export_size=448)
        assert summary["one_crop"]["copies"] >= len(where) - 4
        assert summary["one_crop"]["max_per_image"] == 1
        cur = load_current(ws)
        for j in range(len(cur)):
            _main, thumb = where[int(cur.image_id[j])]
            if iou(cur.xyxy[j], thumb) > 0.9:
                # neither auto-accepted nor queued (rows on seed originals stay pending)
                assert cur.route[j] in ("rejected", "pending"), (j, cur.route[j])
                assert cur.p_correct[j] == 0.0, (j, cur.p_correct[j])
                other = np.flatnonzero(cur.image_id == cur.image_id[j])
                assert cur.p_correct[j] <= cur.p_correct[other].max()


def test_no_seed_no_layout_rule() -> None:
    sig = layout_signals(np.array([[0, 0, 20, 20]]), np.array([[100, 100]]), None, export_size=448)
    assert np.isnan(sig["layout_outlier"]).all() and not suspicious_upscale(sig["upscale"]).any()
