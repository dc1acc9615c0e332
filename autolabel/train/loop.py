"""Fine-tuning entry points: start or resume a run, from a training set or a workspace.

The training itself is :class:`autolabel.train.trainer.Trainer`; the partial-run folder and
the one "is this run resumable" rule are in :mod:`autolabel.train.state`. Options are the
frozen ``finetune`` config section (:class:`autolabel.config.FinetuneConfig`); nothing here
reads the workspace config.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from autolabel.detect import versions
from autolabel.errors import ConflictError, InputError
from autolabel.train.data import TrainingSet, build_training_set, split_train_val
from autolabel.train.model import apply_freeze, predict
from autolabel.train.promote import judge_version
from autolabel.train.state import RUN_FILE, is_resumable, read_run, resumable_partial
from autolabel.train.trainer import Callback, FinetuneResult, Trainer, pinned_threads, write_json

if TYPE_CHECKING:
    from autolabel.config import FinetuneConfig

__all__ = [
    "FinetuneResult",
    "apply_freeze",
    "finetune",
    "finetune_workspace",
    "fingerprint",
    "predict",
    "resolve_base",
]

# options that do not change what is learned (may differ between an interrupted run and its
# resumption); ``base`` is compared on its own
_NOT_FINGERPRINTED = frozenset({"base", "device", "checkpoint_every", "threads"})


def fingerprint(options: FinetuneConfig) -> dict[str, Any]:
    """The options that decide what is learned (compared when resuming)."""
    return {k: v for k, v in options.model_dump().items() if k not in _NOT_FINGERPRINTED}


def _check_same_settings(partial: Path, run: dict[str, Any], base: str, options: Any) -> None:
    """Refuse to resume ``partial`` with another base or other learning options.

    Only the options this version fingerprints are compared, so a run written by an older
    version (which stored a few more keys) still resumes.
    """
    requested = {"base": str(base), **fingerprint(options)}
    stored = {"base": run["base"], **run["options"]}
    diff = sorted(k for k in requested if stored.get(k) != requested[k])
    if diff:
        raise ConflictError(
            f"{partial}: an interrupted fine-tuning run with different settings exists "
            f"(differs in: {', '.join(diff)}); rerun with the same settings to resume it, "
            "or pass --restart to discard it"
        )


def _start_run(
    ws_path: Path,
    training: TrainingSet | None,
    base: str,
    options: FinetuneConfig,
    extra_metadata: dict[str, Any] | None,
) -> tuple[Path, dict[str, Any]]:
    """Split the data and write a new ``gdino-vN.partial/run.json``."""
    if training is None or not training.samples:
        raise InputError("finetune: expected training samples, got none")
    train, val = split_train_val(training.samples, options.val_split, seed=options.seed)
    if not any(not s.negative for s in train):
        raise InputError("finetune: expected at least one positive training image, got none")
    number = versions.next_version_number(ws_path)
    partial = versions.models_dir(ws_path) / f"{versions.version_name(number)}.partial"
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir(parents=True)
    run = {
        "base": str(base),
        "options": fingerprint(options),
        "phrases": list(training.phrases),
        "counts": dict(training.counts),
        "train": [s.to_json() for s in train],
        "val": [s.to_json() for s in val],
        "created_at": time.time(),
        "extra": dict(extra_metadata or {}),
    }
    write_json(partial / RUN_FILE, run)
    return partial, run


def finetune(
    ws_path: str | Path,
    training: TrainingSet | None,
    *,
    base: str,
    options: FinetuneConfig,
    text_threshold: float = 0.25,
    restart: bool = False,
    callback: Callback | None = None,
    stop_at_step: int | None = None,
    extra_metadata: dict[str, Any] | None = None,
) -> FinetuneResult:
    """Fine-tune ``base`` on ``training`` and write ``ws_path/models/gdino-vN``.

    A resumable unfinished run under ``ws_path/models`` (see
    :func:`autolabel.train.state.is_resumable`) is resumed from its last checkpoint with its
    own data snapshot (``training`` is then ignored), unless ``restart`` is set; an
    unresumable or discarded one is deleted and a new run starts from ``training``.

    Args:
        ws_path: the workspace folder (or any folder: versions go to ``<it>/models``).
        training: samples and phrases (from :func:`autolabel.train.data.build_training_set`);
            may be None only when resuming.
        base: model folder, registry name or hub id to start from.
        options: the ``finetune`` config section.
        text_threshold: recorded as the version's text threshold when calibration is not
            possible (no validation positive); usually ``detect.text_threshold``.
        callback: called with event dicts: ``{"event": "start"|"step"|"eval"|"done", ...}``.
        stop_at_step: simulate an interruption: save a checkpoint after this optimizer step
            and return with ``interrupted=True``.

    Raises:
        ConflictError: an unfinished run with different base/options exists.
        InputError: no training data.
    """
    ws_path = Path(ws_path)
    partial = resumable_partial(ws_path, restart=restart)
    if partial is not None:
        run = read_run(partial)
        _check_same_settings(partial, run, base, options)
    else:
        partial, run = _start_run(ws_path, training, base, options, extra_metadata)
    try:
        with pinned_threads(options.threads):
            trainer = Trainer(
                partial,
                run,
                options,
                text_threshold=text_threshold,
                emit=callback or (lambda _e: None),
            )
            return trainer.run(stop_at_step)
    except BaseException:
        if not is_resumable(partial):  # nothing to resume: leave no trace
            shutil.rmtree(partial, ignore_errors=True)
        raise


def resolve_base(ws_path: str | Path, base: str | None, *, default_model: str) -> str:
    """The starting checkpoint: ``base`` > newest version of the workspace > ``default_model``.

    ``latest`` and version names (``gdino-v2``, ``v2``) resolve inside the workspace.

    Args:
        ws_path: the workspace folder.
        base: the ``--base`` flag, else ``finetune.base`` (None: not set).
        default_model: used when the workspace has no version yet (``detect.model``).
    """
    if base is None:
        latest = versions.latest_version_dir(ws_path)
        return str(latest) if latest is not None else default_model
    return versions.resolve_model(base, workspace=ws_path)


def finetune_workspace(
    ws: Any,
    *,
    options: FinetuneConfig,
    default_model: str,
    default_phrase: str | None = None,
    text_threshold: float = 0.25,
    restart: bool = False,
    callback: Callback | None = None,
    stop_at_step: int | None = None,
) -> FinetuneResult:
    """Build the training set from a workspace and fine-tune (see :func:`finetune`).

    A finished version is then judged against the workspace's current proposals
    (:func:`autolabel.train.promote.judge_version`): ``result.metadata["promotion"]`` says
    whether ``latest`` now names it, and why (one line).

    The training set is collected only when no resumable run exists (a resumed run uses
    its own data snapshot).

    Args:
        ws: an open :class:`autolabel.store.Workspace`.
        options: the ``finetune`` config section (flags applied); its ``base`` is the
            starting model (see :func:`resolve_base`).
        default_model: starting model when ``options.base`` is None and the workspace has no
            version yet (``detect.model``).
        default_phrase: phrase for seed boxes that have none (first phrase of the resolved
            prompt, see :func:`autolabel.steps.resolve_prompt`).
        text_threshold: see :func:`finetune`.
    """
    resolved = resolve_base(ws.path, options.base, default_model=default_model)
    training = None
    if resumable_partial(ws.path, restart=restart) is None:
        training = build_training_set(ws, default_phrase=default_phrase)
    result = finetune(
        ws.path,
        training,
        base=resolved,
        options=options,
        text_threshold=text_threshold,
        callback=callback,
        stop_at_step=stop_at_step,
    )
    if not result.interrupted and result.path is not None:
        # champion/challenger: ``latest`` names this version only if it beats the current
        # proposals on held-out reviewed images at the match IoU
        judge_version(ws, result.path, result.metadata)
    return result
