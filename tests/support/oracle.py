"""An oracle reviewer that knows the true boxes and works only through the review app's HTTP API.

Used by ``benchmarks/bench_loop.py`` and its smoke test. It claims items with
``POST /api/next`` and decides each with ``POST /api/decide``, exactly as the page does:

- **accept** when the item's box has IoU >= ``match_iou`` (QUALITY.md, default 0.9) with a
  true box of its image that no earlier decision of this oracle already covers;
- **adjust** to that true box when the item's box overlaps it (IoU > 0) but less tightly;
- **reject** otherwise (reason ``no_object`` when the box overlaps no true box,
  ``wrong_object`` when the true box it overlaps was already accepted or adjusted to: a
  careful reviewer does not keep a second box of the same object).

The oracle never reads the workspace: it only sees what the API returns plus the truth it
was given (``{image_id: (k, 4) boxes}``, in the EXIF-corrected pixels the API uses).

Example:
    >>> with serve_in_thread(ws.path, ReviewConfig(port=0)) as srv:
    ...     tally = OracleReviewer(srv.url, truth, token=token).review_all()
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from autolabel.constants import MATCH_IOU
from autolabel.geometry import box_iou


@dataclass
class OracleTally:
    """What the oracle did in one :meth:`OracleReviewer.review_all` call.

    Attributes:
        actions: decisions by action (``accept``, ``adjust``, ``reject``).
        by_reason: decisions by queue reason (``uncertain``, ``missing``, ``audit``...).
        audit: audit-item outcomes: ``correct`` (accepted as proposed) / ``wrong``.
        errors: API answers other than 200 (status code and detail), at most 20 kept.
    """

    actions: Counter = field(default_factory=Counter)
    by_reason: Counter = field(default_factory=Counter)
    audit: Counter = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)

    @property
    def human_actions(self) -> int:
        """accept + adjust + reject + flag (QUALITY.md; undo and skip excluded)."""
        return sum(self.actions[a] for a in ("accept", "adjust", "reject", "flag"))


def oracle_decision(
    box: Sequence[float],
    truth: np.ndarray,
    taken: set[int],
    *,
    match_iou: float = MATCH_IOU,
) -> tuple[str, int | None, str | None]:
    """The oracle's rule for one box (pure).

    Args:
        box: ``(4,)`` the item's box ``x0, y0, x1, y1``.
        truth: ``(k, 4)`` true boxes of the image.
        taken: indices into ``truth`` already accepted/adjusted to by this oracle.
        match_iou: IoU at which a box is correct as proposed.

    Returns:
        ``(action, truth_index, reject_reason)``: ``("accept", j, None)``,
        ``("adjust", j, None)`` (move the box to ``truth[j]``) or
        ``("reject", None, "no_object" | "wrong_object")``.
    """
    t = np.asarray(truth, np.float64).reshape(-1, 4)
    if t.shape[0] == 0:
        return "reject", None, "no_object"
    iou = box_iou(np.asarray(box, np.float64).reshape(1, 4), t)[0]
    free = np.array([j not in taken for j in range(t.shape[0])])
    if not (iou > 0).any():
        return "reject", None, "no_object"
    if not (free & (iou > 0)).any():
        return "reject", None, "wrong_object"  # a duplicate of an object already kept
    j = int(np.argmax(np.where(free, iou, -1.0)))
    return ("accept" if iou[j] >= match_iou else "adjust"), j, None


class OracleReviewer:
    """Reviews the whole queue over HTTP with :func:`oracle_decision`.

    Args:
        url: the review app's base URL, e.g. ``http://127.0.0.1:41234``.
        truth: ``{image_id: (k, 4) true boxes}``; images not in it have no object.
        token: a reviewer token (``autolabel.store.queue.add_reviewer``); without one the
            oracle names itself in ``X-Reviewer`` (loopback name mode).
        name: reviewer name used in name mode.
        match_iou: see :func:`oracle_decision`.
        timeout: seconds per HTTP request.
    """

    def __init__(
        self,
        url: str,
        truth: Mapping[int, np.ndarray],
        *,
        token: str | None = None,
        name: str = "oracle",
        match_iou: float = MATCH_IOU,
        timeout: float = 60.0,
    ) -> None:
        import httpx

        headers = {"Authorization": f"Bearer {token}"} if token else {"X-Reviewer": name}
        self.client = httpx.Client(base_url=url, headers=headers, timeout=timeout)
        self.truth = {int(k): np.asarray(v, np.float64).reshape(-1, 4) for k, v in truth.items()}
        self.match_iou = float(match_iou)
        #: image id -> indices of true boxes this oracle already accepted/adjusted to
        self.taken: dict[int, set[int]] = {}

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self.client.close()

    def __enter__(self) -> OracleReviewer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _post(self, path: str, body: dict[str, Any], tally: OracleTally) -> dict[str, Any] | None:
        r = self.client.post(path, json=body)
        if r.status_code != 200:
            if len(tally.errors) < 20:
                tally.errors.append(f"{path} {r.status_code}: {r.text[:200]}")
            return None
        return r.json()

    def decide_item(self, item: Mapping[str, Any], tally: OracleTally) -> str | None:
        """Decide one claimed item over HTTP; returns the action sent (None if refused)."""
        image_id = int(item["image_id"])
        taken = self.taken.setdefault(image_id, set())
        truth = self.truth.get(image_id, np.zeros((0, 4)))
        action, j, reason = oracle_decision(item["box"], truth, taken, match_iou=self.match_iou)
        body: dict[str, Any] = {"item_id": int(item["item_id"]), "action": action}
        if action == "adjust":
            body["box"] = [float(v) for v in truth[j]]
        if reason is not None:
            body["reason"] = reason
        if self._post("/api/decide", body, tally) is None:
            return None
        if j is not None:
            taken.add(j)
        tally.actions[action] += 1
        tally.by_reason[str(item.get("reason"))] += 1
        if item.get("reason") == "audit":
            tally.audit["correct" if action == "accept" else "wrong"] += 1
        return action

    def review_all(self, *, max_items: int | None = None) -> OracleTally:
        """Claim and decide items until the queue is empty (or ``max_items`` were decided).

        Returns:
            The :class:`OracleTally` of this call.
        """
        tally = OracleTally()
        refused = 0
        while max_items is None or tally.human_actions < max_items:
            got = self._post("/api/next", {}, tally)
            item = None if got is None else got.get("item")
            if item is None:
                break
            if self.decide_item(item, tally) is None:
                refused += 1
                if refused > 20:  # the API keeps refusing: stop rather than spin
                    break
        return tally
