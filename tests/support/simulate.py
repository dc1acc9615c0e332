"""A documented, deliberately imperfect simulated detector (tests, benchmarks, demos).

It turns known true boxes into proposals the way a real open-vocabulary detector errs:

- a true object is found with probability ``p_detect``; a found object is localised well
  (a few pixels of jitter, IoU about 0.9-0.98) with probability ``p_localise``, otherwise
  badly (a part or an over-wide box, IoU < 0.5);
- each distractor box (e.g. the thumbnails of :func:`autolabel.synth.make_screenshot`)
  becomes a false positive with probability ``p_distractor``, plus a few random boxes;
- ``score`` of correct boxes is drawn higher than that of wrong ones but the two overlap
  (so thresholding the score alone makes mistakes), and the per-box signals
  ``token_score`` and ``exemplar_score`` carry independent evidence about correctness (so a
  calibrator using them can beat the raw score).

Correct = IoU >= the match IoU (``quality.match_iou``, 0.9) with a true box;
:func:`simulate_proposals` returns that label too.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from autolabel.constants import MATCH_IOU
from autolabel.geometry import box_iou
from autolabel.types import Proposals

if TYPE_CHECKING:  # pragma: no cover
    from autolabel.store import Workspace


def _beta_between(rng: np.random.Generator, a: float, b: float, lo: float, n: int) -> np.ndarray:
    return lo + (1.0 - lo) * rng.beta(a, b, size=n)


def simulate_proposals(
    rng: np.random.Generator,
    truth: np.ndarray,
    size: tuple[int, int],
    *,
    distractors: np.ndarray | None = None,
    phrase: str = "product",
    threshold: float = 0.3,
    p_detect: float = 0.92,
    p_localise: float = 0.85,
    p_distractor: float = 0.5,
    random_fp: float = 0.3,
    hardness: float = 0.0,
    jitter: float = 0.012,
    match_iou: float = MATCH_IOU,
) -> tuple[Proposals, np.ndarray]:
    """Proposals for one image from its true boxes.

    Args:
        rng: the only source of randomness.
        truth: ``(k, 4)`` true boxes.
        size: ``(W, H)`` of the image.
        distractors: ``(m, 4)`` look-alike regions that may become false positives.
        threshold: lowest score emitted (the detector's box threshold).
        hardness: 0..1, lowers the scores of correct boxes on this image (hard images).
        jitter: standard deviation of a well-localised box's sides, as a share of its size.
        match_iou: IoU a box needs with a true box to be correct.

    Returns:
        ``(proposals, correct)``: ``correct (n,)`` bool, IoU >= ``match_iou`` with a true box.
    """
    W, H = size
    truth = np.asarray(truth, np.float64).reshape(-1, 4)
    boxes: list[np.ndarray] = []
    for t in truth:
        if rng.random() >= p_detect:
            continue
        w, h = t[2] - t[0], t[3] - t[1]
        if rng.random() < p_localise:
            jit = rng.normal(0, jitter, 4) * np.array([w, h, w, h])
            boxes.append(t + jit)
        elif rng.random() < 0.5:  # a part of the object
            fx, fy = rng.uniform(0.3, 0.6, 2)
            x0 = t[0] + rng.uniform(0, 1 - fx) * w
            y0 = t[1] + rng.uniform(0, 1 - fy) * h
            boxes.append(np.array([x0, y0, x0 + fx * w, y0 + fy * h]))
        else:  # the object plus its surroundings
            boxes.append(t + np.array([-w, -0.6 * h, w, 0.6 * h]) * rng.uniform(0.6, 1.0))
    if distractors is not None:
        for d in np.asarray(distractors, np.float64).reshape(-1, 4):
            if rng.random() < p_distractor:
                boxes.append(d + rng.normal(0, 2.0, 4))
    for _ in range(rng.poisson(random_fp)):
        bw, bh = rng.uniform(0.1, 0.4) * W, rng.uniform(0.05, 0.3) * H
        x0, y0 = rng.uniform(0, W - bw), rng.uniform(0, H - bh)
        boxes.append(np.array([x0, y0, x0 + bw, y0 + bh]))
    if not boxes:
        return Proposals.empty(("token_score", "exemplar_score")), np.zeros(0, bool)
    xyxy = np.stack(boxes)
    xyxy[:, [0, 2]] = np.clip(xyxy[:, [0, 2]], 0, W)
    xyxy[:, [1, 3]] = np.clip(xyxy[:, [1, 3]], 0, H)
    xyxy[:, 2] = np.maximum(xyxy[:, 2], xyxy[:, 0] + 1)
    xyxy[:, 3] = np.maximum(xyxy[:, 3], xyxy[:, 1] + 1)
    n = xyxy.shape[0]
    if truth.shape[0]:
        correct = box_iou(xyxy, truth).max(axis=1) >= match_iou
    else:
        correct = np.zeros(n, bool)
    good = _beta_between(rng, 5.0 - 3.0 * hardness, 2.0, threshold, n)
    bad = _beta_between(rng, 2.0, 3.0, threshold, n)
    score = np.where(correct, good, bad)
    token = np.where(correct, rng.beta(6, 2, n), rng.beta(2, 4, n))
    exemplar = np.where(correct, rng.beta(5, 2, n), rng.beta(2, 3, n))
    props = Proposals(
        xyxy=xyxy.astype(np.float32),
        score=score.astype(np.float32),
        phrase=[phrase] * n,
        data={
            "token_score": token.astype(np.float32),
            "exemplar_score": exemplar.astype(np.float32),
        },
    )
    return props, correct


def simulated_reviewer_action(
    box: Sequence[float], truth: np.ndarray, *, match_iou: float = MATCH_IOU
) -> tuple[str, tuple[float, float, float, float] | None]:
    """What a careful reviewer does with a proposed box, given the image's true boxes.

    Returns ``("accept", None)`` when IoU >= ``match_iou`` with a true box,
    ``("adjust", true_box)`` when it overlaps one (IoU > 0.1), else ``("reject", None)``.
    """
    t = np.asarray(truth, np.float64).reshape(-1, 4)
    if t.shape[0] == 0:
        return "reject", None
    iou = box_iou(np.asarray(box, np.float64).reshape(1, 4), t)[0]
    j = int(np.argmax(iou))
    if iou[j] >= match_iou:
        return "accept", None
    if iou[j] > 0.1:
        return "adjust", tuple(float(v) for v in t[j])  # type: ignore[return-value]
    return "reject", None


def review_proposal(
    ws: Workspace,
    proposal_id: int,
    action: str,
    *,
    box: Sequence[float] | None = None,
    reviewer: str = "sim",
) -> int:
    """Decide one proposal through the review queue, as a reviewer would.

    The proposal is queued first when it has no open item (reason ``uncertain``); returns
    the decision id. For tests, benchmarks and demos.
    """
    from autolabel.store.queue import decide, enqueue
    from autolabel.store.select import load_queue

    q = load_queue(ws)
    hit = np.flatnonzero(q.proposal_id == int(proposal_id))
    if hit.size == 0 or q.status[hit[0]] == "withdrawn":
        enqueue(ws, [int(proposal_id)], "uncertain" if hit.size == 0 else str(q.reason[hit[0]]))
        q = load_queue(ws)
        hit = np.flatnonzero(q.proposal_id == int(proposal_id))
    return decide(ws, reviewer, int(q.item_id[hit[0]]), action, box=box, lease_seconds=60.0)


def build_simulated_workspace(
    ws: Workspace,
    image_dir: Path,
    *,
    n_images: int = 80,
    seed: int = 0,
    size: tuple[int, int] = (180, 320),
    photos: Sequence[str] | None = None,
    n_seed: int = 0,
) -> Path:
    """Fill ``ws`` with synthetic screenshots and simulated proposals; write the truth.

    Screenshots come from :func:`autolabel.synth.make_screenshot` (one product photo per
    image at a known box, look-alike thumbnails as distractors). Each photo gets its own
    hardness, so some groups of near-duplicate images are harder than others. Proposals are
    stored as one finished propose run (detector ``simulated``).

    Args:
        ws: an empty workspace.
        image_dir: folder for the PNG screenshots and ``truth.jsonl`` (created).
        n_images: number of screenshots.
        size: screenshot ``(W, H)``.
        photos: restrict the product photos (default: every synth photo).
        n_seed: the first ``n_seed`` screenshots also get a hand-crop imitation
            (``crops/``) stored as a located seed item with the true box, as
            ``autolabel seed`` would leave them.

    Returns:
        Path of ``truth.jsonl`` (``{"image": "shot_0000.png", "boxes": [[x0,y0,x1,y1]]}``
        rows, paths relative to the file), usable with ``autolabel eval --truth``.
    """
    import json

    from autolabel import synth
    from autolabel.ingest import ingest
    from autolabel.store.images import find_image
    from autolabel.store.runs import create_run, finish_run, write_batch
    from autolabel.store.seed import upsert_seed_items

    image_dir = Path(image_dir)
    image_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    names = list(photos or synth.PHOTO_NAMES)
    levels = rng.uniform(0, 0.9, len(names))
    hardness = {name: float(h) for name, h in zip(names, levels, strict=True)}
    records = []
    crops: list[tuple[str, str, tuple[float, ...]]] = []
    for i in range(n_images):
        photo = names[int(rng.integers(len(names)))]
        shot, box, meta = synth.make_screenshot(rng, photo, size=size)
        name = f"shot_{i:04d}.png"
        shot.save(image_dir / name)
        if i < n_seed:
            crop, _, _ = synth.make_crop(rng, shot, box, long_side=None)
            crop_dir = image_dir.parent / f"{image_dir.name}_crops"
            crop_dir.mkdir(exist_ok=True)
            crop.save(crop_dir / f"shot_{i:04d}_crop.png")
            crops.append((str(crop_dir / f"shot_{i:04d}_crop.png"), name, tuple(box)))
        distractors = np.array([d["box"] for d in meta.get("distractors", [])], np.float64)
        records.append((name, np.array([box], np.float64), distractors, photo))
    with (image_dir / "truth.jsonl").open("w", encoding="utf-8") as fh:
        for name, truth, _, photo in records:
            row = {"image": name, "boxes": truth.tolist(), "photo": photo}
            fh.write(json.dumps(row) + "\n")
    ingest(ws, [image_dir], workers=1)
    run = create_run(
        ws,
        detector="simulated",
        model="simulated",
        model_version=f"sim-{seed}",
        refiner=None,
        prompt="product",
        box_threshold=0.3,
        text_threshold=0.25,
    )
    results = []
    for name, truth, distractors, photo in records:
        rec = find_image(ws, str((image_dir / name).resolve()))
        if rec is None:  # pragma: no cover - ingest failed for this file
            continue
        props, _ = simulate_proposals(
            rng, truth, size, distractors=distractors, hardness=hardness[photo]
        )
        results.append((rec.id, props))
    write_batch(ws, run, results)
    finish_run(ws, run)
    seed_rows = []
    for crop_path, name, box in crops:
        rec = find_image(ws, str((image_dir / name).resolve()))
        seed_rows.append(
            {
                "crop_path": crop_path,
                "original_path": rec.path if rec else None,
                "image_id": rec.id if rec else None,
                "box": box,
                "score": 1.0,
                "status": "located" if rec else "no_original",
                "phrase": "product",
            }
        )
    if seed_rows:
        upsert_seed_items(ws, seed_rows)
    return image_dir / "truth.jsonl"
