"""Shared fixtures: offline hub, pinned threads, temporary workspaces, proposal builders,
tiny models cached outside the checkout.

Helpers that tests import live in :mod:`tests.support`; this file only holds fixtures and
process-wide settings.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.models import tiny_cache_root
from tests.support.proposals import mock_proposals

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# One thread per math library, set before torch/numpy's BLAS start their pools: with other
# CPU-heavy jobs on the machine, torch's default (one thread per core, spinning at barriers)
# makes a 1.5 s test take minutes. Subprocesses (CLI tests) inherit these.
# AUTOLABEL_TEST_THREADS overrides the count.
TEST_THREADS = int(os.environ.get("AUTOLABEL_TEST_THREADS", "1"))
for _var in (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
):
    os.environ[_var] = str(TEST_THREADS)

REPO = Path(__file__).resolve().parents[1]


def _pin_torch_threads() -> None:
    """``torch.set_num_threads(TEST_THREADS)`` once torch has been imported by someone
    (conftest itself never imports torch, so tests without it stay fast)."""
    torch = sys.modules.get("torch")
    if torch is None or not hasattr(torch, "get_num_threads"):
        return  # not imported yet, or half-way through its own import
    if torch.get_num_threads() != TEST_THREADS:
        torch.set_num_threads(TEST_THREADS)


def pytest_runtest_setup(item: pytest.Item) -> None:
    _pin_torch_threads()


def pytest_runtest_call(item: pytest.Item) -> None:
    _pin_torch_threads()  # runs after the fixtures, which may have imported torch


@pytest.fixture
def workspace(tmp_path: Path) -> Iterator:
    """A fresh workspace in a temporary folder."""
    from autolabel.store import Workspace

    ws = Workspace.create(tmp_path / "ws")
    yield ws
    ws.close()


@pytest.fixture(name="mock_proposals")
def mock_proposals_fixture():
    """:func:`tests.support.proposals.mock_proposals`, as a fixture."""
    return mock_proposals


@pytest.fixture(scope="session")
def tiny_models() -> dict[str, Path]:
    """Tiny random-init models: keys grounding-dino (HF folder), grounding-dino-original
    (.pth in the IDEA layout), sam (.pth), hf-sam (HF folder).

    Cached under :func:`tiny_cache_root` ``/<hash of the maker's source>``, outside the
    checkout (rebuilt when the maker changes).
    """
    from autolabel.detect.tiny import cached_tiny_models

    return cached_tiny_models(tiny_cache_root())


@pytest.fixture(autouse=True)
def _pillow_open_unpatched():
    """ultralytics replaces ``PIL.Image.open`` when imported (a HEIF plugin install on files
    Pillow cannot identify); the consumer tests import it, so restore Pillow's own after each
    test: other tests check how unreadable files are reported."""
    from PIL import Image

    original = Image.open
    yield
    Image.open = original
