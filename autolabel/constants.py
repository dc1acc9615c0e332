"""Names and numbers every stage shares, each defined once.

The store's CHECK constraints are built from these tuples (:mod:`autolabel.store.schema`),
so a value added here is a schema change: add a migration, never edit the tuples' existing
values (workspaces on disk hold them).
"""

from __future__ import annotations

# -- proposal routes (proposals.route) --------------------------------------------------------
ROUTE_PENDING = "pending"
"""Not routed yet, or over the review budget."""
ROUTE_AUTO = "auto"
"""Auto-accepted: calibrated P(correct) reaches the target precision."""
ROUTE_REVIEW = "review"
"""Queued for a person (uncertain or missing)."""
ROUTE_AUDIT = "audit"
"""Auto-accepted and drawn into the random audit sample."""
ROUTE_REJECTED = "rejected"
"""P(correct) below ``select.reject_below``."""
ROUTES = (ROUTE_PENDING, ROUTE_AUTO, ROUTE_REVIEW, ROUTE_AUDIT, ROUTE_REJECTED)
"""Every route, in schema order."""
AUTO_ROUTES = (ROUTE_AUTO, ROUTE_AUDIT)
"""Routes whose boxes are accepted without review (the audit sample is auto-accepted too)."""

# -- statuses ---------------------------------------------------------------------------------
IMAGE_STATUSES = ("ok", "error", "duplicate")
"""images.status."""
SEED_STATUSES = ("located", "not_found", "no_original")
"""seed_items.status: found in its original, not found, or no original to search."""
RUN_IMAGE_STATUSES = ("done", "error")
"""run_images.status."""
QUEUE_REASON_UNCERTAIN = "uncertain"
QUEUE_REASON_AUDIT = "audit"
QUEUE_REASON_MISSING = "missing"
QUEUE_REASONS = (QUEUE_REASON_UNCERTAIN, QUEUE_REASON_AUDIT, QUEUE_REASON_MISSING)
"""queue_items.reason."""
QUEUE_OPEN = "open"
QUEUE_CLAIMED = "claimed"
QUEUE_DONE = "done"
QUEUE_WITHDRAWN = "withdrawn"
QUEUE_STATUSES = (QUEUE_OPEN, QUEUE_CLAIMED, QUEUE_DONE, QUEUE_WITHDRAWN)
"""queue_items.status."""

# -- review actions (decisions.action) --------------------------------------------------------
ACTION_ACCEPT = "accept"
ACTION_ADJUST = "adjust"
ACTION_REJECT = "reject"
ACTION_CAPTION = "caption"
ACTION_SKIP = "skip"
ACTION_UNDO = "undo"
ACTIONS = (ACTION_ACCEPT, ACTION_ADJUST, ACTION_REJECT, ACTION_CAPTION, ACTION_SKIP, ACTION_UNDO)
"""Every decision a reviewer can log; an undo names the decision it undoes."""
ACCEPTING_ACTIONS = (ACTION_ACCEPT, ACTION_ADJUST)
"""Decisions that keep a box (as proposed or moved)."""

# -- quality ----------------------------------------------------------------------------------
MATCH_IOU = 0.9
"""A box is correct when its IoU with the true box is at least this (``quality.match_iou``,
docs: shared QUALITY definitions). Crops need tight boxes; report 0.5/0.75 beside it."""

# -- inputs and models ------------------------------------------------------------------------
IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp", "bmp", "tif", "tiff")
"""File extensions read as images (lower case, without the dot)."""
IMAGE_SUFFIXES = tuple(f".{e}" for e in IMAGE_EXTENSIONS)
"""The same with the dot, as ``Path.suffix`` gives them."""
DEFAULT_DETECTOR = "grounding-dino"
"""Registry name of the default detector."""
DEFAULT_MODEL = "IDEA-Research/grounding-dino-tiny"
"""Hub id of the default detector checkpoint."""
WEIGHT_FREE_DETECTOR = "regions"
"""What ``autocrop``/``demo`` use when the Grounding DINO weights are not on the machine."""
SEED_TRAINED_DETECTORS = ("regions", "exemplar")
"""Detectors built from the seed crops: their proposals on seed originals are in-sample."""
GENERIC_PROMPT = "product photo"
"""``autocrop``'s prompt when seed crops come without captions and nothing else names them."""

# -- export -----------------------------------------------------------------------------------
DEFAULT_EXPORT_FORMATS = (
    "swift",
    "swift-messages",
    "swift-grounding",
    "qwen-vl-grounding",
    "coco",
    "yolo",
    "labelstudio",
    "odvg",
)
"""Formats ``export.formats`` writes by default: the built-in formats of
:mod:`autolabel.export.registry` (a test keeps the two equal)."""
