"""``autolabel eval``: compare a workspace with ground truth.

Metrics (all category-agnostic: every box is "the object"):

- ``ap50`` / ``ap75`` / ``ap``: COCO AP at IoU 0.5, 0.75 and averaged over 0.5:0.95
  (pycocotools) of the current proposals, ranked by detector score;
- ``mean_iou_top``: mean IoU of each truth image's top-scoring box with its best-matching
  true box (0 for an image without proposals);
- ``auto`` / ``dataset``: precision and recall of the auto-accepted set (auto / audit route,
  no human decision) and of the whole dataset (auto-accepted + reviewed + seed boxes), boxes
  matched one-to-one at IoU >= the match IoU (``quality.match_iou``, default 0.9; a second
  box on an already matched object is wrong); the same at IoU 0.5 beside it (``*_50``);
- ``calibration``: reliability of ``p_correct`` (mean predicted vs observed, ECE);
- ``budget_curve``: final dataset precision (and recall) vs the fraction of images
  reviewed, for three review orders: this selector (images with the most expected errors,
  sum of 1 - p_correct, first), ``random`` (mean of 20 shuffles) and ``score`` (images
  with the lowest box score first). The simulation starts from every current proposal
  kept and a reviewer who fixes every box of an image they look at: a box matching a true
  box (IoU >= the match IoU) is accepted, one overlapping a true box (IoU > 0.1) is
  adjusted to it, the rest are rejected.

Truth files: COCO JSON (``images`` with ``file_name``, ``annotations`` with ``bbox`` as
``[x, y, w, h]``) or JSONL rows ``{"image": path, "boxes": [[x0, y0, x1, y1], ...]}``.
Relative paths are resolved against the truth file's folder; an image is matched to the
workspace by absolute path, else by a unique file name.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from autolabel.constants import MATCH_IOU
from autolabel.errors import InputError
from autolabel.geometry import box_iou

if TYPE_CHECKING:  # pragma: no cover
    from autolabel.store import Workspace

FRACTIONS = np.round(np.linspace(0.0, 1.0, 21), 4)
"""Fractions of images reviewed at which the budget curve is reported."""
RANDOM_REPEATS = 20


@dataclass
class Truth:
    """Ground truth matched to workspace images."""

    boxes: dict[int, np.ndarray]  # image id -> (k, 4) xyxy
    unmatched: list[str]  # truth images not found in the workspace


def _read_truth_rows(path: Path) -> list[tuple[str, np.ndarray]]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"{path}: cannot read truth file ({exc.strerror})") from None
    rows: list[tuple[str, np.ndarray]] = []
    try:
        coco = json.loads(text)
    except json.JSONDecodeError:
        coco = None  # not one JSON document: JSONL
    if isinstance(coco, dict) and ("images" in coco or "annotations" in coco):
        if not isinstance(coco.get("images"), list):
            raise InputError(f"{path}: expected a COCO 'images' list, got {coco.get('images')!r}")
        by_id: dict[Any, list[list[float]]] = {}
        for ann in coco.get("annotations", []):
            try:
                x, y, w, h = (float(v) for v in ann["bbox"])
                by_id.setdefault(ann["image_id"], []).append([x, y, x + w, y + h])
            except (KeyError, TypeError, ValueError):
                raise InputError(
                    f"{path}: annotation {ann.get('id')!r}: expected 'image_id' and 'bbox' "
                    f"[x, y, w, h], got {ann!r}"
                ) from None
        for img in coco["images"]:
            if "file_name" not in img or "id" not in img:
                raise InputError(f"{path}: COCO image needs 'id' and 'file_name', got {img!r}")
            boxes = np.array(by_id.get(img["id"], []), np.float64).reshape(-1, 4)
            rows.append((str(img["file_name"]), boxes))
        return rows
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            image = row["image"]
            boxes = np.array(row.get("boxes", []), np.float64).reshape(-1, 4)
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise InputError(
                f"{path}:{lineno}: expected a JSON row "
                f'{{"image": path, "boxes": [[x0, y0, x1, y1], ...]}}, got {line[:80]!r} ({exc})'
            ) from None
        if not isinstance(image, str):
            raise InputError(f"{path}:{lineno}: 'image' must be a path string, got {image!r}")
        rows.append((image, boxes))
    return rows


def load_truth(ws: Workspace, truth_path: str | Path) -> Truth:
    """Read a truth file and match its images to the workspace's images.

    Raises:
        InputError: unreadable / malformed file, or none of its images in the workspace.
    """
    from autolabel.store.select import all_images

    path = Path(truth_path)
    rows = _read_truth_rows(path)
    if not rows:
        raise InputError(f"{path}: expected at least one truth image, got none")
    images = all_images(ws)
    by_path = {p: i for i, p, _, _ in images}
    by_name: dict[str, list[int]] = {}
    for i, p, _, _ in images:
        by_name.setdefault(os.path.basename(p), []).append(i)
    boxes: dict[int, np.ndarray] = {}
    unmatched: list[str] = []
    for name, b in rows:
        full = Path(name) if os.path.isabs(name) else path.parent / name
        iid = by_path.get(str(full.resolve()))
        if iid is None:
            cands = by_name.get(os.path.basename(name), [])
            iid = cands[0] if len(cands) == 1 else None
        if iid is None:
            unmatched.append(name)
            continue
        boxes[iid] = np.concatenate([boxes[iid], b]) if iid in boxes else b
    if not boxes:
        raise InputError(
            f"{path}: none of its {len(rows)} images is in the workspace (matched by absolute "
            f"path, then by unique file name; e.g. {rows[0][0]!r})"
        )
    return Truth(boxes, unmatched)


def match_count(pred: np.ndarray, truth: np.ndarray, *, iou: float = 0.5) -> int:
    """Greedy one-to-one matches between ``(n, 4)`` predictions (in priority order) and
    ``(k, 4)`` true boxes at IoU >= ``iou``."""

    if pred.shape[0] == 0 or truth.shape[0] == 0:
        return 0
    m = box_iou(pred, truth)
    used = np.zeros(truth.shape[0], bool)
    hits = 0
    for i in range(pred.shape[0]):
        cand = np.where(used, -1.0, m[i])
        j = int(np.argmax(cand))
        if cand[j] >= iou:
            used[j] = True
            hits += 1
    return hits


def review_outcome(
    pred: np.ndarray, truth: np.ndarray, *, match_iou: float = MATCH_IOU
) -> tuple[int, int]:
    """Simulated review of one image: ``(correct boxes before, boxes kept after review)``.

    After review every kept box is correct: a match (IoU >= ``match_iou``) is accepted, a
    box overlapping a still-unmatched true box (IoU > 0.1) is adjusted onto it, the rest are
    rejected.
    """

    tp = match_count(pred, truth, iou=match_iou)
    if pred.shape[0] == 0 or truth.shape[0] == 0:
        return tp, 0
    m = box_iou(pred, truth)
    used = np.zeros(truth.shape[0], bool)
    kept = 0
    for thr in (match_iou, 0.1):
        for i in range(pred.shape[0]):
            if np.isnan(m[i]).all():
                continue
            cand = np.where(used, -1.0, m[i])
            j = int(np.argmax(cand))
            if cand[j] >= thr and cand[j] > 0:
                used[j] = True
                kept += 1
                m[i] = np.nan  # this box is settled
    return tp, kept


def budget_curve(
    n_boxes: np.ndarray,
    tp: np.ndarray,
    kept: np.ndarray,
    n_truth: np.ndarray,
    order: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Dataset precision and recall after reviewing the first ``k`` images of ``order``.

    Args:
        n_boxes, tp, kept, n_truth: ``(m,)`` per image: boxes kept without review, correct
            ones among them, boxes kept after review (all correct), true boxes.
        order: ``(m,)`` permutation, the review order.

    Returns:
        ``precision (m+1,)`` and ``recall (m+1,)`` for k = 0..m images reviewed (precision is
        1 when the dataset is empty).
    """
    nb, t, kp = (np.asarray(a, np.float64)[order] for a in (n_boxes, tp, kept))
    z = np.zeros(1)
    rev_kept = np.r_[z, np.cumsum(kp)]
    rev_n = np.r_[z, np.cumsum(nb)]
    rev_tp = np.r_[z, np.cumsum(t)]
    total_n, total_tp = nb.sum(), t.sum()
    good = (total_tp - rev_tp) + rev_kept
    size = (total_n - rev_n) + rev_kept
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(size > 0, good / size, 1.0)
    truth_total = max(float(np.sum(n_truth)), 1.0)
    recall = good / truth_total
    return precision, recall


def _at_fractions(curve: np.ndarray) -> list[float]:
    m = curve.shape[0] - 1
    return [round(float(curve[round(f * m)]), 5) for f in FRACTIONS]


@dataclass
class _PerImage:
    """Per truth image arrays (``m`` images) and per current proposal ``correct`` flags."""

    n_boxes: np.ndarray
    tp: np.ndarray
    kept: np.ndarray
    n_truth: np.ndarray
    exp_err: np.ndarray
    min_score: np.ndarray
    top_iou: np.ndarray
    correct: np.ndarray


def _per_image(
    image_ids: np.ndarray,
    truth: Truth,
    c_img: np.ndarray,
    c_xyxy: np.ndarray,
    c_score: np.ndarray,
    c_p: np.ndarray,
    match_iou: float,
) -> _PerImage:
    m = image_ids.size
    out = _PerImage(
        n_boxes=np.zeros(m),
        tp=np.zeros(m),
        kept=np.zeros(m),
        n_truth=np.array([truth.boxes[int(i)].shape[0] for i in image_ids], np.float64),
        exp_err=np.zeros(m),
        min_score=np.full(m, np.inf),
        top_iou=np.zeros(m),
        correct=np.zeros(c_img.size, bool),
    )
    pos = np.searchsorted(image_ids, c_img)
    order_in = np.argsort(pos, kind="stable")
    bounds = np.searchsorted(pos[order_in], np.arange(m + 1))
    for j in range(m):
        rows = order_in[bounds[j] : bounds[j + 1]]
        t = truth.boxes[int(image_ids[j])]
        if rows.size == 0:
            continue
        rows = rows[np.argsort(-c_score[rows], kind="stable")]
        pred = c_xyxy[rows]
        out.n_boxes[j] = rows.size
        out.tp[j], out.kept[j] = review_outcome(pred, t, match_iou=match_iou)
        p = np.where(np.isnan(c_p[rows]), c_score[rows], c_p[rows])
        out.exp_err[j] = float(np.sum(1.0 - p))
        out.min_score[j] = float(c_score[rows].min())
        if t.shape[0]:
            iou = box_iou(pred, t)
            out.top_iou[j] = float(iou[0].max())
            out.correct[rows] = iou.max(axis=1) >= match_iou
    return out


def _label_metrics(
    ws: Workspace, truth: Truth, image_ids: np.ndarray, match_iou: float
) -> dict[str, Any]:
    """Precision / recall of the auto-accepted labels and of the dataset (``accepted``:
    auto + reviewed + seed boxes) at the match IoU and at 0.5."""
    from autolabel.store.labels import iter_labels

    truth_total = float(sum(truth.boxes[int(i)].shape[0] for i in image_ids))
    img_set = set(image_ids.tolist())
    res: dict[str, Any] = {}
    for include, key in (("auto", "auto"), ("accepted", "dataset")):
        per: dict[int, list[tuple[float, ...]]] = {}
        for lab in iter_labels(ws, include=include):
            if lab.image_id in img_set:
                per.setdefault(lab.image_id, []).append(lab.box)
        n = sum(len(b) for b in per.values())
        res[f"n_{key}"] = n
        for thr, suffix in ((match_iou, ""), (0.5, "_50")):
            hits = sum(
                match_count(np.array(b, np.float64), truth.boxes[i], iou=thr)
                for i, b in per.items()
            )
            res[f"{key}_precision{suffix}"] = round(hits / n, 5) if n else None
            res[f"{key}_recall{suffix}"] = round(hits / truth_total, 5) if truth_total else None
    return res


def _budget_curves(pi: _PerImage, seed: int) -> tuple[dict[str, Any], list[np.ndarray]]:
    m = pi.n_boxes.size
    rng = np.random.default_rng(seed)
    tie = rng.random(m)
    sel_order = np.lexsort((tie, -pi.exp_err))
    score_order = np.lexsort((tie, pi.min_score))
    args = (pi.n_boxes, pi.tp, pi.kept, pi.n_truth)
    p_sel, r_sel = budget_curve(*args, sel_order)
    p_score, r_score = budget_curve(*args, score_order)
    p_rand = np.zeros(m + 1)
    r_rand = np.zeros(m + 1)
    for _ in range(RANDOM_REPEATS):
        a, b = budget_curve(*args, rng.permutation(m))
        p_rand += a / RANDOM_REPEATS
        r_rand += b / RANDOM_REPEATS
    res = {
        "budget_curve": {
            "fractions": FRACTIONS.tolist(),
            "selector": {"precision": _at_fractions(p_sel), "recall": _at_fractions(r_sel)},
            "random": {"precision": _at_fractions(p_rand), "recall": _at_fractions(r_rand)},
            "score": {"precision": _at_fractions(p_score), "recall": _at_fractions(r_score)},
        },
        "selector_auc": round(float(p_sel.mean()), 5),
        "random_auc": round(float(p_rand.mean()), 5),
        "score_auc": round(float(p_score.mean()), 5),
    }
    return res, [p_sel, p_rand, p_score]


def evaluate(
    ws: Workspace,
    truth_path: str | Path,
    out_dir: str | Path | None = None,
    *,
    seed: int = 0,
    match_iou: float = MATCH_IOU,
) -> dict[str, Any]:
    """Evaluate the workspace against ground truth; writes ``eval.json`` and PNG plots.

    Args:
        ws: the workspace.
        truth_path: COCO JSON or JSONL truth (see the module docstring).
        out_dir: output folder (default ``WORKSPACE/eval``).
        seed: seed of the random review orders.
        match_iou: IoU a box needs with a true box to be correct (``quality.match_iou``).

    Returns:
        The ``eval.json`` content: ``n_images``, ``n_truth_boxes``, ``n_proposals``,
        ``match_iou``, ``ap50``, ``ap75``, ``ap``, ``mean_iou_top``, ``proposal_precision`` /
        ``proposal_recall`` (every current proposal, at the match IoU),
        ``auto_precision``/``auto_recall``/``n_auto``, ``dataset_precision``/
        ``dataset_recall``/``n_dataset`` (at the match IoU; ``*_50`` at 0.5),
        ``calibration``, ``budget_curve`` (``fractions`` and per order
        ``precision``/``recall``), ``selector_auc``/``random_auc``/``score_auc`` (mean
        precision over the curve), ``budget_fraction`` (share of truth images with review
        items now), ``audit_estimate`` (:func:`autolabel.select.run.precision_estimate`),
        ``true_auto_precision`` / ``true_auto_n`` (the truth about the very set the estimate
        describes), ``plots``.
    """
    from autolabel.select.calibrate import reliability
    from autolabel.select.run import estimate_truth_rows, precision_estimate
    from autolabel.store.select import load_current, load_queue

    out = Path(out_dir) if out_dir is not None else ws.path / "eval"
    truth = load_truth(ws, truth_path)
    image_ids = np.array(sorted(truth.boxes), np.int64)
    cur = load_current(ws)
    sel = np.isin(cur.image_id, image_ids)
    c_ids, c_img, c_xyxy = cur.ids[sel], cur.image_id[sel], cur.xyxy[sel]
    c_score, c_p = cur.score[sel], cur.p_correct[sel]
    m = image_ids.size
    pi = _per_image(image_ids, truth, c_img, c_xyxy, c_score, c_p, match_iou)
    truth_total = float(pi.n_truth.sum())
    ap50, ap75, ap = _coco_ap(image_ids, truth.boxes, c_img, c_xyxy, c_score)
    n_hit = float(pi.tp.sum())
    res: dict[str, Any] = {
        "n_images": int(m),
        "n_truth_boxes": int(truth_total),
        "n_proposals": int(c_ids.size),
        "unmatched_truth_images": len(truth.unmatched),
        "match_iou": match_iou,
        "ap50": ap50,
        "ap75": ap75,
        "ap": ap,
        "proposal_precision": round(n_hit / c_ids.size, 5) if c_ids.size else None,
        "proposal_recall": round(n_hit / truth_total, 5) if truth_total else None,
        "mean_iou_top": round(float(pi.top_iou.mean()) if m else 0.0, 5),
    }
    res.update(_label_metrics(ws, truth, image_ids, match_iou))
    # the truth behind the tool's estimate: the same rows precision_estimate describes
    est = precision_estimate(ws)
    rows = estimate_truth_rows(ws, est, c_ids)
    res["true_auto_precision"] = round(float(pi.correct[rows].mean()), 5) if rows.any() else None
    res["true_auto_n"] = int(rows.sum())
    res["audit_estimate"] = est

    has_p = ~np.isnan(c_p)
    if has_p.any():
        rel = reliability(c_p[has_p], pi.correct[has_p])
        res["calibration"] = {
            "ece": round(rel.pop("ece")[0], 5),
            **{k: [round(v, 5) for v in vals] for k, vals in rel.items()},
        }
    else:
        res["calibration"] = None

    curves, (p_sel, p_rand, p_score) = _budget_curves(pi, seed)
    res.update(curves)
    q = load_queue(ws)
    queued = q.proposal_id[np.isin(q.reason, ["uncertain", "missing"]) & (q.status != "withdrawn")]
    q_imgs = np.unique(c_img[np.isin(c_ids, queued)])
    res["budget_fraction"] = round(q_imgs.size / m, 5) if m else 0.0

    out.mkdir(parents=True, exist_ok=True)
    res["plots"] = _plots(out, res, p_sel, p_rand, p_score)
    (out / "eval.json").write_text(json.dumps(res, indent=2, sort_keys=True), encoding="utf-8")
    return res


def _coco_ap(
    image_ids: np.ndarray,
    truth: dict[int, np.ndarray],
    det_img: np.ndarray,
    det_xyxy: np.ndarray,
    det_score: np.ndarray,
) -> tuple[float, float, float]:
    """COCO AP50, AP75 and AP (0.5:0.95) with pycocotools (one category, 100 boxes per
    image)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    anns = []
    for iid in image_ids.tolist():
        for b in truth[iid]:
            w, h = float(b[2] - b[0]), float(b[3] - b[1])
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": iid,
                    "category_id": 1,
                    "bbox": [float(b[0]), float(b[1]), w, h],
                    "area": w * h,
                    "iscrowd": 0,
                }
            )
    if not anns or det_img.size == 0:
        return 0.0, 0.0, 0.0
    gt = COCO()
    gt.dataset = {
        "images": [{"id": i} for i in image_ids.tolist()],
        "annotations": anns,
        "categories": [{"id": 1, "name": "object"}],
    }
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
        dets = np.column_stack(
            [
                det_img.astype(np.float64),
                det_xyxy[:, 0],
                det_xyxy[:, 1],
                det_xyxy[:, 2] - det_xyxy[:, 0],
                det_xyxy[:, 3] - det_xyxy[:, 1],
                det_score,
                np.ones(det_img.size),
            ]
        )
        dt = gt.loadRes(dets)
        ev = COCOeval(gt, dt, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return tuple(round(max(float(ev.stats[k]), 0.0), 5) for k in (1, 2, 0))  # type: ignore[return-value]


def _plots(
    out: Path, res: dict[str, Any], p_sel: np.ndarray, p_rand: np.ndarray, p_score: np.ndarray
) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = []
    m = p_sel.shape[0] - 1
    x = np.arange(m + 1) / max(m, 1)
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    ax.plot(x, p_sel, label="selector (expected errors)")
    ax.plot(x, p_score, label="score order", linestyle="--")
    ax.plot(x, p_rand, label=f"random order (mean of {RANDOM_REPEATS})", linestyle=":")
    if res.get("budget_fraction"):
        ax.axvline(res["budget_fraction"], color="grey", lw=0.8, label="current budget")
    ax.set_xlabel("fraction of images reviewed")
    ax.set_ylabel("final dataset precision")
    ax.set_title("Budget curve")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(out / "budget_curve.png")
    plt.close(fig)
    files.append("budget_curve.png")
    cal = res.get("calibration")
    if cal:
        fig, ax = plt.subplots(figsize=(4.5, 4.5), dpi=100)
        ax.plot([0, 1], [0, 1], color="grey", lw=0.8)
        ax.plot(cal["p_mean"], cal["accuracy"], marker="o")
        ax.set_xlabel("predicted P(correct)")
        ax.set_ylabel("observed fraction correct")
        ax.set_title(f"Calibration (ECE {cal['ece']:.3f})")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(out / "calibration.png")
        plt.close(fig)
        files.append("calibration.png")
    return files
