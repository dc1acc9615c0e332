"""What a fine-tuning run remembers between steps, and the one rule for resuming it.

A run in progress lives in ``WORKSPACE/models/gdino-vN.partial/``::

    run.json     base model, options, phrases, the train/val data snapshot
    last.pt      trainable weights + optimizer + :class:`TrainState` (written every
                 ``checkpoint_every`` steps, at each epoch end and on Ctrl-C)
    best.pt      trainable weights of the best validation AP50 so far

A partial folder is resumable only when it holds both ``run.json`` and ``last.pt``
(:func:`is_resumable`); anything else (a run killed before its first checkpoint) is
discarded and a fresh run starts from the workspace's data.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from autolabel.detect import versions

RUN_FILE = "run.json"
LAST_CHECKPOINT = "last.pt"
BEST_WEIGHTS = "best.pt"


@dataclass
class TrainState:
    """The counters of a run, saved in every checkpoint (mutated by the trainer).

    Attributes:
        epoch: finished epochs.
        micro: micro-batches done in the current epoch.
        step: optimizer steps done.
        best_ap: best validation AP50 so far (None: no validation positive yet).
        best_epoch: epoch of ``best_ap`` (0 = the starting weights).
        bad_epochs: epochs in a row without a validation gain.
        ap_before: validation AP50 of the starting weights (None: not measured yet, or no
            validation positive).
        history: ``{"step", "loss"}`` per optimizer step.
        evals: ``{"epoch", "step", "ap50"}`` per epoch end.
        train_seconds: wall time spent in training (validation included).
        step_seconds: forward + backward + update time only.
        done: training ended normally (epochs, budget, max steps or early stop).
        stopped_early: ``done`` because validation stopped improving.
    """

    epoch: int = 0
    micro: int = 0
    step: int = 0
    best_ap: float | None = None
    best_epoch: int = 0
    bad_epochs: int = 0
    ap_before: float | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    evals: list[dict[str, Any]] = field(default_factory=list)
    train_seconds: float = 0.0
    step_seconds: float = 0.0
    done: bool = False
    stopped_early: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainState:
        """From a checkpoint's dict (unknown keys ignored; old checkpoints lack some)."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


def is_resumable(partial: Path) -> bool:
    """The one rule: a partial run resumes when its data snapshot and a checkpoint exist."""
    return (partial / RUN_FILE).is_file() and (partial / LAST_CHECKPOINT).is_file()


def resumable_partial(ws_path: str | Path, *, restart: bool = False) -> Path | None:
    """The unfinished run to resume, or None; a discarded or unresumable one is deleted.

    Args:
        ws_path: the workspace folder.
        restart: discard an unfinished run even when it could resume.
    """
    partial = versions.find_partial(ws_path)
    if partial is None:
        return None
    if restart or not is_resumable(partial):
        shutil.rmtree(partial)
        return None
    return partial


def read_run(partial: Path) -> dict[str, Any]:
    """The ``run.json`` of a partial run."""
    return json.loads((partial / RUN_FILE).read_text(encoding="utf-8"))
