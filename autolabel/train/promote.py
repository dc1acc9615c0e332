"""Champion / challenger: a fine-tuned version is promoted only if it beats the current one.

After a fine-tune that did not improve, ``propose --model latest`` used to replace the
proposals of every undecided image with worse ones. Now every finished version carries a
``promotion`` record in its ``metadata.json``:

- the **challenger** (the new version) is scored on the held-out validation images that
  have reviewed boxes (all validation images when none has): class-agnostic AP at the match
  IoU (:data:`autolabel.constants.MATCH_IOU`, crop-grade 0.9), keeping only predictions at
  or above its calibrated box threshold, so both sides are scored at their operating point;
- the **champion** is what produced the workspace's current proposals of those same images
  (whatever detector that was), scored the same way from the store;
- promoted iff the challenger's AP is strictly higher; with no held-out reviewed image or
  no current proposals there is nothing to judge and it is promoted (said so in the record).

``latest`` (:func:`autolabel.detect.versions.resolve_version`) names the newest *promoted*
version, so an unpromoted one never replaces proposals unless asked for by name.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from autolabel.constants import MATCH_IOU
from autolabel.train.data import TrainSample
from autolabel.train.metrics import Pred, Truth, average_precision


def heldout_indices(val: Sequence[TrainSample]) -> list[int]:
    """Validation samples to judge on: positives with a reviewed box, else all positives."""
    positives = [i for i, s in enumerate(val) if not s.negative]
    reviewed = [i for i in positives if "reviewed" in val[i].sources]
    return reviewed or positives


def agnostic_ap(
    preds: Sequence[Pred],
    truths: Sequence[np.ndarray],
    *,
    iou: float = MATCH_IOU,
    min_score: float | None = None,
) -> float:
    """Class-agnostic AP at ``iou`` (predictions below ``min_score`` dropped).

    Args:
        preds: per image ``(xyxy (n, 4), score (n,), cls (n,))``; classes are ignored.
        truths: per image ``(m, 4)`` true boxes.
        iou: match IoU.
        min_score: the operating threshold (None = keep all).

    Returns:
        AP in [0, 1]; higher = better.
    """
    p2: list[Pred] = []
    t2: list[Truth] = []
    for (xyxy, score, _), boxes in zip(preds, truths, strict=True):
        xyxy = np.asarray(xyxy, np.float64).reshape(-1, 4)
        score = np.asarray(score, np.float64).reshape(-1)
        keep = np.ones(score.shape[0], bool) if min_score is None else score >= min_score
        p2.append((xyxy[keep], score[keep], np.zeros(int(keep.sum()), np.int64)))
        b = np.asarray(boxes, np.float64).reshape(-1, 4)
        t2.append((b, np.zeros(b.shape[0], np.int64)))
    return average_precision(p2, t2, iou=iou)


def challenger_summary(
    val: Sequence[TrainSample],
    pairs: Sequence[tuple[Pred, Any]],
    box_threshold: float | None,
    *,
    match_iou: float = MATCH_IOU,
) -> dict[str, Any]:
    """The new version's score on the held-out images (stored in ``metadata.validation``).

    Args:
        val: the validation samples (same order as ``pairs``).
        pairs: ``(prediction, truth)`` per validation sample from the trainer's evaluation.
        box_threshold: the version's calibrated box threshold (None = keep all).

    Returns:
        ``{"match_iou", "ap_match_after", "heldout_image_ids", "heldout_paths"}``.
    """
    idx = heldout_indices(val) if pairs else []
    ap = (
        agnostic_ap(
            [pairs[i][0] for i in idx],
            [val[i].boxes for i in idx],
            iou=match_iou,
            min_score=box_threshold,
        )
        if idx
        else None
    )
    return {
        "match_iou": match_iou,
        "ap_match_after": ap,
        "heldout_image_ids": [val[i].image_id for i in idx],
        "heldout_paths": [val[i].path for i in idx],
    }


def top1_correct(preds: Sequence[Pred], truths: Sequence[np.ndarray], *, iou: float) -> list[bool]:
    """Per image: is the top-scoring box right (IoU >= ``iou`` with a true box)?

    An image without true boxes is right only when nothing was proposed.
    """
    from autolabel.geometry import box_iou

    out = []
    for (xyxy, score, _), boxes in zip(preds, truths, strict=True):
        xyxy = np.asarray(xyxy, np.float64).reshape(-1, 4)
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        if not len(xyxy) or not len(boxes):
            out.append(not len(xyxy) and not len(boxes))
            continue
        top = xyxy[int(np.argmax(np.asarray(score, np.float64)))][None]
        out.append(bool(box_iou(top, boxes).max() >= iou))
    return out


def sign_test_p(wins: int, losses: int) -> float:
    """One-sided sign test: P(at least ``wins`` of ``wins + losses`` fair coin flips)."""
    from math import comb

    n = wins + losses
    return sum(comb(n, k) for k in range(wins, n + 1)) / 2**n if n else 1.0


SIGN_TEST_ALPHA = 0.05
"""A challenger must win significantly more held-out images than it loses (when counted)."""


def decide(
    challenger: float | None,
    champion: float | None,
    *,
    n_images: int,
    champion_name: str,
    match_iou: float = MATCH_IOU,
    wins: int | None = None,
    losses: int | None = None,
) -> dict[str, Any]:
    """Promote or not, with a one-line reason (pure).

    Args:
        challenger: the new version's AP at the match IoU (None = could not be measured).
        champion: the current proposals' AP on the same images (None = none to compare).
        n_images: held-out reviewed images compared on.
        champion_name: what made the current proposals (for the message).
        wins / losses: held-out images where only the challenger's / only the champion's top
            box is right. When given, a higher AP is not enough: the wins must beat the
            losses in a one-sided sign test at :data:`SIGN_TEST_ALPHA` (a new version starts
            with no reviewed boxes of its own, so switching must be worth it).

    Returns:
        ``{"promoted", "reason", "challenger", "champion", "champion_name", "n_images",
        "match_iou"}``.
    """
    at = f"AP@{match_iou:g}"
    if challenger is None or n_images == 0:
        promoted = True  # nothing to judge on: the pre-champion/challenger behaviour
        reason = "not judged: no held-out reviewed image (finetune.val_split 0 or no reviews)"
    elif champion is None:
        promoted = True
        reason = f"{at} {challenger:.3f} on {n_images} held-out images; no current proposals"
    elif (
        challenger > champion
        and wins is not None
        and losses is not None
        and ((pv := sign_test_p(wins, losses)) > SIGN_TEST_ALPHA)
    ):
        promoted = False
        reason = (
            f"{at} {challenger:.3f} > {champion:.3f} of {champion_name} on {n_images} "
            f"held-out reviewed images, but its top box is right on {wins} image(s) where "
            f"the current one is wrong and wrong on {losses} where it is right (sign test "
            f"p = {pv:.2f} > {SIGN_TEST_ALPHA}): not clearly better; current proposals kept"
        )
    elif challenger > champion:
        promoted = True
        reason = (
            f"{at} {challenger:.3f} > {champion:.3f} of {champion_name} on {n_images} "
            "held-out reviewed images"
        )
    else:
        promoted = False
        reason = (
            f"{at} {challenger:.3f} <= {champion:.3f} of {champion_name} on {n_images} "
            "held-out reviewed images; current proposals kept"
        )
    return {
        "promoted": promoted,
        "reason": reason,
        "challenger": challenger,
        "champion": champion,
        "champion_name": champion_name,
        "n_images": n_images,
        "match_iou": match_iou,
        "wins": wins,
        "losses": losses,
    }


def current_preds(ws: Any, image_ids: Sequence[int | None]) -> tuple[list[Pred] | None, str]:
    """The workspace's current proposals of the given images as predictions.

    Returns:
        ``(preds, name)``; preds None when none of the images has current proposals; name
        is the model (version) of the runs that made them.
    """
    from autolabel.store.select import load_current

    cur = load_current(ws)
    wanted = [i for i in image_ids if i is not None]
    if not len(cur) or not np.isin(cur.image_id, wanted).any():
        return None, "none"
    preds: list[Pred] = []
    for img in image_ids:
        rows = np.flatnonzero(cur.image_id == (-1 if img is None else img))
        preds.append((cur.xyxy[rows], cur.score[rows], np.zeros(rows.size, np.int64)))
    runs = np.unique(cur.run_id[np.isin(cur.image_id, wanted)]).tolist()
    marks = ",".join("?" * len(runs))
    names = sorted(
        {
            str(r[0])
            for r in ws.conn.execute(f"SELECT model_version FROM runs WHERE id IN ({marks})", runs)
        }
    )
    return preds, ", ".join(Path(n).name for n in names)


def champion_score(
    ws: Any, image_ids: Sequence[int | None], truths: Sequence[np.ndarray], *, match_iou: float
) -> tuple[float | None, str]:
    """AP at ``match_iou`` of the workspace's current proposals on the given images.

    Returns:
        ``(ap, name)``; ap None when none of the images has current proposals; name is the
        model (version) of the runs that made them.
    """
    preds, name = current_preds(ws, image_ids)
    if preds is None:
        return None, name
    return agnostic_ap(preds, truths, iou=match_iou), name


def judge_version(ws: Any, version_dir: str | Path, metadata: dict[str, Any]) -> dict[str, Any]:
    """Compare a finished version with the current proposals; record the decision.

    Writes ``metadata["promotion"]`` into ``version_dir/metadata.json`` and returns it.
    With ``metadata["validation"]["top1_correct"]`` (the challenger's per-image top-box
    outcome, aligned with ``heldout_image_ids``) the sign test of :func:`decide` applies.
    """
    val = metadata.get("validation", {})
    match_iou = float(val.get("match_iou", MATCH_IOU))
    ids = list(val.get("heldout_image_ids", []))
    truths = _heldout_truths(version_dir, val.get("heldout_paths", []))
    champion, name = (None, "none")
    wins = losses = None
    if ids and len(truths) == len(ids):
        preds, name = current_preds(ws, ids)
        if preds is not None:
            champion = agnostic_ap(preds, truths, iou=match_iou)
            mine = val.get("top1_correct")
            if mine is not None and len(mine) == len(ids):
                theirs = top1_correct(preds, truths, iou=match_iou)
                wins = sum(a and not b for a, b in zip(mine, theirs, strict=True))
                losses = sum(b and not a for a, b in zip(mine, theirs, strict=True))
    decision = decide(
        val.get("ap_match_after"),
        champion,
        n_images=len(ids),
        champion_name=name,
        match_iou=match_iou,
        wins=wins,
        losses=losses,
    )
    metadata["promotion"] = decision
    path = Path(version_dir) / "metadata.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(metadata, indent=1, sort_keys=True, default=str), encoding="utf-8")
    tmp.replace(path)
    return decision


def _heldout_truths(version_dir: str | Path, paths: Sequence[str]) -> list[np.ndarray]:
    """True boxes of the held-out images, from the version's saved validation split."""
    try:
        saved = json.loads((Path(version_dir) / "heldout.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    by_path = {row["path"]: np.asarray(row["boxes"], np.float64).reshape(-1, 4) for row in saved}
    return [by_path[p] for p in paths if p in by_path]
