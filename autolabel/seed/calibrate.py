"""Prompts from captions, and detector thresholds calibrated on the seed boxes.

:func:`choose_thresholds` is a pure sweep (reusable after fine-tuning): given detections
made with low thresholds and the true boxes, it picks the ``(box_threshold,
text_threshold)`` pair with the best F1 at IoU >= 0.5, or the most precise pair that still
reaches a target recall. Caveat: seed originals may contain objects nobody cropped; those
count as false positives, so the calibrated thresholds lean conservative.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from autolabel.errors import InputError
from autolabel.geometry import box_iou
from autolabel.store.db import Workspace
from autolabel.types import Prompt, Proposals, SeedItem

#: Default grids of the sweep.
BOX_GRID = tuple(round(float(v), 3) for v in np.arange(0.05, 0.951, 0.025))
TEXT_GRID = tuple(round(float(v), 3) for v in np.arange(0.0, 0.901, 0.05))
#: Thresholds the detector runs with during calibration (below every grid value).
SWEEP_BOX_THRESHOLD = 0.05
SWEEP_TEXT_THRESHOLD = 0.0
#: Fewer located seed boxes than this: thresholds are not calibrated (too few to trust).
MIN_SEED_BOXES = 3
#: Default of ``quality.min_recall``: lowest seed-box recall of thresholds that are adopted.
MIN_RECALL = 0.3


def threshold_problem(
    result: Mapping[str, Any], *, min_recall: float = MIN_RECALL, min_boxes: int = MIN_SEED_BOXES
) -> str | None:
    """Why thresholds chosen by :func:`choose_thresholds` must not be adopted, or None.

    Never adopted: fewer than ``min_boxes`` true boxes, F1 0 (nothing found), or recall
    below ``min_recall`` (the detector would miss most objects on new images).
    """
    n, f1, rec = int(result["n"]), float(result["f1"]), float(result["recall"])
    if n < min_boxes:
        return f"only {n} located seed boxes (need >= {min_boxes})"
    if f1 <= 0:
        return f"F1 0.00 at the best thresholds: the detector found none of the {n} seed boxes"
    if rec < min_recall:
        return f"recall {rec:.2f} on {n} seed boxes is below quality.min_recall {min_recall:g}"
    return None


def match_counts(
    xyxy: np.ndarray, score: np.ndarray, truth: np.ndarray, *, iou: float = 0.5
) -> tuple[int, int, int]:
    """Greedy (by score) one-to-one matching; returns ``(tp, fp, fn)``.

    Args:
        xyxy: ``(n, 4)`` predicted boxes.
        score: ``(n,)`` their scores (higher first).
        truth: ``(m, 4)`` true boxes.
        iou: minimum IoU for a match.
    """
    truth = np.asarray(truth, np.float64).reshape(-1, 4)
    n, m = len(xyxy), len(truth)
    if n == 0 or m == 0:
        return 0, n, m
    ious = box_iou(xyxy, truth)
    used = np.zeros(m, bool)
    tp = 0
    for i in np.argsort(-np.asarray(score), kind="stable"):
        cand = np.where(used, -1.0, ious[i])
        j = int(cand.argmax())
        if cand[j] >= iou:
            used[j] = True
            tp += 1
    return tp, n - tp, m - tp


def choose_thresholds(
    predictions: Sequence[Proposals],
    truths: Sequence[np.ndarray],
    *,
    iou: float = 0.5,
    box_grid: Sequence[float] = BOX_GRID,
    text_grid: Sequence[float] | None = TEXT_GRID,
    text_key: str = "token_score",
    target_recall: float | None = None,
) -> dict[str, Any]:
    """Sweep box/text thresholds against true boxes.

    Args:
        predictions: one ``Proposals`` per image, made with thresholds below the grids.
        truths: one ``(m_i, 4)`` array of true boxes per image.
        iou: IoU needed for a true positive.
        box_grid: candidate box thresholds (kept boxes have ``score >= t``).
        text_grid: candidate text thresholds, applied to ``data[text_key]``; ignored (only
            0.0) when the predictions have no such signal.
        text_key: the per-box text-match signal.
        target_recall: if set, the most precise pair with recall >= target (ties: higher F1,
            then higher thresholds); if no pair reaches it, the pair with the highest recall.

    Returns:
        ``{"box_threshold", "text_threshold", "f1", "precision", "recall", "tp", "fp",
        "fn", "n", "n_images", "iou", "objective"}`` where ``n`` = number of true boxes.

    Raises:
        InputError: lengths differ or there are no true boxes.
    """
    if len(predictions) != len(truths):
        raise InputError(
            f"expected one truth array per prediction, got {len(predictions)} predictions "
            f"and {len(truths)} truths"
        )
    n_true = sum(len(np.asarray(t).reshape(-1, 4)) for t in truths)
    if n_true == 0:
        raise InputError("calibration needs at least one true (seed) box, got none")
    has_text = any(text_key in p.data for p in predictions if len(p))
    tgrid = list(text_grid) if (has_text and text_grid is not None) else [0.0]
    results = []
    for bt in box_grid:
        for tt in tgrid:
            tp = fp = fn = 0
            for p, t in zip(predictions, truths, strict=True):
                keep = p.score >= bt
                if has_text and tt > 0 and text_key in p.data:
                    keep &= np.asarray(p.data[text_key]) >= tt
                a, b, c = match_counts(p.xyxy[keep], p.score[keep], t, iou=iou)
                tp, fp, fn = tp + a, fp + b, fn + c
            prec = tp / (tp + fp) if tp + fp else 1.0
            rec = tp / (tp + fn) if tp + fn else 0.0
            f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
            results.append((float(bt), float(tt), f1, prec, rec, tp, fp, fn))
    if target_recall is not None:
        ok = [r for r in results if r[4] >= target_recall]
        if ok:
            best = max(ok, key=lambda r: (r[3], r[2], r[0], r[1]))
            objective = f"precision at recall >= {target_recall}"
        else:
            best = max(results, key=lambda r: (r[4], r[3], r[0], r[1]))
            objective = f"max recall (target {target_recall} not reachable)"
    else:
        best = max(results, key=lambda r: (r[2], r[0], r[1]))
        objective = "max f1"
    bt, tt, f1, prec, rec, tp, fp, fn = best
    return {
        "box_threshold": bt,
        "text_threshold": tt,
        "f1": round(f1, 4),
        "precision": round(prec, 4),
        "recall": round(rec, 4),
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "n": n_true,
        "n_images": len(truths),
        "iou": iou,
        "objective": objective,
    }


def derive_prompts(
    ws: Workspace,
    *,
    prompt: str | None = None,
    prompt_map: Mapping[str, str] | None = None,
    max_phrases: int = 8,
) -> dict[str, Any]:
    """Set each seed item's phrase from its caption and the workspace prompt.

    Args:
        ws: open workspace.
        prompt: manual override of the whole prompt (``"white sneaker. handbag"``); items
            keep their caption phrase unless it is empty, then get the first prompt phrase.
        prompt_map: caption -> phrase overrides.
        max_phrases: most distinct phrases in a derived prompt.

    Returns:
        ``{"prompt", "phrases": {phrase: count}, "items", "without_caption"}``; also stored
        as workspace setting ``seed.prompt`` (the prompt string), and the captions each
        phrase was derived from as ``seed.phrase_captions`` (export gives a box found by a
        phrase made from one caption that full caption; a phrase from ``prompt`` that no
        caption gave has none).

    Raises:
        InputError: no seed items, or no caption and no ``prompt``.
    """
    from autolabel.seed.captions import build_prompt, phrase_from_caption
    from autolabel.store.seed import list_seed_items, set_phrase_captions, set_phrases

    items = list_seed_items(ws)
    if not items:
        raise InputError(f"{ws.path}: no seed items yet (run `autolabel seed add` first)")
    derived = {it.id: phrase_from_caption(it.caption, prompt_map) for it in items}
    phrases = dict(derived)
    if prompt is not None:
        manual = list(Prompt.parse(prompt).phrases)
        final_prompt = str(Prompt(tuple(manual)))
        phrases = {k: (v if v in manual else manual[0]) for k, v in phrases.items()}
    else:
        final_prompt = build_prompt(phrases.values(), max_phrases=max_phrases)
        if not final_prompt:
            raise InputError(
                "no captions to derive a prompt from: add captions (--captions or .txt "
                "sidecars) or pass --prompt 'white sneaker. handbag'"
            )
        top = list(Prompt.parse(final_prompt).phrases)
        phrases = {k: (v if v in top else (v or None)) for k, v in phrases.items()}
    set_phrases(ws, {k: (v or None) for k, v in phrases.items()})
    set_phrase_captions(ws, _phrase_sources(items, derived, phrases))
    ws.set_setting("seed.prompt", final_prompt)
    counts: dict[str, int] = {}
    for v in phrases.values():
        if v:
            counts[v] = counts.get(v, 0) + 1
    return {
        "prompt": final_prompt,
        "phrases": counts,
        "items": len(items),
        "without_caption": sum(1 for it in items if not it.caption),
    }


def _phrase_sources(
    items: Sequence[SeedItem], derived: Mapping[int, str], phrases: Mapping[int, str | None]
) -> dict[str, list[str]]:
    """``{phrase: captions}``: the captions whose own derived phrase is the item's final phrase
    (an item given the manual prompt's first phrase instead is no source of it)."""
    out: dict[str, list[str]] = {}
    for it in items:
        final = phrases.get(it.id)
        if final and it.caption and it.caption.strip() and derived.get(it.id) == final:
            out.setdefault(final, []).append(it.caption.strip())
    return out


def calibration_inputs(
    ws: Workspace, prompt: str | None
) -> tuple[dict[int, list[tuple[tuple[float, float, float, float], str | None]]], str]:
    """The located seed boxes by image id and the prompt :func:`calibrate` would use.

    Args:
        ws: open workspace.
        prompt: the prompt chosen by :func:`autolabel.steps.resolve_prompt` (the one
            precedence rule); None or empty is an error.

    Raises:
        InputError: no located seed boxes, or no prompt.
    """
    from autolabel.store.seed import seed_boxes_by_image

    by_image = seed_boxes_by_image(ws)
    if not by_image:
        raise InputError(
            f"{ws.path}: no located seed boxes to calibrate on (run `autolabel seed add` with "
            "--originals first)"
        )
    if not prompt:
        raise InputError(
            "no prompt: run `autolabel seed prompts` first or pass --prompt 'white sneaker'"
        )
    return by_image, prompt


def calibrate(
    ws: Workspace,
    *,
    detector: str = "grounding-dino",
    options: Mapping[str, Any] | None = None,
    prompt: str | None = None,
    iou: float = 0.5,
    target_recall: float | None = None,
    min_recall: float = MIN_RECALL,
    batch_size: int = 4,
    on_progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Run a detector on the seed originals and store the best thresholds, unless they fail.

    Thresholds with F1 0, recall below ``min_recall`` or from fewer than
    :data:`MIN_SEED_BOXES` seed boxes are never adopted: the result then has
    ``adopted`` False and a one-line ``warning`` (the reason and what to do), and the
    workspace keeps its previous thresholds (or, without any, propose uses ``detect.*``).

    Args:
        ws: open workspace with located seed items.
        detector: registry name (``grounding-dino``, ``exemplar``).
        options: builder options (model, device, dtype...; for ``exemplar`` the located seed
            crops are used as exemplars when ``exemplars`` is not given).
        prompt: detector prompt, chosen by :func:`autolabel.steps.resolve_prompt`.
        iou: IoU for a true positive.
        target_recall: see :func:`choose_thresholds`.
        min_recall: lowest seed-box recall of adopted thresholds (``quality.min_recall``).
        batch_size: images per ``detect`` call.
        on_progress: ``(done, total)`` callback.

    Returns:
        The :func:`choose_thresholds` dict plus ``detector``, ``model``, ``model_version``,
        ``prompt``, ``adopted`` and ``warning`` (None when adopted); stored as workspace
        setting ``seed.thresholds`` only when adopted.

    Raises:
        InputError: no located seed boxes, or no prompt.
    """
    from autolabel.detect import build_detector
    from autolabel.imageio import load_rgb
    from autolabel.seed.bootstrap import seed_exemplars
    from autolabel.store.images import get_image

    by_image, prompt = calibration_inputs(ws, prompt)
    opts = dict(options or {})
    opts["box_threshold"] = SWEEP_BOX_THRESHOLD
    if detector != "exemplar":
        opts["text_threshold"] = SWEEP_TEXT_THRESHOLD
    ids = sorted(by_image)
    preds: list[Proposals] = []
    truths: list[np.ndarray] = []
    if detector == "exemplar" and "exemplars" not in opts:
        # Leave one out: on each seed original, the crops cut from it are not exemplars
        # (they would find themselves, which says nothing about new images).
        crops, phrases, origins = seed_exemplars(ws, prompt)
        arrays = [load_rgb(c) for c in crops]
        det = build_detector(detector, exemplars=arrays, phrases=phrases, **opts)
        for n, image_id in enumerate(ids, 1):
            keep = [k for k, origin in enumerate(origins) if origin != image_id]
            truths.append(np.array([b for b, _ in by_image[image_id]], np.float64))
            if not keep:
                preds.append(Proposals.empty())
            else:
                loo = build_detector(
                    detector,
                    exemplars=[arrays[k] for k in keep],
                    phrases=[phrases[k] for k in keep],
                    **opts,
                )
                image = load_rgb(get_image(ws, image_id).path)
                preds.extend(loo.detect([image], [prompt]))
            if on_progress is not None:
                on_progress(n, len(ids))
    else:
        det = build_detector(detector, **opts)
        for start in range(0, len(ids), max(1, batch_size)):
            chunk = ids[start : start + batch_size]
            images = [load_rgb(get_image(ws, i).path) for i in chunk]
            preds.extend(det.detect(images, [prompt] * len(images)))
            truths.extend(np.array([b for b, _ in by_image[i]], np.float64) for i in chunk)
            if on_progress is not None:
                on_progress(min(start + batch_size, len(ids)), len(ids))
    result = choose_thresholds(preds, truths, iou=iou, target_recall=target_recall)
    result.update(
        detector=detector,
        model=str(getattr(det, "model_id", "")),
        model_version=str(getattr(det, "model_version", "")),
        prompt=prompt,
    )
    problem = threshold_problem(result, min_recall=min_recall)
    result["adopted"] = problem is None
    result["warning"] = None
    if problem is None:
        ws.set_setting("seed.thresholds", result)
        return result
    previous = ws.get_setting("seed.thresholds") or {}
    kept = (
        f"keeping the earlier box_threshold {previous['box_threshold']}"
        if previous.get("box_threshold") is not None
        and previous.get("detector") in (None, detector)
        else "propose keeps the configured detect.box_threshold / text_threshold"
    )
    result["warning"] = (
        f"seed calibrate: box_threshold {result['box_threshold']} not adopted ({problem}); "
        f"{kept}. Check that the prompt {prompt!r} names what the crops show "
        "(autolabel seed prompts --prompt ...), try another detector or model, or add more "
        "seed crops with their originals"
    )
    return result
