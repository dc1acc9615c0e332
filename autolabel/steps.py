"""One function per stage step: config sections in, the stage's library call out.

The stage commands (``autolabel ingest``, ``seed ...``, ``propose``, ``select``, ``export``,
``review``, ``finetune``) and the whole-loop compositions (``demo``, ``autocrop`` in
:mod:`autolabel.pipeline`) both call these, so a config key means the same thing whichever
command runs the stage. Each command builds its :class:`~autolabel.config.Config` once with
:func:`load_options` (file + flags) and resolves its prompt with :func:`resolve_prompt`.

No heavy imports at module level: every library import happens inside the step.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from autolabel.config import Config, load_config
from autolabel.types import Prompt

WORKSPACE_PROMPT = "seed.prompt"
"""Workspace setting holding the workspace's prompt (``seed prompts``, ``propose --prompt``)."""

AUTOCROP_PRESET: dict[str, Any] = {
    "select.target_precision": 0.98,
    "export.formats": ["swift"],
}
"""``autocrop``'s own defaults; a config file or a flag overrides them."""

AUTOCROP_WORKSPACE_DIR = ".autolabel"
"""``autocrop``'s workspace inside its OUT_DIR; every WORKSPACE argument also accepts the
OUT_DIR (:func:`autolabel.commands._common.find_workspace`)."""


# -- options ------------------------------------------------------------------------------------
def load_options(
    ws: Any,
    config: str | Path | None = None,
    flags: Mapping[str, Any] | None = None,
    *,
    preset: Mapping[str, Any] | None = None,
) -> Config:
    """The config a command runs with: defaults < ``preset`` < file < flags.

    Args:
        ws: an open workspace (its ``config.yaml`` is the file when ``config`` is None).
        config: a YAML file given with ``--config``.
        flags: ``{"section.key": value}``; None = flag not given.
        preset: a command's own defaults (see :data:`AUTOCROP_PRESET`).

    Raises:
        ConfigError: unreadable file, unknown key or wrong type (named).
    """
    if config is None and ws.config_path.exists():
        config = ws.config_path
    return load_config(config, preset=preset).with_flags(flags)


def workspace_prompt(ws: Any) -> str | None:
    """The workspace's prompt (set by ``seed prompts`` or the last ``propose --prompt``)."""
    value = ws.get_setting(WORKSPACE_PROMPT)
    return str(value) if value else None


def resolve_prompt(ws: Any, cfg: Config, flag: str | None, *, required: bool = True) -> Any:
    """THE prompt rule: ``--prompt`` > the workspace's prompt > config (``propose.prompt``,
    else ``seed.prompt``).

    Args:
        ws: an open workspace.
        cfg: the command's config.
        flag: the ``--prompt`` value, or None.
        required: when False, return None instead of raising if there is no prompt.

    Returns:
        A :class:`~autolabel.types.Prompt` (or None, see ``required``).

    Raises:
        EmptyPromptError: no prompt anywhere (when required), or the winner has no phrase.
    """
    candidates = (flag, workspace_prompt(ws), cfg.prompt)
    if not required and not any(c and c.strip() for c in candidates):
        return None
    return Prompt.first_of(*candidates)


def remember_prompt(ws: Any, prompt: Prompt) -> None:
    """Make ``prompt`` the workspace's prompt (what later commands without --prompt use)."""
    ws.set_setting(WORKSPACE_PROMPT, str(prompt))


# -- steps --------------------------------------------------------------------------------------
def ingest(
    ws: Any,
    cfg: Config,
    folders: Sequence[Path],
    *,
    globs: Sequence[str] = (),
    on_progress: Callable[[Any], None] | None = None,
) -> Any:
    """Scan ``folders`` into the images table (:func:`autolabel.ingest.ingest`)."""
    from autolabel.ingest import ingest as run_ingest

    ic = cfg.ingest
    return run_ingest(
        ws,
        list(folders),
        recursive=ic.recursive,
        globs=list(globs),
        extensions=ic.extensions,
        batch_size=ic.batch_size,
        hash_bytes=ic.hash_bytes,
        follow_symlinks=ic.follow_symlinks,
        max_pixels=cfg.image.max_pixels,
        max_side=cfg.image.max_side,
        workers=ic.workers,
        retry_errors=ic.retry_errors,
        on_progress=on_progress,
    )


def seed_add(
    ws: Any,
    cfg: Config,
    crops: Path,
    *,
    originals: Path | None = None,
    captions: Path | None = None,
    mapping: Path | None = None,
    redo: bool = False,
    on_progress: Callable[[int, int], None] | None = None,
) -> Any:
    """Import hand crops and locate them (:func:`autolabel.seed.bootstrap.add_seed_crops`)."""
    from autolabel.seed.bootstrap import add_seed_crops

    sc = cfg.seed
    return add_seed_crops(
        ws,
        crops,
        originals_dir=originals,
        captions=captions,
        mapping=mapping,
        min_score=sc.min_match_score,
        min_verify=sc.min_verify_score,
        search_top_k=sc.search_top_k,
        prompt_map=sc.prompt_map,
        redo=redo,
        workers=sc.workers,
        on_progress=on_progress,
    )


def seed_prompts(ws: Any, cfg: Config, *, prompt: str | None = None) -> dict[str, Any]:
    """Derive the workspace's prompt from the seed captions, or set it by hand.

    A manual prompt is ``--prompt``, else the config's (``propose.prompt``/``seed.prompt``);
    without one the prompt is derived from the captions. The workspace's current prompt is
    not an input here: this step is what sets it.
    """
    from autolabel.seed.calibrate import derive_prompts

    manual = Prompt.first_of(prompt, cfg.prompt) if (prompt or cfg.prompt) else None
    return derive_prompts(
        ws,
        prompt=None if manual is None else str(manual),
        prompt_map=cfg.seed.prompt_map,
        max_phrases=cfg.seed.max_phrases,
    )


def seed_prompt_fallback(ws: Any, cfg: Config, prompt: str | None) -> str | None:
    """``autocrop``'s prompt when seed crops come with no caption and nothing names them.

    Returns:
        :data:`autolabel.constants.GENERIC_PROMPT` when there is no ``--prompt``, no
        workspace or config prompt and no seed caption; else None (the usual rule applies).
    """
    from autolabel.constants import GENERIC_PROMPT
    from autolabel.store.seed import list_seed_items

    if prompt or workspace_prompt(ws) or cfg.prompt:
        return None
    if any(it.caption for it in list_seed_items(ws)):
        return None
    return GENERIC_PROMPT


def weight_free_choice(
    ws: Any, cfg: Config, *, detector_flag: str | None, seed_originals: bool, seed_crops: bool
) -> tuple[Config, str | None]:
    """``autocrop``/``demo`` defaults: without Grounding DINO weights, a weight-free detector.

    Applies only when neither ``--detector`` nor the config chose another detector than the
    default and ``detect.model`` is not on this machine (a local folder, or a complete
    Hugging Face cache entry; see :func:`autolabel.detect.versions.weights_available`). Then
    ``regions`` (edge-snapped boxes) when it can be trained (seed originals given, located
    seed boxes or a ``regions-vN`` in the workspace), else ``exemplar`` when seed crops are
    given; otherwise nothing changes (Grounding DINO then says what is missing).

    Returns:
        ``(config, note)``: the config to run with and a one-line note for the log (None when
        nothing changed).
    """
    from autolabel.constants import DEFAULT_DETECTOR, WEIGHT_FREE_DETECTOR
    from autolabel.detect.versions import REGIONS_PREFIX, list_versions, weights_available
    from autolabel.store.seed import count_seed_items

    dc = cfg.detect
    if detector_flag is not None or dc.detector != DEFAULT_DETECTOR:
        return cfg, None
    if weights_available(dc.model, workspace=ws.path):
        return cfg, None
    trainable = (
        seed_originals
        or count_seed_items(ws)["located"] > 0
        or bool(list_versions(ws.path, REGIONS_PREFIX))
    )
    why = f"no Grounding DINO weights for {dc.model} on this machine"
    if trainable:
        note = (
            f"{why}: using the weight-free {WEIGHT_FREE_DETECTOR} detector (learns the seed's "
            "picture layout, boxes snapped to edges; `autolabel models pull` for Grounding DINO)"
        )
        return cfg.with_flags(
            {"detect.detector": WEIGHT_FREE_DETECTOR, "detect.model": "latest"}
        ), note
    if seed_crops:
        note = f"{why} and no seed originals: using the exemplar detector (finds the seed crops)"
        return cfg.with_flags({"detect.detector": "exemplar"}), note
    return cfg, None


def detector_options(cfg: Config) -> dict[str, Any]:
    """Build options of ``cfg.detect.detector`` for calibration (model, device, dtype...)."""
    dc = cfg.detect
    if dc.detector == "exemplar":
        return {"scale_step": dc.exemplar_scale_step, "coarse_side": dc.exemplar_coarse_side}
    return {"model": dc.model, "device": dc.device, "dtype": dc.dtype}


def calibration_prompt(ws: Any, cfg: Config, prompt: str | None = None) -> str:
    """The prompt ``seed calibrate`` uses (:func:`resolve_prompt`), after checking its inputs.

    Raises:
        InputError: no located seed boxes, or no prompt anywhere (in that order).
        EmptyPromptError: the chosen prompt has no phrase.
    """
    from autolabel.seed.calibrate import calibration_inputs

    chosen = resolve_prompt(ws, cfg, prompt, required=False)
    if chosen is None and cfg.detect.detector == "regions":
        chosen = "object"  # regions finds pictures without a prompt; it only names them
    _, text = calibration_inputs(ws, None if chosen is None else str(chosen))
    return str(text)


CALIBRATION_KEY = "seed.calibration_key"
"""Workspace setting: what the stored thresholds were calibrated with (see
:func:`calibration_is_current`)."""


def _calibration_key(ws: Any, cfg: Config, prompt: str, iou: float) -> dict[str, Any]:
    from autolabel.store.seed import list_seed_items

    located = sorted(
        [it.crop_path, [round(float(v), 2) for v in it.box]]
        for it in list_seed_items(ws, status="located")
        if it.box is not None
    )
    return {
        "detector": cfg.detect.detector,
        "options": {k: str(v) for k, v in sorted(detector_options(cfg).items())},
        "prompt": prompt,
        "iou": iou,
        "target_recall": cfg.seed.target_recall,
        "seed": located,
    }


def calibration_is_current(
    ws: Any, cfg: Config, *, prompt: str | None = None, iou: float = 0.5
) -> bool:
    """Whether the stored thresholds were calibrated with this detector, its options, this
    prompt and these located seed boxes (so calibrating again would give the same result).

    ``autocrop`` skips calibration on a re-run when this holds; ``seed calibrate`` always
    calibrates. True also when that calibration's thresholds were not adopted (its warning
    stands: the same inputs give the same result). False when there is no prompt.
    """
    from autolabel.errors import AutolabelError

    try:
        chosen = _calibration_prompt_for(ws, cfg, prompt)
    except AutolabelError:
        return False
    return ws.get_setting(CALIBRATION_KEY) == _calibration_key(ws, cfg, chosen, iou)


def _calibration_prompt_for(ws: Any, cfg: Config, prompt: str | None) -> str:
    """The prompt calibration runs with: ``regions`` needs none (``"object"`` then)."""
    if cfg.detect.detector == "regions":
        resolved = resolve_prompt(ws, cfg, prompt, required=False)
        return str(resolved) if resolved is not None else "object"
    return calibration_prompt(ws, cfg, prompt)


def seed_calibrate(
    ws: Any,
    cfg: Config,
    *,
    prompt: str | None = None,
    iou: float = 0.5,
    batch_size: int = 4,
    on_progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Pick detector thresholds on the seed boxes (:func:`autolabel.seed.calibrate.calibrate`;
    ``regions``: :func:`autolabel.seed.regions.calibrate_regions`, which needs no prompt) and
    remember what they were calibrated with (:func:`calibration_is_current`).

    Raises:
        InputError: no located seed boxes, or no prompt (see :func:`calibration_prompt`).
    """
    from autolabel.seed.calibrate import calibrate

    chosen = _calibration_prompt_for(ws, cfg, prompt)
    if cfg.detect.detector == "regions":
        from autolabel.seed.regions import calibrate_regions

        result = calibrate_regions(
            ws,
            prompt=chosen,
            iou=iou,
            target_recall=cfg.seed.target_recall,
            on_progress=on_progress,
        )
        ws.set_setting(CALIBRATION_KEY, _calibration_key(ws, cfg, chosen, iou))
        return result
    result = calibrate(
        ws,
        detector=cfg.detect.detector,
        options=detector_options(cfg),
        prompt=chosen,
        iou=iou,
        target_recall=cfg.seed.target_recall,
        min_recall=cfg.quality.min_recall,
        batch_size=batch_size,
        on_progress=on_progress,
    )
    ws.set_setting(CALIBRATION_KEY, _calibration_key(ws, cfg, chosen, iou))
    return result


def propose_settings(
    ws: Any,
    cfg: Config,
    *,
    prompt: str | None = None,
    box_threshold: float | None = None,
    text_threshold: float | None = None,
    log: Callable[[str], None] | None = None,
) -> Any:
    """Settings of a propose run (:func:`autolabel.propose.resolve_settings`).

    ``box_threshold``/``text_threshold`` are the flags only: without them the thresholds
    calibrated by ``seed calibrate`` or ``finetune`` beat ``detect.*`` (the runner decides).
    A ``--prompt`` becomes the workspace's prompt.

    Raises:
        EmptyPromptError: no prompt (see :func:`resolve_prompt`).
        ConfigError: an invalid value (named).
    """
    from autolabel.propose import resolve_settings

    chosen = resolve_prompt(ws, cfg, prompt)
    settings = resolve_settings(
        ws,
        cfg,
        prompt=chosen,
        box_threshold=box_threshold,
        text_threshold=text_threshold,
        log=log,
    )
    if prompt:
        remember_prompt(ws, chosen)
    return settings


def _quiet(_: str) -> None:
    pass


def select(ws: Any, cfg: Config, *, log: Callable[[str], None] = _quiet) -> dict[str, Any]:
    """Calibrate, route and fill the review queue (:func:`autolabel.select.run.run_select`)."""
    from autolabel.select.run import run_select

    return run_select(ws, cfg.select, quality=cfg.quality, log=log, export_size=cfg.export.size)


def export_version(ws: Any, out: Path) -> str:
    """The next free ``vN`` of the output folder ``out``: versions are numbered per folder
    (the first export into a new folder is ``v1``), counting the ``vN`` folders there and
    the exports this workspace recorded into it.
    """
    from autolabel.store.exports import list_exports, version_number

    folder = Path(out).expanduser().resolve()
    names = [p.name for p in folder.iterdir() if p.is_dir()] if folder.is_dir() else []
    names += [
        str(e["version"])
        for e in list_exports(ws)
        if e.get("out_dir") and Path(str(e["out_dir"])).resolve() == folder
    ]
    nums = [n for n in (version_number(v) for v in names) if n is not None]
    return f"v{max(nums, default=0) + 1}"


def has_export_labels(ws: Any, cfg: Config) -> bool:
    """Whether a full export with ``cfg.export.include`` would hold any label (stops at the
    first one: autocrop asks on every run, and counting read every label)."""
    from autolabel.store.labels import iter_labels

    return next(iter(iter_labels(ws, include=cfg.export.include)), None) is not None


def export(
    ws: Any,
    cfg: Config,
    out: Path,
    *,
    since: str | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> Any:
    """Write a dataset version (:func:`autolabel.export.export_dataset`).

    Without ``export.version`` the version is the output folder's next ``vN``
    (:func:`export_version`).

    Raises:
        InputError: no label to export (nothing is written).
    """
    from autolabel.errors import InputError
    from autolabel.export import export_dataset

    include = cfg.export.include
    if not has_export_labels(ws, cfg):
        raise InputError(
            f"nothing to export: expected {include} labels (export.include), got none in "
            f"{ws.path}; nothing was written (run `autolabel select`, or review, first)"
        )
    if cfg.export.version is None:
        cfg = cfg.with_flags({"export.version": export_version(ws, out)})
    return export_dataset(
        ws, out, cfg.export, since=since, image=cfg.image, on_progress=on_progress
    )


def finetune(
    ws: Any,
    cfg: Config,
    *,
    prompt: str | None = None,
    restart: bool = False,
    callback: Callable[[dict], None] | None = None,
) -> Any:
    """Fine-tune on seed + reviewed boxes (:func:`autolabel.train.loop.finetune_workspace`).

    The starting model is ``finetune.base`` (the runner resolves None, ``latest`` and
    versions). Seed boxes without a phrase get the first phrase of the prompt
    (:func:`resolve_prompt`); with no prompt anywhere they are an error of the training-set
    builder. With ``detect.detector: regions`` the regions scorer is retrained instead
    (:func:`autolabel.train.regions.finetune_regions` -> ``regions-vN``).
    """
    from autolabel.train.loop import finetune_workspace

    if cfg.detect.detector == "regions":
        from autolabel.train.regions import finetune_regions

        return finetune_regions(
            ws,
            seed=cfg.finetune.seed,
            val_split=cfg.finetune.val_split,
            match_iou=cfg.quality.match_iou,
            callback=callback,
        )

    chosen = resolve_prompt(ws, cfg, prompt, required=False)
    return finetune_workspace(
        ws,
        options=cfg.finetune,
        default_model=cfg.detect.model,
        default_phrase=None if chosen is None else chosen.first,
        text_threshold=cfg.detect.text_threshold,
        restart=restart,
        callback=callback,
    )


def review(ws_path: Path, cfg: Config, *, on_ready: Callable[[str], None] | None = None) -> None:
    """Serve the review app in the foreground (:func:`autolabel.review.server.serve`)."""
    from autolabel.review.server import serve

    serve(ws_path, cfg.review, on_ready=on_ready, export=cfg.export)
