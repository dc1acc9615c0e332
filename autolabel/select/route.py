"""Routing policy: auto-accept, review queue (uncertain / missing), audit sample, reject.

Pure functions over arrays of calibrated P(correct); the store layer applies the plan.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from autolabel import constants as C
from autolabel.errors import InputError, ShapeError
from autolabel.select.diversity import diverse_priority

AUTO_FLOOR = 0.5
"""A box more likely wrong than right is never auto-accepted, whatever the target."""
MISSING_VALUE = 0.5
"""Review value of a "possible missing object" item (an image with nothing kept)."""


def parse_budget(budget: str | int | float | None, n: int) -> int | None:
    """Turn ``--budget`` into a count of review items.

    Args:
        budget: None / "" (no cap), a count (``500`` or ``"500"``) or a share of the ``n``
            routable proposals (``"10%"``).
        n: number of routable proposals.

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
    """

    route: np.ndarray
    reason: np.ndarray
    priority: np.ndarray
    expected_precision: float | None
    auto_cutoff: float | None = None

    def counts(self) -> dict[str, int]:
        out = {r: int((self.route == r).sum()) for r in C.ROUTES}
        for reason in ("uncertain", "missing", "audit"):
            out[f"queue_{reason}"] = int((self.reason == reason).sum())
        return out


def plan_routes(
    p: np.ndarray,
    image_id: np.ndarray,
    *,
    target_precision: float,
    budget: int | None,
    audit_rate: float,
    reject_below: float,
    rng: np.random.Generator,
    cluster: np.ndarray | None = None,
    decay: float = 1.0,
    keep_audit: np.ndarray | None = None,
    audit_done: int = 0,
    image_has_label: np.ndarray | None = None,
) -> RoutePlan:
    """Decide the route of every routable (undecided, unclaimed) proposal.

    1. Auto-accept the largest set with mean P(correct) >= ``target_precision``.
    2. Reject the rest with P(correct) < ``reject_below``.
    3. Everything in between is ``uncertain``; an image where nothing is kept (no auto, no
       uncertain, no human-accepted box) but whose best rejected box has P(correct) >=
       ``reject_below / 2`` gets that box queued as ``missing`` (a possible missed object).
    4. Queue value is :func:`review_value` (``MISSING_VALUE`` for missing items), discounted
       within image clusters by ``decay`` (:func:`diverse_priority`); the top ``budget``
       are queued (route ``review``), the others stay ``pending`` for a later round.
    5. A uniform random ``audit_rate`` share of the auto-accepted set (counting audit items
       already reviewed, ``audit_done``, and those kept, ``keep_audit``) gets route
       ``audit`` and queue reason ``audit``, at random priorities among the review items so
       reviewers cannot tell them apart.

    Args:
        p: ``(n,)`` calibrated P(correct).
        image_id: ``(n,)`` image of each proposal.
        cluster: ``(n,)`` cluster label of each proposal's image (None = no diversity).
        decay: diversity discount in (0, 1].
        keep_audit: ``(n,)`` bool, open audit items from earlier rounds (kept if still auto).
        image_has_label: ``(n,)`` bool, the image already has a human-accepted box.

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
    route = np.full(n, C.ROUTE_PENDING, dtype=object)
    reason = np.full(n, "", dtype=object)
    priority = np.zeros(n)
    if n == 0:
        return RoutePlan(route, reason, priority, None, None)

    auto = auto_accept_mask(p, target_precision, floor=max(AUTO_FLOOR, reject_below))
    rejected = ~auto & (p < reject_below)
    uncertain = ~auto & ~rejected

    # possible missing objects: images where nothing would be kept
    kept = auto | uncertain
    if image_has_label is not None:
        kept = kept | np.asarray(image_has_label, bool)
    _, img = np.unique(image_id, return_inverse=True)
    img = img.reshape(-1)
    img_kept = np.bincount(img, weights=kept.astype(float), minlength=img.max() + 1) > 0
    cand = rejected & ~img_kept[img] & (p >= reject_below / 2.0)
    missing = np.zeros(n, bool)
    if cand.any():
        ci = np.flatnonzero(cand)
        order = ci[np.lexsort((-p[ci], img[ci]))]
        first = np.r_[True, img[order][1:] != img[order][:-1]]
        missing[order[first]] = True

    queued = uncertain | missing
    value = np.where(missing, MISSING_VALUE, review_value(p))
    if cluster is not None:
        cl = np.asarray(cluster).reshape(-1)
        if cl.shape[0] != n:
            raise ShapeError(f"cluster: expected {n} values, got {cl.shape[0]}")
        prio = np.zeros(n)
        qi = np.flatnonzero(queued)
        prio[qi] = diverse_priority(value[qi], cl[qi], decay=decay)
    else:
        prio = np.where(queued, value, 0.0)
    qi = np.flatnonzero(queued)
    qi = qi[np.argsort(-prio[qi], kind="stable")]
    if budget is not None:
        qi = qi[: max(int(budget), 0)]

    route[auto] = C.ROUTE_AUTO
    route[rejected] = C.ROUTE_REJECTED
    route[uncertain] = C.ROUTE_PENDING
    route[qi] = C.ROUTE_REVIEW
    reason[qi] = np.where(missing[qi], C.QUEUE_REASON_MISSING, C.QUEUE_REASON_UNCERTAIN)
    # rank-based priorities in (0, 1]: the order above, robust to the value scale
    if qi.size:
        priority[qi] = 1.0 - np.arange(qi.size) / (qi.size + 1.0)

    # audit sample of the auto-accepted set
    auto_idx = np.flatnonzero(auto)
    if auto_idx.size and audit_rate > 0:
        # the audit order comes from its own stream, one value per row: a re-run of select
        # that keeps the sample keeps its priorities (kill -9 + re-run is byte-identical)
        order = rng.spawn(1)[0].uniform(0.0, 1.0, size=n)
        keep = np.zeros(n, bool) if keep_audit is None else np.asarray(keep_audit, bool) & auto
        target = math.ceil(audit_rate * (auto_idx.size + audit_done))
        need = max(0, target - audit_done - int(keep.sum()))
        pool = np.flatnonzero(auto & ~keep)
        new = rng.choice(pool, size=min(need, pool.size), replace=False) if need else []
        audit = keep.copy()
        audit[np.asarray(new, dtype=np.int64)] = True
        ai = np.flatnonzero(audit)
        route[ai] = C.ROUTE_AUDIT
        reason[ai] = C.QUEUE_REASON_AUDIT
        priority[ai] = order[ai]
    expected = float(p[auto].mean()) if auto.any() else None
    cutoff = float(p[auto].min()) if auto.any() else None
    return RoutePlan(route, reason, priority, expected, cutoff)
