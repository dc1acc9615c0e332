"""Validation metrics for fine-tuning: AP at an IoU threshold and an F1-best score threshold.

Pure numpy. A prediction is ``(xyxy (n, 4), score (n,), cls (n,) int)``; a ground truth is
``(xyxy (m, 4), cls (m,) int)``; scores are "higher = more likely correct".
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from autolabel.geometry import box_iou

Pred = tuple[np.ndarray, np.ndarray, np.ndarray]
Truth = tuple[np.ndarray, np.ndarray]


def match_predictions(
    preds: Sequence[Pred], truths: Sequence[Truth], *, iou: float = 0.5
) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[int, int]]:
    """Greedy matching per image and class, highest score first (VOC/COCO style).

    Returns:
        ``scores (N,)``, ``is_tp (N,) bool``, ``cls (N,)`` over all predictions, and the
        number of ground-truth boxes per class.
    """
    if len(preds) != len(truths):
        raise ValueError(f"expected one prediction per image ({len(truths)}), got {len(preds)}")
    all_scores: list[np.ndarray] = []
    all_tp: list[np.ndarray] = []
    all_cls: list[np.ndarray] = []
    n_gt: dict[int, int] = {}
    for (pbox, pscore, pcls), (gbox, gcls) in zip(preds, truths, strict=True):
        pbox = np.asarray(pbox, np.float32).reshape(-1, 4)
        pscore = np.asarray(pscore, np.float32).reshape(-1)
        pcls = np.asarray(pcls, np.int64).reshape(-1)
        gbox = np.asarray(gbox, np.float32).reshape(-1, 4)
        gcls = np.asarray(gcls, np.int64).reshape(-1)
        for c in gcls.tolist():
            n_gt[c] = n_gt.get(c, 0) + 1
        tp = np.zeros(len(pbox), bool)
        if len(pbox) and len(gbox):
            ious = box_iou(pbox, gbox)
            ious[pcls[:, None] != gcls[None, :]] = 0.0
            used = np.zeros(len(gbox), bool)
            for i in np.argsort(-pscore, kind="stable"):
                cand = np.where(~used, ious[i], -1.0)
                j = int(np.argmax(cand))
                if cand[j] >= iou:
                    used[j] = True
                    tp[i] = True
        all_scores.append(pscore)
        all_tp.append(tp)
        all_cls.append(pcls)
    cat = np.concatenate
    if not all_scores:
        return np.zeros(0, np.float32), np.zeros(0, bool), np.zeros(0, np.int64), n_gt
    return cat(all_scores), cat(all_tp), cat(all_cls), n_gt


def _ap_from(scores: np.ndarray, tp: np.ndarray, n_gt: int) -> float:
    if n_gt == 0:
        return float("nan")
    if len(scores) == 0:
        return 0.0
    order = np.argsort(-scores, kind="stable")
    tp = tp[order].astype(np.float64)
    ctp = np.cumsum(tp)
    cfp = np.cumsum(1.0 - tp)
    recall = ctp / n_gt
    precision = ctp / np.maximum(ctp + cfp, 1e-12)
    # all-point interpolation: area under the monotone precision envelope
    mrec = np.concatenate([[0.0], recall, [1.0]])
    mpre = np.concatenate([[1.0], precision, [0.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    idx = np.where(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[idx + 1] - mrec[idx]) * mpre[idx + 1]))


def average_precision(preds: Sequence[Pred], truths: Sequence[Truth], *, iou: float = 0.5) -> float:
    """Mean over classes (that have ground truth) of the all-point interpolated AP.

    Returns 0.0 when there is no ground truth at all and no prediction, NaN-free.
    """
    scores, tp, cls, n_gt = match_predictions(preds, truths, iou=iou)
    aps = [_ap_from(scores[cls == c], tp[cls == c], n) for c, n in sorted(n_gt.items())]
    return float(np.mean(aps)) if aps else 0.0


def best_f1_threshold(
    preds: Sequence[Pred], truths: Sequence[Truth], *, iou: float = 0.5
) -> tuple[float, float]:
    """The score threshold that maximises F1 on a validation set (all classes pooled).

    Returns:
        ``(threshold, f1)``: keep predictions with ``score >= threshold``. With no true
        positive at all, ``(1.0, 0.0)``.
    """
    scores, tp, _, n_gt = match_predictions(preds, truths, iou=iou)
    total = sum(n_gt.values())
    if total == 0 or not tp.any():
        return 1.0, 0.0
    order = np.argsort(-scores, kind="stable")
    s, t = scores[order], tp[order].astype(np.float64)
    ctp = np.cumsum(t)
    f1 = 2 * ctp / (np.arange(1, len(t) + 1) + total)
    # only cut between distinct scores
    last_of_run = np.r_[s[1:] != s[:-1], True]
    f1 = np.where(last_of_run, f1, -1)
    k = int(np.argmax(f1))
    return float(s[k]), float(f1[k])
