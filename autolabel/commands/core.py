"""Workspace commands: init, ingest, status."""

from __future__ import annotations

from pathlib import Path

import typer


def init(
    workspace: Path = typer.Argument(..., help="Folder to create the workspace in."),
) -> None:
    """Create a workspace (a folder with a SQLite database).

    Example: autolabel init ./ws
    """
    from autolabel.store import Workspace

    with Workspace.create(workspace) as ws:
        typer.echo(f"workspace ready: {ws.path}")


def register(app: typer.Typer) -> None:
    """Add the workspace commands."""
    app.command("init")(init)
