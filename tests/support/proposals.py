"""Build ``Proposals`` from plain lists (the supervision ``mock_detections`` style)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from autolabel.store import Workspace
    from autolabel.types import Proposals, Run


def mock_proposals(
    xyxy: Sequence[Sequence[float]] = (),
    score: Sequence[float] | None = None,
    phrase: Sequence[str] | None = None,
    **data: Sequence[float],
):
    """Build a ``Proposals`` from plain lists (scores default to 0.9, phrases to 'obj').

    Args:
        xyxy: ``(n, 4)`` boxes in pixels.
        score: ``(n,)`` scores; 0.9 each when omitted.
        phrase: n phrases; ``"obj"`` each when omitted.
        **data: extra ``(n,)`` per-box signals.
    """
    import numpy as np  # lazily: conftest pins the BLAS threads before numpy loads

    from autolabel.types import Proposals

    n = len(xyxy)
    return Proposals(
        xyxy=np.asarray(xyxy, np.float32).reshape(n, 4),
        score=np.full(n, 0.9, np.float32) if score is None else np.asarray(score, np.float32),
        phrase=["obj"] * n if phrase is None else list(phrase),
        data={k: np.asarray(v, np.float32) for k, v in data.items()},
    )


def store_finished_run(
    ws: Workspace,
    results: Sequence[tuple[int, Proposals]],
    *,
    detector: str = "grounding-dino",
    model: str = "tiny",
    model_version: str = "mv",
    prompt: str = "product",
    box_threshold: float = 0.3,
    text_threshold: float = 0.25,
    refiner: str | None = None,
) -> Run:
    """Store one finished propose run: create it, write ``results`` as one batch, finish it.

    Args:
        ws: the workspace.
        results: ``[(image_id, Proposals), ...]``, written in one ``write_batch``.
        detector: the run's detector name.
        model: the run's model name.
        model_version: the run's model version (part of the run key).
        prompt: the run's prompt.
        box_threshold: the run's box threshold.
        text_threshold: the run's text threshold.
        refiner: the run's refiner, or None.

    Returns:
        The finished run (its ``id`` and ``key`` as ``create_run`` gave them).
    """
    from autolabel.store import runs as store_runs

    run = store_runs.create_run(
        ws,
        detector=detector,
        model=model,
        model_version=model_version,
        refiner=refiner,
        prompt=prompt,
        box_threshold=box_threshold,
        text_threshold=text_threshold,
    )
    store_runs.write_batch(ws, run, results)
    store_runs.finish_run(ws, run)
    return run
