"""Batch propose: run the detector (and refiner) over every pending image of a workspace.

Data flow of the local engine (one process)::

    images table --(keyset pages)--> shape grouper --(batches of rows)--> loader threads
        (decode + EXIF + resize to ``detect.max_size``) --(bounded queue)--> detector
        (+ refiner) --> one transaction per batch (proposals + run_images marks)

- **Streaming**: pending images are read page by page, at most ``window`` rows are held for
  grouping and at most ``prefetch`` decoded batches wait for the model, so memory stays flat
  whatever the folder size (:mod:`autolabel.propose.loading`).
- **Exact resume**: a batch's proposals and its "done" marks are written in one transaction,
  so killing the process at any moment loses at most the batch in flight, never half of it;
  the next run with the same run key (model version, prompt, thresholds, refiner, size)
  picks up the images without a mark.
- **Batch-independent results**: only images with the same input shape share a batch (no
  padding), so an image's proposals do not depend on which images it was batched with, and
  an interrupted-then-resumed run equals an uninterrupted one.
- **Fault isolation**: an unreadable image is recorded with its reason; a detector error on
  a batch retries its images one by one and records only the culprit
  (:mod:`autolabel.propose.detection`).
- **Threads**: while the loader threads decode, torch gets ``cores - workers`` threads
  (:mod:`autolabel.propose.threads`).

The Ray engine (:mod:`autolabel.propose.ray_engine`) feeds the same per-image work through
Ray Data and writes on the driver.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field
from typing import Any

from autolabel.detect.base import Detector, Refiner
from autolabel.errors import ModelError
from autolabel.propose.detection import build_models, input_cap, process_loaded
from autolabel.propose.loading import (
    WINDOW_BATCHES,
    Loaded,
    group_by_shape,
    load_for_detector,
    prefetch,
)
from autolabel.propose.settings import ProposeSettings
from autolabel.propose.threads import limit_torch_threads, torch_threads_beside
from autolabel.types import Proposals

Batches = Iterator[tuple[list[tuple[int, Proposals]], list[tuple[int, str]], float]]
"""Per batch: ``([(image_id, proposals)], [(image_id, reason)], seconds)``."""


def champion_note(ws_path: Any, model: str) -> str | None:
    """One line when ``--model latest`` passed over newer versions that were not promoted.

    Champion/challenger (:mod:`autolabel.train.promote`): ``latest`` is the newest promoted
    version, so the proposals it made stay current; this says which versions were skipped
    and why. None when nothing was skipped (or ``model`` is not ``latest``).
    """
    from autolabel.detect import versions

    if model != versions.LATEST:
        return None
    found = versions.list_versions(ws_path)
    promoted = [v for v in found if versions.is_promoted(v)]
    if not promoted or promoted[-1] is found[-1]:
        return None
    skipped = [v for v in found if v.number > promoted[-1].number]
    why = (skipped[-1].metadata.get("promotion") or {}).get("reason", "")
    names = ", ".join(v.name for v in skipped)
    return (
        f"latest = {promoted[-1].name}: {names} not promoted ({why}); "
        f"its proposals are kept (use --model {skipped[-1].name} to override)"
    )


@dataclass
class ProposeSummary:
    """What a propose run did."""

    run_id: int
    key: str
    engine: str
    pending: int
    images: int = 0
    errors: int = 0
    proposals: int = 0
    seconds: float = 0.0
    interrupted: bool = False
    error_examples: list[str] = field(default_factory=list)

    @property
    def images_per_second(self) -> float:
        return (self.images + self.errors) / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["images_per_second"] = round(self.images_per_second, 3)
        d["seconds"] = round(self.seconds, 3)
        return d


ProgressFn = Callable[[int, int], None]
"""``progress(images_finished_in_this_batch, proposals_in_this_batch)``."""


def run_key_parts(
    settings: ProposeSettings, detector: Detector, refiner: Refiner | None
) -> dict[str, Any]:
    """Arguments of :func:`autolabel.store.runs.create_run` that define the run key."""
    d = settings.detect
    refiner_name = settings.refiner if refiner is not None else None
    return {
        "detector": d.detector,
        "model": str(getattr(detector, "model_id", d.model)),
        "model_version": str(getattr(detector, "model_version", d.model)),
        "refiner": refiner_name,
        "prompt": settings.prompt,
        "box_threshold": float(getattr(detector, "box_threshold", d.box_threshold)),
        "text_threshold": float(getattr(detector, "text_threshold", d.text_threshold)),
        "key_extra": {
            "max_size": d.max_size,
            "refiner_version": (
                str(getattr(refiner, "model_version", d.refiner_model))
                if refiner is not None
                else None
            ),
        },
    }


def run_propose(
    ws: Any,
    settings: ProposeSettings,
    *,
    detector: Detector | None = None,
    refiner: Refiner | None = None,
    progress: ProgressFn | None = None,
    on_start: Callable[[ProposeSummary], None] | None = None,
    stop: threading.Event | None = None,
) -> ProposeSummary:
    """Propose boxes for every pending image of ``ws`` (resumable; see the module doc).

    Args:
        ws: an open :class:`autolabel.store.Workspace`.
        settings: see :func:`resolve_settings`.
        detector: an already built detector (else built from ``settings``).
        refiner: an already built refiner (else built when ``settings.refiner`` is set).
        progress: called after every written batch.
        on_start: called once the run exists and the pending count is known.
        stop: when set, the run stops after the batch in flight (Ctrl-C).

    Returns:
        A :class:`ProposeSummary`.

    Raises:
        ModelError: the detector fails on every image from the very first batch.
    """
    from autolabel.store import runs as store_runs

    if detector is None:
        detector, built_refiner = build_models(settings)
        refiner = refiner or built_refiner
    elif settings.refiner and refiner is None:
        from autolabel.detect import build_refiner

        refiner = build_refiner(settings.refiner, **settings.refiner_kwargs())
    settings = settings.replace(max_size=input_cap(detector, settings.detect.max_size))
    p = settings.propose
    parts = run_key_parts(settings, detector, refiner)
    run = store_runs.create_run(ws, config=settings.record(), resume=True, **parts)
    pending = store_runs.count_pending_images(ws, run.key)
    if p.limit is not None:
        pending = min(pending, p.limit)
    summary = ProposeSummary(run_id=run.id, key=run.key, engine=p.engine, pending=pending)
    if on_start is not None:
        on_start(summary)
    t0 = time.perf_counter()
    stop = stop or threading.Event()
    if p.engine == "ray":
        from autolabel.propose.ray_engine import ray_batches

        batches: Batches = ray_batches(ws, settings, run, stop)
        threads: Any = nullcontext()  # the model runs in Ray actors, not here
    else:
        batches = _local_batches(ws, settings, run, detector, refiner)
        threads = limit_torch_threads(torch_threads_beside(p.workers))
    try:
        with threads:
            _consume(ws, run, batches, summary, settings, progress, stop)
    finally:
        close = getattr(batches, "close", None)
        if close is not None:
            close()
        summary.seconds = time.perf_counter() - t0
    if not summary.interrupted:
        store_runs.finish_run(ws, run)
    return summary


def _consume(
    ws: Any,
    run: Any,
    batches: Batches,
    summary: ProposeSummary,
    settings: ProposeSettings,
    progress: ProgressFn | None,
    stop: threading.Event,
) -> None:
    """Write each batch's results (one transaction each) and update ``summary``."""
    from autolabel.store import runs as store_runs

    for results, errors, seconds in batches:
        if errors and not results and not summary.images and not summary.errors:
            model_errs = [r for _, r in errors if r.startswith("model-error")]
            if len(model_errs) == len(errors) >= min(settings.propose.batch_size, 2):
                raise ModelError(
                    f"the detector failed on every image of the first batch (nothing "
                    f"recorded; fix the cause and re-run): {model_errs[0]}"
                )
        written = store_runs.write_batch(ws, run, results, errors, seconds=seconds)
        summary.images += len(results)
        summary.errors += len(errors)
        summary.proposals += written
        for image_id, reason in errors[: max(0, 5 - len(summary.error_examples))]:
            summary.error_examples.append(f"image {image_id}: {reason}")
        if progress is not None:
            progress(len(results) + len(errors), written)
        if stop.is_set():
            summary.interrupted = True
            break


def _local_batches(
    ws: Any,
    settings: ProposeSettings,
    run: Any,
    detector: Detector,
    refiner: Refiner | None,
) -> Batches:
    from autolabel.store import runs as store_runs

    p, d, im = settings.propose, settings.detect, settings.image
    rows = store_runs.iter_pending_images(ws, run.key, limit=p.limit)
    batches = group_by_shape(
        rows, batch_size=p.batch_size, max_size=d.max_size, window=p.batch_size * WINDOW_BATCHES
    )

    def load(row: Any) -> Loaded:
        return load_for_detector(
            int(row["id"]),
            row["path"],
            max_size=d.max_size,
            max_pixels=im.max_pixels,
            max_side=im.max_side,
        )

    loaded_batches = prefetch(batches, load, workers=p.workers, depth=max(1, p.prefetch))
    try:
        for loaded in loaded_batches:
            t = time.perf_counter()
            results, errors = process_loaded(detector, loaded, settings.prompt, refiner)
            yield results, errors, time.perf_counter() - t
    finally:
        loaded_batches.close()


@contextmanager
def graceful_interrupt(stop: threading.Event, notice: Callable[[], None] | None = None):
    """First Ctrl-C sets ``stop`` (finish the batch in flight); a second one aborts.

    Only installs the handler in the main thread; elsewhere it is a no-op.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)

    def handler(signum: int, frame: Any) -> None:
        if stop.is_set():
            signal.signal(signal.SIGINT, previous)
            raise KeyboardInterrupt
        stop.set()
        if notice is not None:
            notice()

    signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
