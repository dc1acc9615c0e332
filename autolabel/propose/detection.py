"""Detection for propose: build the models, run them over decoded batches, map boxes back.

A detector error on a batch retries its images one by one, so only the culprit is recorded.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from autolabel.detect.base import Detector, Refiner
from autolabel.errors import ModelError
from autolabel.geometry import rescale_boxes
from autolabel.propose.loading import Loaded
from autolabel.propose.settings import ProposeSettings
from autolabel.types import Proposals


def build_models(settings: ProposeSettings) -> tuple[Detector, Refiner | None]:
    """Build the detector (and refiner) named by ``settings`` (loads weights)."""
    from autolabel.detect import build_detector

    detector = build_detector(settings.detect.detector, **settings.detector_kwargs())
    refiner = None
    if settings.refiner:
        from autolabel.detect import build_refiner

        refiner = build_refiner(settings.refiner, **settings.refiner_kwargs())
    return detector, refiner


def input_cap(detector: Any, default: int) -> int:
    """Longest side the loader shrinks images to: the detector's own input size when known.

    Shrinking in the loader threads to exactly what the detector's processor would produce
    moves the resize off the model's thread without changing what the model sees (a smaller
    cap would make the processor upsample). A detector that works at (nearly) full
    resolution says so with ``input_max_side`` (``regions``: its edge snapping needs the
    pixels). Detectors that do not say fall back to ``default`` (``detect.max_size``).
    """
    own = getattr(detector, "input_max_side", None)
    if own:
        return int(own)
    size = getattr(detector, "image_size", None)
    if size:
        return max(32, round(int(size) * 1333 / 800))
    proc = getattr(getattr(detector, "processor", None), "image_processor", None)
    sz = getattr(proc, "size", None)
    longest = getattr(sz, "longest_edge", None)
    if longest is None and isinstance(sz, dict):
        longest = sz.get("longest_edge")
    return int(longest) if longest else int(default)


def rescale(props: Proposals, scale_x: float, scale_y: float, width: int, height: int) -> Proposals:
    """Map boxes from the fed image back to original pixels and clip them to the image.

    Args:
        props: proposals in fed-image pixels.
        scale_x: fed width / original width.
        scale_y: fed height / original height.
        width: original width (pixels).
        height: original height (pixels).

    Returns:
        Proposals with ``xyxy (n, 4)`` in original pixels; masks are dropped when the image
        was shrunk (the store keeps boxes and signals, not masks).
    """
    mask = props.mask if scale_x == 1.0 and scale_y == 1.0 else None
    xyxy = rescale_boxes(props.xyxy, scale_x, scale_y, width, height)
    return Proposals(xyxy, props.score, props.phrase, mask, props.data)


def _error_text(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"model-error: {type(exc).__name__}: {text}"[:500]


def detect_isolated(
    detector: Detector,
    images: Sequence[np.ndarray],
    prompt: str,
    refiner: Refiner | None = None,
) -> list[Proposals | str]:
    """Detect (and refine) a batch; on failure retry image by image to isolate the culprit.

    Only images of one shape are passed together (callers group them), so no padding.

    Returns:
        Per image, its ``Proposals`` in fed-image pixels or an error text.
    """

    def one_pass(ims: Sequence[np.ndarray]) -> list[Proposals]:
        out = detector.detect(list(ims), [prompt] * len(ims))
        if len(out) != len(ims):
            raise ModelError(f"detector returned {len(out)} results for {len(ims)} images")
        if refiner is not None:
            out = [refiner.refine(im, p) if len(p) else p for im, p in zip(ims, out, strict=True)]
        return out

    try:
        return list(one_pass(images))
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as exc:
        if len(images) == 1:
            return [_error_text(exc)]
    results: list[Proposals | str] = []
    for im in images:
        try:
            results.append(one_pass([im])[0])
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as exc:
            results.append(_error_text(exc))
    return results


def process_loaded(
    detector: Detector, loaded: Sequence[Loaded], prompt: str, refiner: Refiner | None = None
) -> tuple[list[tuple[int, Proposals]], list[tuple[int, str]]]:
    """Run the model over decoded images (sub-batched by exact shape); map boxes back.

    Returns:
        ``(results, errors)``: ``[(image_id, Proposals in original pixels)]`` and
        ``[(image_id, reason)]``.
    """
    results: list[tuple[int, Proposals]] = []
    errors: list[tuple[int, str]] = []
    by_shape: dict[tuple[int, ...], list[Loaded]] = {}
    for item in loaded:
        if item.image is None:
            errors.append((item.image_id, item.error or "unreadable"))
        else:
            by_shape.setdefault(item.image.shape, []).append(item)
    for items in by_shape.values():
        outs = detect_isolated(detector, [it.image for it in items], prompt, refiner)  # type: ignore[misc]
        for it, out in zip(items, outs, strict=True):
            if isinstance(out, str):
                errors.append((it.image_id, out))
                continue
            fh, fw = it.image.shape[:2]  # type: ignore[union-attr]
            results.append(
                (it.image_id, rescale(out, fw / it.width, fh / it.height, it.width, it.height))
            )
    return results, errors
