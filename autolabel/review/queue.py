"""Review-queue semantics over the store: claim with a lease, decide, skip, undo.

:class:`ReviewQueue` is what the web app (and scripts, and the benchmark) use; it validates
user input (boxes inside the image, caption length) and turns queue rows into the JSON
payload the page renders. All SQL is in :mod:`autolabel.store.queue`.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Sequence
from typing import Any

from autolabel.errors import InputError
from autolabel.store import queue as sq
from autolabel.store.db import Workspace

MAX_CAPTION_CHARS = 2000
MAX_REASON_CHARS = 200
REJECT_REASONS = ("no_object", "wrong_object")
# a box may stick out of the image by this many pixels (rounding in the browser)
BOX_TOLERANCE_PX = 1.0
MAX_LEASE_SECONDS = 365 * 24 * 3600.0


def validate_box(box: Sequence[float], width: int, height: int) -> tuple[float, ...]:
    """Check an ``[x0, y0, x1, y1]`` pixel box and clip it to the image.

    Args:
        box: (4,) corners in pixels of the EXIF-corrected image.
        width: image width in pixels (0 = unknown, no clipping).
        height: image height in pixels.

    Returns:
        The clipped box as a 4-tuple of floats.

    Raises:
        InputError: not 4 finite numbers, empty, or (beyond rounding) outside the image.
    """
    try:
        vals = [float(v) for v in box]
    except (TypeError, ValueError):
        raise InputError(f"box: expected 4 numbers [x0, y0, x1, y1], got {box!r}") from None
    if len(vals) != 4 or not all(math.isfinite(v) for v in vals):
        raise InputError(f"box: expected 4 finite numbers [x0, y0, x1, y1], got {box!r}")
    x0, y0, x1, y1 = vals
    if width and height:
        tol = BOX_TOLERANCE_PX
        if x0 < -tol or y0 < -tol or x1 > width + tol or y1 > height + tol:
            raise InputError(f"box: expected corners inside the {width}x{height} image, got {vals}")
        x0, x1 = max(0.0, x0), min(float(width), x1)
        y0, y1 = max(0.0, y0), min(float(height), y1)
    if x1 - x0 < 1 or y1 - y0 < 1:
        raise InputError(f"box: expected x1 > x0 and y1 > y0 (at least 1 px), got {vals}")
    return (x0, y0, x1, y1)


class ReviewQueue:
    """Claim/decide/undo for reviewers, on one connection (one per thread).

    Args:
        ws: the workspace.
        lease_seconds: how long a claim lasts without renewal.
        conn: the connection to use (default ``ws.conn``); give each thread its own.
    """

    def __init__(
        self,
        ws: Workspace,
        *,
        lease_seconds: float = 120.0,
        conn: sqlite3.Connection | None = None,
    ) -> None:
        lease = float(lease_seconds)
        if not (math.isfinite(lease) and 0 < lease <= MAX_LEASE_SECONDS):
            raise InputError(
                f"lease_seconds: expected a number in (0, {MAX_LEASE_SECONDS:.0f}], got {lease}"
            )
        self.ws = ws
        self.lease_seconds = lease
        self.conn = conn or ws.conn

    # -- reading ---------------------------------------------------------------------------
    def item(self, item_id: int, *, details: bool = True) -> dict[str, Any]:
        """The JSON payload of one item: box, score, phrase, caption, reason, candidates.

        ``candidates`` lists the image's current proposals, the item's own box first; keys
        1-9 in the page pick among them.
        """
        row = sq.get_item(self.ws, item_id, conn=self.conn)
        out = {
            "item_id": row["item_id"],
            "proposal_id": row["proposal_id"],
            "image_id": row["image_id"],
            "reason": row["reason"],
            "priority": row["priority"],
            "status": row["status"],
            "claimed_by": row["claimed_by"],
            "lease_until": row["lease_until"],
            "box": [row["x0"], row["y0"], row["x1"], row["y1"]],
            "score": row["score"],
            "p_correct": row["p_correct"],
            "phrase": row["phrase"],
            "route": row["route"],
            "width": row["width"] or 0,
            "height": row["height"] or 0,
        }
        if details:
            out["caption"] = sq.current_caption(self.ws, row["proposal_id"], conn=self.conn)
            boxes = sq.image_boxes(self.ws, row["image_id"], conn=self.conn)
            own = [b for b in boxes if b["proposal_id"] == row["proposal_id"]]
            others = [b for b in boxes if b["proposal_id"] != row["proposal_id"]]
            out["candidates"] = [
                {
                    "proposal_id": b["proposal_id"],
                    "box": [b["x0"], b["y0"], b["x1"], b["y1"]],
                    "score": b["score"],
                    "phrase": b["phrase"],
                }
                for b in (own + others)[:9]
            ]
        return out

    def held(self, reviewer: str) -> list[dict[str, Any]]:
        """Items the reviewer holds with a live lease (e.g. after reloading the page)."""
        return [self.item(i) for i in sq.held_items(self.ws, reviewer, conn=self.conn)]

    def stats(self, reviewer: str | None = None) -> dict[str, int]:
        """Item counts by status (``open``, ``claimed``, ``done``, ``remaining``, ``total``...);
        with a reviewer also ``mine`` (their standing decisions)."""
        return sq.queue_stats(self.ws, reviewer, conn=self.conn)

    def reviewer_done(self, reviewer: str) -> int:
        """How many of ``reviewer``'s accept/adjust/reject decisions stand (cheap)."""
        return sq.reviewer_done(self.ws, reviewer, conn=self.conn)

    def image_file(self, image_id: int) -> dict[str, Any]:
        """``id``, ``path``, ``sha256``, ``mtime_ns``, size of an image (NotFoundError if none)."""
        return sq.image_file(self.ws, image_id, conn=self.conn)

    # -- reviewers -------------------------------------------------------------------------
    def has_reviewers(self) -> bool:
        """True once any reviewer (token) exists: then every request needs a token."""
        return sq.count_reviewers(self.ws, conn=self.conn) > 0

    def reviewer_for_token(self, token: str) -> str | None:
        """The reviewer owning ``token`` (None for an unknown or revoked token)."""
        return sq.reviewer_for_token(self.ws, token, conn=self.conn)

    @staticmethod
    def check_reviewer_name(name: str) -> str:
        """Raise :class:`InputError` unless ``name`` is a valid reviewer name."""
        return sq.check_reviewer_name(name)

    # -- writing ---------------------------------------------------------------------------
    def next(self, reviewer: str, *, details: bool = True) -> dict[str, Any] | None:
        """Claim the highest-priority free item for ``reviewer`` (None when none is left)."""
        sq.check_reviewer_name(reviewer)
        item_id = sq.claim_next(self.ws, reviewer, lease_seconds=self.lease_seconds, conn=self.conn)
        return None if item_id is None else self.item(item_id, details=details)

    def decide(
        self,
        reviewer: str,
        item_id: int,
        action: str,
        *,
        box: Sequence[float] | None = None,
        caption: str | None = None,
        reason: str | None = None,
    ) -> int:
        """Validate and log a decision; returns the decision id (see :func:`store.queue.decide`).

        Raises:
            InputError: bad action, box, caption or reject reason.
            ConflictError: the item is decided, withdrawn or held by someone else.
            NotFoundError: no such item.
        """
        sq.check_reviewer_name(reviewer)
        if action not in sq.ACTIONS:
            raise InputError(f"action: expected one of {', '.join(sq.ACTIONS)}, got {action!r}")
        if caption is not None:
            caption = caption.strip()
            if not caption or len(caption) > MAX_CAPTION_CHARS:
                raise InputError(
                    f"caption: expected 1-{MAX_CAPTION_CHARS} characters, got {len(caption)}"
                )
        if reason is not None and len(reason) > MAX_REASON_CHARS:
            raise InputError(f"reason: expected at most {MAX_REASON_CHARS} characters")
        if action == "reject" and reason is not None and reason not in REJECT_REASONS:
            raise InputError(
                f"reject reason: expected one of {', '.join(REJECT_REASONS)}, got {reason!r}"
            )
        if action == "adjust":
            if box is None:
                raise InputError("adjust: expected a box [x0, y0, x1, y1], got none")
            row = sq.get_item(self.ws, item_id, conn=self.conn)
            box = validate_box(box, row["width"] or 0, row["height"] or 0)
        elif box is not None:
            raise InputError(f"box: only an adjust decision takes a box, got one for {action!r}")
        return sq.decide(
            self.ws,
            reviewer,
            item_id,
            action,
            box=box,
            caption=caption,
            reason=reason,
            lease_seconds=self.lease_seconds,
            conn=self.conn,
        )

    def undo(self, reviewer: str, *, decision_id: int | None = None) -> dict[str, Any]:
        """Undo the reviewer's last decision; ``item`` is the re-opened item's payload."""
        sq.check_reviewer_name(reviewer)
        out = sq.undo(
            self.ws,
            reviewer,
            decision_id=decision_id,
            lease_seconds=self.lease_seconds,
            conn=self.conn,
        )
        out["item"] = None if out["item_id"] is None else self.item(out["item_id"])
        return out

    def renew(self, reviewer: str, item_ids: Sequence[int] | None = None) -> int:
        return sq.renew(
            self.ws, reviewer, lease_seconds=self.lease_seconds, item_ids=item_ids, conn=self.conn
        )

    def release(self, reviewer: str, item_ids: Sequence[int]) -> int:
        return sq.release(self.ws, reviewer, item_ids, conn=self.conn)
