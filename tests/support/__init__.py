"""Test and benchmark support code (simulated detector and reviewer, settings builders)."""

from __future__ import annotations

from typing import Any

_DETECT_KEYS = frozenset({"detector", "model", "refiner", "refiner_model", "device", "dtype"})


def propose_settings(
    ws: Any,
    prompt: str | None = None,
    *,
    box_threshold: float | None = None,
    text_threshold: float | None = None,
    **flat: Any,
) -> Any:
    """Settings of a propose run the way ``autolabel propose`` builds them.

    ``flat`` names are flags (``model="latest"``, ``batch_size=3``): ``detect.*`` keys go to
    the detect section, the rest to ``propose.*``.
    """
    from autolabel import steps

    flags = {(f"detect.{k}" if k in _DETECT_KEYS else f"propose.{k}"): v for k, v in flat.items()}
    cfg = steps.load_options(ws, None, flags)
    return steps.propose_settings(
        ws, cfg, prompt=prompt, box_threshold=box_threshold, text_threshold=text_threshold
    )
