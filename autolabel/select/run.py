"""``autolabel select``: signals -> calibrated P(correct) -> routes, queue and audit sample.

The one module of the select stage that talks to the store; the others are pure. Reads
everything from the workspace, so it can be re-run after every review round: it
refits the calibration on the decisions made so far and re-routes every proposal that no
person has decided or claimed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from autolabel import constants as C
from autolabel.geometry import box_iou
from autolabel.select.calibrate import Calibrator, feature_matrix, fit_calibrator
from autolabel.select.dedupe import learned_max_per_image, one_crop_per_object
from autolabel.select.layout import fit_layout, layout_signals, suspicious_upscale
from autolabel.select.route import auto_accept_mask, parse_budget, plan_routes, review_value
from autolabel.select.signals import (
    EMBED_DIM,
    exemplar_similarity,
    group_codes,
    group_competition,
    size_aspect_outliers,
)
from autolabel.select.stats import compact_estimate, estimate_from_outcomes

if TYPE_CHECKING:  # pragma: no cover
    from autolabel.config import SelectConfig
    from autolabel.store import Workspace
    from autolabel.store.select import CurrentProposals, Decisions

Log = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


def _preload_sklearn() -> None:
    try:
        import sklearn.linear_model
        import sklearn.pipeline
        import sklearn.preprocessing  # noqa: F401
    except ImportError:  # pragma: no cover - reported where it is used
        pass


def computed_signals(
    cur: CurrentProposals,
    seed: dict[str, np.ndarray] | None = None,
    *,
    export_size: int | None = None,
) -> dict[str, np.ndarray]:
    """Detector signals plus the ones computed across boxes: margin, n_competing, outliers,
    layout (``layout_outlier``, ``upscale``: :mod:`autolabel.select.layout`).

    A detector's own ``n_competing`` wins where present; ``margin`` is computed per
    (image, phrase) group; size / aspect outliers need >= 3 located seed boxes.
    """
    sig = dict(cur.signals)
    n = len(cur)
    if n:
        groups = group_codes(cur.image_id, cur.phrase_code)
        margin, comp = group_competition(cur.score, groups)
        sig["margin"] = margin
        det = sig.get("n_competing")
        sig["n_competing"] = comp if det is None else np.where(np.isnan(det), comp, det)
    if seed is not None and seed["xyxy"].shape[0] and n:
        wh = np.stack([cur.width, cur.height], axis=1)
        size_z, aspect_z = size_aspect_outliers(cur.xyxy, wh, seed["xyxy"], seed["wh"])
        sig["size_outlier"] = size_z
        sig["aspect_outlier"] = aspect_z
    if n:
        wh = np.stack([cur.width, cur.height], axis=1).astype(np.float64)
        prior = (
            None if seed is None else fit_layout(seed["xyxy"], seed["wh"], export_size=export_size)
        )
        sig.update(layout_signals(cur.xyxy, wh, prior, export_size=export_size))
    return sig


def labelled_examples(
    cur: CurrentProposals,
    decisions: Decisions,
    seed: dict[str, np.ndarray],
) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """Rows of ``cur`` with a known outcome and that outcome (1 = correct).

    - Review decisions: accept = correct; adjust to a box with IoU >= 0.5 = correct;
      adjust with IoU < 0.5 or reject = wrong.
    - Seed originals: every undecided current proposal on an image with located seed boxes
      is correct iff its IoU with one of them is >= 0.5.

    Returns:
        ``(idx (m,), y (m,), {"decisions": ..., "seed": ...})``.
    """
    from autolabel.store.select import decision_correct

    idx_parts: list[np.ndarray] = []
    y_parts: list[np.ndarray] = []
    pos = np.searchsorted(cur.ids, decisions.proposal_id)
    pos = np.clip(pos, 0, max(len(cur) - 1, 0))
    in_cur = (cur.ids[pos] == decisions.proposal_id) if len(cur) else np.zeros(0, bool)
    d_idx = pos[in_cur]
    d_y = np.array(
        [
            decision_correct(a, tuple(pb), tuple(b))
            for a, pb, b in zip(
                decisions.action[in_cur],
                decisions.proposal_box[in_cur],
                decisions.box[in_cur],
                strict=True,
            )
        ],
        dtype=np.int64,
    )
    idx_parts.append(d_idx)
    y_parts.append(d_y)
    n_seed = 0
    if seed["image_id"].size and len(cur):
        decided = np.zeros(len(cur), bool)
        decided[d_idx] = True
        on_seed = np.flatnonzero(np.isin(cur.image_id, seed["image_id"]) & ~decided)
        if on_seed.size:
            ys = np.zeros(on_seed.size, np.int64)
            for img in np.unique(cur.image_id[on_seed]):
                rows = on_seed[cur.image_id[on_seed] == img]
                boxes = seed["xyxy"][seed["image_id"] == img]
                iou = box_iou(cur.xyxy[rows], boxes).max(axis=1)
                ys[np.searchsorted(on_seed, rows)] = (iou >= 0.5).astype(np.int64)
            idx_parts.append(on_seed)
            y_parts.append(ys)
            n_seed = int(on_seed.size)
    idx = np.concatenate(idx_parts) if idx_parts else np.zeros(0, np.int64)
    y = np.concatenate(y_parts) if y_parts else np.zeros(0, np.int64)
    return idx, y, {"decisions": int(d_idx.size), "seed": n_seed}


def _exemplar_sim(
    ws: Workspace, cur: CurrentProposals, cfg: SelectConfig, log: Log
) -> np.ndarray | None:
    from autolabel.errors import ImageError
    from autolabel.imageio import load_rgb
    from autolabel.select.diversity import EmbeddingCache
    from autolabel.select.signals import crop_embedding, image_embedding
    from autolabel.store.select import image_paths, seed_crop_paths

    if not cfg.exemplar_similarity or not len(cur):
        return None
    crops = seed_crop_paths(ws)
    if not crops:
        return None
    images = np.unique(cur.image_id)
    if images.size > cfg.max_image_loads:
        log(
            f"exemplar similarity skipped: {images.size} images > select.max_image_loads "
            f"({cfg.max_image_loads})"
        )
        return None
    seed_rows = []
    for path in crops:
        try:
            seed_rows.append(image_embedding(load_rgb(path)))
        except ImageError:
            continue
    if not seed_rows:
        return None
    cache = EmbeddingCache(ws.path / "cache" / "crop_embeddings.npz")
    emb, found = cache.lookup(cur.ids, EMBED_DIM)
    todo = np.flatnonzero(~found)
    if todo.size:
        paths = image_paths(ws, np.unique(cur.image_id[todo]).tolist())
        log(f"exemplar similarity: embedding boxes of {len(paths)} images (cached afterwards)")
        for img in np.unique(cur.image_id[todo]):
            rows = todo[cur.image_id[todo] == img]
            try:
                pixels = load_rgb(paths[int(img)])
            except (ImageError, KeyError):
                continue
            emb[rows] = crop_embedding(pixels, cur.xyxy[rows])
            cache.put(cur.ids[rows], emb[rows])
        cache.save()
    sim = np.full(len(cur), np.nan)
    ok = ~np.isnan(emb).any(axis=1)
    sim[ok] = exemplar_similarity(emb[ok], np.stack(seed_rows))
    return sim


def _clusters(
    ws: Workspace,
    cur: CurrentProposals,
    rows: np.ndarray,
    p: np.ndarray,
    cfg: SelectConfig,
    budget: int | None,
    log: Log,
) -> np.ndarray:
    """Cluster label per routable row (images beyond the embedding cap are singletons)."""
    from autolabel.select.diversity import EmbeddingCache, cluster_images, embed_image_file
    from autolabel.store.select import image_paths

    img = cur.image_id[rows]
    labels = np.int64(1 << 40) + img  # singleton per image by default
    auto = auto_accept_mask(p, cfg.target_precision, floor=max(0.5, cfg.reject_below))
    cand = np.flatnonzero(~auto & (p >= cfg.reject_below / 2.0))
    if cand.size == 0:
        return labels
    cap = cfg.max_image_loads if budget is None else min(cfg.max_image_loads, 4 * budget + 64)
    order = cand[np.argsort(-review_value(p[cand]), kind="stable")]
    _, first = np.unique(img[order], return_index=True)
    chosen = img[order][np.sort(first)][:cap]
    if chosen.size < 2:
        return labels
    cache = EmbeddingCache(ws.path / "cache" / "image_embeddings.npz")
    emb, found = cache.lookup(chosen, EMBED_DIM)
    todo = np.flatnonzero(~found)
    if todo.size:
        paths = image_paths(ws, chosen[todo].tolist())
        new = []
        for j in todo:
            vec = embed_image_file(paths.get(int(chosen[j]), ""))
            if vec is not None:
                emb[j] = vec
                new.append(j)
        cache.put(chosen[new], emb[new])
        cache.save()
        if len(new) < todo.size:
            log(f"diversity: {todo.size - len(new)} images could not be read (no embedding)")
    k = int(min(256, max(2, round(2 * np.sqrt(chosen.size)))))
    lab = cluster_images(emb, k=k)
    pos = np.searchsorted(np.sort(chosen), img)
    srt = np.argsort(chosen)
    pos = np.clip(pos, 0, chosen.size - 1)
    hit = chosen[srt][pos] == img
    labels[hit] = lab[srt][pos[hit]]
    return labels


def _one_crop(
    ws: Workspace,
    cur: CurrentProposals,
    p: np.ndarray,
    decisions: Decisions,
    seed: dict[str, np.ndarray],
    cfg: SelectConfig,
    log: Log,
) -> tuple[np.ndarray, dict[str, Any]]:
    """P(correct) 0 for duplicates / smaller copies / boxes over ``max_per_image``."""
    from autolabel.errors import ImageError
    from autolabel.imageio import load_rgb
    from autolabel.store.select import image_paths

    accepted = decisions.proposal_id[np.isin(decisions.action, C.ACCEPTING_ACTIONS)]
    rejected = decisions.proposal_id[decisions.action == C.ACTION_REJECT]
    paths = image_paths(ws, np.unique(cur.image_id).tolist()) if len(cur) else {}

    def load(image_id: int) -> np.ndarray | None:
        try:
            return load_rgb(paths[image_id])
        except (ImageError, KeyError):
            return None

    limit = cfg.max_per_image or learned_max_per_image(seed["image_id"])
    drop, stats = one_crop_per_object(
        cur.xyxy, cur.image_id, cur.phrase_code, p,
        accepted=np.isin(cur.ids, accepted), ignore=np.isin(cur.ids, rejected), load=load,
        seed_xyxy=seed["xyxy"], seed_image_id=seed["image_id"], min_p=cfg.reject_below,
        max_per_image=limit, max_loads=cfg.max_image_loads,
    )  # fmt: skip
    log(f"one crop per object: {stats} (max_per_image {limit})")
    return np.where(drop, 0.0, p), {**stats, "max_per_image": limit}


def run_select(
    ws: Workspace, cfg: SelectConfig, *, log: Log = _quiet, export_size: int | None = None
) -> dict[str, Any]:
    """Calibrate, route and (re)fill the review queue; returns a summary dict.

    Args:
        ws: the workspace.
        cfg: the ``select`` config section (the caller applies its flags).
        log: receives human-readable progress lines.
        export_size: long side of exported crops (``export.size``), for the ``upscale``
            signal; a box upscaled > 1.5x beyond the seed's is never auto-accepted.

    Returns:
        ``{"n_proposals", "n_routable", "n_fixed", "routes": {...}, "queue": {...},
        "calibration": {...}, "expected_precision", "budget", "seconds"}``; also stored as
        the workspace setting ``select.last``.
    """
    from autolabel.store.select import (
        apply_routes,
        fixed_proposal_ids,
        load_current,
        load_decisions,
        load_queue,
        load_seed_boxes,
    )

    t0 = time.perf_counter()
    # scikit-learn takes seconds to import; do it while SQLite reads (which frees the GIL)
    threading.Thread(target=_preload_sklearn, daemon=True).start()
    cur = load_current(ws)
    n = len(cur)
    log(f"loaded {n} current proposals in {time.perf_counter() - t0:.1f}s")
    seed = load_seed_boxes(ws)
    decisions = load_decisions(ws)
    sig = computed_signals(cur, seed, export_size=export_size)
    sim = _exemplar_sim(ws, cur, cfg, log)
    if sim is not None:
        sig["exemplar_sim"] = sim
    X = feature_matrix(cur.score, sig)

    idx, y, sources = labelled_examples(cur, decisions, seed)
    cal: Calibrator = fit_calibrator(X[idx], y, method=cfg.method)
    if not cal.fitted:
        log(f"calibration: {cal.reason}")
    else:
        log(
            f"calibration: {cal.method} on {cal.n_examples} labelled boxes "
            f"({sources['seed']} from seed originals, {sources['decisions']} from reviews)"
        )
    p = np.round(cal.predict(X), 6)  # stored precision; unchanged rows are not rewritten
    if len(cur):  # issue 19 cause 5: a thumbnail upscaled to the export size goes to a person
        p = np.where(suspicious_upscale(sig["upscale"]), np.minimum(p, 0.5), p)
        p, one_crop = _one_crop(ws, cur, p, decisions, seed, cfg, log)

    fixed = np.isin(cur.ids, fixed_proposal_ids(ws.conn))
    rows = np.flatnonzero(~fixed)
    budget = parse_budget(cfg.budget, rows.size)
    queue = load_queue(ws)
    is_audit = queue.reason == C.QUEUE_REASON_AUDIT
    open_audit_ids = queue.proposal_id[is_audit & (queue.status == C.QUEUE_OPEN)]
    done_audit = int((is_audit & np.isin(queue.status, [C.QUEUE_CLAIMED, C.QUEUE_DONE])).sum())
    keep_audit = np.isin(cur.ids[rows], open_audit_ids)
    # images that already have a human-accepted box need no "missing" item
    accepted_ids = decisions.proposal_id[np.isin(decisions.action, C.ACCEPTING_ACTIONS)]
    labelled_images = np.unique(cur.image_id[np.isin(cur.ids, accepted_ids)])
    has_label = np.isin(cur.image_id[rows], labelled_images)

    decay = 1.0 - cfg.diversity
    cluster = None
    if decay < 1.0 and rows.size:
        cluster = _clusters(ws, cur, rows, p[rows], cfg, budget, log)
    plan = plan_routes(
        p[rows],
        cur.image_id[rows],
        target_precision=cfg.target_precision,
        budget=budget,
        audit_rate=cfg.audit_rate,
        reject_below=cfg.reject_below,
        rng=np.random.default_rng(cfg.seed),
        cluster=cluster,
        decay=decay,
        keep_audit=keep_audit,
        audit_done=done_audit,
        image_has_label=has_label,
    )
    fixed_rows = np.flatnonzero(fixed)
    unchanged = (cur.route[rows] == plan.route) & (cur.p_correct[rows] == p[rows])
    rescored = fixed_rows[cur.p_correct[fixed_rows] != p[fixed_rows]]
    written = apply_routes(
        ws,
        ids=cur.ids[rows],
        image_id=cur.image_id[rows],
        p_correct=p[rows],
        route=plan.route,
        reason=plan.reason,
        priority=plan.priority,
        score_only_ids=cur.ids[rescored],
        score_only_p=p[rescored],
        current_ids=cur.ids,
        unchanged=unchanged,
    )
    counts = plan.counts()
    summary: dict[str, Any] = {
        "n_proposals": n,
        "n_routable": int(rows.size),
        "n_fixed": int(fixed_rows.size),
        "routes": {k: counts[k] for k in ("auto", "audit", "review", "pending", "rejected")},
        "queue": {
            "uncertain": counts["queue_uncertain"],
            "missing": counts["queue_missing"],
            "audit": counts["queue_audit"],
            **written,
        },
        "calibration": {**cal.describe(), "sources": sources},
        "one_crop": one_crop if len(cur) else {},
        "expected_precision": plan.expected_precision,
        "auto_cutoff": plan.auto_cutoff,
        "budget": budget,
        "target_precision": cfg.target_precision,
        "seconds": round(time.perf_counter() - t0, 3),
    }
    ws.set_setting("select.last", summary)
    return summary


def precision_estimate(ws: Workspace) -> dict[str, Any]:
    """Estimated precision of the auto-accepted set, from the audit sample's outcomes.

    An audited box counts as correct when the reviewer accepted it or adjusted it by a little
    (IoU >= 0.5 with the adjusted box); a reject or a large adjustment counts as wrong. Only
    audited boxes the last ``select`` would still auto-accept (``p_correct`` >= its cutoff)
    count, so audits from earlier rounds describe the current auto-accepted set.

    Returns:
        See :func:`autolabel.select.stats.estimate_from_outcomes`.
    """
    from autolabel.store.select import audit_outcomes

    last = ws.get_setting("select.last", {}) or {}
    return estimate_from_outcomes(audit_outcomes(ws, min_p=last.get("auto_cutoff")), last)


def status_summary(ws: Workspace) -> dict[str, Any]:
    """The ``auto_precision`` entry of ``autolabel status`` (see
    :func:`autolabel.select.stats.compact_estimate`)."""
    return compact_estimate(precision_estimate(ws))
