"""Build ``Proposals`` from plain lists (the supervision ``mock_detections`` style)."""

from __future__ import annotations

from collections.abc import Sequence


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
