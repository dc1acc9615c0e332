"""Audit statistics (pure): Wilson score interval and the precision estimate of the
auto-accepted set from counted audit outcomes."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

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


def estimate_from_outcomes(outcomes: Mapping[str, Any], last: Mapping[str, Any]) -> dict[str, Any]:
    """Precision estimate of the auto-accepted set from audit outcomes (pure).

    Args:
        outcomes: ``{"n_auto", "n_audit", "n_audited", "n_correct"}`` as counted by
            :func:`autolabel.store.select.audit_outcomes`.
        last: the summary of the last ``select`` (``expected_precision``), or ``{}``.

    Returns:
        ``{"n_auto", "n_audit", "n_audited", "n_correct", "precision", "low", "high",
        "expected"}``: ``precision`` is None until an audit item is decided; ``low``/``high``
        the Wilson 95% interval; ``expected`` the calibrated mean P(correct) of the
        auto-accepted set at the last ``select`` (None before the first).
    """
    k, n = outcomes["n_correct"], outcomes["n_audited"]
    low, high = wilson_interval(k, n)
    return {
        "n_auto": outcomes["n_auto"],
        "n_audit": outcomes["n_audit"],
        "n_audited": n,
        "n_correct": k,
        "precision": (k / n) if n else None,
        "low": low,
        "high": high,
        "expected": last.get("expected_precision"),
    }


def format_estimate(est: dict[str, Any]) -> str:
    """One line for humans, e.g. ``precision of auto-accepted boxes: 0.97 [0.93, 0.99] ...``."""
    if not est.get("n_audited"):
        exp = est.get("expected")
        tail = f"; calibrated expectation {exp:.3f}" if exp is not None else ""
        return (
            f"precision of auto-accepted boxes: unknown (0 of {est.get('n_audit', 0)} audit "
            f"items reviewed{tail})"
        )
    return (
        f"precision of auto-accepted boxes: {est['precision']:.3f} "
        f"[{est['low']:.3f}, {est['high']:.3f}] (Wilson 95%, {est['n_correct']}/"
        f"{est['n_audited']} audited correct, {est['n_auto']} auto-accepted)"
    )


def compact_estimate(est: Mapping[str, Any]) -> dict[str, Any]:
    """Compact estimate for ``autolabel status``: ``{"estimate", "low", "high", "audited",
    "audit_items", "auto", "expected"}`` rounded to 3 decimals (estimate None before any
    audit item is reviewed)."""

    def r(v: Any) -> Any:
        return None if v is None else round(float(v), 3)

    return {
        "estimate": r(est["precision"]),
        "low": r(est["low"]) if est["n_audited"] else None,
        "high": r(est["high"]) if est["n_audited"] else None,
        "audited": est["n_audited"],
        "audit_items": est["n_audit"],
        "auto": est["n_auto"],
        "expected": r(est["expected"]),
    }
