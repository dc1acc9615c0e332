"""``autolabel finetune`` for the weight-free ``regions`` detector: seed + review -> regions-vN.

Grounding DINO versions are trained by :mod:`autolabel.train.loop`; with
``detect.detector: regions`` the regions scorer (:mod:`autolabel.detect.regions`) is
retrained instead, in seconds: accepted and adjusted review boxes are positives, rejected
boxes negatives, images rejected as "no object" contribute only negatives, and the located
seed boxes stay positives. When the newest seed-only version was trained on the current seed
its training rows are reused (``train_regions(base=...)``), otherwise the seed originals are
read again. The result is the next ``models/regions-vN``.

Champion / challenger, as for Grounding DINO (:mod:`autolabel.train.promote`): a share
(``finetune.val_split``) of the reviewed images, chosen by a hash of their path (the same
images every time), is held out of training; the new version is promoted only if its AP at
the match IoU on them beats the workspace's current proposals of those images *and* its top
box is right on significantly more of them than it is wrong where the current one is right
(a sign test: a new version starts without reviewed boxes of its own, so nothing of it is
auto-accepted until it has some -- switching must be worth that). ``--model
latest`` names the newest promoted version, so a retrain that is no better leaves the
proposals -- and the review labels the selector calibrated on them -- in place.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from autolabel.constants import MATCH_IOU
from autolabel.detect import versions
from autolabel.errors import InputError
from autolabel.geometry import box_iou


@dataclass(frozen=True)
class RegionsFinetuneResult:
    """A finished regions retrain: ``version`` (``regions-v2``), its folder and metadata."""

    version: str
    path: Path
    metadata: dict[str, Any]
    interrupted: bool = False


def review_boxes(ws: Any) -> dict[str, dict[str, Any]]:
    """Review decisions per image path: ``{"pos": [box...], "neg": [box...], "empty": bool}``.

    A rejected box that overlaps a kept box of the same image (IoU >= 0.9; e.g. rejected in
    one run, accepted in a later one) is not a negative.
    """
    from autolabel.store.labels import iter_labels
    from autolabel.store.train import rejected_boxes, rejected_images
    from autolabel.train.data import is_no_object_reason

    out: dict[str, dict[str, Any]] = {}

    def entry(path: str) -> dict[str, Any]:
        return out.setdefault(path, {"pos": [], "neg": [], "empty": False})

    for label in iter_labels(ws, include="reviewed"):
        entry(label.image_path)["pos"].append(tuple(label.box))
    for rej in rejected_boxes(ws):
        entry(rej["path"])["neg"].append(rej["box"])
    for rej in rejected_images(ws):
        if is_no_object_reason(rej["reason"]):
            entry(rej["path"])["empty"] = True
    for e in out.values():
        if e["pos"] and e["neg"]:
            ov = box_iou(np.asarray(e["neg"], np.float64), np.asarray(e["pos"], np.float64))
            e["neg"] = [b for b, o in zip(e["neg"], ov.max(axis=1), strict=True) if o < 0.9]
    return out


def _seed_base(ws: Any, items: list[dict[str, Any]]) -> Path | None:
    """The newest seed-only version trained on exactly the current seed, if any."""
    from autolabel.detect.regions import model_is_current
    from autolabel.seed.regions import FAMILY, SOURCE_SEED, seed_fingerprint

    current = seed_fingerprint(items)
    for v in reversed(versions.list_versions(ws.path, FAMILY)):
        if (
            v.metadata.get("source") == SOURCE_SEED
            and v.metadata.get("seed_hash") == current
            and model_is_current(v.path)
        ):
            return v.path
    return None


def heldout_paths(paths: list[str], share: float) -> set[str]:
    """The reviewed images held out of training: ``round(share * n)`` of them (at least one
    from 5 images on, none below), the lowest by a hash of the path -- stable across runs."""
    import hashlib

    n = max(1, round(share * len(paths))) if share > 0 and len(paths) >= 5 else 0
    ranked = sorted(paths, key=lambda p: hashlib.sha1(p.encode("utf-8", "replace")).hexdigest())
    return set(ranked[:n])


def _judge(
    ws: Any, path: Path, model: Any, held: dict[str, dict[str, Any]], match_iou: float
) -> dict[str, Any]:
    """Score the new version on the held-out reviewed images and decide its promotion
    (:func:`autolabel.train.promote.judge_version`); returns the promotion record."""
    import json

    from autolabel.detect.regions import RegionsDetector
    from autolabel.imageio import load_rgb
    from autolabel.store.images import find_image
    from autolabel.train.promote import agnostic_ap, judge_version, top1_correct

    det = RegionsDetector(model)  # the model just trained and saved at ``path``
    preds, truths, ids, kept = [], [], [], []
    for p, e in sorted(held.items()):
        rec = find_image(ws, p)
        if rec is None:
            continue
        prop = det.detect([load_rgb(p)], [""])[0]
        preds.append((prop.xyxy, prop.score, np.zeros(len(prop.score), np.int64)))
        truths.append(np.asarray(e["pos"], np.float64).reshape(-1, 4))
        ids.append(int(rec.id))
        kept.append(p)
    (path / "heldout.json").write_text(
        json.dumps([{"path": p, "boxes": t.tolist()} for p, t in zip(kept, truths, strict=True)]),
        encoding="utf-8",
    )
    meta = versions.read_metadata(path)
    meta["validation"] = {
        "match_iou": match_iou,
        "ap_match_after": agnostic_ap(preds, truths, iou=match_iou) if ids else None,
        "top1_correct": top1_correct(preds, truths, iou=match_iou),
        "heldout_image_ids": ids,
        "heldout_paths": kept,
    }
    return judge_version(ws, path, meta)


def finetune_regions(
    ws: Any,
    *,
    seed: int = 0,
    val_split: float = 0.2,
    match_iou: float = MATCH_IOU,
    callback: Callable[[dict], None] | None = None,
) -> RegionsFinetuneResult:
    """Retrain the ``regions`` scorer on seed + review decisions -> the next ``regions-vN``,
    promoted only if it beats the current proposals on held-out reviewed images.

    Args:
        ws: an open workspace.
        seed: random seed (jittered negatives, classifier).
        val_split: share of the reviewed images held out to judge the new version.
        match_iou: IoU a box needs with the reviewed box to count (``quality.match_iou``).
        callback: told ``{"event": "done", "version": ...}`` at the end.

    Raises:
        InputError: no review decision and no located seed box, or no review decision and a
            version trained on the current seed already exists (nothing new to learn).
    """
    from autolabel.detect.regions import RegionModel, RegionSample, train_regions
    from autolabel.imageio import load_rgb
    from autolabel.seed.regions import located_seed, save_version, seed_fingerprint, seed_samples

    items = located_seed(ws)
    reviewed = review_boxes(ws)
    if not items and not any(e["pos"] for e in reviewed.values()):
        raise InputError(
            "finetune (regions): expected located seed boxes or accepted review boxes, got "
            "none (run `autolabel seed add` with --originals and review some proposals first)"
        )
    base_path = _seed_base(ws, items) if items else None
    if base_path is not None and not reviewed:
        raise InputError(
            f"finetune (regions): expected review decisions to learn from, got none "
            f"({base_path.name} is already trained on the current seed; review first)"
        )
    samples: list[Any] = []
    index: dict[str, int] = {}
    if base_path is None and items:
        samples, paths = seed_samples(items)
        index = {p: i for i, p in enumerate(paths)}
    held = heldout_paths([p for p, e in reviewed.items() if e["pos"] or e["empty"]], val_split)
    n_pos = n_neg = 0
    for path, e in reviewed.items():
        if path in held:
            continue
        n_pos, n_neg = n_pos + len(e["pos"]), n_neg + len(e["neg"])
        if path in index:  # a seed original that was also reviewed: merge
            s = samples[index[path]]
            samples[index[path]] = RegionSample(
                s.image, [*s.boxes, *e["pos"]], crops=s.crops, negatives=e["neg"]
            )
        elif e["pos"] or e["neg"] or e["empty"]:
            samples.append(RegionSample(load_rgb(path), e["pos"], negatives=e["neg"]))
    base = RegionModel.load(base_path) if base_path is not None else None
    model = train_regions(samples, base=base, seed=seed)
    path = save_version(
        ws.path,
        model,
        {
            "source": "seed+review",
            "source_text": (
                f"retrained on {len(items)} seed boxes + {n_pos} accepted / {n_neg} rejected "
                "review boxes"
            ),
            "seed_count": len(items),
            "seed_hash": seed_fingerprint(items) if items else None,
            "review_positive": n_pos,
            "review_negative": n_neg,
            "review_images": len(reviewed) - len(held),
            "heldout_images": len(held),
            "base": base_path.name if base_path is not None else None,
        },
    )
    _judge(ws, path, model, {p: reviewed[p] for p in held}, match_iou)
    meta = versions.read_metadata(path)
    if callback is not None:
        callback({"event": "done", "version": path.name, "path": str(path)})
    return RegionsFinetuneResult(path.name, path, meta)
