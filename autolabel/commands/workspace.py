"""Workspace commands: init, ingest, status."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from autolabel.commands._common import (
    CONFIG_OPT,
    WORKSPACE_ARG,
    StageBar,
    echo_json,
    open_workspace,
)


def init(
    workspace: Path = typer.Argument(..., help="Folder to create the workspace in."),
    config: Path | None = typer.Option(
        None,
        "--config",
        help="Validate this YAML config and copy it into the workspace as config.yaml.",
        dir_okay=False,
    ),
) -> None:
    """Create a workspace (a folder with a SQLite database); safe to re-run.

    Example: autolabel init ./ws --config configs/default.yaml
    """
    from autolabel.config import load_config
    from autolabel.store import Workspace

    if config is not None:
        load_config(config)  # validate before creating anything
    with Workspace.create(workspace) as ws:
        if config is not None:
            ws.config_path.write_text(config.read_text(encoding="utf-8"), encoding="utf-8")
        typer.echo(f"workspace ready: {ws.path}")
        typer.echo(f"next: autolabel ingest {ws.path} FOLDER --recursive")


def ingest(
    workspace: Path = WORKSPACE_ARG,
    folders: list[Path] = typer.Argument(
        ..., help="Folders (or image files) to scan.", metavar="FOLDER..."
    ),
    recursive: bool | None = typer.Option(
        None, "--recursive/--no-recursive", help="Descend into sub-folders [config: on]."
    ),
    glob: list[str] | None = typer.Option(
        None,
        "--glob",
        metavar="PATTERN",
        help="Keep only files whose path relative to FOLDER, or name, matches this fnmatch "
        "pattern (case-sensitive; repeatable).",
    ),
    ext: list[str] | None = typer.Option(
        None,
        "--ext",
        metavar="EXT",
        help="Image extensions to keep, any case (repeatable) [config: jpg jpeg png webp "
        "bmp tif tiff].",
    ),
    batch_size: int | None = typer.Option(None, help="Files per transaction [config: 1000]."),
    hash_bytes: int | None = typer.Option(
        None, help="Bytes hashed per file, 0 = whole file [config: 0]."
    ),
    workers: int | None = typer.Option(
        None, help="Threads hashing and reading headers [config: 4]."
    ),
    follow_symlinks: bool | None = typer.Option(
        None,
        "--follow-symlinks/--no-follow-symlinks",
        help="Follow symbolic links (loops are recorded, not followed) [config: on].",
    ),
    retry_errors: bool | None = typer.Option(
        None,
        "--retry-errors/--no-retry-errors",
        help="Re-read files recorded as errors even if unchanged [config: off].",
    ),
    config: Path | None = CONFIG_OPT,
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Add the images under FOLDER... to the workspace (streamed; re-runs add only new files).

    Files are de-duplicated by sha256; width/height come from the header (EXIF-corrected).
    Unreadable, empty, non-image or too-large files are recorded with a reason.

    Example: autolabel ingest ./ws ./screenshots --recursive --glob "2024-*/*"
    """
    from autolabel import steps
    from autolabel.errors import InputError

    for folder in folders:  # before the progress bar starts
        if not folder.exists():
            raise InputError(f"{folder}: expected an existing folder or image file, got nothing")
    with open_workspace(workspace) as ws:
        cfg = steps.load_options(
            ws,
            config,
            {
                "ingest.recursive": recursive,
                "ingest.extensions": list(ext) if ext else None,
                "ingest.batch_size": batch_size,
                "ingest.hash_bytes": hash_bytes,
                "ingest.workers": workers,
                "ingest.follow_symlinks": follow_symlinks,
                "ingest.retry_errors": retry_errors,
            },
        )
        with StageBar("ingest", unit="files", transient=as_json) as bar:
            report = steps.ingest(
                ws, cfg, folders, globs=glob or (), on_progress=lambda r: bar.update(r.seen)
            )
    if as_json:
        echo_json(report.as_dict())
        return
    reasons = ", ".join(f"{k} {v}" for k, v in sorted(report.errors_by_reason.items()))
    typer.echo(
        f"ingested {report.seen} files in {report.seconds:.1f} s "
        f"({report.files_per_second:,.0f} files/s): {report.added} added, "
        f"{report.updated} updated, {report.unchanged} unchanged, "
        f"{report.duplicates} duplicates, {report.errors} errors"
        + (f" ({reasons})" if reasons else "")
    )


def _format_counts(counts: dict[str, Any]) -> str:
    return ", ".join(f"{k} {'-' if v is None else v}" for k, v in counts.items())


def status(
    workspace: Path = WORKSPACE_ARG,
    as_json: bool = typer.Option(False, "--json", help="Print the counts as one JSON object."),
) -> None:
    """Show counts per stage (images, seed, runs, proposals, queue, decisions, exports), the
    precision estimate of the auto-accepted boxes and why nothing is auto-accepted, if so.

    Example: autolabel status ./ws --json
    """
    from autolabel.select.run import precision_estimate, select_state
    from autolabel.select.stats import compact_estimate, format_estimate
    from autolabel.store.images import workspace_status

    with open_workspace(workspace) as ws:
        est = precision_estimate(ws)
        payload = {
            **workspace_status(ws),
            "auto_precision": compact_estimate(est),
            "select": select_state(ws),
        }
    if as_json:
        echo_json(payload)
        return
    typer.echo(f"workspace: {payload['workspace']} (schema {payload['schema_version']})")
    for key, value in payload.items():
        if key in ("workspace", "schema_version", "auto_precision", "select"):
            continue
        label = key.replace("_", " ")
        if key == "auto_precision" and isinstance(value, dict):
            # the route counts are on the proposals line; say once what "auto" covers here
            rest = {k: v for k, v in value.items() if k != "auto"}
            n_auto = value.get("auto")
            typer.echo(
                f"{label}: {_format_counts(rest)}"
                + (f" (over {n_auto} auto-accepted boxes = auto + audit)" if n_auto else "")
            )
        elif isinstance(value, dict):
            typer.echo(f"{label}: {_format_counts(value) if value else 'none'}")
        else:
            typer.echo(f"{label}: {value}")
    typer.echo(format_estimate(est))
    for w in payload["select"]["warnings"]:
        typer.echo(f"warning: {w}")


def register(app: typer.Typer) -> None:
    """Add the workspace commands."""
    app.command("init")(init)
    app.command("ingest")(ingest)
    app.command("status")(status)
