"""The backend registry: detector and refiner builders by name.

The built-in backends (``grounding-dino``, ``exemplar``, ``regions``; ``sam``, ``hf-sam``,
``snap``) are always present; :func:`register_detector` / :func:`register_refiner` add
a backend or replace one of the same name, never hide the others. Builders import their
backend (and torch, transformers, OpenCV) only when called, so importing this module is
cheap.

Example::

    from autolabel.detect import build_detector, register_detector

    register_detector("my-yolo", lambda **opts: MyYolo(**opts))
    det = build_detector("my-yolo", model="yolo.pt")
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from autolabel.detect.base import Detector, Refiner
from autolabel.errors import ModelError

DetectorBuilder = Callable[..., Detector]
RefinerBuilder = Callable[..., Refiner]


def _grounding_dino(**options: Any) -> Detector:
    from autolabel.constants import DEFAULT_MODEL
    from autolabel.detect.base import check_hub_model
    from autolabel.detect.grounding_dino import GroundingDinoDetector

    check_hub_model(options.get("model") or DEFAULT_MODEL, kind="grounding-dino")  # before torch
    return GroundingDinoDetector(**options)


def _regions(**options: Any) -> Detector:
    from autolabel.detect.regions import RegionsDetector

    return RegionsDetector(**options)


def _snap(**options: Any) -> Refiner:
    from autolabel.detect.snap import SnapRefiner

    return SnapRefiner(**options)


def _exemplar(**options: Any) -> Detector:
    from autolabel.detect.exemplar import ExemplarDetector

    return ExemplarDetector(**options)


def _sam(**options: Any) -> Refiner:
    from autolabel.detect.sam import SamRefiner

    return SamRefiner(**options)


def _hf_sam(**options: Any) -> Refiner:
    from autolabel.detect.base import check_hub_model
    from autolabel.detect.sam import HfSamRefiner

    if options.get("model"):
        check_hub_model(options["model"], kind="sam")  # before torch loads
    return HfSamRefiner(**options)


BUILTIN_DETECTORS: dict[str, DetectorBuilder] = {
    "grounding-dino": _grounding_dino,
    "exemplar": _exemplar,
    "regions": _regions,
}
BUILTIN_REFINERS: dict[str, RefinerBuilder] = {"sam": _sam, "hf-sam": _hf_sam, "snap": _snap}

_user_detectors: dict[str, DetectorBuilder] = {}
_user_refiners: dict[str, RefinerBuilder] = {}


def _check_builder(kind: str, name: str, builder: Any) -> None:
    if not isinstance(name, str) or not name:
        raise ModelError(f"{kind} name: expected a non-empty string, got {name!r}")
    if not callable(builder):
        raise ModelError(f"{kind} {name!r}: expected a callable builder, got {builder!r}")


def register_detector(name: str, builder: DetectorBuilder) -> None:
    """Add a detector backend (or replace the one of that name, built-ins included).

    Args:
        name: the name ``--detector`` / ``detect.detector`` will use.
        builder: ``builder(**options) -> Detector``; import heavy packages inside it.

    Raises:
        ModelError: an empty name or a builder that is not callable.
    """
    _check_builder("detector", name, builder)
    _user_detectors[name] = builder


def register_refiner(name: str, builder: RefinerBuilder) -> None:
    """Add a refiner backend (or replace the one of that name); see :func:`register_detector`."""
    _check_builder("refiner", name, builder)
    _user_refiners[name] = builder


def unregister(name: str) -> None:
    """Forget a user registration of ``name`` (a replaced built-in comes back)."""
    _user_detectors.pop(name, None)
    _user_refiners.pop(name, None)


def detectors() -> dict[str, DetectorBuilder]:
    """Every detector backend by name: the built-ins overlaid with user registrations."""
    return {**BUILTIN_DETECTORS, **_user_detectors}


def refiners() -> dict[str, RefinerBuilder]:
    """Every refiner backend by name: the built-ins overlaid with user registrations."""
    return {**BUILTIN_REFINERS, **_user_refiners}


def build_detector(name: str, **options: Any) -> Detector:
    """Build a detector by registry name.

    Args:
        name: ``"grounding-dino"``, ``"exemplar"`` or a name given to
            :func:`register_detector`.
        **options: backend options (see each backend's class docstring).

    Raises:
        ModelError: unknown name, or the model cannot be loaded.
    """
    found = detectors()
    if name not in found:
        raise ModelError(f"unknown detector {name!r}: expected one of {sorted(found)}")
    return found[name](**options)


def build_refiner(name: str, **options: Any) -> Refiner:
    """Build a refiner by registry name (``"sam"``, ``"hf-sam"`` or a registered one).

    Raises:
        ModelError: unknown name, or the model cannot be loaded.
    """
    found = refiners()
    if name not in found:
        raise ModelError(f"unknown refiner {name!r}: expected one of {sorted(found)}")
    return found[name](**options)
