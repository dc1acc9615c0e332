"""The seed as training data of the weight-free ``regions`` detector, and its versions.

The ``regions`` detector (:mod:`autolabel.detect.regions`) needs a scorer trained on the seed
originals: positives are the located seed boxes, negatives the other candidate rectangles.
This module turns a workspace's located seed items into
:class:`~autolabel.detect.regions.RegionSample` s, trains the scorer and stores it as a
workspace version ``models/regions-vN`` (``model.joblib`` + ``meta.json`` from
:meth:`RegionModel.save`, plus the ``metadata.json`` every version has: seed count, training
time, content hash). ``propose`` calls :func:`ensure_regions_model` (newest version, or one
trained on the fly), ``seed calibrate`` calls :func:`calibrate_regions`, and
``autolabel finetune`` (:mod:`autolabel.train.regions`) adds review decisions.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from autolabel.detect import versions
from autolabel.errors import InputError

FAMILY = versions.REGIONS_PREFIX
SOURCE_SEED = "seed"
"""``metadata.json`` ``source`` of a version trained on the seed alone."""
DEFAULT_BOX_THRESHOLD = 0.05
"""Box threshold of ``regions`` (``seed calibrate`` keeps it unless ``seed.target_recall`` is
set; see :func:`_pick_threshold`): its score is already a calibrated P(IoU >= 0.9), so 0.05
only drops boxes that are almost surely wrong and leaves the routing to ``select``."""


def located_seed(ws: Any) -> list[dict[str, Any]]:
    """Located seed items as ``{"path", "image_id", "box", "crop_path"}``, in id order."""
    from autolabel.store.seed import list_seed_items
    from autolabel.store.train import located_seed_boxes

    crops = {it.id: it.crop_path for it in list_seed_items(ws, status="located")}
    return [
        {
            "path": r["path"],
            "image_id": r["image_id"],
            "box": r["box"],
            "crop_path": crops.get(r["id"]),
        }
        for r in located_seed_boxes(ws)
    ]


def seed_fingerprint(items: Sequence[dict[str, Any]]) -> str:
    """A hash of the located seed (originals and boxes): a changed seed retrains."""
    h = hashlib.sha256()
    for it in sorted(items, key=lambda r: (str(r["path"]), tuple(r["box"]))):
        h.update(json.dumps([str(it["path"]), [round(v, 1) for v in it["box"]]]).encode())
    return h.hexdigest()[:16]


def seed_samples(items: Sequence[dict[str, Any]]) -> tuple[list[Any], list[str]]:
    """One :class:`RegionSample` per seed original (its boxes and hand crops).

    Returns:
        ``(samples, paths)``: samples and the original each one is.

    Raises:
        InputError: no located seed box.
    """
    from autolabel.detect.regions import RegionSample
    from autolabel.errors import ImageError
    from autolabel.imageio import load_rgb

    if not items:
        raise InputError(
            "regions detector: expected located seed boxes to train on (run `autolabel seed "
            "add WS --crops DIR --originals DIR`) or a regions-vN model, got none"
        )
    by_path: dict[str, list[dict[str, Any]]] = {}
    for it in items:
        by_path.setdefault(str(it["path"]), []).append(it)
    samples, paths = [], []
    for path, group in by_path.items():
        crops = []
        for it in group:
            if not it["crop_path"]:
                continue
            try:
                crops.append(load_rgb(it["crop_path"]))
            except (ImageError, OSError):
                continue  # similarity then uses the boxes' own pixels
        samples.append(
            RegionSample(
                load_rgb(path),
                [it["box"] for it in group],
                crops=crops if len(crops) == len(group) else (),
            )
        )
        paths.append(path)
    return samples, paths


def save_version(ws_path: str | Path, model: Any, metadata: dict[str, Any]) -> Path:
    """Write ``model`` as the next ``regions-vN`` (complete or absent: written aside, renamed).

    Args:
        ws_path: the workspace folder.
        model: a trained :class:`~autolabel.detect.regions.RegionModel`.
        metadata: extra ``metadata.json`` fields (source, counts).

    Returns:
        The version folder.
    """
    number = versions.next_version_number(ws_path, FAMILY)
    name = versions.version_name(number, FAMILY)
    final = versions.models_dir(ws_path) / name
    partial = final.with_name(name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    model.save(partial)
    meta = {
        "detector": "regions",
        "version": name,
        "content_hash": model.version,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "train_seconds": model.meta.get("train_seconds"),
        "n_images": model.meta.get("n_images"),
        **metadata,
    }
    (partial / versions.METADATA).write_text(json.dumps(meta, indent=1), encoding="utf-8")
    partial.rename(final)
    return final


def train_seed_model(ws: Any, *, seed: int = 0, workers: int = 2) -> Path:
    """Train ``regions`` on the workspace's located seed and save it as ``regions-vN``.

    Raises:
        InputError: no located seed box.
    """
    from autolabel.detect.regions import train_regions

    items = located_seed(ws)
    samples, _ = seed_samples(items)
    model = train_regions(samples, seed=seed, workers=workers)
    return save_version(
        ws.path,
        model,
        {
            "source": SOURCE_SEED,
            "source_text": f"trained on {len(items)} seed boxes",
            "seed_count": len(items),
            "seed_images": len(samples),
            "seed_hash": seed_fingerprint(items),
        },
    )


def ensure_regions_model(ws: Any, *, log: Callable[[str], None] | None = None) -> Path:
    """The ``regions`` model a propose run uses when none is named.

    The newest *promoted* ``regions-vN`` (a retrain that did not beat the current proposals
    on held-out reviewed images is kept aside, see :mod:`autolabel.train.regions`); a new one
    trained on the seed when there is none, or when the newest was trained on the seed alone
    and the seed changed since (a fine-tuned version is kept: ``autolabel finetune`` made it
    on purpose). Versions saved with another feature list (an older autolabel) are passed
    over, said in one line.

    Raises:
        InputError: no version and no located seed box.
    """
    from autolabel.detect.regions import model_is_current

    promoted = [v for v in versions.list_versions(ws.path, FAMILY) if versions.is_promoted(v)]
    current = [model_is_current(v.path) for v in promoted]
    found = [v for v, ok in zip(promoted, current, strict=True) if ok]
    stale = [v.name for v, ok in zip(promoted, current, strict=True) if not ok]
    if stale and log is not None:
        log(
            f"{', '.join(stale)}: saved by an older autolabel (other features); not used "
            "(run `autolabel finetune` to retrain with your reviews)"
        )
    if found:
        newest = found[-1]
        if newest.metadata.get("source") != SOURCE_SEED:
            return newest.path
        if newest.metadata.get("seed_hash") == seed_fingerprint(located_seed(ws)):
            return newest.path
    path = train_seed_model(ws)
    if log is not None:
        meta = versions.read_metadata(path)
        log(
            f"trained {path.name} on {meta['seed_count']} seed boxes in "
            f"{meta['train_seconds']:.1f}s"
        )
    return path


def _pick_threshold(
    preds: Sequence[Any], truths: Sequence[np.ndarray], *, iou: float, target_recall: float | None
) -> dict[str, Any]:
    """:data:`DEFAULT_BOX_THRESHOLD` with its held-out numbers, or the most precise threshold
    at ``target_recall`` (``seed.target_recall``) when that is set.

    Why not max-F1 (``seed calibrate``'s rule for Grounding DINO): it counts a capture's
    second-best boxes as false positives and lands at the lowest held-out seed score
    (0.3-0.8 on 6-10 seeds), which drops the main picture of new captures scored a little
    lower (measured: 1 of 8 and 6 of 8 lost). ``score`` is already a calibrated P(IoU >= 0.9)
    and ``select`` routes low-scored boxes to review or reject, so the threshold only has to
    drop near-certain junk.
    """
    from autolabel.seed.calibrate import choose_thresholds

    if target_recall is not None:
        return choose_thresholds(preds, truths, iou=iou, target_recall=target_recall)
    picked = choose_thresholds(preds, truths, iou=iou, box_grid=[DEFAULT_BOX_THRESHOLD])
    return {**picked, "objective": "default (score is calibrated; select routes)"}


def calibrate_regions(
    ws: Any,
    *,
    prompt: str = "object",
    iou: float = 0.5,
    target_recall: float | None = None,
    folds: int = 3,
    seed: int = 0,
    on_progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """The ``regions`` box threshold, measured on held-out seed originals (grouped k-fold).

    Each fold's originals are scored by a model trained on the other folds (a model scoring
    its own training images would look better than on new ones); the sweep is
    :func:`autolabel.seed.calibrate.choose_thresholds`. With fewer than two originals there
    is nothing to hold out: :data:`DEFAULT_BOX_THRESHOLD` is kept and ``reason`` says why.

    Without ``target_recall`` the threshold stays :data:`DEFAULT_BOX_THRESHOLD` and the
    k-fold gives its held-out precision/recall (see :func:`_pick_threshold` for why).

    Returns:
        The :func:`choose_thresholds` dict plus ``detector``, ``prompt``, ``reason``; stored
        as workspace setting ``seed.thresholds``.

    Raises:
        InputError: no located seed box.
    """
    from autolabel.detect.regions import RegionsDetector, train_regions

    items = located_seed(ws)
    samples, _ = seed_samples(items)
    truths = [np.asarray(s.boxes, np.float64).reshape(-1, 4) for s in samples]
    k = min(folds, len(samples))
    if k < 2:
        result: dict[str, Any] = {
            "box_threshold": DEFAULT_BOX_THRESHOLD,
            "text_threshold": 0.0,
            "f1": float("nan"),
            "precision": float("nan"),
            "recall": float("nan"),
            "n": sum(len(t) for t in truths),
            "n_images": len(samples),
            "iou": iou,
            "objective": "default",
            "reason": "one seed original: nothing to hold out, kept the default",
        }
    else:
        order = np.random.default_rng(seed).permutation(len(samples))
        preds: list[Any] = [None] * len(samples)
        for f in range(k):
            test = set(order[f::k].tolist())
            train = [s for i, s in enumerate(samples) if i not in test]
            det = RegionsDetector(train_regions(train, seed=seed), box_threshold=0.0)
            for i in sorted(test):
                preds[i] = det.detect([samples[i].image], [prompt])[0]
            if on_progress is not None:
                on_progress(f + 1, k)
        result = _pick_threshold(preds, truths, iou=iou, target_recall=target_recall)
        result["reason"] = (
            f"held-out numbers from a {k}-fold over seed originals (each scored by a model "
            f"not trained on it); threshold: {result['objective']}"
        )
    result.update(detector="regions", model="seed", model_version="", prompt=prompt)
    ws.set_setting("seed.thresholds", result)
    return result
