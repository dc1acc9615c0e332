"""Whole-loop compositions: ``autolabel demo`` and ``autolabel autocrop``.

Nothing here implements a stage: every step is the :mod:`autolabel.steps` function the stage
command calls (ingest, seed, propose, select, export, review), with the same config, so a
config key means the same here as in the stage command.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autolabel import steps
from autolabel.config import Config
from autolabel.errors import InputError

Log = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


class _NoBar:
    """The bar of a run without progress display (library calls, ``--json``)."""

    done = 0

    def __enter__(self) -> _NoBar:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def update(self, done: int, total: int | None = None) -> None:
        pass

    def advance(self, n: int) -> None:
        pass

    def start(self, total: int | None = None) -> _NoBar:
        return self

    def close(self) -> None:
        pass


Bars = Callable[[str, str], Any]
"""``(stage, unit) -> bar``: a context manager with ``update(done, total=None)``,
``advance(n)``, ``start(total)`` and ``close()`` (the commands pass
:func:`autolabel.commands._common.stage_bars`, the stage commands' own bar)."""


def _no_bars(_stage: str, _unit: str) -> _NoBar:
    return _NoBar()


class Stopped(KeyboardInterrupt):
    """Ctrl-C stopped a stage; what was done is saved and a re-run resumes."""


@dataclass
class StageTimer:
    """Runs the stages: a log line before and after each, its progress bar, its timing."""

    log: Log = _quiet
    bars: Bars = _no_bars
    stages: list[dict[str, Any]] = field(default_factory=list)

    def run(
        self,
        name: str,
        fn: Callable[[Any], Any],
        describe: Callable[[Any], str],
        *,
        unit: str | None = None,
    ) -> Any:
        """Run ``fn(bar)`` (``bar`` is a progress bar counting ``unit`` when given, else a
        no-op one), log ``describe(result)`` and record the stage."""
        t0 = time.perf_counter()
        self.log(f"[{name}] ...")
        with self.bars(name, unit) if unit else _NoBar() as bar:
            result = fn(bar)
        secs = time.perf_counter() - t0
        text = describe(result)
        self.stages.append({"stage": name, "seconds": round(secs, 2), "summary": text})
        self.log(f"[{name}] {text} ({secs:.1f}s)")
        return result


# -- demo data --------------------------------------------------------------------------------
DEMO_CAPTIONS: tuple[str, ...] = (
    "product photo of a ceramic coffee mug",
    "product photo of wireless earbuds with case",
    "product photo, cotton t-shirt",
    "product photo of a steel water bottle",
    "product photo of a leather crossbody bag",
    "product photo of a scented candle gift box",
)
"""Seed captions of the demo (its products are procedural: the caption names the kind of
picture, "product photo", which is what the demo crops)."""


def _write_encoded(path_stem: Path, image: Any, rng: Any) -> Path:
    """Save ``(H, W, 3)`` pixels as a user's file would be (JPEG/PNG/WEBP, sometimes an
    EXIF-rotated JPEG); returns the path with its suffix."""
    from PIL import Image

    from autolabel.synth import encode_image

    data, suffix = encode_image(Image.fromarray(image), rng, exif_prob=0.1)
    path = path_stem.with_suffix(suffix)
    path.write_bytes(data)
    return path


def make_demo_data(
    root: Path, *, n_images: int = 16, n_seed: int = 8, seed: int = 0, scale: float = 1.0
) -> dict:
    """Generate the demo's input folders under ``root/data``: what a user meets.

    Phone-size shopping-app screenshots (:func:`autolabel.synth.make_app_samples`: 720x1600
    to 1170x2532, JPEG/PNG/WEBP, some EXIF-rotated) with one main product picture each, plus
    "you may also like" rows of thumbnails (the same product, its colour variants, others),
    banners and stickers. Half of the screenshots to label show products of the seed set,
    half products never seen. The seed set imitates hand crops (a few pixels off,
    brightened, often resized to 448, names like ``product_C_448_v2.png``) with captions,
    plus one crop of a product that is in no original.

    Layout: ``data/screenshots/shot_new_0000.jpg`` (the folder to label), ``data/truth.jsonl``
    (their main-picture boxes, for ``autolabel eval``), ``data/seed/{originals,crops,
    captions.jsonl}``.

    Args:
        root: the demo folder.
        n_images: screenshots to label.
        n_seed: seed screenshots (one hand crop each).
        seed: random seed.
        scale: multiply every screen size (tests use 0.5 or less).

    Returns:
        Paths: ``screenshots``, ``truth``, ``seed_crops``, ``seed_originals``, ``captions``.
    """
    import numpy as np
    from PIL import Image

    from autolabel.synth import make_app_samples, product_image

    data = root / "data"
    shots, originals, crops = (
        data / "screenshots",
        data / "seed" / "originals",
        data / "seed" / "crops",
    )
    for folder in (shots, originals, crops):
        folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    seen = [int(p) for p in rng.choice(np.arange(100, 1000), size=max(1, n_seed), replace=False)]
    captions = []
    for i, sample in enumerate(
        make_app_samples(n_seed, seed, products=seen, with_crops=True, scale=scale)
    ):
        _write_encoded(originals / f"shot_{i:04d}", sample.image, rng)
        name = f"{Path(sample.crop_name or 'crop').stem}_{i:02d}.png"
        Image.fromarray(sample.crop).save(crops / name)
        captions.append({"image": f"crops/{name}", "text": DEMO_CAPTIONS[i % len(DEMO_CAPTIONS)]})
    side = max(32, round(448 * min(1.0, scale * 2)))
    product_image(5000 + seed, (side, side)).save(crops / "unrelated_448.png")  # in no original
    captions.append({"image": "crops/unrelated_448.png", "text": DEMO_CAPTIONS[0]})
    with open(data / "seed" / "captions.jsonl", "w", encoding="utf-8") as f:
        f.writelines(json.dumps(c, ensure_ascii=False) + "\n" for c in captions)
    unseen = [int(p) for p in rng.choice(np.arange(10_000, 100_000), size=n_images, replace=False)]
    products = [seen[i % len(seen)] if i % 2 == 0 else unseen[i] for i in range(n_images)]
    samples = make_app_samples(n_images, seed + 1, products=products, scale=scale)
    with open(data / "truth.jsonl", "w", encoding="utf-8") as f:
        for i, sample in enumerate(samples):
            path = _write_encoded(shots / f"shot_new_{i:04d}", sample.image, rng)
            row = {"image": str(path.resolve()), "boxes": [[float(v) for v in sample.box]]}
            f.write(json.dumps(row) + "\n")
    return {
        "screenshots": shots,
        "truth": data / "truth.jsonl",
        "seed_crops": crops,
        "seed_originals": originals,
        "captions": data / "seed" / "captions.jsonl",
    }


def _check_out_not_inside(in_dir: Path, out_dir: Path) -> None:
    in_r, out_r = in_dir.resolve(), out_dir.resolve()
    if out_r == in_r or in_r in out_r.parents:
        raise InputError(
            f"OUT_DIR {out_dir} is inside IN_DIR {in_dir}: expected an output folder outside "
            "the input folder (its crops would be ingested as new images)"
        )


# -- shared steps -----------------------------------------------------------------------------
def _ingest(ws: Any, cfg: Config, timer: StageTimer, folder: Path, describe: Callable) -> Any:
    return timer.run(
        "ingest",
        lambda bar: steps.ingest(ws, cfg, [folder], on_progress=lambda r: bar.update(r.seen)),
        describe,
        unit="files",
    )


def _describe_seed_add(r: Any) -> str:
    text = (
        f"{r.crops} hand crops: {r.located} located in their originals, "
        f"{r.not_found} not found, {r.no_original} without original"
    )
    return text + (f", {r.skipped} unchanged (skipped)" if r.skipped else "")


def _seed(
    ws: Any,
    cfg: Config,
    timer: StageTimer,
    *,
    crops: Path,
    originals: Path | None,
    captions: Path | None,
    prompt: str | None,
) -> None:
    added = timer.run(
        "seed add",
        lambda bar: steps.seed_add(
            ws, cfg, crops, originals=originals, captions=captions, on_progress=bar.update
        ),
        _describe_seed_add,
        unit="crops",
    )
    generic = steps.seed_prompt_fallback(ws, cfg, prompt)
    if generic is not None:
        timer.log(
            f"[seed prompts] no --prompt and no captions: using {generic!r} (pass --prompt "
            "or --captions to name the objects)"
        )
        prompt = generic
    timer.run(
        "seed prompts",
        lambda _bar: steps.seed_prompts(ws, cfg, prompt=prompt),
        lambda r: f"prompt {r['prompt']!r} from {r['items']} seed items",
    )
    if originals is None:  # calibration needs seed boxes located in originals
        return
    nothing_new = added.skipped == added.crops
    if nothing_new and steps.calibration_is_current(ws, cfg, prompt=prompt):
        timer.log("[seed calibrate] seed, detector and prompt unchanged; kept the thresholds")
        return
    timer.run(
        "seed calibrate",
        lambda bar: steps.seed_calibrate(ws, cfg, prompt=prompt, on_progress=bar.update),
        lambda r: (
            f"box_threshold {r['box_threshold']} (F1 {r['f1']:.2f}, precision "
            f"{r['precision']:.2f}, recall {r['recall']:.2f} on {r['n']} seed boxes)"
            + (f"\nwarning: {r['warning']}" if r.get("warning") else "")
        ),
        unit="img",
    )


def _propose(
    ws: Any,
    cfg: Config,
    timer: StageTimer,
    name: str,
    *,
    prompt: str | None = None,
    box_threshold: float | None = None,
    text_threshold: float | None = None,
) -> Any:
    """Run propose with its progress bar; Ctrl-C finishes the batch in flight, then raises
    :class:`Stopped` (a re-run resumes)."""
    import threading

    from autolabel.propose import graceful_interrupt, run_propose

    settings = steps.propose_settings(
        ws,
        cfg,
        prompt=prompt,
        box_threshold=box_threshold,
        text_threshold=text_threshold,
        log=lambda line: timer.log(f"[{name}] {line}"),
    )
    stop = threading.Event()

    def notice() -> None:
        timer.log("stopping after the current batch (Ctrl-C again to abort)")

    def run(bar: Any) -> Any:
        with graceful_interrupt(stop, notice):
            return run_propose(
                ws,
                settings,
                progress=lambda n_images, _n: bar.advance(n_images),
                on_start=lambda summary: bar.update(0, summary.pending),
                stop=stop,
            )

    summary = timer.run(
        name,
        run,
        lambda s: (
            f"{s.images} images -> {s.proposals} proposals with {settings.detect.detector} "
            f"({s.errors} errors, {s.images_per_second:.1f} images/s)"
            + (" (stopped)" if s.interrupted else "")
        ),
        unit="img",
    )
    if summary.interrupted:
        raise Stopped
    return summary


def _select(ws: Any, cfg: Config, timer: StageTimer) -> dict[str, Any]:
    return timer.run(
        "select",
        lambda _bar: steps.select(ws, cfg, log=lambda m: timer.log(f"[select] {m}")),
        lambda r: (
            "routes "
            + ", ".join(f"{k} {v}" for k, v in r["routes"].items())
            + "".join(f"\nwarning: {w}" for w in r.get("warnings", []))
        ),
    )


def _export(ws: Any, cfg: Config, timer: StageTimer, out: Path) -> Any:
    return timer.run(
        "export",
        lambda bar: steps.export(ws, cfg, out, on_progress=bar.update),
        lambda r: (
            f"version {r.version}: {r.counts.get('crops', 0)} crops, "
            f"{r.counts.get('too_small', 0)} too small -> {r.path}"
        ),
        unit="img",
    )


# -- demo ---------------------------------------------------------------------------------------
DEMO_CONFIG = """\
# Demo workspace settings: a coarser, faster exemplar search (the demo must run in minutes
# on 2 CPU cores) and a lower precision target (no reviewer has calibrated anything yet).
detect:
  exemplar_scale_step: 1.15
  exemplar_coarse_side: 240
select:
  target_precision: 0.9
"""


def run_demo(
    root: str | Path,
    *,
    n_images: int = 16,
    n_seed: int = 8,
    tiny_images: int = 4,
    log: Log = _quiet,
    bars: Bars = _no_bars,
) -> dict[str, Any]:
    """Build a demo workspace under ``root`` and run every stage on it, offline.

    Generates screenshots and hand-crop imitations (:func:`make_demo_data`), then: ingest;
    seed add + prompts + calibrate; tiny Grounding DINO + SAM through the real loading code
    on ``tiny_images`` images (random weights: it shows the code path, not quality); on
    every image Grounding DINO when its weights (``detect.model``) are on the machine, else
    the weight-free ``regions`` detector (:func:`autolabel.steps.weight_free_choice`, one
    line in the log); select; eval against the known truth; export; report.

    Returns:
        ``{"root", "workspace", "export", "report", "stages": [...], "eval": {...}}``.

    Raises:
        InputError: ``root`` already holds a demo workspace.
    """
    from autolabel.detect.tiny import make_tiny_models
    from autolabel.evaluate import evaluate
    from autolabel.report import write_report
    from autolabel.store import Workspace

    root = Path(root).expanduser().resolve()
    if (root / "workspace").exists():
        raise InputError(
            f"{root}: expected an empty or new folder for the demo, found an earlier demo "
            "workspace (delete it or pick another folder)"
        )
    timer = StageTimer(log, bars)
    paths = timer.run(
        "generate",
        lambda _bar: make_demo_data(root, n_images=n_images, n_seed=n_seed),
        lambda p: (
            f"{n_images} phone screenshots in {p['screenshots']}, {n_seed + 1} hand-crop "
            f"imitations with captions in {p['seed_crops'].parent}"
        ),
    )
    ws = Workspace.create(root / "workspace")
    ws.config_path.write_text(DEMO_CONFIG, encoding="utf-8")
    try:
        cfg = steps.load_options(ws)
        weightfree, note = steps.weight_free_choice(
            ws, cfg, detector_flag=None, seed_originals=True, seed_crops=True
        )
        if note:
            log(f"[detector] {note}")
        _ingest(
            ws,
            cfg,
            timer,
            paths["screenshots"],
            lambda r: f"{r.added} images added ({r.errors} errors)",
        )
        _seed(
            ws,
            weightfree,
            timer,
            crops=paths["seed_crops"],
            originals=paths["seed_originals"],
            captions=paths["captions"],
            prompt=None,
        )
        tiny = timer.run(
            "models make-tiny",
            lambda _bar: make_tiny_models(root / "models" / "tiny"),
            lambda t: f"tiny random-init models in {root / 'models' / 'tiny'}",
        )
        tiny_cfg = cfg.with_flags(
            {
                "detect.detector": "grounding-dino",
                "detect.model": str(tiny["grounding-dino"]),
                "detect.refiner": "sam",
                "detect.refiner_model": str(tiny["sam"]),
                "detect.device": "cpu",
                "propose.limit": tiny_images,
            }
        )
        _propose(
            ws,
            tiny_cfg,
            timer,
            "propose (tiny grounding-dino + sam)",
            box_threshold=0.05,
            text_threshold=0.05,
        )
        _propose(ws, weightfree, timer, f"propose ({weightfree.detect.detector})")
        _select(ws, cfg, timer)
        report_eval = timer.run(
            "eval",
            lambda _bar: evaluate(ws, paths["truth"]),
            lambda e: (
                f"AP50 {e['ap50']:.3f}; auto-accepted precision "
                f"{_fmt(e.get('auto_precision'))} over {e.get('n_auto', 0)} boxes"
            ),
        )
        export = None
        if steps.has_export_labels(ws, cfg):
            export = _export(ws, cfg, timer, root / "export")
        else:
            log("[export] no auto-accepted boxes: nothing to export (review them first)")
        html_path, _ = timer.run(
            "report",
            lambda _bar: write_report(ws, export=cfg.export),
            lambda r: f"{r[0]}",
        )
    finally:
        ws.close()
    return {
        "root": str(root),
        "workspace": str(root / "workspace"),
        "export": None if export is None else str(export.path),
        "report": str(html_path),
        "stages": timer.stages,
        "eval": {k: report_eval.get(k) for k in ("ap50", "auto_precision", "n_auto")},
    }


def _fmt(value: Any) -> str:
    return "n/a" if value is None else f"{value:.3f}"


# -- autocrop ----------------------------------------------------------------------------------
def autocrop(
    in_dir: str | Path,
    out_dir: str | Path,
    *,
    prompt: str | None = None,
    seed_crops: str | Path | None = None,
    originals: str | Path | None = None,
    captions: str | Path | None = None,
    size: int | None = None,
    target_precision: float | None = None,
    workspace: str | Path | None = None,
    detector: str | None = None,
    model: str | None = None,
    refiner: str | None = None,
    engine: str | None = None,
    device: str | None = None,
    batch_size: int | None = None,
    log: Log = _quiet,
    bars: Bars = _no_bars,
) -> dict[str, Any]:
    """Ingest ``in_dir``, propose, select and export auto-accepted crops into ``out_dir``.

    The workspace (default ``out_dir/.autolabel``) is created or reused, so a re-run only
    proposes for new images and exports a new version (when anything changed); a re-run after
    a crash resumes. Seed crops (with ``originals``/``captions``) bootstrap the prompt and
    thresholds; with the ``exemplar`` detector they are the exemplars. Without Grounding DINO
    weights on the machine (and no detector chosen) the weight-free ``regions`` detector is
    trained on the seed originals (:func:`autolabel.steps.weight_free_choice`); seed crops
    without captions and no prompt mean the prompt ``"product photo"``.

    Options: the workspace's ``config.yaml`` over :data:`autolabel.steps.AUTOCROP_PRESET`
    (target precision 0.98, swift JSONL only), then the arguments that are not None
    (``size`` = ``export.size``, ``target_precision`` = ``select.target_precision``,
    ``detector``/``model``/``refiner``/``device`` = ``detect.*``, ``engine`` =
    ``propose.engine`` and ``export.engine``, ``batch_size`` = ``propose.batch_size``).
    Every step is the one the stage command runs.

    Returns:
        Summary: ``images`` (in the workspace, seed originals included), ``in_dir_files``
        (image files ingest saw in ``in_dir``), ``new_images``, ``proposed``, ``crops``,
        ``export`` (version
        path or None), ``review_waiting``, ``precision`` (estimate dict), ``errors`` (by
        reason), ``workspace``, ``review_command``, ``stages``.

    Raises:
        InputError: missing/invalid folders, or ``out_dir`` inside ``in_dir``.
        ConfigError: no prompt from ``prompt``, seed captions or config.
    """
    from autolabel.select.run import precision_estimate
    from autolabel.store import Workspace
    from autolabel.store.images import workspace_status

    in_path = Path(in_dir).expanduser()
    out_path = Path(out_dir).expanduser()
    if not in_path.is_dir():
        raise InputError(f"IN_DIR {in_path}: expected a folder of images, got no such folder")
    if seed_crops is not None and not Path(seed_crops).is_dir():
        raise InputError(f"--seed {seed_crops}: expected a folder of hand crops, got none")
    if originals is not None and not Path(originals).is_dir():
        raise InputError(f"--originals {originals}: expected a folder of originals, got none")
    if out_path.exists() and not out_path.is_dir():
        raise InputError(f"OUT_DIR {out_path}: expected a folder (or a new path), got a file")
    _check_out_not_inside(in_path, out_path)
    ws_path = Path(workspace).expanduser() if workspace else out_path / steps.AUTOCROP_WORKSPACE_DIR
    out_path.mkdir(parents=True, exist_ok=True)
    timer = StageTimer(log, bars)
    ws = Workspace.create(ws_path)
    try:
        cfg = steps.load_options(
            ws,
            None,
            {
                "detect.detector": detector,
                "detect.model": model,
                "detect.refiner": refiner,
                "detect.device": device,
                "propose.engine": engine,
                "export.engine": engine,
                "propose.batch_size": batch_size,
                "select.target_precision": target_precision,
                "export.size": size,
            },
            preset=steps.AUTOCROP_PRESET,
        )
        cfg, note = steps.weight_free_choice(
            ws,
            cfg,
            detector_flag=detector,
            seed_originals=originals is not None,
            seed_crops=seed_crops is not None,
        )
        if note:
            log(f"[detector] {note}")
        before = workspace_status(ws)["images"].get("ok", 0)
        ing = _ingest(
            ws, cfg, timer, in_path, lambda r: f"{r.added} new images ({r.errors} errors)"
        )
        if ing.seen == 0:
            raise InputError(
                f"IN_DIR {in_path}: expected image files ({', '.join(cfg.ingest.extensions)}), "
                "found none; nothing was proposed or exported"
            )
        if seed_crops is not None:
            _seed(
                ws,
                cfg,
                timer,
                crops=Path(seed_crops),
                originals=Path(originals) if originals else None,
                captions=Path(captions) if captions else None,
                prompt=prompt,
            )
        summary = _propose(ws, cfg, timer, "propose", prompt=prompt)
        _select(ws, cfg, timer)
        from autolabel.store.exports import labels_changed_since_last_export

        export_path, crops = None, 0
        if not steps.has_export_labels(ws, cfg):
            log("[export] no auto-accepted boxes yet: nothing written (review, then re-run)")
        elif labels_changed_since_last_export(ws, include=cfg.export.include):
            export = _export(ws, cfg, timer, out_path)
            export_path, crops = str(export.path), int(export.counts.get("crops", 0))
        else:
            log("[export] nothing new since the last export; kept the latest version")
        status = workspace_status(ws)
        estimate = precision_estimate(ws)
    finally:
        ws.close()
    waiting = status["queue"].get("open", 0) + status["queue"].get("claimed", 0)
    return {
        "workspace": str(ws_path.resolve()),
        "images": status["images"].get("ok", 0),
        "new_images": status["images"].get("ok", 0) - before,
        "in_dir_files": ing.seen,
        "ingest_errors": ing.errors,
        "proposed": summary.images,
        "proposals": summary.proposals,
        "export": export_path,
        "crops": crops,
        "review_waiting": waiting,
        "review_command": f"autolabel review {ws_path.resolve()}",
        "precision": estimate,
        "errors": status["image_errors"],
        "stages": timer.stages,
    }


def review_then_export(
    ws_path: Path,
    out_dir: str | Path,
    *,
    size: int | None = None,
    log: Log = _quiet,
    bars: Bars = _no_bars,
) -> dict[str, Any]:
    """Serve the review app in the foreground; when it stops (Ctrl-C), export again.

    Same options as :func:`autocrop` (``size`` = ``export.size``).
    """
    from autolabel.store import Workspace
    from autolabel.store.exports import labels_changed_since_last_export

    ws = Workspace.open(ws_path)
    try:
        cfg = steps.load_options(ws, None, {"export.size": size}, preset=steps.AUTOCROP_PRESET)
    finally:
        ws.close()
    try:
        steps.review(
            ws_path, cfg, on_ready=lambda url: log(f"review app: {url}  (Ctrl-C when done)")
        )
    except KeyboardInterrupt:
        pass
    ws = Workspace.open(ws_path)
    try:
        if not steps.has_export_labels(ws, cfg) or not labels_changed_since_last_export(
            ws, include=cfg.export.include
        ):
            return {"export": None}
        timer = StageTimer(log, bars)
        export = _export(ws, cfg, timer, Path(out_dir))
        return {"export": str(export.path), "stages": timer.stages}
    finally:
        ws.close()
