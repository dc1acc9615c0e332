"""CLI command modules, one per area; each exposes ``register(app)``."""

from __future__ import annotations

from autolabel.commands import (
    core,
    detect,
    evaluate,
    export,
    finetune,
    pipeline,
    propose,
    review,
    seed,
    select,
)

COMMAND_MODULES = [
    core,
    seed,
    detect,
    propose,
    select,
    evaluate,
    review,
    finetune,
    export,
    pipeline,
]
