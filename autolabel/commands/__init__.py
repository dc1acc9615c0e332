"""CLI command modules, one per command group and named after it; each has ``register(app)``.

``workspace`` (init, ingest, status), ``seed``, ``models``, ``propose``, ``select``,
``evaluate`` (eval), ``review`` (review, reviewers), ``finetune``, ``export`` and ``loop``
(demo, autocrop, report).
"""

from __future__ import annotations

from autolabel.commands import (
    evaluate,
    export,
    finetune,
    loop,
    models,
    propose,
    review,
    seed,
    select,
    workspace,
)
from autolabel.commands._common import plain_usage_names

plain_usage_names()

COMMAND_MODULES = [
    workspace,
    seed,
    models,
    propose,
    select,
    evaluate,
    review,
    finetune,
    export,
    loop,
]
