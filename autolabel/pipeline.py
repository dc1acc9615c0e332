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


@dataclass
class StageTimer:
    """Collects what each stage did and how long it took."""

    log: Log = _quiet
    stages: list[dict[str, Any]] = field(default_factory=list)

    def run(self, name: str, fn: Callable[[], Any], describe: Callable[[Any], str]) -> Any:
        t0 = time.perf_counter()
        self.log(f"[{name}] ...")
        result = fn()
        secs = time.perf_counter() - t0
        text = describe(result)
        self.stages.append({"stage": name, "seconds": round(secs, 2), "summary": text})
        self.log(f"[{name}] {text} ({secs:.1f}s)")
        return result


# -- demo data --------------------------------------------------------------------------------
def make_demo_data(root: Path, *, n_images: int = 30, n_seed: int = 16, seed: int = 0) -> dict:
    """Generate the demo's input folders under ``root/data``.

    Layout: ``data/screenshots/shot_new_0000.jpg`` (phone screenshots with one product photo
    each, the folder to label), ``data/truth.jsonl`` (their true product boxes, for
    ``autolabel eval``), ``data/seed/{originals,crops,captions.jsonl}`` (hand-crop
    imitations of other screenshots, see :func:`autolabel.synth.make_seed_set`).

    Returns:
        Paths: ``screenshots``, ``truth``, ``seed_crops``, ``seed_originals``, ``captions``.
    """
    import numpy as np

    from autolabel.synth import make_screenshot, make_seed_set

    data = root / "data"
    shots = data / "screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    make_seed_set(data / "seed", n_seed, seed=seed, n_unrelated=1)
    rng = np.random.default_rng(seed + 1)
    with open(data / "truth.jsonl", "w", encoding="utf-8") as f:
        for i in range(n_images):
            img, box, _meta = make_screenshot(rng)
            path = shots / f"shot_new_{i:04d}.jpg"
            img.save(path, quality=88)
            row = {"image": str(path.resolve()), "boxes": [[float(v) for v in box]]}
            f.write(json.dumps(row) + "\n")
    return {
        "screenshots": shots,
        "truth": data / "truth.jsonl",
        "seed_crops": data / "seed" / "crops",
        "seed_originals": data / "seed" / "originals",
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
    timer.run(
        "seed add",
        lambda: steps.seed_add(ws, cfg, crops, originals=originals, captions=captions),
        lambda r: (
            f"{r.crops} hand crops: {r.located} located in their originals, "
            f"{r.not_found} not found, {r.no_original} without original"
        ),
    )
    timer.run(
        "seed prompts",
        lambda: steps.seed_prompts(ws, cfg, prompt=prompt),
        lambda r: f"prompt {r['prompt']!r} from {r['items']} seed items",
    )
    if originals is not None:  # calibration needs seed boxes located in originals
        timer.run(
            "seed calibrate",
            lambda: steps.seed_calibrate(ws, cfg, prompt=prompt),
            lambda r: (
                f"box_threshold {r['box_threshold']} (F1 {r['f1']:.2f}, precision "
                f"{r['precision']:.2f}, recall {r['recall']:.2f} on {r['n']} seed boxes)"
            ),
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
    from autolabel.propose import run_propose

    settings = steps.propose_settings(
        ws, cfg, prompt=prompt, box_threshold=box_threshold, text_threshold=text_threshold
    )
    return timer.run(
        name,
        lambda: run_propose(ws, settings),
        lambda s: (
            f"{s.images} images -> {s.proposals} proposals with {settings.detect.detector} "
            f"({s.errors} errors, {s.images_per_second:.1f} images/s)"
        ),
    )


def _select(ws: Any, cfg: Config, timer: StageTimer) -> dict[str, Any]:
    return timer.run(
        "select",
        lambda: steps.select(ws, cfg),
        lambda r: "routes " + ", ".join(f"{k} {v}" for k, v in r["routes"].items()),
    )


def _export(ws: Any, cfg: Config, timer: StageTimer, out: Path) -> Any:
    return timer.run(
        "export",
        lambda: steps.export(ws, cfg, out),
        lambda r: (
            f"version {r.version}: {r.counts.get('crops', 0)} crops, "
            f"{r.counts.get('too_small', 0)} too small -> {r.path}"
        ),
    )


# -- demo ---------------------------------------------------------------------------------------
DEMO_CONFIG = """\
# Demo workspace settings: a coarser, faster exemplar search (the demo must run in minutes
# on 2 CPU cores), a lower precision target (no reviewer has calibrated anything yet) and
# a smaller minimum crop size (the generated screenshots are only 360x640).
detect:
  exemplar_scale_step: 1.15
  exemplar_coarse_side: 240
select:
  target_precision: 0.9
export:
  min_size: 96
"""


def run_demo(
    root: str | Path,
    *,
    n_images: int = 16,
    n_seed: int = 8,
    tiny_images: int = 4,
    log: Log = _quiet,
) -> dict[str, Any]:
    """Build a demo workspace under ``root`` and run every stage on it, offline.

    Generates screenshots and hand-crop imitations (:func:`make_demo_data`), then: ingest;
    seed add + prompts + calibrate; tiny Grounding DINO + SAM through the real loading code
    on ``tiny_images`` images (random weights: it shows the code path, not quality); the
    weight-free exemplar detector on every image; select; eval against the known truth;
    export; report.

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
    timer = StageTimer(log)
    paths = timer.run(
        "generate",
        lambda: make_demo_data(root, n_images=n_images, n_seed=n_seed),
        lambda p: (
            f"{n_images} phone screenshots in {p['screenshots']}, {n_seed + 1} hand-crop "
            f"imitations with captions in {p['seed_crops'].parent}"
        ),
    )
    ws = Workspace.create(root / "workspace")
    ws.config_path.write_text(DEMO_CONFIG, encoding="utf-8")
    try:
        cfg = steps.load_options(ws)
        exemplar = cfg.with_flags({"detect.detector": "exemplar"})
        timer.run(
            "ingest",
            lambda: steps.ingest(ws, cfg, [paths["screenshots"]]),
            lambda r: f"{r.added} images added ({r.errors} errors)",
        )
        _seed(
            ws,
            exemplar,
            timer,
            crops=paths["seed_crops"],
            originals=paths["seed_originals"],
            captions=paths["captions"],
            prompt=None,
        )
        tiny = timer.run(
            "models make-tiny",
            lambda: make_tiny_models(root / "models" / "tiny"),
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
        _propose(ws, exemplar, timer, "propose (exemplar)")
        _select(ws, cfg, timer)
        report_eval = timer.run(
            "eval",
            lambda: evaluate(ws, paths["truth"]),
            lambda e: (
                f"AP50 {e['ap50']:.3f}; auto-accepted precision "
                f"{_fmt(e.get('auto_precision'))} over {e.get('n_auto', 0)} boxes"
            ),
        )
        export = _export(ws, cfg, timer, root / "export")
        html_path, _ = timer.run(
            "report",
            lambda: write_report(ws),
            lambda r: f"{r[0]}",
        )
    finally:
        ws.close()
    return {
        "root": str(root),
        "workspace": str(root / "workspace"),
        "export": str(export.path),
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
) -> dict[str, Any]:
    """Ingest ``in_dir``, propose, select and export auto-accepted crops into ``out_dir``.

    The workspace (default ``out_dir/.autolabel``) is created or reused, so a re-run only
    proposes for new images and exports a new version (when anything changed); a re-run after
    a crash resumes. Seed crops (with ``originals``/``captions``) bootstrap the prompt and
    thresholds; with the ``exemplar`` detector they are the exemplars.

    Options: the workspace's ``config.yaml`` over :data:`autolabel.steps.AUTOCROP_PRESET`
    (target precision 0.98, swift JSONL only), then the arguments that are not None
    (``size`` = ``export.size``, ``target_precision`` = ``select.target_precision``,
    ``detector``/``model``/``refiner``/``device`` = ``detect.*``, ``engine`` =
    ``propose.engine`` and ``export.engine``, ``batch_size`` = ``propose.batch_size``).
    Every step is the one the stage command runs.

    Returns:
        Summary: ``images``, ``new_images``, ``proposed``, ``crops``, ``export`` (version
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
    _check_out_not_inside(in_path, out_path)
    ws_path = Path(workspace).expanduser() if workspace else out_path / ".autolabel"
    out_path.mkdir(parents=True, exist_ok=True)
    timer = StageTimer(log)
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
        before = workspace_status(ws)["images"].get("ok", 0)
        ing = timer.run(
            "ingest",
            lambda: steps.ingest(ws, cfg, [in_path]),
            lambda r: f"{r.added} new images ({r.errors} errors)",
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
        if labels_changed_since_last_export(ws, include=cfg.export.include):
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
    ws_path: Path, out_dir: str | Path, *, size: int | None = None, log: Log = _quiet
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
        if not labels_changed_since_last_export(ws, include=cfg.export.include):
            return {"export": None}
        timer = StageTimer(log)
        export = _export(ws, cfg, timer, Path(out_dir))
        return {"export": str(export.path), "stages": timer.stages}
    finally:
        ws.close()
