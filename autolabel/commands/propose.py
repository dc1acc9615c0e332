"""``autolabel propose``: run the detector over every pending image (resumable)."""

from __future__ import annotations

from pathlib import Path

import typer

from autolabel.commands._common import (
    WORKSPACE_ARG,
    StageBar,
    echo_json,
    open_workspace,
    propose_interrupt,
)


def propose(
    workspace: Path = WORKSPACE_ARG,
    prompt: str | None = typer.Option(
        None,
        "--prompt",
        "-p",
        help="Phrases separated by '. '; becomes the workspace's prompt (default: the "
        "workspace's prompt from `seed prompts` or the last --prompt, then propose.prompt, "
        "then seed.prompt).",
    ),
    detector: str | None = typer.Option(
        None,
        "--detector",
        help="Detector backend: grounding-dino, regions (weight-free, learns the seed's "
        "layout) or exemplar (default: detect.detector).",
    ),
    model: str | None = typer.Option(
        None,
        "--model",
        help="Hub id, local folder, or 'latest' (newest fine-tuned version in the workspace: "
        "gdino-vN, or regions-vN with --detector regions).",
    ),
    refiner: str | None = typer.Option(
        None,
        "--refiner",
        help="Box refiner: sam, hf-sam (masks), snap (edges, no weights) or none "
        "(default: detect.refiner).",
    ),
    batch_size: int | None = typer.Option(
        None, "--batch-size", "-b", min=1, help="Images per detector call."
    ),
    device: str | None = typer.Option(
        None, "--device", help="Torch device: auto, cpu, cuda, cuda:1, mps."
    ),
    limit: int | None = typer.Option(
        None, "--limit", min=1, help="Process at most this many pending images."
    ),
    engine: str | None = typer.Option(
        None, "--engine", help="local (this process + loader threads) or ray (Ray Data)."
    ),
    ray_address: str | None = typer.Option(
        None, "--ray-address", help="Ray cluster address, e.g. ray://head:10001 or auto."
    ),
    box_threshold: float | None = typer.Option(
        None, "--box-threshold", min=0.0, max=1.0, help="Minimum box confidence (0..1)."
    ),
    text_threshold: float | None = typer.Option(
        None, "--text-threshold", min=0.0, max=1.0, help="Minimum phrase confidence (0..1)."
    ),
    workers: int | None = typer.Option(
        None, "--workers", min=0, help="Image-loading threads (0 = load in the main thread)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Propose boxes for every image that has none for this model + prompt + thresholds.

    Batched, streaming and resumable: killing it at any moment and re-running the same
    command finishes the job with exactly the proposals of an uninterrupted run. Ctrl-C
    stops after the batch in flight. Unreadable images are recorded and skipped.

    Example: autolabel propose ./ws --prompt "white sneaker. handbag" --batch-size 8
    """
    import threading

    from autolabel import steps
    from autolabel.propose import run_propose
    from autolabel.propose.run import champion_note

    with open_workspace(workspace) as ws:
        cfg = steps.load_options(
            ws,
            None,
            {
                "detect.detector": detector,
                "detect.model": model,
                "detect.refiner": refiner,
                "detect.device": device,
                "detect.box_threshold": box_threshold,
                "detect.text_threshold": text_threshold,
                "propose.batch_size": batch_size,
                "propose.limit": limit,
                "propose.engine": engine,
                "propose.ray_address": ray_address,
                "propose.workers": workers,
            },
        )
        settings = steps.propose_settings(
            ws,
            cfg,
            prompt=prompt,
            box_threshold=box_threshold,
            text_threshold=text_threshold,
            log=lambda line: typer.echo(line, err=True),
        )
        note = champion_note(ws.path, cfg.detect.model)  # issue 19 cause 6
        if note and not as_json:
            typer.echo(note, err=True)
        stop = threading.Event()
        bar = StageBar("propose", unit="img", enabled=not quiet)
        try:
            with propose_interrupt(stop):
                summary = run_propose(
                    ws,
                    settings,
                    progress=lambda n_images, _n: bar.advance(n_images),
                    on_start=lambda s: bar.start(s.pending),
                    stop=stop,
                )
        finally:
            bar.close()
    if as_json:
        echo_json(summary.as_dict())
        return
    state = "interrupted" if summary.interrupted else "done"
    typer.echo(
        f"run {summary.run_id} ({state}): {summary.images} images, {summary.proposals} "
        f"proposals, {summary.errors} unreadable/failed, {summary.seconds:.1f} s "
        f"({summary.images_per_second:.1f} img/s); run key {summary.key}"
    )
    for reason in summary.error_examples:
        typer.echo(f"  error: {reason}", err=True)
    if summary.interrupted:
        typer.echo("re-run the same command to finish", err=True)


def register(app: typer.Typer) -> None:
    """Add ``propose``."""
    app.command("propose")(propose)
