"""Seed commands: `seed add`, `seed prompts`, `seed calibrate`, `seed list`."""

from __future__ import annotations

from pathlib import Path

import typer

from autolabel.commands._common import (
    CONFIG_OPT,
    WORKSPACE_ARG,
    StageBar,
    echo_json,
    open_workspace,
)

seed_app = typer.Typer(
    help="Bootstrap from hand crops: locate them in their originals, derive prompts from "
    "captions, calibrate detector thresholds.\n\nExample: autolabel seed add ./ws --crops "
    "crops/ --originals shots/ --captions captions.jsonl",
    no_args_is_help=True,
)


@seed_app.command("add")
def add(
    workspace: Path = WORKSPACE_ARG,
    crops: Path = typer.Option(..., "--crops", help="Folder of hand crops (PNG/JPEG, recursive)."),
    originals: Path | None = typer.Option(
        None, "--originals", help="Folder of original screenshots; omit if only crops exist."
    ),
    captions: Path | None = typer.Option(
        None,
        "--captions",
        help='Captions: JSONL {"image": crop, "text": ...}, JSON list or CSV image,text '
        "(default: sidecar .txt files next to the crops).",
        dir_okay=False,
    ),
    mapping: Path | None = typer.Option(
        None,
        "--mapping",
        help="Explicit crop -> original file (CSV crop,original / JSON / JSONL); wins over "
        "stem pairing.",
        dir_okay=False,
    ),
    min_score: float | None = typer.Option(
        None, "--min-score", help="Match score needed to count as located [config: 0.7]."
    ),
    search_top_k: int | None = typer.Option(
        None, "--search-top-k", help="Originals shortlisted per crop when searching [config: 5]."
    ),
    workers: int | None = typer.Option(
        None, "--workers", help="Threads locating crops [config: 2]."
    ),
    redo: bool = typer.Option(
        False, "--redo", help="Re-locate crops already in the workspace with the same content."
    ),
    config: Path | None = CONFIG_OPT,
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Import hand crops and find each one's original and box.

    Pairing: --mapping file, else the file-name stem (shot_0007_448_v2.png -> shot_0007.jpg),
    else a search over all originals. Crops that cannot be located confidently are stored as
    not_found (never a confident wrong box); without --originals they are no_original.

    Example: autolabel seed add ./ws --crops crops/ --originals shots/ --captions c.jsonl
    """
    from autolabel import steps
    from autolabel.errors import InputError

    for label, folder in (("--crops", crops), ("--originals", originals)):
        if folder is not None and not folder.is_dir():
            raise InputError(f"{label} {folder}: expected a folder of images, got no such folder")
    with open_workspace(workspace) as ws:
        cfg = steps.load_options(
            ws,
            config,
            {
                "seed.min_match_score": min_score,
                "seed.search_top_k": search_top_k,
                "seed.workers": workers,
            },
        )
        with StageBar("seed add", unit="crops", transient=as_json) as bar:
            report = steps.seed_add(
                ws,
                cfg,
                crops,
                originals=originals,
                captions=captions,
                mapping=mapping,
                redo=redo,
                on_progress=bar.update,
            )
    if as_json:
        echo_json(report.as_dict())
        return
    typer.echo(
        f"{report.crops} crops in {report.seconds:.1f} s: {report.located} located, "
        f"{report.not_found} not found ({report.loose} found but not exact: flagged loose, see "
        f"`seed list --status not_found`), {report.no_original} without original, "
        f"{report.skipped} unchanged (skipped), {report.errors} errors; paired by "
        + ", ".join(f"{k} {v}" for k, v in report.paired_by.items())
    )


@seed_app.command("prompts")
def prompts(
    workspace: Path = WORKSPACE_ARG,
    prompt: str | None = typer.Option(
        None, "--prompt", help="Manual prompt override, phrases separated by '. '."
    ),
    max_phrases: int | None = typer.Option(
        None, "--max-phrases", help="Most distinct phrases in a derived prompt [config: 8]."
    ),
    config: Path | None = CONFIG_OPT,
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Derive detector prompt phrases from the seed captions (Chinese or English).

    Sets each seed item's phrase and the workspace's prompt (what propose, calibrate and
    finetune use without --prompt); config seed.prompt_map ({caption word: phrase})
    overrides the heuristics, and the config's prompt (propose.prompt, else seed.prompt) is
    used when --prompt is not given.

    Example: autolabel seed prompts ./ws --prompt "white sneaker. handbag"
    """
    from autolabel import steps

    with open_workspace(workspace) as ws:
        cfg = steps.load_options(ws, config, {"seed.max_phrases": max_phrases})
        result = steps.seed_prompts(ws, cfg, prompt=prompt)
    if as_json:
        echo_json(result)
        return
    typer.echo(f"prompt: {result['prompt']}")
    for phrase, n in sorted(result["phrases"].items(), key=lambda kv: -kv[1]):
        typer.echo(f"  {n:4d}  {phrase}")
    if result["without_caption"]:
        typer.echo(f"{result['without_caption']} crops have no caption")


@seed_app.command("calibrate")
def calibrate(
    workspace: Path = WORKSPACE_ARG,
    detector: str | None = typer.Option(
        None, "--detector", help="Detector backend (default: detect.detector)."
    ),
    model: str | None = typer.Option(
        None, "--model", help="Model hub id or local folder (default: detect.model)."
    ),
    device: str | None = typer.Option(None, "--device", help="auto, cpu, cuda, cuda:1, mps."),
    prompt: str | None = typer.Option(
        None,
        "--prompt",
        help="Prompt to calibrate (default: the workspace's prompt, then the config's).",
    ),
    target_recall: float | None = typer.Option(
        None,
        "--target-recall",
        help="Pick the most precise thresholds reaching this recall instead of max F1 "
        "[config: seed.target_recall].",
    ),
    iou: float = typer.Option(0.5, "--iou", help="IoU for a detection to match a seed box."),
    batch_size: int = typer.Option(4, "--batch-size", help="Images per detector call."),
    config: Path | None = CONFIG_OPT,
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Run the detector on the seed originals and pick box/text thresholds.

    Maximises F1 at IoU >= --iou against the located seed boxes (or the best precision
    at --target-recall); stores them, with the numbers that justify them, as the
    workspace setting seed.thresholds.

    Example: autolabel seed calibrate ./ws --model models/grounding-dino-tiny --target-recall 0.9
    """
    from autolabel import steps

    with open_workspace(workspace) as ws:
        cfg = steps.load_options(
            ws,
            config,
            {
                "detect.detector": detector,
                "detect.model": model,
                "detect.device": device,
                "seed.target_recall": target_recall,
            },
        )
        # clean errors (no seed boxes, no prompt) before the progress bar starts
        chosen = steps.calibration_prompt(ws, cfg, prompt)
        with StageBar("calibrate", unit="img", transient=as_json) as bar:
            result = steps.seed_calibrate(
                ws,
                cfg,
                prompt=chosen,
                iou=iou,
                batch_size=batch_size,
                on_progress=bar.update,
            )
    if as_json:
        echo_json(result)
        return
    typer.echo(
        f"box_threshold {result['box_threshold']}, text_threshold {result['text_threshold']}: "
        f"F1 {result['f1']:.3f} (precision {result['precision']:.3f}, recall "
        f"{result['recall']:.3f}) on {result['n']} seed boxes in {result['n_images']} images "
        f"[{result['objective']}]"
    )
    if result.get("warning"):
        typer.echo(f"warning: {result['warning']}", err=True)
    if result.get("reason"):
        typer.echo(f"  {result['reason']}")


@seed_app.command("list")
def list_items(
    workspace: Path = WORKSPACE_ARG,
    status: str | None = typer.Option(
        None, "--status", help="Only this status: located, not_found or no_original."
    ),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per crop."),
) -> None:
    """List seed crops: original, box in original pixels, scores, status, caption.

    ``score`` is the match score, ``verify`` the full-resolution check of the box (exact
    boxes >= 0.97); a crop found but not exact is ``not_found`` with flag ``loose`` and its
    best box, for a person to look at.

    Example: autolabel seed list ./ws --json
    """
    from autolabel.errors import InputError
    from autolabel.store.seed import SEED_STATUSES, list_seed_items, seed_verification

    if status is not None and status not in SEED_STATUSES:
        raise InputError(f"--status: expected one of {', '.join(SEED_STATUSES)}, got {status!r}")
    with open_workspace(workspace) as ws:
        items = list_seed_items(ws, status=status)
        checks = seed_verification(ws)
    for it in items:
        check = checks.get(it.id, {})
        verify = check.get("verify")
        row = {
            "crop": it.crop_path,
            "original": it.original_path,
            "box": None if it.box is None else [round(v, 2) for v in it.box],
            "score": None if it.score is None else round(it.score, 4),
            "verify": verify,
            "flag": check.get("flag"),
            "best_box": check.get("best_box"),
            "status": it.status,
            "caption": it.caption,
        }
        if as_json:
            echo_json(row)
        else:
            shown = it.box or check.get("best_box")
            box = "-" if shown is None else ",".join(f"{v:.0f}" for v in shown)
            score = "-" if it.score is None else f"{it.score:.3f}"
            ver = "-" if verify is None else f"{verify:.3f}"
            flag = f" [{check['flag']}]" if check.get("flag") else ""
            typer.echo(
                f"{it.status:11s} {score:>6s} {ver:>6s} {box:>20s}  {Path(it.crop_path).name}"
                f" -> {Path(it.original_path).name if it.original_path else '-'}{flag}"
            )


def register(app: typer.Typer) -> None:
    """Add the `seed` command group."""
    app.add_typer(seed_app, name="seed")
