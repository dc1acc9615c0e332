"""Propose: run the detector (and refiner) over every pending image of a workspace.

- :mod:`~autolabel.propose.settings`: the run's options (the ``detect``/``propose``/``image``
  config sections resolved against the workspace);
- :mod:`~autolabel.propose.loading`: shape grouping, decoding, prefetch in loader threads;
- :mod:`~autolabel.propose.detection`: building the models, batched detection with fault
  isolation, boxes mapped back to original pixels;
- :mod:`~autolabel.propose.run`: the resumable run (one transaction per batch);
- :mod:`~autolabel.propose.ray_engine`: the same work on Ray Data;
- :mod:`~autolabel.propose.threads`: torch's thread pool beside the loader threads.

Example::

    from autolabel.propose import resolve_settings, run_propose

    cfg = ws.config().with_flags({"propose.batch_size": 8})
    settings = resolve_settings(ws, cfg, prompt="white sneaker. handbag")
    summary = run_propose(ws, settings)
"""

from __future__ import annotations

from autolabel.propose.detection import process_loaded, rescale
from autolabel.propose.loading import group_by_shape, input_shape, load_for_detector
from autolabel.propose.run import ProposeSummary, graceful_interrupt, run_propose
from autolabel.propose.settings import (
    EXEMPLAR_DEFAULT_THRESHOLD,
    ProposeSettings,
    resolve_settings,
)
from autolabel.propose.threads import limit_torch_threads

__all__ = [
    "EXEMPLAR_DEFAULT_THRESHOLD",
    "ProposeSettings",
    "ProposeSummary",
    "graceful_interrupt",
    "group_by_shape",
    "input_shape",
    "limit_torch_threads",
    "load_for_detector",
    "process_loaded",
    "rescale",
    "resolve_settings",
    "run_propose",
]
