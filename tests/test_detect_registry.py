"""The backend registry: user registrations add to the built-ins, builders stay lazy."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from autolabel.detect import backends, build_detector, build_refiner, register_detector
from autolabel.errors import ModelError
from autolabel.types import Proposals


class _Constant:
    name = "constant"
    model_id = "test/constant"
    model_version = "c1"
    box_threshold = 0.0
    text_threshold = 0.0

    def __init__(self, score: float = 0.5) -> None:
        self.score = score

    def detect(self, images, prompts):
        return [Proposals([[0, 0, 4, 4]], [self.score], [p.split(". ")[0]]) for p in prompts]


@pytest.fixture
def clean_registry():
    yield
    for name in ("constant", "exemplar", "sam"):
        backends.unregister(name)


def test_registering_a_detector_keeps_the_built_ins(clean_registry):
    before = set(backends.detectors())
    assert {"grounding-dino", "exemplar"} <= before
    register_detector("constant", _Constant)
    assert set(backends.detectors()) == before | {"constant"}
    assert {"sam", "hf-sam"} <= set(backends.refiners())
    det = build_detector("constant", score=0.7)
    out = det.detect([np.zeros((8, 8, 3), np.uint8)], ["cup. mug"])
    assert out[0].phrase.tolist() == ["cup"] and out[0].score.tolist() == pytest.approx([0.7])
    # a built-in is still built after a registration (was: "unknown detector 'exemplar'")
    crop = np.full((8, 8, 3), 200, np.uint8)
    assert build_detector("exemplar", exemplars=[crop]).name == "exemplar"


def test_a_registration_overrides_a_built_in_by_name_until_unregistered(clean_registry):
    register_detector("exemplar", _Constant)
    assert isinstance(build_detector("exemplar"), _Constant)
    backends.unregister("exemplar")
    crop = np.full((8, 8, 3), 200, np.uint8)
    assert not isinstance(build_detector("exemplar", exemplars=[crop]), _Constant)


@pytest.mark.parametrize(
    ("name", "builder", "match"),
    [
        ("", _Constant, "non-empty string"),
        ("x", "not callable", "callable builder"),
    ],
)
def test_bad_registrations_are_named_errors(name, builder, match):
    with pytest.raises(ModelError, match=match):
        register_detector(name, builder)


def test_unknown_names_list_every_backend(clean_registry):
    register_detector("constant", _Constant)
    with pytest.raises(ModelError, match=r"expected one of \['constant', 'exemplar'"):
        build_detector("yolo")
    with pytest.raises(ModelError, match="expected one of"):
        build_refiner("sam2")


def test_importing_detect_loads_no_heavy_package():
    code = (
        "import sys, autolabel.detect, autolabel.detect.backends, autolabel.detect.versions\n"
        "heavy = [m for m in ('torch', 'transformers', 'cv2', 'segment_anything') "
        "if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
