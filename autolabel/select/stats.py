"""Audit statistics (pure): Wilson score interval and the precision estimate of the
auto-accepted set from counted audit outcomes."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from autolabel.constants import MATCH_IOU
from autolabel.errors import InputError

Z95 = 1.959963984540054


def wilson_interval(k: int, n: int, *, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion ``k / n``.

    Args:
        k: successes (0 <= k <= n).
        n: trials; with ``n == 0`` the interval is ``(0.0, 1.0)`` (nothing known).
        z: normal quantile (1.96 for 95%).

    Returns:
        ``(low, high)`` with ``0 <= low <= k/n <= high <= 1``.
    """
    if n < 0 or k < 0 or k > n:
        raise InputError(f"wilson_interval: expected 0 <= k <= n, got k={k}, n={n}")
    if n == 0:
        return 0.0, 1.0
    p = k / n
    z2 = z * z
    denom = 1 + z2 / n
    centre = (p + z2 / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denom
    low = 0.0 if k == 0 else max(0.0, centre - half)
    high = 1.0 if k == n else min(1.0, centre + half)
    return low, high


def pooled_estimate(
    k: int, n: int, expected: float, prior_n: float, *, level: float = 0.95
) -> tuple[float, float, float]:
    """Audit outcomes pooled with the reviewed boxes that vouch for the set (Beta posterior).

    The ``rate`` calibrator's P(correct) of each auto-accepted box rests on the reviewed
    boxes of its block scored at or below it (conservative under its monotone assumption;
    ``prior_n`` is the median count over the set); their evidence, at the set's expected
    precision, is a Beta prior with ``prior_n`` pseudo-boxes, and the audits (an unbiased
    random sample of the set) update it. 10-20 audits alone cannot pin a precision near
    0.99 to within 0.02. With no wrong audit the upper end is 1 (as Wilson's is): nothing
    seen rules out a perfect set.

    Args:
        k / n: correct / decided audit items.
        expected: the set's calibrated mean P(correct).
        prior_n: reviewed boxes behind a typical (median) auto-accepted box.
        level: central interval mass.

    Returns:
        ``(mean, low, high)`` of the posterior.
    """
    from scipy.stats import beta

    a = prior_n * expected + k + 0.5
    b = prior_n * (1.0 - expected) + (n - k) + 0.5
    tail = (1.0 - level) / 2.0
    high = 1.0 if k == n else float(beta.ppf(1.0 - tail, a, b))
    return a / (a + b), float(beta.ppf(tail, a, b)), high


def estimate_from_outcomes(
    outcomes: Mapping[str, Any],
    context: Mapping[str, Any],
    *,
    min_audited: int = 10,
    match_iou: float = MATCH_IOU,
) -> dict[str, Any]:
    """Precision estimate of the auto-accepted set from its audit outcomes (pure).

    Args:
        outcomes: ``{"n_auto", "n_audit", "n_audited", "n_correct"}`` of the current
            auto-accepted set (:func:`autolabel.store.select.auto_set`).
        context: what the last select said: ``selected`` (it ran), ``version`` /
            ``version_label`` (the current detector version), ``can_auto`` (a calibrator
            of that version was fitted), ``calibration_reason``, ``expected_precision``.
        min_audited: decided audit items below which the precision is unknown.
        match_iou: the IoU an audited box needed to count as correct (reported).

    Returns:
        ``{"status", "reason", "n_auto", "n_audit", "n_audited", "n_correct", "precision",
        "low", "high", "expected", "min_audited", "match_iou", "version",
        "version_label"}``: ``status`` is ``ok`` (``precision`` = share of decided audit
        items that were correct, ``low``/``high`` its Wilson 95% interval), ``unknown``
        (too few decided audit items: ``precision``/``low``/``high`` None) or ``none``
        (nothing is auto-accepted); ``reason`` says why when not ``ok``; ``expected`` is
        the calibrated mean P(correct) of the set at the last select. A set small enough
        to be audited whole (fewer boxes than ``min_audited``, all decided) is known
        exactly: ``low == high == precision`` and ``reason`` says so. With
        ``context["prior_n"]`` (a ``rate`` calibrator: the reviewed boxes behind the set)
        the audits are pooled with them (:func:`pooled_estimate`, ``method`` ``pooled``;
        ``audit_only`` keeps the audits' own share and Wilson interval), else ``method``
        is ``audits``.
    """
    k, n = int(outcomes["n_correct"]), int(outcomes["n_audited"])
    n_auto, n_audit = int(outcomes["n_auto"]), int(outcomes["n_audit"])
    status, reason = "ok", ""
    if not context.get("selected"):
        status, reason = "none", "select has not run yet"
    elif context.get("version") is None:
        status, reason = "none", "no current proposals"
    elif not context.get("can_auto") and n_auto == 0:
        why = context.get("calibration_reason") or "no calibrator"
        status = "none"
        reason = (
            f"nothing is auto-accepted: no calibrator for the current detector version "
            f"{context.get('version_label') or context['version']} ({why})"
        )
    elif n_auto == 0:
        status, reason = "none", "nothing is auto-accepted"
    elif n < min_audited and n < n_auto:
        status = "unknown"
        reason = (
            f"only {n} of {n_audit} audit items of the current auto-accepted set reviewed "
            f"(need >= {min_audited})"
        )
    known = status == "ok"
    census = known and n >= n_auto  # every box of the set audited: known exactly
    low, high = wilson_interval(k, n) if known and not census else (None, None)
    precision = (k / n) if known else None
    audit_only = {"precision": precision, "low": low, "high": high}
    method = "audits"
    prior_n, expected = context.get("prior_n"), context.get("expected_precision")
    if census:
        low = high = k / n
        reason = f"every one of the {n_auto} auto-accepted boxes was audited"
    elif known and prior_n and expected is not None:
        precision, low, high = pooled_estimate(k, n, float(expected), float(prior_n))
        method = "pooled"
        reason = (
            f"{n} audits pooled with the {prior_n:.0f} reviewed boxes that vouch for the "
            f"set (audits alone: {k}/{n})"
        )
    return {
        "status": status,
        "reason": reason,
        "n_auto": n_auto,
        "n_audit": n_audit,
        "n_audited": n,
        "n_correct": k,
        "precision": precision,
        "low": low,
        "high": high,
        "method": method,
        "audit_only": audit_only,
        "prior_n": prior_n if method == "pooled" else None,
        "expected": context.get("expected_precision"),
        "min_audited": min_audited,
        "match_iou": match_iou,
        "version": context.get("version"),
        "version_label": context.get("version_label"),
    }


def format_estimate(est: Mapping[str, Any]) -> str:
    """One line for humans, e.g. ``precision of auto-accepted boxes: 0.970 [0.930, 0.990]
    ...`` or ``... unknown (only 3 of 12 audit items ... reviewed); review ...``."""
    if est.get("precision") is None:
        reason = est.get("reason") or "no audit items reviewed"
        todo = ""
        if est.get("status") == "unknown":
            left = int(est.get("n_audit", 0)) - int(est.get("n_audited", 0))
            todo = (
                f"; review the {left} open audit items (autolabel review), then run select again"
                if left > 0
                else "; run select again to draw more audit items"
            )
        return f"precision of auto-accepted boxes: unknown ({reason}){todo}"
    if est["low"] == est["high"]:  # audited whole
        return (
            f"precision of auto-accepted boxes: {est['precision']:.3f} exactly (all "
            f"{est['n_auto']} audited, IoU >= {est.get('match_iou', 0.9):g}: "
            f"{est['n_correct']} correct)"
        )
    if est.get("method") == "pooled":
        return (
            f"precision of auto-accepted boxes: {est['precision']:.3f} "
            f"[{est['low']:.3f}, {est['high']:.3f}] (95%, IoU >= {est.get('match_iou', 0.9):g}: "
            f"{est['n_correct']}/{est['n_audited']} audited correct, pooled with "
            f"{est.get('prior_n', 0):.0f} reviewed boxes behind the set; {est['n_auto']} "
            "auto-accepted)"
        )
    return (
        f"precision of auto-accepted boxes: {est['precision']:.3f} "
        f"[{est['low']:.3f}, {est['high']:.3f}] (Wilson 95%, IoU >= {est.get('match_iou', 0.9):g}: "
        f"{est['n_correct']}/{est['n_audited']} audited correct, {est['n_auto']} auto-accepted)"
    )


def compact_estimate(est: Mapping[str, Any]) -> dict[str, Any]:
    """Compact estimate for ``autolabel status``: ``{"estimate", "low", "high", "status",
    "reason", "audited", "audit_items", "auto", "expected", "version"}`` rounded to 3
    decimals (estimate, low, high None unless the status is ``ok``)."""

    def r(v: Any) -> Any:
        return None if v is None else round(float(v), 3)

    return {
        "estimate": r(est["precision"]),
        "low": r(est["low"]),
        "high": r(est["high"]),
        "status": est.get("status"),
        "reason": est.get("reason") or None,
        "audited": est["n_audited"],
        "audit_items": est["n_audit"],
        "auto": est["n_auto"],
        "expected": r(est["expected"]),
        "version": est.get("version_label") or est.get("version"),
    }


def format_summary(summary: Mapping[str, Any], est: Mapping[str, Any]) -> list[str]:
    """Lines for humans from a select summary (:func:`autolabel.select.run.run_select`) and
    the precision estimate: what was routed where, the calibration state of the current
    detector version, the audit drawn, the estimate. ``select`` and ``autocrop`` print
    them; ``summary["warnings"]`` are printed separately."""
    r, q = summary["routes"], summary["queue"]
    seed = summary.get("n_seed_original", 0)
    lines = [
        f"{summary['n_proposals']} current proposals, {summary['n_fixed']} already decided "
        f"or claimed"
        + (f", {seed} on seed originals (their seed boxes are the labels)" if seed else "")
    ]
    cal = summary["calibration"]
    if summary.get("can_auto"):
        src = cal.get("sources", {})
        lines.append(
            f"calibration of the current detector version: {cal['method']} on "
            f"{cal['n_examples']} labelled boxes ({src.get('seed', 0)} from seed originals, "
            f"{src.get('decisions', 0)} from reviews)"
        )
    else:
        lines.append(
            "nothing is auto-accepted: the current detector version has no calibrator "
            f"({cal.get('reason', 'no labelled boxes')})"
        )
    exp = summary["expected_precision"]
    exp_txt = f" (expected precision {exp:.3f})" if exp is not None else ""
    budget = summary.get("budget")
    cap = f" of {budget} budget" if budget is not None else ""
    lines.append(
        f"auto-accepted {r['auto'] + r['audit']}{exp_txt}, review {r['review']} images{cap} "
        f"({summary.get('budget_images', 0)} with undecided boxes), pending (over budget) "
        f"{r['pending']}, rejected {r['rejected']}"
    )
    lines.append(
        f"queue: {q['uncertain']} uncertain, {q['missing']} possible missing, "
        f"{q['audit']} audit ({q['queued_new']} new, {q['withdrawn']} withdrawn)"
    )
    audit = (summary.get("versions", {}).get(summary.get("current_version") or "", {})).get("audit")
    if audit and audit.get("new_auto"):
        lines.append(
            f"audit: {audit['audit_fresh']} fresh random of {audit['new_auto']} newly "
            f"auto-accepted boxes, {audit['audit_topup']} more to reach the minimum"
        )
    lines.append(format_estimate(est))
    return lines
