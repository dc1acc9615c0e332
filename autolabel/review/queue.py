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

from autolabel.constants import AUTO_ROUTES
from autolabel.errors import ConflictError, InputError
from autolabel.store import queue as sq
from autolabel.store.db import Workspace

MAX_CAPTION_CHARS = 2000
MAX_REASON_CHARS = 200
REJECT_REASONS = ("no_object", "wrong_object")
# a box may stick out of the image by this many pixels (rounding in the browser)
BOX_TOLERANCE_PX = 1.0
MAX_LEASE_SECONDS = 365 * 24 * 3600.0
FLAG_REASON = "flagged in gallery"
GALLERY_MAX_ITEMS = 100_000
GALLERY_ORDERS = ("upscale", "score", "id")


def upscale_factor(box: Sequence[float], size: int, resize: str = "fit") -> float:
    """How much export enlarges a box: ``size`` over the box side the resize mode scales
    (the longer side for ``fit``/``pad``, the shorter for ``short-side``); > 1 = upscaled."""
    w, h = float(box[2]) - float(box[0]), float(box[3]) - float(box[1])
    side = min(w, h) if resize == "short-side" else max(w, h)
    return float(size) / side if side > 0 else math.inf


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

    def gallery(
        self,
        *,
        phrase: str | None = None,
        min_score: float | None = None,
        max_score: float | None = None,
        order: str = "upscale",
        offset: int = 0,
        limit: int = 60,
        export_size: int = 448,
        export_resize: str = "fit",
    ) -> dict[str, Any]:
        """Auto-accepted boxes (no person decided them) for the spot-check gallery.

        Args:
            phrase: keep only this phrase (exact).
            min_score: keep boxes with detector score >= this.
            max_score: keep boxes with detector score <= this.
            order: ``upscale`` (most enlarged by export first: thumbnails surface), ``score``
                (least confident first) or ``id``.
            offset: skip this many matches.
            limit: at most this many items.
            export_size: the export's ``size`` (for the upscale factor).
            export_resize: the export's ``resize`` mode.

        Returns:
            ``{"items": [...], "total", "phrases", "estimate"}``; each item has
            ``proposal_id, image_id, box, score, phrase, width, height, upscale``.
        """
        from autolabel.store.labels import iter_labels

        if order not in GALLERY_ORDERS:
            raise InputError(f"order: expected one of {', '.join(GALLERY_ORDERS)}, got {order!r}")
        phrases: set[str] = set()
        rows = []
        for lab in iter_labels(self._view(), include="auto"):
            phrases.add(lab.phrase)
            if phrase and lab.phrase != phrase:
                continue
            if (min_score is not None and lab.score < min_score) or (
                max_score is not None and lab.score > max_score
            ):
                continue
            up = upscale_factor(lab.box, export_size, export_resize)
            rows.append(
                {
                    "proposal_id": lab.proposal_id,
                    "image_id": lab.image_id,
                    "box": [round(v, 1) for v in lab.box],
                    "score": round(lab.score, 4),
                    "phrase": lab.phrase,
                    "width": lab.width,
                    "height": lab.height,
                    "upscale": round(up, 3) if math.isfinite(up) else None,
                }
            )
            if len(rows) >= GALLERY_MAX_ITEMS:
                break
        keys = {
            "upscale": lambda r: (-(r["upscale"] or math.inf), r["proposal_id"]),
            "score": lambda r: (r["score"], r["proposal_id"]),
            "id": lambda r: r["proposal_id"],
        }
        rows.sort(key=keys[order])
        return {
            "items": rows[offset : offset + limit],
            "total": len(rows),
            "phrases": sorted(phrases),
            "estimate": self.estimate(),
        }

    def estimate(self) -> dict[str, Any]:
        """The precision estimate of the auto-accepted set (select's), plus a ``text`` line."""
        from autolabel.select.run import precision_estimate
        from autolabel.select.stats import format_estimate

        est = precision_estimate(self._view())
        return {**est, "text": format_estimate(est)}

    def flag(self, reviewer: str, proposal_id: int) -> dict[str, Any]:
        """Flag an auto-accepted box as wrong: an audit item rejected by ``reviewer``.

        The flag is an ordinary decision (``reject`` on the proposal's ``audit`` queue item,
        made for it if needed), so it counts as an audit outcome in the estimate, excludes
        the box from export and is undone like any decision (:meth:`unflag`).

        Returns:
            ``{"decision_id", "item_id", "estimate"}``.

        Raises:
            NotFoundError: no such proposal.
            ConflictError: a person already decided it, or someone holds its item.
        """
        sq.check_reviewer_name(reviewer)
        item_id = sq.item_for_proposal(self.ws, proposal_id, conn=self.conn)
        made = item_id is None
        if item_id is None:
            sq.enqueue(self.ws, [proposal_id], "audit", conn=self.conn)  # NotFoundError
            item_id = int(sq.item_for_proposal(self.ws, proposal_id, conn=self.conn) or 0)
        route = sq.get_item(self.ws, item_id, conn=self.conn)["route"]
        if route not in AUTO_ROUTES:
            if made:
                sq.withdraw(self.ws, [proposal_id], conn=self.conn)
            raise ConflictError(
                f"proposal {proposal_id}: expected an auto-accepted box, got route {route!r}"
            )
        decision_id = sq.decide(
            self.ws,
            reviewer,
            item_id,
            "reject",
            reason=FLAG_REASON,
            lease_seconds=self.lease_seconds,
            conn=self.conn,
        )
        return {"decision_id": decision_id, "item_id": item_id, "estimate": self.estimate()}

    def unflag(self, reviewer: str, decision_id: int) -> dict[str, Any]:
        """Undo a flag; its audit item goes back to the queue (open).

        Returns:
            ``{"item_id", "estimate"}``.
        """
        sq.check_reviewer_name(reviewer)
        out = sq.undo(
            self.ws,
            reviewer,
            decision_id=decision_id,
            lease_seconds=self.lease_seconds,
            conn=self.conn,
        )
        if out["item_id"] is not None:
            sq.release(self.ws, reviewer, [out["item_id"]], conn=self.conn)
        return {"item_id": out["item_id"], "estimate": self.estimate()}

    def _view(self) -> Workspace:
        """The workspace on this queue's connection (for library calls that use ``ws.conn``)."""
        return self.ws if self.conn is self.ws.conn else Workspace(self.ws.path, self.conn)

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
