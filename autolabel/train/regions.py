"""``autolabel finetune`` for the weight-free ``regions`` detector: seed + review -> regions-vN.

Grounding DINO versions are trained by :mod:`autolabel.train.loop`; with
``detect.detector: regions`` the regions scorer (:mod:`autolabel.detect.regions`) is
retrained instead, in seconds: accepted and adjusted review boxes are positives, rejected
boxes negatives, images rejected as "no object" contribute only negatives, and the located
seed boxes stay positives. When the newest seed-only version was trained on the current seed
its training rows are reused (``train_regions(base=...)``), otherwise the seed originals are
read again. The result is the next ``models/regions-vN``, which ``propose`` then uses (its
content hash is in the run key, so every image is proposed again).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

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
    from autolabel.seed.regions import FAMILY, SOURCE_SEED, seed_fingerprint

    current = seed_fingerprint(items)
    for v in reversed(versions.list_versions(ws.path, FAMILY)):
        if v.metadata.get("source") == SOURCE_SEED and v.metadata.get("seed_hash") == current:
            return v.path
    return None


def finetune_regions(
    ws: Any, *, seed: int = 0, callback: Callable[[dict], None] | None = None
) -> RegionsFinetuneResult:
    """Retrain the ``regions`` scorer on seed + review decisions -> the next ``regions-vN``.

    Args:
        ws: an open workspace.
        seed: random seed (jittered negatives, classifier).
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
    n_pos = n_neg = 0
    for path, e in reviewed.items():
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
            "review_images": len(reviewed),
            "base": base_path.name if base_path is not None else None,
        },
    )
    meta = versions.read_metadata(path)
    if callback is not None:
        callback({"event": "done", "version": path.name, "path": str(path)})
    return RegionsFinetuneResult(path.name, path, meta)
