"""Detectors and refiners: protocols, a registry, backends, tiny test models.

``build_detector("grounding-dino" | "exemplar", **options)`` and
``build_refiner("sam" | "hf-sam", **options)``; heavy imports happen inside the builders.
"""

from __future__ import annotations

from autolabel.detect.base import (
    Detector,
    Refiner,
    build_detector,
    build_refiner,
    model_version_of,
)

__all__ = ["Detector", "Refiner", "build_detector", "build_refiner", "model_version_of"]
