"""``autolabel finetune``: train the detector on seed + reviewed boxes -> ``models/gdino-vN``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from autolabel.commands._common import WORKSPACE_ARG, echo_json, open_workspace, progress


def finetune(
    workspace: Path = WORKSPACE_ARG,
    base: str | None = typer.Option(
        None,
        "--base",
        help=(
            "Starting model: folder, registry name, hub id, 'latest' or a version like "
            "gdino-v2 (default: finetune.base, else the newest version, else detect.model)."
        ),
    ),
    epochs: int | None = typer.Option(None, "--epochs", min=1, help="Passes over the data."),
    lr: float | None = typer.Option(None, "--lr", min=0.0, help="Learning rate (AdamW)."),
    batch_size: int | None = typer.Option(
        None, "--batch-size", "-b", min=1, help="Images per forward pass."
    ),
    grad_accum: int | None = typer.Option(
        None, "--grad-accum", min=1, help="Batches whose gradients are summed per update."
    ),
    freeze: str | None = typer.Option(
        None, "--freeze", help="Frozen part: text (default), backbone (text + image), none."
    ),
    val_split: float | None = typer.Option(
        None, "--val-split", min=0.0, max=0.99, help="Share of images held out (default 0.2)."
    ),
    patience: int | None = typer.Option(
        None, "--patience", min=1, help="Epochs without validation AP50 gain before stopping."
    ),
    device: str | None = typer.Option(
        None, "--device", help="auto, cpu, cuda, cuda:1 (mixed precision on GPU)."
    ),
    max_size: int | None = typer.Option(
        None, "--max-size", min=32, help="Longest image side for training, in pixels."
    ),
    max_steps: int | None = typer.Option(
        None, "--max-steps", min=1, help="Stop after this many optimizer steps."
    ),
    time_budget: float | None = typer.Option(
        None, "--time-budget", min=1.0, help="Stop after this many seconds of training."
    ),
    seed: int | None = typer.Option(None, "--seed", help="Random seed (split, order, aug)."),
    detector: str | None = typer.Option(
        None,
        "--detector",
        help="Detector to train: grounding-dino or regions (default: detect.detector).",
    ),
    prompt: str | None = typer.Option(
        None,
        "--prompt",
        help="Prompt whose first phrase is given to seed boxes that have none (default: the "
        "workspace's prompt from `seed prompts` or the last `propose --prompt`, then "
        "propose.prompt, then seed.prompt).",
    ),
    restart: bool = typer.Option(
        False, "--restart", help="Discard an interrupted run instead of resuming it."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the version metadata as JSON."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Fine-tune Grounding DINO on located seed boxes and reviewed decisions.

    Accepted/adjusted boxes are positives with their phrases; a reject with reason
    "no_object" makes its image a negative (no targets). Validation AP50 is measured before
    and after; training stops early when it stops improving; the box threshold is
    re-calibrated on the validation split. The result is WORKSPACE/models/gdino-vN (use it
    with `autolabel propose WORKSPACE --model latest`). An interrupted run (Ctrl-C, crash)
    resumes from its last checkpoint when the same command is run again. With
    detect.detector regions (or --detector regions) the weight-free regions scorer is
    retrained instead (seconds; accepted/adjusted boxes positive, rejected ones negative)
    -> WORKSPACE/models/regions-vN.

    Example: autolabel finetune ./ws --epochs 20 --lr 1e-4 --batch-size 4 --freeze text
    """
    from autolabel import steps

    with open_workspace(workspace) as ws:
        cfg = steps.load_options(
            ws,
            None,
            {
                "finetune.base": base,
                "finetune.epochs": epochs,
                "finetune.lr": lr,
                "finetune.batch_size": batch_size,
                "finetune.grad_accum": grad_accum,
                "finetune.freeze": freeze,
                "finetune.val_split": val_split,
                "finetune.patience": patience,
                "finetune.device": device,
                "finetune.max_size": max_size,
                "finetune.max_steps": max_steps,
                "finetune.time_budget_s": time_budget,
                "finetune.seed": seed,
                "detect.detector": detector,
            },
        )
        bar = None if quiet else progress(transient=False)
        on_event = _progress_printer(bar, quiet)
        if bar is not None:
            bar.start()
        try:
            result = steps.finetune(ws, cfg, prompt=prompt, restart=restart, callback=on_event)
        finally:
            if bar is not None:
                bar.stop()
    if as_json:
        echo_json({"version": result.version, "path": str(result.path), **result.metadata})
        return
    typer.echo(_summary(result, workspace))


def _progress_printer(bar: Any, quiet: bool) -> Callable[[dict], None]:
    """The trainer's event callback: a start line, a step bar, one line per evaluation."""
    task = None

    def on_event(event: dict) -> None:
        nonlocal task
        kind = event["event"]
        if kind == "start":
            if not quiet:
                resumed = event["resumed_from_step"]
                typer.echo(
                    f"{event['version']}: {event['train_images']} train / "
                    f"{event['val_images']} val images from {event['base']} on "
                    f"{event['device']} ({event['trainable_params']:,} trainable params"
                    + (f", resuming at step {resumed}" if resumed else "")
                    + ")",
                    err=True,
                )
            if bar is not None:
                task = bar.add_task(
                    "finetune",
                    total=event["total_steps"],
                    completed=event["resumed_from_step"],
                    rate="",
                )
        elif kind == "step" and bar is not None and task is not None:
            bar.update(
                task,
                completed=event["step"],
                rate=f"epoch {event['epoch']} loss {event['loss']:.3f}",
            )
        elif kind == "eval" and not quiet:
            ap = event["ap50"]
            shown = "n/a (no validation images)" if ap is None else f"{ap:.3f}"
            msg = f"epoch {event['epoch']}: val AP50 {shown}"
            (bar.console.print(msg) if bar is not None else typer.echo(msg, err=True))

    return on_event


def _summary(result: Any, workspace: Path) -> str:
    """What a finished run printed: version, validation AP50, thresholds, how to use it."""
    meta = result.metadata
    promo = meta.get("promotion")
    promo_line = ""
    if promo is not None:  # champion/challenger (autolabel/train/promote.py)
        state = "promoted" if promo["promoted"] else "NOT promoted, latest unchanged"
        promo_line = f"  {state}: {promo['reason']}\n"
    if meta.get("detector") == "regions":
        return (
            f"{result.version}: {result.path}\n  {meta['source_text']} in "
            f"{meta['train_seconds']:.1f}s (content hash {meta['content_hash']})\n{promo_line}"
            f"  use it: autolabel propose {workspace} --detector regions --model latest"
        )
    val = meta["validation"]

    def fmt(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.3f}"

    th = meta["thresholds"]
    lines = [
        f"{result.version}: {result.path}",
        f"  val AP50 {fmt(val['ap50_before'])} -> {fmt(val['ap50_after'])} "
        f"(best epoch {val['best_epoch']}, {meta['training']['steps']} steps, "
        f"{meta['training']['seconds']:.0f}s)",
    ]
    if meta["training"]["weights"] != "fine-tuned":
        lines.append("  no epoch beat the starting model on validation: kept its weights")
    lines.append(
        f"  calibrated on validation: box_threshold {fmt(th['box_threshold'])}, "
        f"text_threshold {fmt(th['text_threshold'])}"
    )
    if promo_line:
        lines.append(promo_line.rstrip("\n"))
    lines.append(
        f"  use it: autolabel propose {workspace} --model latest "
        f"--box-threshold {fmt(th['box_threshold'])} --text-threshold {fmt(th['text_threshold'])}"
        if th["box_threshold"] is not None
        else f"  use it: autolabel propose {workspace} --model latest"
    )
    return "\n".join(lines)


def register(app: typer.Typer) -> None:
    """Add this area's commands to the main app."""
    app.command("finetune")(finetune)
