"""Batch propose: run the detector (and refiner) over every pending image of a workspace.

Data flow of the local engine (one process)::

    images table --(keyset pages)--> shape grouper --(batches of rows)--> loader threads
        (decode + EXIF + resize to ``detect.max_size``) --(bounded queue)--> detector
        (+ refiner) --> one transaction per batch (proposals + run_images marks)

- **Streaming**: pending images are read page by page, at most ``window`` rows are held for
  grouping and at most ``prefetch`` decoded batches wait for the model, so memory stays flat
  whatever the folder size.
- **Exact resume**: a batch's proposals and its "done" marks are written in one transaction,
  so killing the process at any moment loses at most the batch in flight, never half of it;
  the next run with the same run key (model version, prompt, thresholds, refiner, size)
  picks up the images without a mark.
- **Batch-independent results**: only images with the same input shape share a batch (no
  padding), so an image's proposals do not depend on which images it was batched with, and
  an interrupted-then-resumed run equals an uninterrupted one.
- **Fault isolation**: an unreadable image is recorded with its reason; a detector error on
  a batch retries its images one by one and records only the culprit.

The Ray engine (:func:`_run_ray`) feeds the same per-image work through Ray Data (read tasks
-> decode tasks -> an actor pool holding the model) and writes on the driver.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from autolabel.detect.base import Detector, Refiner
from autolabel.errors import ConfigError, ImageError, ModelError, NotFoundError
from autolabel.geometry import input_shape, rescale_boxes
from autolabel.types import Proposals

LATEST = "latest"
"""``--model latest``: the newest fine-tuned version under ``WORKSPACE/models/``."""

WINDOW_BATCHES = 8
"""Pending rows held for shape grouping, in batches (bounded; larger = fewer partial batches)."""


# -- settings ------------------------------------------------------------------------------
@dataclass(frozen=True)
class ProposeSettings:
    """Everything one propose run needs, resolved from flags, config and workspace settings."""

    prompt: str
    detector: str = "grounding-dino"
    model: str = "IDEA-Research/grounding-dino-tiny"
    box_threshold: float = 0.35
    text_threshold: float = 0.25
    refiner: str | None = None
    refiner_model: str | None = None
    device: str = "auto"
    dtype: str = "auto"
    max_size: int = 800
    max_pixels: int = 200_000_000
    max_side: int = 30_000
    batch_size: int = 4
    limit: int | None = None
    engine: str = "local"
    ray_address: str | None = None
    workers: int = 2
    prefetch: int = 4
    ray_actors: int = 1
    ray_cpus_per_actor: float = 0.5
    ray_gpus_per_actor: float = 0.0
    detector_options: dict[str, Any] = field(default_factory=dict)

    def detector_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``build_detector(self.detector, **kwargs)``."""
        if self.detector == "exemplar":  # weight-free: exemplars come from detector_options
            return {"box_threshold": self.box_threshold, **self.detector_options}
        kw: dict[str, Any] = {
            "model": self.model,
            "device": self.device,
            "dtype": self.dtype,
            "box_threshold": self.box_threshold,
            "text_threshold": self.text_threshold,
        }
        kw.update(self.detector_options)
        return kw

    def refiner_kwargs(self) -> dict[str, Any]:
        kw: dict[str, Any] = {"device": self.device}
        if self.refiner_model:
            kw["model"] = self.refiner_model
        return kw


def normalize_prompt(prompt: str) -> str:
    """Canonical prompt text: phrases separated by ``". "``, no empty phrases.

    ``"white sneaker.handbag."`` and ``" white sneaker. handbag"`` both give
    ``"white sneaker. handbag"``, so they share a run key.

    Raises:
        ConfigError: the prompt has no phrase.
    """
    phrases = split_prompt(prompt)
    if not phrases:
        raise ConfigError(f"prompt: expected phrases separated by '. ', got {prompt!r}")
    return ". ".join(phrases)


def split_prompt(prompt: str) -> list[str]:
    """The phrases of a prompt (``"a. b"`` -> ``["a", "b"]``), whitespace collapsed."""
    return [" ".join(p.split()) for p in prompt.split(".") if p.strip()]


def resolve_model(model: str, workspace: Path) -> str:
    """Turn ``latest`` (or a version name like ``gdino-v2``) into that fine-tuned folder.

    Uses ``autolabel.train.versions`` (the layout ``WORKSPACE/models/gdino-v<N>/`` with a
    ``metadata.json``); any other value (hub id, folder) passes through.

    Raises:
        NotFoundError: ``latest`` was asked for but no fine-tuned version exists.
    """
    import re

    if model != LATEST and not re.fullmatch(r"gdino-v\d+", model):
        return model
    if model == LATEST:
        from autolabel.train.versions import latest_version_dir

        found = latest_version_dir(workspace)
        if found is None:
            raise NotFoundError(
                f"--model latest: expected a fine-tuned version under {workspace / 'models'} "
                "(made by `autolabel finetune`), found none"
            )
        return str(found)
    named = workspace / "models" / model
    return str(named) if named.is_dir() else model  # else: a plain folder named like that


def resolve_settings(
    ws: Any,
    *,
    prompt: str | None = None,
    detector: str | None = None,
    model: str | None = None,
    refiner: str | None = None,
    batch_size: int | None = None,
    device: str | None = None,
    limit: int | None = None,
    engine: str | None = None,
    ray_address: str | None = None,
    box_threshold: float | None = None,
    text_threshold: float | None = None,
    workers: int | None = None,
    refiner_model: str | None = None,
) -> ProposeSettings:
    """Merge CLI flags, the workspace config and the seed stage's settings.

    Precedence: prompt = flag > ``propose.prompt`` > workspace setting ``seed.prompt``;
    thresholds = flag > workspace setting ``seed.thresholds`` > ``detect.*``; everything
    else = flag > config.

    Raises:
        ConfigError: no prompt anywhere, or an invalid value (named).
    """
    cfg = ws.config(
        {
            "detect.detector": detector,
            "detect.model": model,
            "detect.refiner": refiner,
            "detect.refiner_model": refiner_model,
            "detect.device": device,
            "detect.box_threshold": box_threshold,
            "detect.text_threshold": text_threshold,
            "propose.batch_size": batch_size,
            "propose.limit": limit,
            "propose.engine": engine,
            "propose.ray_address": ray_address,
            "propose.workers": workers,
        }
    )
    text = prompt or cfg.propose.prompt or ws.get_setting("seed.prompt")
    if not text:
        raise ConfigError(
            "no prompt: expected --prompt 'white sneaker. handbag', propose.prompt in the "
            "workspace config, or one set by `autolabel seed prompts`; got none"
        )
    model_path = resolve_model(cfg.detect.model, Path(ws.path))
    seeded = ws.get_setting("seed.thresholds") or {}
    if seeded.get("detector") not in (None, cfg.detect.detector):
        seeded = {}  # calibrated for another detector: its thresholds mean nothing here
    seeded = version_thresholds(model_path) or seeded
    options: dict[str, Any] = {}
    if cfg.detect.detector == "exemplar":
        options = {
            **exemplar_options(ws, str(text)),
            "scale_step": cfg.detect.exemplar_scale_step,
            "coarse_side": cfg.detect.exemplar_coarse_side,
        }
        if "box_threshold" not in seeded and box_threshold is None:
            seeded = {"box_threshold": EXEMPLAR_DEFAULT_THRESHOLD}
    bt = (
        box_threshold
        if box_threshold is not None
        else seeded.get("box_threshold", cfg.detect.box_threshold)
    )
    tt = (
        text_threshold
        if text_threshold is not None
        else seeded.get("text_threshold", cfg.detect.text_threshold)
    )
    p = cfg.propose
    return ProposeSettings(
        prompt=normalize_prompt(str(text)),
        detector=cfg.detect.detector,
        model=model_path,
        box_threshold=float(bt),
        text_threshold=float(tt),
        refiner=None if cfg.detect.refiner == "none" else cfg.detect.refiner,
        refiner_model=cfg.detect.refiner_model,
        device=cfg.detect.device,
        dtype=cfg.detect.dtype,
        max_size=cfg.detect.max_size,
        max_pixels=cfg.image.max_pixels,
        max_side=cfg.image.max_side,
        batch_size=p.batch_size,
        limit=p.limit,
        engine=p.engine,
        ray_address=p.ray_address,
        workers=p.workers,
        prefetch=p.prefetch,
        ray_actors=p.ray_actors,
        ray_cpus_per_actor=p.ray_cpus_per_actor,
        ray_gpus_per_actor=p.ray_gpus_per_actor,
        detector_options=options,
    )


def version_thresholds(model: str) -> dict[str, float]:
    """Thresholds a fine-tuned version re-calibrated on its validation split (else ``{}``).

    ``autolabel finetune`` stores them in ``gdino-vN/metadata.json``; they beat the seed
    stage's thresholds, which were chosen for the base model.
    """
    path = Path(model)
    if not (path / "metadata.json").is_file():
        return {}
    from autolabel.train.versions import read_metadata

    found = read_metadata(path).get("thresholds") or {}
    return {k: float(found[k]) for k in ("box_threshold", "text_threshold") if k in found}


EXEMPLAR_DEFAULT_THRESHOLD = 0.78
"""Box threshold of the exemplar detector when ``seed calibrate`` has not picked one."""


def exemplar_options(ws: Any, prompt: str) -> dict[str, Any]:
    """Exemplars for the weight-free ``exemplar`` detector: the workspace's seed crops.

    See :func:`autolabel.seed.bootstrap.seed_exemplars`.

    Raises:
        ConfigError: the workspace has no seed crops.
    """
    from autolabel.seed.bootstrap import seed_exemplars

    crops, phrases, _ = seed_exemplars(ws, prompt)
    if not crops:
        raise ConfigError(
            "--detector exemplar: expected seed crops in the workspace (run `autolabel seed "
            "add WS --crops DIR` first), got none"
        )
    return {"exemplars": crops, "phrases": phrases}


# -- geometry --------------------------------------------------------------------------------
def input_cap(detector: Any, default: int) -> int:
    """Longest side the loader shrinks images to: the detector's own input size when known.

    Shrinking in the loader threads to exactly what the detector's processor would produce
    moves the resize off the model's thread without changing what the model sees (a smaller
    cap would make the processor upsample). Detectors that do not say fall back to
    ``default`` (``detect.max_size``).
    """
    size = getattr(detector, "image_size", None)
    if size:
        return max(32, round(int(size) * 1333 / 800))
    proc = getattr(getattr(detector, "processor", None), "image_processor", None)
    sz = getattr(proc, "size", None)
    longest = getattr(sz, "longest_edge", None)
    if longest is None and isinstance(sz, dict):
        longest = sz.get("longest_edge")
    return int(longest) if longest else int(default)


def rescale(props: Proposals, scale_x: float, scale_y: float, width: int, height: int) -> Proposals:
    """Map boxes from the fed image back to original pixels and clip them to the image.

    Args:
        props: proposals in fed-image pixels.
        scale_x: fed width / original width.
        scale_y: fed height / original height.
        width: original width (pixels).
        height: original height (pixels).

    Returns:
        Proposals with ``xyxy (n, 4)`` in original pixels; masks are dropped when the image
        was shrunk (the store keeps boxes and signals, not masks).
    """
    mask = props.mask if scale_x == 1.0 and scale_y == 1.0 else None
    xyxy = rescale_boxes(props.xyxy, scale_x, scale_y, width, height)
    return Proposals(xyxy, props.score, props.phrase, mask, props.data)


# -- loading ---------------------------------------------------------------------------------
@dataclass
class Loaded:
    """One decoded image ready for the detector (or the reason it could not be read)."""

    image_id: int
    image: np.ndarray | None  # (h, w, 3) uint8 at the fed size
    width: int = 0  # original (EXIF-corrected) size
    height: int = 0
    error: str | None = None


def load_for_detector(
    image_id: int, path: str, *, max_size: int, max_pixels: int, max_side: int
) -> Loaded:
    """Decode, EXIF-correct and shrink one image (runs in loader threads / Ray tasks).

    Never raises for a bad image: the reason is returned in ``Loaded.error``.
    """
    from autolabel.imageio import open_image

    try:
        im = open_image(path, max_pixels=max_pixels, max_side=max_side)
        w, h = im.size
        fh, fw, scale = input_shape(w, h, max_size)
        if scale != 1.0:
            from PIL import Image

            im = im.resize((fw, fh), Image.Resampling.BILINEAR)
        arr = np.array(im, dtype=np.uint8)  # writable: torch.from_numpy warns otherwise
        return Loaded(image_id, arr, w, h)
    except ImageError as exc:
        return Loaded(
            image_id, None, error=f"{exc.reason}: {exc.detail}" if exc.detail else exc.reason
        )
    except MemoryError:
        return Loaded(image_id, None, error="too-large: out of memory while decoding")


def group_by_shape(
    rows: Iterable[Any], *, batch_size: int, max_size: int, window: int
) -> Iterator[list[Any]]:
    """Cut a stream of image rows into batches whose images share one fed shape.

    Rows (with ``id``, ``width``, ``height``) are held in per-shape groups; a group is
    emitted when it reaches ``batch_size``; when more than ``window`` rows are held the
    largest group is flushed (so memory is bounded and rare shapes still leave). Rows with
    unknown size form their own group.

    Yields:
        Lists of at most ``batch_size`` rows.
    """
    groups: dict[Any, list[Any]] = {}
    held = 0
    for row in rows:
        w, h = row["width"], row["height"]
        key = input_shape(w, h, max_size)[:2] if w and h else None
        g = groups.setdefault(key, [])
        g.append(row)
        held += 1
        if len(g) >= batch_size:
            yield g
            held -= len(g)
            del groups[key]
        elif held > window:
            big = max(groups, key=lambda k: len(groups[k]))
            out = groups.pop(big)
            held -= len(out)
            yield out
    for g in groups.values():
        if g:
            yield g


def _prefetch(
    batches: Iterator[list[Any]], load: Callable[[Any], Loaded], *, workers: int, depth: int
) -> Iterator[list[Loaded]]:
    """Decode batches ahead of the consumer in ``workers`` threads, ``depth`` batches deep."""
    if workers <= 0:
        for rows in batches:
            yield [load(r) for r in rows]
        return
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="autolabel-load")
    pending: deque[list[Future[Loaded]]] = deque()
    try:
        for rows in batches:
            pending.append([pool.submit(load, r) for r in rows])
            if len(pending) > depth:
                yield [f.result() for f in pending.popleft()]
        while pending:
            yield [f.result() for f in pending.popleft()]
    finally:
        for futs in pending:
            for f in futs:
                f.cancel()
        pool.shutdown(wait=True, cancel_futures=True)


# -- detection -------------------------------------------------------------------------------
def _error_text(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"model-error: {type(exc).__name__}: {text}"[:500]


def detect_isolated(
    detector: Detector,
    images: Sequence[np.ndarray],
    prompt: str,
    refiner: Refiner | None = None,
) -> list[Proposals | str]:
    """Detect (and refine) a batch; on failure retry image by image to isolate the culprit.

    Only images of one shape are passed together (callers group them), so no padding.

    Returns:
        Per image, its ``Proposals`` in fed-image pixels or an error text.
    """

    def one_pass(ims: Sequence[np.ndarray]) -> list[Proposals]:
        out = detector.detect(list(ims), [prompt] * len(ims))
        if len(out) != len(ims):
            raise ModelError(f"detector returned {len(out)} results for {len(ims)} images")
        if refiner is not None:
            out = [refiner.refine(im, p) if len(p) else p for im, p in zip(ims, out, strict=True)]
        return out

    try:
        return list(one_pass(images))
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as exc:
        if len(images) == 1:
            return [_error_text(exc)]
    results: list[Proposals | str] = []
    for im in images:
        try:
            results.append(one_pass([im])[0])
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as exc:
            results.append(_error_text(exc))
    return results


def process_loaded(
    detector: Detector, loaded: Sequence[Loaded], prompt: str, refiner: Refiner | None = None
) -> tuple[list[tuple[int, Proposals]], list[tuple[int, str]]]:
    """Run the model over decoded images (sub-batched by exact shape); map boxes back.

    Returns:
        ``(results, errors)``: ``[(image_id, Proposals in original pixels)]`` and
        ``[(image_id, reason)]``.
    """
    results: list[tuple[int, Proposals]] = []
    errors: list[tuple[int, str]] = []
    by_shape: dict[tuple[int, ...], list[Loaded]] = {}
    for item in loaded:
        if item.image is None:
            errors.append((item.image_id, item.error or "unreadable"))
        else:
            by_shape.setdefault(item.image.shape, []).append(item)
    for items in by_shape.values():
        outs = detect_isolated(detector, [it.image for it in items], prompt, refiner)  # type: ignore[misc]
        for it, out in zip(items, outs, strict=True):
            if isinstance(out, str):
                errors.append((it.image_id, out))
                continue
            fh, fw = it.image.shape[:2]  # type: ignore[union-attr]
            results.append(
                (it.image_id, rescale(out, fw / it.width, fh / it.height, it.width, it.height))
            )
    return results, errors


# -- runs --------------------------------------------------------------------------------------
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


def build_models(settings: ProposeSettings) -> tuple[Detector, Refiner | None]:
    """Build the detector (and refiner) named by ``settings`` (loads weights)."""
    from autolabel.detect import build_detector

    detector = build_detector(settings.detector, **settings.detector_kwargs())
    refiner = None
    if settings.refiner:
        from autolabel.detect import build_refiner

        refiner = build_refiner(settings.refiner, **settings.refiner_kwargs())
    return detector, refiner


def run_key_parts(
    settings: ProposeSettings, detector: Detector, refiner: Refiner | None
) -> dict[str, Any]:
    """Arguments of :func:`autolabel.store.runs.create_run` that define the run key."""
    refiner_name = settings.refiner if refiner is not None else None
    return {
        "detector": settings.detector,
        "model": str(getattr(detector, "model_id", settings.model)),
        "model_version": str(getattr(detector, "model_version", settings.model)),
        "refiner": refiner_name,
        "prompt": settings.prompt,
        "box_threshold": float(getattr(detector, "box_threshold", settings.box_threshold)),
        "text_threshold": float(getattr(detector, "text_threshold", settings.text_threshold)),
        "key_extra": {
            "max_size": settings.max_size,
            "refiner_version": (
                str(getattr(refiner, "model_version", settings.refiner_model))
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
    settings = replace(settings, max_size=input_cap(detector, settings.max_size))
    parts = run_key_parts(settings, detector, refiner)
    config = {k: v for k, v in asdict(settings).items() if k != "detector_options"}
    run = store_runs.create_run(ws, config=config, **parts)
    pending = store_runs.count_pending_images(ws, run.key)
    if settings.limit is not None:
        pending = min(pending, settings.limit)
    summary = ProposeSummary(run_id=run.id, key=run.key, engine=settings.engine, pending=pending)
    if on_start is not None:
        on_start(summary)
    t0 = time.perf_counter()
    stop = stop or threading.Event()
    if settings.engine == "ray":
        batches = _ray_batches(ws, settings, run, stop)
    else:
        batches = _local_batches(ws, settings, run, detector, refiner)
    try:
        for results, errors, seconds in batches:
            if errors and not results and not summary.images and not summary.errors:
                model_errs = [r for _, r in errors if r.startswith("model-error")]
                if len(model_errs) == len(errors) >= min(settings.batch_size, 2):
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
    finally:
        close = getattr(batches, "close", None)
        if close is not None:
            close()
        summary.seconds = time.perf_counter() - t0
    if not summary.interrupted:
        store_runs.finish_run(ws, run)
    return summary


def _local_batches(
    ws: Any,
    settings: ProposeSettings,
    run: Any,
    detector: Detector,
    refiner: Refiner | None,
) -> Iterator[tuple[list[tuple[int, Proposals]], list[tuple[int, str]], float]]:
    from autolabel.store import runs as store_runs

    rows = store_runs.iter_pending_images(ws, run.key, limit=settings.limit)
    batches = group_by_shape(
        rows,
        batch_size=settings.batch_size,
        max_size=settings.max_size,
        window=settings.batch_size * WINDOW_BATCHES,
    )

    def load(row: Any) -> Loaded:
        return load_for_detector(
            int(row["id"]),
            row["path"],
            max_size=settings.max_size,
            max_pixels=settings.max_pixels,
            max_side=settings.max_side,
        )

    loaded_batches = _prefetch(
        batches, load, workers=settings.workers, depth=max(1, settings.prefetch)
    )
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


# -- Ray engine --------------------------------------------------------------------------------
def _proposals_to_json(p: Proposals) -> str:
    return json.dumps(
        {
            "xyxy": p.xyxy.tolist(),
            "score": p.score.tolist(),
            "phrase": [str(s) for s in p.phrase],
            "data": {
                k: np.asarray(v, np.float64).tolist()
                for k, v in p.data.items()
                if np.asarray(v).ndim == 1
            },
        }
    )


def _proposals_from_json(text: str) -> Proposals:
    d = json.loads(text)
    n = len(d["score"])
    return Proposals(
        xyxy=np.asarray(d["xyxy"], np.float32).reshape(n, 4),
        score=np.asarray(d["score"], np.float32),
        phrase=d["phrase"],
        data={k: np.asarray(v, np.float32) for k, v in d["data"].items()},
    )


class _RayProposer:
    """Ray Data actor: holds the model, turns a batch of decoded images into results."""

    def __init__(self, settings: dict[str, Any]) -> None:
        self.settings = ProposeSettings(**settings)
        self.detector, self.refiner = build_models(self.settings)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        loaded = []
        for i in range(len(batch["image_id"])):
            err = str(batch["error"][i])
            img = batch["image"][i]
            loaded.append(
                Loaded(
                    int(batch["image_id"][i]),
                    None if err else np.asarray(img, np.uint8),
                    int(batch["width"][i]),
                    int(batch["height"][i]),
                    err or None,
                )
            )
        results, errors = process_loaded(self.detector, loaded, self.settings.prompt, self.refiner)
        ids = [i for i, _ in results] + [i for i, _ in errors]
        payload = [_proposals_to_json(p) for _, p in results] + ["" for _ in errors]
        errs = ["" for _ in results] + [r for _, r in errors]
        return {
            "image_id": np.asarray(ids, np.int64),
            "result": np.asarray(payload, dtype=object),
            "error": np.asarray(errs, dtype=object),
        }


def _ray_batches(
    ws: Any, settings: ProposeSettings, run: Any, stop: threading.Event
) -> Iterator[tuple[list[tuple[int, Proposals]], list[tuple[int, str]], float]]:
    """Ray Data pipeline: id ranges -> pending rows -> decode -> actor pool -> driver."""
    import ray

    from autolabel.store import runs as store_runs

    if not ray.is_initialized():
        ray.init(address=settings.ray_address or None, include_dashboard=False)
    lo, hi = store_runs.image_id_bounds(ws)
    span = max(settings.batch_size * 64, 256)
    ranges = [{"lo": a, "hi": min(a + span, hi + 1)} for a in range(lo, hi + 1, span)]
    if not ranges:
        return
    db_path = str(ws.db_path)
    key = run.key
    opts = {
        "max_size": settings.max_size,
        "max_pixels": settings.max_pixels,
        "max_side": settings.max_side,
    }

    def read_range(item: dict[str, Any]) -> list[dict[str, Any]]:
        from autolabel.store.runs import pending_in_range

        return pending_in_range(db_path, key, int(item["lo"]), int(item["hi"]))

    def decode(row: dict[str, Any]) -> dict[str, Any]:
        got = load_for_detector(int(row["id"]), row["path"], **opts)
        return {
            "image_id": got.image_id,
            "image": got.image if got.image is not None else np.zeros((1, 1, 3), np.uint8),
            "width": got.width,
            "height": got.height,
            "error": got.error or "",
        }

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.enable_tensor_extension_casting = True
    ds = ray.data.from_items(ranges).flat_map(read_range, num_cpus=0.25)
    if settings.limit is not None:
        ds = ds.limit(settings.limit)
    ds = ds.map(decode, num_cpus=0.25).map_batches(
        _RayProposer,
        fn_constructor_kwargs={"settings": asdict(settings)},
        batch_size=settings.batch_size,
        compute=ray.data.ActorPoolStrategy(size=max(1, settings.ray_actors)),
        num_cpus=settings.ray_cpus_per_actor,
        num_gpus=settings.ray_gpus_per_actor or None,
        batch_format="numpy",
    )
    t = time.perf_counter()
    for batch in ds.iter_batches(batch_size=settings.batch_size, batch_format="numpy"):
        results: list[tuple[int, Proposals]] = []
        errors: list[tuple[int, str]] = []
        for i in range(len(batch["image_id"])):
            image_id = int(batch["image_id"][i])
            if batch["error"][i]:
                errors.append((image_id, str(batch["error"][i])))
            else:
                results.append((image_id, _proposals_from_json(str(batch["result"][i]))))
        now = time.perf_counter()
        yield results, errors, now - t
        t = now
        if stop.is_set():
            return


__all__ = [
    "Detector",
    "ProposeSettings",
    "ProposeSummary",
    "Refiner",
    "graceful_interrupt",
    "group_by_shape",
    "input_shape",
    "load_for_detector",
    "normalize_prompt",
    "process_loaded",
    "rescale",
    "resolve_model",
    "resolve_settings",
    "run_propose",
    "split_prompt",
]
