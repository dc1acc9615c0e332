"""Detectors and refiners: protocols, a registry, backends, tiny test models, versions.

``build_detector("grounding-dino" | "exemplar", **options)`` and
``build_refiner("sam" | "hf-sam", **options)``; ``register_detector`` /
``register_refiner`` add backends next to the built-in ones. Heavy imports happen inside
the builders. Model names (hub ids, folders, ``.pth`` files, registry names, workspace
versions, ``latest``) are resolved in one place: :func:`autolabel.detect.versions.resolve_model`.
"""

from __future__ import annotations

from autolabel.detect.backends import (
    build_detector,
    build_refiner,
    register_detector,
    register_refiner,
)
from autolabel.detect.base import Detector, Refiner, model_version_of

__all__ = [
    "Detector",
    "Refiner",
    "build_detector",
    "build_refiner",
    "model_version_of",
    "register_detector",
    "register_refiner",
]
