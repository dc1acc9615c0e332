"""CLI commands for this area (to be filled in). Keep heavy imports inside the functions."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add this area's commands to the main app."""
