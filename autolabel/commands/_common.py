"""Small helpers shared by the command modules (no heavy imports)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

WORKSPACE_ARG = typer.Argument(..., help="Workspace folder (created by `autolabel init`).")

CONFIG_OPT = typer.Option(
    None,
    "--config",
    help="YAML config file (defaults < this file < flags); default: the workspace's "
    "config.yaml if present.",
    dir_okay=False,
)


def open_workspace(path: Path):  # -> autolabel.store.Workspace
    """Open an existing workspace (clean error if missing or too new)."""
    from autolabel.store import Workspace

    return Workspace.open(path)


def progress(**kwargs: Any):  # -> rich.progress.Progress
    """A rich progress bar with count, rate and ETA, written to stderr."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        **kwargs,
    )


def echo_json(obj: Any) -> None:
    """Print one JSON document (sorted keys, UTF-8 kept readable)."""
    typer.echo(json.dumps(obj, ensure_ascii=False, sort_keys=True, default=str))
