"""``autolabel export``: crops + ms-swift JSONL + COCO/YOLO/Label Studio/ODVG + manifest."""

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
from autolabel.export.registry import formats_help


def export(
    workspace: Path = WORKSPACE_ARG,
    out: Path = typer.Option(
        ..., "--out", "-o", help="Export folder; each version is written to OUT/<version>/."
    ),
    size: int | None = typer.Option(
        None, "--size", min=8, help="Standard crop size in pixels (default: export.size, 448)."
    ),
    resize: str | None = typer.Option(
        None,
        "--resize",
        help="fit (long side = size), pad (fit + neutral square padding) or short-side "
        "(short side = size, ViT style).",
    ),
    margin: float | None = typer.Option(
        None, "--margin", min=0.0, max=100.0, help="Margin around each box, % of the box size."
    ),
    min_size: int | None = typer.Option(
        None,
        "--min-size",
        min=0,
        help="Boxes whose side (long side; short side for short-side) is below this are not "
        "cropped but listed in meta/too_small.jsonl.",
    ),
    version: str | None = typer.Option(
        None, "--version", help="Version name (default: the next free vN)."
    ),
    formats: str | None = typer.Option(
        None,
        "--formats",
        help=formats_help(),
    ),
    include: str | None = typer.Option(
        None,
        "--include",
        help="accepted (auto + reviewed), auto, reviewed, or all (every box not rejected).",
    ),
    absolute_paths: bool | None = typer.Option(
        None,
        "--absolute-paths/--relative-paths",
        help="Image paths in the dataset files absolute (in-place use), or relative to the "
        "version folder (a portable bundle; ms-swift then needs ROOT_IMAGE_DIR).",
    ),
    val_fraction: float | None = typer.Option(
        None,
        "--val-fraction",
        min=0.0,
        max=0.99,
        help="Share of image groups (an image and its near-duplicates) in the val split "
        "(default: export.val_fraction, 0.1; 0 = no val split).",
    ),
    instruction: str | None = typer.Option(
        None,
        "--instruction",
        help="User turn of swift-messages rows (default: export.instruction).",
    ),
    since: str | None = typer.Option(
        None,
        "--since",
        help="'last' or a version name: export only labels new or changed since that export.",
    ),
    workers: int | None = typer.Option(
        None, "--workers", min=1, help="Crop-writing processes (default: export.workers)."
    ),
    config: Path | None = CONFIG_OPT,
    engine: str | None = typer.Option(
        None, "--engine", help="local (process pool) or ray (Ray Data; export.ray_*)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Export accepted boxes as standard-size crops and training files, with provenance.

    Crops are cut from the full-resolution, EXIF-corrected originals (never modified; their
    sha256 is checked and written to meta/manifest.jsonl). The version folder is a portable
    bundle (originals as hard links or upright copies in images/, relative paths, a
    deterministic train/val split, TRAINING.md with the commands). It is built aside and
    renamed into place, so an interrupted export never damages an earlier one; OUT/LATEST
    names the newest version. Same workspace + options -> byte-identical files.

    Example: autolabel export ./ws --out ./dataset --size 448 --resize pad --formats all
    """
    import time

    from autolabel import steps
    from autolabel.export import parse_formats

    with open_workspace(workspace) as ws:
        cfg = steps.load_options(
            ws,
            config,
            {
                "export.size": size,
                "export.resize": resize,
                "export.margin": margin,
                "export.min_size": min_size,
                "export.version": version,
                "export.formats": None if formats is None else list(parse_formats(formats)),
                "export.include": include,
                "export.absolute_paths": absolute_paths,
                "export.workers": workers,
                "export.engine": engine,
                "export.val_fraction": val_fraction,
                "export.instruction": instruction,
            },
        )
        t0 = time.perf_counter()
        with StageBar("export", unit="img", enabled=not quiet, transient=True) as bar:
            result = steps.export(ws, cfg, out, since=since, on_progress=bar.update)
    seconds = time.perf_counter() - t0
    if as_json:
        echo_json(
            {
                "version": result.version,
                "path": str(result.path),
                "counts": result.counts,
                "seconds": round(seconds, 3),
            }
        )
        return
    c = result.counts
    typer.echo(
        f"export {result.version}: {c['labels']} labels from {c['images']} images, "
        f"{c['crops']} crops, {c['too_small']} too small, {c['skipped']} skipped "
        f"({seconds:.1f} s) -> {result.path}"
    )
    typer.echo(f"  split: {c['train_images']} train / {c['val_images']} val images")
    if c["too_small"]:
        typer.echo(f"  too small to crop: see {result.path / 'meta/too_small.jsonl'}", err=True)
    if c["skipped"]:
        typer.echo(
            f"  skipped (original missing/changed): see {result.path / 'meta/skipped.jsonl'}"
        )
    for what, command in result.training_commands():
        typer.echo(f"  {what}:\n    {command}")
    typer.echo(f"  (these and the other tools' settings: {result.path / 'TRAINING.md'})")


def register(app: typer.Typer) -> None:
    """Add ``export``."""
    app.command("export")(export)
