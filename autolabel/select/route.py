"""Routing policy: auto-accept, review queue (uncertain / missing), audit sample, reject.

Pure functions over arrays of calibrated P(correct); the store layer applies the plan.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from autolabel import constants as C
from autolabel.errors import InputError, ShapeError
from autolabel.select.diversity import diverse_priority

AUTO_FLOOR = 0.5
"""A box more likely wrong than right is never auto-accepted, whatever the target."""
MISSING_VALUE = 0.5
"""Review value of a "possible missing object" item (an image with nothing kept)."""


def parse_budget(budget: str | int | float | None, n: int) -> int | None:
    """Turn ``--budget`` into a count of review items (an item is an image).

    Args:
        budget: None / "" (no cap), a count (``500`` or ``"500"``) or a share of the ``n``
            images with routable proposals (``"10%"``).
        n: number of images with routable proposals.

    Returns:
        The cap, or None for no cap.
    """
    if budget is None or (isinstance(budget, str) and not budget.strip()):
        return None
    text = str(budget).strip()
    try:
        if text.endswith("%"):
            pct = float(text[:-1])
            if not 0 <= pct <= 100:
                raise ValueError
            return math.ceil(pct / 100.0 * n)
        value = float(text)
        if value < 0 or value != int(value):
            raise ValueError
        return int(value)
    except ValueError:
        raise InputError(
            f"budget: expected a whole number of items (e.g. 500) or a percentage "
            f"(e.g. 10%), got {budget!r}"
        ) from None


def auto_accept_mask(p: np.ndarray, target: float, *, floor: float = AUTO_FLOOR) -> np.ndarray:
    """The largest set of boxes whose expected precision (mean P(correct)) is >= ``target``.

    Taking boxes in decreasing P(correct) maximises the set size for any target, because
    the running mean only falls. Boxes below ``floor`` are never included.

    Args:
        p: ``(n,)`` calibrated P(correct).
        target: required expected precision in (0, 1].

    Returns:
        ``(n,)`` bool mask of auto-accepted boxes.
    """
    p = np.asarray(p, np.float64).reshape(-1)
    if not 0 < target <= 1:
        raise InputError(f"target precision: expected a value in (0, 1], got {target}")
    mask = np.zeros(p.shape[0], bool)
    cand = np.flatnonzero(p >= floor)
    if cand.size == 0:
        return mask
    order = cand[np.argsort(-p[cand], kind="stable")]
    running = np.cumsum(p[order]) / np.arange(1, order.size + 1)
    ok = np.flatnonzero(running >= target - 1e-12)
    if ok.size:
        mask[order[: ok[-1] + 1]] = True
    return mask


def review_value(p: np.ndarray) -> np.ndarray:
    """Informativeness of reviewing a box: ``1 - |2p - 1|`` (1 at p = 0.5, 0 at 0 or 1)."""
    p = np.asarray(p, np.float64)
    return 1.0 - np.abs(2.0 * p - 1.0)


@dataclass
class RoutePlan:
    """The outcome of :func:`plan_routes` for ``n`` routable proposals.

    Attributes:
        route: ``(n,)`` object array of route names (:data:`autolabel.constants.ROUTES`).
        reason: ``(n,)`` object array: queue reason (uncertain / missing / audit) or "".
        priority: ``(n,)`` queue priority (higher = reviewed first), 0 when not queued.
        expected_precision: mean P(correct) of the auto-accepted set (None when empty).
        auto_cutoff: lowest P(correct) in the auto-accepted set (None when empty).
        groups: per group code (detector version): ``{"auto", "expected_precision",
            "auto_cutoff", "new_auto", "audit_fresh", "audit_topup", "audit_kept",
            "audit_done"}``.
    """

    route: np.ndarray
    reason: np.ndarray
    priority: np.ndarray
    expected_precision: float | None
    auto_cutoff: float | None = None
    groups: dict[int, dict[str, Any]] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        out = {r: int((self.route == r).sum()) for r in C.ROUTES}
        for reason in ("uncertain", "missing", "audit"):
            out[f"queue_{reason}"] = int((self.reason == reason).sum())
        return out


def _auto_by_group(
    p: np.ndarray, group: np.ndarray, can_auto: np.ndarray, target: float, floor: float
) -> np.ndarray:
    """Auto-accept mask: :func:`auto_accept_mask` within each group, only where allowed."""
    auto = np.zeros(p.shape[0], bool)
    for g in np.unique(group):
        rows = np.flatnonzero((group == g) & can_auto)
        if rows.size:
            auto[rows] = auto_accept_mask(p[rows], target, floor=floor)
    return auto


def _missing_items(
    p: np.ndarray, img: np.ndarray, kept: np.ndarray, rejected: np.ndarray, reject_below: float
) -> np.ndarray:
    """One "possible missing object" row per image where nothing is kept (its best rejected
    box, when that has P(correct) >= ``reject_below / 2``)."""
    n = p.shape[0]
    img_kept = np.bincount(img, weights=kept.astype(float), minlength=img.max() + 1) > 0
    cand = rejected & ~img_kept[img] & (p >= reject_below / 2.0)
    missing = np.zeros(n, bool)
    if cand.any():
        ci = np.flatnonzero(cand)
        order = ci[np.lexsort((-p[ci], img[ci]))]
        first = np.r_[True, img[order][1:] != img[order][:-1]]
        missing[order[first]] = True
    return missing


def _audit_sample(
    auto: np.ndarray,
    p: np.ndarray,
    group: np.ndarray,
    *,
    audit_rate: float,
    min_audit: int,
    keep: np.ndarray,
    was_auto: np.ndarray,
    done_p: Mapping[int, np.ndarray],
    rng: np.random.Generator,
    groups: dict[int, dict[str, Any]],
) -> np.ndarray:
    """Audit rows per group: the open audit items kept, a fresh ``audit_rate`` sample of the
    newly auto-accepted rows, then a top-up so the group's current auto-accepted set has at
    least ``min_audit`` audit items (decided ones still in the set count)."""
    audit = keep & auto
    for g, info in groups.items():
        a = auto & (group == g)
        if not a.any():
            continue
        cutoff = info["auto_cutoff"]
        done = int((np.asarray(done_p.get(g, []), np.float64) >= cutoff - 1e-9).sum())
        new_rows = np.flatnonzero(a & ~was_auto & ~audit)
        fresh = min(new_rows.size, math.ceil(audit_rate * new_rows.size)) if audit_rate else 0
        if fresh:
            audit[rng.choice(new_rows, size=fresh, replace=False)] = True
        have = int((audit & a).sum()) + done
        need = max(0, min(min_audit, int(a.sum()) + done) - have)
        pool = np.flatnonzero(a & ~audit)
        topup = min(need, pool.size)
        if topup:
            audit[rng.choice(pool, size=topup, replace=False)] = True
        info.update(
            new_auto=int(new_rows.size),
            audit_fresh=fresh,
            audit_topup=topup,
            audit_kept=int((keep & a).sum()),
            audit_done=done,
        )
    return audit


def _image_items(
    p: np.ndarray,
    img: np.ndarray,
    uncertain: np.ndarray,
    missing: np.ndarray,
    blocked_img: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """One review item per image: ``(rows (k,), value (k,))``.

    The item's row is the image's uncertain box most likely correct (shown first; the page
    shows every current box of the image as a candidate), else its missing row; its value
    is the largest :func:`review_value` of the image's uncertain boxes (or
    :data:`MISSING_VALUE`). Images in ``blocked_img`` (an audit item or a claimed item
    already shows them) get none.
    """
    cand = (uncertain | missing) & ~blocked_img[img]
    ci = np.flatnonzero(cand)
    if ci.size == 0:
        return ci, np.zeros(0)
    value = np.where(missing[ci], MISSING_VALUE, review_value(p[ci]))
    # per image: uncertain before missing, then highest p first
    order = np.lexsort((-p[ci], missing[ci], img[ci]))
    ci_o, v_o = ci[order], value[order]
    start = np.r_[True, img[ci_o][1:] != img[ci_o][:-1]]
    starts = np.flatnonzero(start)
    best_value = np.maximum.reduceat(v_o, starts)
    return ci_o[starts], best_value


def _blocked_images(
    img: np.ndarray, audit: np.ndarray, busy: np.ndarray, auto: np.ndarray, full: int | None
) -> np.ndarray:
    """``(images,)`` bool: no review item for an image with an audit item, a claimed or
    decided item, or ``full`` auto-accepted boxes (a box a reviewer moved onto the object
    would duplicate an auto-accepted one)."""
    blocked = np.zeros(img.max() + 1, bool)
    blocked[img[audit]] = True
    blocked[img[busy]] = True
    if full is not None:
        blocked |= np.bincount(img[auto], minlength=blocked.size) >= full
    return blocked


def _image_index(image_id: np.ndarray) -> np.ndarray:
    """``(n,)`` int64 index of each row's image, in image-id order, below ~``4 n``: the ids
    less the smallest when they are that dense (workspace ids are; no sort of every row),
    else their rank."""
    ids = np.asarray(image_id).reshape(-1)
    lo, hi = int(ids.min()), int(ids.max())
    if np.issubdtype(ids.dtype, np.integer) and hi - lo <= 4 * ids.size + 1024:
        return np.subtract(ids, lo, dtype=np.int64)
    return np.unique(ids, return_inverse=True)[1].reshape(-1).astype(np.int64)


def name_column(n: int, name: str) -> np.ndarray:
    """``(n,)`` object array holding the one str ``name`` in every row.

    Not ``np.full(n, name, dtype=object)``: that makes a new str per row (250k rows: 14 MB
    instead of 2 MB), and so does assigning a numpy str array (``np.where`` of two names)
    into an object array.
    """
    out = np.empty(n, dtype=object)
    out[:] = name
    return out


def _flags(a: np.ndarray | None, n: int, default: bool) -> np.ndarray:
    """``(n,)`` bool flags: ``a`` checked, or ``default`` everywhere when None."""
    if a is None:
        return np.full(n, default)
    a = np.asarray(a, bool).reshape(-1)
    if a.shape[0] != n:
        raise ShapeError(f"expected {n} flags (one per proposal), got {a.shape[0]}")
    return a


def _explore(
    ranked: np.ndarray, p: np.ndarray, budget: int, share: float, rng: np.random.Generator
) -> np.ndarray:
    """The queued rows: the top ``budget - round(share * budget)`` of ``ranked``, then the rest
    drawn uniformly among the remaining items with P(correct) >= 0.5, interleaved (each part
    in its own order).

    Uncertainty sampling alone reviews the boxes near P = 0.5 and never the likely-right
    ones a calibrator must see before it may auto-accept them (49 correct reviews in a row
    for 0.99, see :func:`autolabel.select.calibrate.fit_rate_calibrator`), so a version
    could stay short of the target forever; a random sample also keeps the labels an
    unbiased picture of what would be auto-accepted.
    """
    if budget >= ranked.size:
        return ranked
    k = min(round(share * budget), budget)
    top = np.arange(budget - k)  # positions in ranked
    pool = budget - k + np.flatnonzero(p[ranked[budget - k :]] >= AUTO_FLOOR)
    k = min(k, pool.size)
    picked = np.sort(rng.choice(pool, size=k, replace=False)) if k else np.zeros(0, np.int64)
    if k < round(share * budget):  # too few likely-right items left: fill from the ranking
        rest = np.setdiff1d(np.arange(ranked.size), picked)[: budget - k]
        top = rest
    slots = np.argsort(np.r_[np.arange(top.size) * 2, np.arange(k) * 2 + 1], kind="stable")
    return np.r_[ranked[top], ranked[picked]][slots]


def plan_routes(
    p: np.ndarray,
    image_id: np.ndarray,
    *,
    target_precision: float,
    budget: int | None,
    audit_rate: float,
    reject_below: float,
    rng: np.random.Generator,
    explore_share: float = 0.0,
    cluster: np.ndarray | None = None,
    decay: float = 1.0,
    keep_audit: np.ndarray | None = None,
    image_has_label: np.ndarray | None = None,
    group: np.ndarray | None = None,
    can_auto: np.ndarray | None = None,
    was_auto: np.ndarray | None = None,
    audit_done_p: Mapping[int, np.ndarray] | None = None,
    min_audit: int = 0,
    image_busy: np.ndarray | None = None,
    max_per_image: int | None = None,
) -> RoutePlan:
    """Decide the route of every routable (undecided, unclaimed) proposal.

    1. Auto-accept, within each ``group`` (detector version) whose rows ``can_auto`` (a
       calibrator fitted on labelled boxes of that version), the largest set with mean
       P(correct) >= ``target_precision``.
    2. Reject the rest with P(correct) < ``reject_below``.
    3. Everything in between is ``uncertain``; an image where nothing is kept (no auto, no
       uncertain, no human-accepted box) but whose best rejected box has P(correct) >=
       ``reject_below / 2`` gets that box queued as ``missing`` (a possible missed object).
    4. Audit (per group, see :func:`_audit_sample`): the open audit items kept, a fresh
       uniform ``audit_rate`` sample of the rows auto-accepted now that were not before
       (``was_auto``), and a top-up to ``min_audit`` audit items in the group's auto set
       (``audit_done_p``: P(correct) of its decided audit items, counted while >= cutoff).
       Route ``audit``, reason ``audit``, random priorities among the review items so
       reviewers cannot tell them apart.
    5. Review items are images, not boxes (see :func:`_image_items`): at most one per
       image, none for images with an audit item or a claimed or decided item
       (``image_busy``). Their
       value is discounted within image clusters by ``decay`` (:func:`diverse_priority`);
       the top ``budget`` images are queued (route ``review``); every other uncertain box
       stays ``pending`` for a later round. With a budget, ``explore_share`` of it goes to a
       uniform random sample of the images whose item has P(correct) >= 0.5 (see
       :func:`_explore`), interleaved with the most valuable ones.

    Args:
        p: ``(n,)`` calibrated P(correct).
        image_id: ``(n,)`` image of each proposal.
        budget: most review items (images) to queue; None = no cap.
        explore_share: share of the budget drawn at random among likely-right items.
        cluster: ``(n,)`` cluster label of each proposal's image (None = no diversity).
        decay: diversity discount in (0, 1].
        keep_audit: ``(n,)`` bool, open audit items from earlier rounds (kept if still auto).
        image_has_label: ``(n,)`` bool, the image already has a human-accepted box.
        group: ``(n,)`` int detector-version code (None = one group).
        can_auto: ``(n,)`` bool, the row's group has a fitted calibrator (None = all).
        was_auto: ``(n,)`` bool, the row was auto-accepted before this run (None = none).
        audit_done_p: ``{group: (k,) P(correct)}`` of decided audit items per group.
        min_audit: audit items each group's auto-accepted set should have.
        image_busy: ``(n,)`` bool, the image has a claimed review item, or a decided one.
        max_per_image: an image with this many auto-accepted boxes gets no review item.

    Returns:
        A :class:`RoutePlan`.
    """
    p = np.asarray(p, np.float64).reshape(-1)
    image_id = np.asarray(image_id).reshape(-1)
    n = p.shape[0]
    if image_id.shape[0] != n:
        raise ShapeError(f"image_id: expected {n} values, got {image_id.shape[0]}")
    if not 0 <= audit_rate <= 1:
        raise InputError(f"audit rate: expected a value in [0, 1], got {audit_rate}")
    if not 0 <= reject_below <= 1:
        raise InputError(f"reject-below: expected a value in [0, 1], got {reject_below}")

    def flag(a: np.ndarray | None, default: bool) -> np.ndarray:
        return _flags(a, n, default)

    route = name_column(n, C.ROUTE_PENDING)
    reason = name_column(n, "")
    priority = np.zeros(n)
    if n == 0:
        return RoutePlan(route, reason, priority, None, None)
    grp = np.zeros(n, np.int64) if group is None else np.asarray(group, np.int64).reshape(-1)
    auto = _auto_by_group(
        p, grp, flag(can_auto, True), target_precision, max(AUTO_FLOOR, reject_below)
    )
    rejected = ~auto & (p < reject_below)
    uncertain = ~auto & ~rejected
    img = _image_index(image_id)
    missing = _missing_items(
        p, img, auto | uncertain | flag(image_has_label, False), rejected, reject_below
    )

    groups: dict[int, dict[str, Any]] = {}
    for g in np.unique(grp[auto]).tolist():
        a = auto & (grp == g)
        groups[int(g)] = {
            "auto": int(a.sum()),
            "expected_precision": float(p[a].mean()),
            "auto_cutoff": float(p[a].min()),
        }
    audit = _audit_sample(
        auto,
        p,
        grp,
        audit_rate=audit_rate,
        min_audit=min_audit,
        keep=flag(keep_audit, False),
        was_auto=flag(was_auto, False),
        done_p=audit_done_p or {},
        rng=rng,
        groups=groups,
    )
    blocked = _blocked_images(img, audit, flag(image_busy, False), auto, max_per_image)
    rows, value = _image_items(p, img, uncertain, missing, blocked)
    if cluster is not None:
        cl = np.asarray(cluster).reshape(-1)
        if cl.shape[0] != n:
            raise ShapeError(f"cluster: expected {n} values, got {cl.shape[0]}")
        prio = diverse_priority(value, cl[rows], decay=decay)
    else:
        prio = value
    order_rng, explore_rng = rng.spawn(2)  # [0] is the audit order stream, as before
    qi = rows[np.argsort(-prio, kind="stable")]
    if budget is not None:
        qi = _explore(qi, p, max(int(budget), 0), explore_share, explore_rng)

    route[auto] = C.ROUTE_AUTO
    route[rejected] = C.ROUTE_REJECTED
    route[uncertain] = C.ROUTE_PENDING
    route[qi] = C.ROUTE_REVIEW
    reason[qi] = np.array([C.QUEUE_REASON_UNCERTAIN, C.QUEUE_REASON_MISSING], dtype=object)[
        missing[qi].astype(np.int64)
    ]
    # rank-based priorities in (0, 1]: the order above, robust to the value scale
    if qi.size:
        priority[qi] = 1.0 - np.arange(qi.size) / (qi.size + 1.0)
    ai = np.flatnonzero(audit)
    route[ai] = C.ROUTE_AUDIT
    reason[ai] = C.QUEUE_REASON_AUDIT
    # the audit order comes from its own stream, one value per row: a re-run of select
    # that keeps the sample keeps its priorities (kill -9 + re-run is byte-identical)
    order = order_rng.uniform(0.0, 1.0, size=n)
    priority[ai] = order[ai]
    expected = float(p[auto].mean()) if auto.any() else None
    cutoff = float(p[auto].min()) if auto.any() else None
    return RoutePlan(route, reason, priority, expected, cutoff, groups)
