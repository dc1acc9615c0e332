"""Shared fixtures: offline hub, temporary workspaces, synthetic images, proposal builders."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def workspace(tmp_path: Path) -> Iterator:
    """A fresh workspace in a temporary folder."""
    from autolabel.store import Workspace

    ws = Workspace.create(tmp_path / "ws")
    yield ws
    ws.close()


def mock_proposals(
    xyxy: Sequence[Sequence[float]] = (),
    score: Sequence[float] | None = None,
    phrase: Sequence[str] | None = None,
    **data: Sequence[float],
):
    """Build a ``Proposals`` from plain lists (scores default to 0.9, phrases to 'obj')."""
    from autolabel.types import Proposals

    n = len(xyxy)
    return Proposals(
        xyxy=np.asarray(xyxy, np.float32).reshape(n, 4),
        score=np.full(n, 0.9, np.float32) if score is None else np.asarray(score, np.float32),
        phrase=["obj"] * n if phrase is None else list(phrase),
        data={k: np.asarray(v, np.float32) for k, v in data.items()},
    )


@pytest.fixture(name="mock_proposals")
def mock_proposals_fixture():
    return mock_proposals


@pytest.fixture(scope="session")
def tiny_models() -> dict[str, Path]:
    """Tiny random-init models: keys grounding-dino (HF folder), grounding-dino-original
    (.pth in the IDEA layout), sam (.pth), hf-sam (HF folder).

    Cached under models/.tiny-cache/<hash of the maker's source> (rebuilt when it changes).
    """
    from autolabel.detect.tiny import cached_tiny_models

    return cached_tiny_models(REPO / "models" / ".tiny-cache")
