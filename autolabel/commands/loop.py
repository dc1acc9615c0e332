"""Whole-loop commands: demo, autocrop, report."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import typer

from autolabel.commands._common import WORKSPACE_ARG, echo_json, open_workspace, stage_bars

RESUME_MESSAGE = "stopped; re-run the same command to resume"
"""What Ctrl-C prints in ``autocrop`` (exit code 130); everything done so far is saved."""


@contextlib.contextmanager
def stopped_message(message: str) -> Iterator[None]:
    """Turn Ctrl-C into ``message`` on stderr and exit code 130 (no traceback)."""
    try:
        yield
    except KeyboardInterrupt:
        typer.echo(message, err=True)
        raise typer.Exit(130) from None


def demo(
    directory: Path = typer.Argument(
        Path("demo-workspace"), help="Folder to build the demo in (new or empty)."
    ),
    images: int = typer.Option(16, "--images", min=1, help="Screenshots to generate and label."),
    seed_crops: int = typer.Option(
        8, "--seed-crops", min=2, help="Hand-crop imitations in the seed set."
    ),
    tiny_images: int = typer.Option(
        4, "--tiny-images", min=0, help="Images run through tiny Grounding DINO + SAM."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Build a small realistic workspace offline and run every stage on it.

    Generates phone screenshots with product photos amid clutter plus hand-crop imitations
    with captions, then runs seed add/prompts/calibrate, propose (tiny Grounding DINO + SAM
    through the real loading code, and on every image Grounding DINO when its weights are on
    the machine, else the weight-free regions detector), select, eval, export and report.

    Example: autolabel demo ./demo-workspace
    """
    from autolabel.pipeline import run_demo

    with stopped_message(f"stopped; delete {directory} and re-run the same command to start over"):
        result = run_demo(
            directory,
            n_images=images,
            n_seed=seed_crops,
            tiny_images=tiny_images,
            log=(lambda s: None) if as_json else typer.echo,
            bars=stage_bars(transient=as_json),
        )
    if as_json:
        echo_json(result)
        return
    ws = result["workspace"]
    typer.echo("")
    typer.echo(f"workspace : {ws}")
    if result["export"]:
        typer.echo(f"export    : {result['export']}  (crops/, swift.jsonl, meta/manifest.jsonl)")
    else:
        typer.echo("export    : none (nothing was auto-accepted; review, then autolabel export)")
    typer.echo(f"report    : {result['report']}")
    typer.echo(f"review UI : autolabel review {ws}   (then open the printed URL)")
    typer.echo(
        "note: the tiny models have random weights; the weight-free regions detector learns "
        "the seed's picture layout (screen captures). Other objects need real Grounding DINO "
        "weights: "
        "`autolabel models list`, then `autolabel models pull grounding-dino-tiny` on a "
        "machine with internet (or place the files by hand, see docs/models.md)."
    )


def autocrop(
    in_dir: Path = typer.Argument(..., help="Folder of images to crop (scanned recursively)."),
    out_dir: Path = typer.Argument(..., help="Output folder for crops, JSONL and manifest."),
    prompt: str | None = typer.Option(
        None, "--prompt", help="What to crop, phrases separated by '. ' (e.g. 'product photo')."
    ),
    seed: Path | None = typer.Option(
        None, "--seed", help="Folder of hand crops to bootstrap prompt/thresholds from."
    ),
    originals: Path | None = typer.Option(
        None, "--originals", help="Folder of the seed crops' original screenshots."
    ),
    captions: Path | None = typer.Option(
        None, "--captions", help="Captions of the seed crops (JSONL/CSV)."
    ),
    size: int | None = typer.Option(
        None, "--size", min=8, help="Long side of the exported crops [config: export.size, 448]."
    ),
    target_precision: float | None = typer.Option(
        None,
        "--target-precision",
        min=0.0,
        max=1.0,
        help="Precision the auto-accepted set must reach [config: select.target_precision; "
        "autocrop's default 0.98].",
    ),
    review: bool = typer.Option(
        False, "--review", help="Start the review app afterwards; export again when it stops."
    ),
    workspace: Path | None = typer.Option(
        None, "--workspace", help="Workspace folder [default: OUT_DIR/.autolabel]."
    ),
    detector: str | None = typer.Option(
        None,
        "--detector",
        help="grounding-dino, regions or exemplar [config: detect.detector; without Grounding "
        "DINO weights on this machine: regions, trained on the seed originals].",
    ),
    model: str | None = typer.Option(None, "--model", help="Hub id, local folder or 'latest'."),
    refiner: str | None = typer.Option(
        None, "--refiner", help="none, sam, hf-sam or snap (edges, no weights)."
    ),
    engine: str | None = typer.Option(
        None, "--engine", help="local or ray: propose and export [propose.engine, export.engine]."
    ),
    device: str | None = typer.Option(None, "--device", help="auto, cpu, cuda, mps."),
    batch_size: int | None = typer.Option(None, "--batch-size", min=1, help="Images per batch."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Crop one kind of object from a big folder in one command.

    Creates (or reuses) a workspace, ingests IN_DIR, bootstraps from seed crops if given,
    proposes, selects and exports the auto-accepted crops + ms-swift JSONL + manifest into
    OUT_DIR/vN. Re-running processes only new images; after a crash it resumes. Every step
    reads the workspace's config.yaml exactly as the stage command does (autocrop's own
    defaults: select.target_precision 0.98, export.formats [swift]).

    Without Grounding DINO weights on this machine the weight-free regions detector is used
    (one line says so); seed crops + originals without captions or --prompt work offline
    (the prompt is then "product photo").

    Example: autolabel autocrop ./shots ./crops --prompt "product photo"
    """
    from autolabel.pipeline import autocrop as run_autocrop
    from autolabel.pipeline import review_then_export
    from autolabel.select.stats import format_estimate

    log = (lambda s: None) if as_json else typer.echo
    bars = stage_bars(transient=as_json)
    with stopped_message(RESUME_MESSAGE):
        result = run_autocrop(
            in_dir,
            out_dir,
            prompt=prompt,
            seed_crops=seed,
            originals=originals,
            captions=captions,
            size=size,
            target_precision=target_precision,
            workspace=workspace,
            detector=detector,
            model=model,
            refiner=refiner,
            engine=engine,
            device=device,
            batch_size=batch_size,
            log=log,
            bars=bars,
        )
        if review and result["review_waiting"]:
            result["after_review"] = review_then_export(
                Path(result["workspace"]), out_dir, size=size, log=log, bars=bars
            )
    if as_json:
        echo_json(result)
        return
    typer.echo("")
    typer.echo(
        f"images seen: {result['in_dir_files']} in IN_DIR ({result['new_images']} new to the "
        f"workspace, {result['proposed']} proposed this time)"
    )
    others = result["images"] - result["in_dir_files"]
    if others > 0:
        typer.echo(f"the workspace also holds {others} other images (seed originals, earlier runs)")
    typer.echo(f"crops written: {result['crops']} in {result['export'] or '(no new version)'}")
    typer.echo(f"estimated precision: {format_estimate(result['precision'])}")
    typer.echo(f"waiting for review: {result['review_waiting']}  ->  {result['review_command']}")
    if result["errors"]:
        typer.echo("errors: " + ", ".join(f"{k} {v}" for k, v in result["errors"].items()))


def report(
    workspace: Path = WORKSPACE_ARG,
    out: Path | None = typer.Option(
        None, "--out", help="Folder for report.html + report.json [default: the workspace]."
    ),
    samples: int = typer.Option(12, "--samples", min=1, help="Sample crops per route."),
) -> None:
    """Write a self-contained HTML report (and a JSON twin) about a workspace.

    Counts per stage and route, estimated precision with its interval, throughput of the
    last runs, sample crops per route, and the budget curve when `autolabel eval` ran.

    Example: autolabel report ./ws --out ./ws-report
    """
    from autolabel import steps
    from autolabel.report import write_report

    with open_workspace(workspace) as ws:
        html_path, json_path = write_report(
            ws, out, samples_per_route=samples, export=steps.load_options(ws).export
        )
    typer.echo(f"report: {html_path}\njson  : {json_path}")


def register(app: typer.Typer) -> None:
    """Add demo, autocrop and report."""
    app.command("demo")(demo)
    app.command("autocrop")(autocrop)
    app.command("report")(report)
