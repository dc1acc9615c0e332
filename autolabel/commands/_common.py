"""Small helpers shared by the command modules (no heavy imports)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer

WORKSPACE_ARG = typer.Argument(
    ...,
    help="Workspace folder (created by `autolabel init`), or an autocrop OUT_DIR (its "
    ".autolabel workspace is used).",
    metavar="WORKSPACE",
)

CONFIG_OPT = typer.Option(
    None,
    "--config",
    help="YAML config file (defaults < this file < flags); default: the workspace's "
    "config.yaml if present.",
    dir_okay=False,
)


def find_workspace(path: Path) -> Path:
    """The workspace a WORKSPACE argument names: ``path`` itself, or the workspace
    ``autocrop`` keeps inside its OUT_DIR (``path/.autolabel``) when ``path`` is not one.

    Never raises: a folder that is neither is returned unchanged, so that
    :meth:`~autolabel.store.Workspace.open` reports it.
    """
    from autolabel.steps import AUTOCROP_WORKSPACE_DIR
    from autolabel.store.db import DB_NAME

    inner = Path(path) / AUTOCROP_WORKSPACE_DIR
    if not (Path(path) / DB_NAME).exists() and (inner / DB_NAME).exists():
        return inner
    return Path(path)


def open_workspace(path: Path):  # -> autolabel.store.Workspace
    """Open an existing workspace, or an autocrop OUT_DIR's (see :func:`find_workspace`);
    clean error if missing or too new."""
    from autolabel.store import Workspace

    return Workspace.open(find_workspace(path))


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


class StageBar:
    """One stage's progress bar on stderr: count (of the total when known), rate, ETA.

    The stage commands and ``demo``/``autocrop`` (through :func:`stage_bars`) use the same
    bar. ``update(done, total)`` sets the count (and the total when known); ``advance(n)``
    adds to it. Disabled (``enabled=False``) it does nothing.

    Example:
        >>> with StageBar("ingest", unit="files", enabled=False) as bar:
        ...     bar.update(10, 100)
    """

    def __init__(
        self, description: str, *, unit: str = "img", enabled: bool = True, transient: bool = False
    ) -> None:
        self.description = description
        self.unit = unit
        self.done = 0
        self._bar = progress(transient=transient) if enabled else None
        self._task: Any = None
        self._t0 = 0.0

    def __enter__(self) -> StageBar:
        import time

        self._t0 = time.perf_counter()
        if self._bar is not None and self._task is None:
            self._bar.start()
            self._task = self._bar.add_task(self.description, total=None, rate="")
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the bar (leaving its last state on screen unless transient); idempotent."""
        if self._bar is not None and self._task is not None:
            self._bar.stop()
            self._task = None

    def start(self, total: int | None = None) -> StageBar:
        """Show the bar now (with ``total`` when known): for stages that learn their total
        only after a slow start (model loading); :meth:`__exit__` still closes it."""
        self.__enter__()
        if total is not None:
            self.update(0, total)
        return self

    def update(self, done: int, total: int | None = None) -> None:
        """Set the count to ``done`` (of ``total`` when given)."""
        import time

        self.done = int(done)
        if self._bar is None or self._task is None:
            return
        dt = max(time.perf_counter() - self._t0, 1e-9)
        fields: dict[str, Any] = {
            "completed": self.done,
            "rate": f"{self.done / dt:,.1f} {self.unit}/s",
        }
        if total is not None:
            fields["total"] = int(total)
        self._bar.update(self._task, **fields)

    def advance(self, n: int) -> None:
        """Add ``n`` to the count."""
        self.update(self.done + int(n))


@contextlib.contextmanager
def propose_interrupt(stop: Any) -> Iterator[None]:
    """The first Ctrl-C during propose sets ``stop`` (the batch in flight is finished and
    written) and says so on stderr; a second one aborts."""
    from autolabel.propose import graceful_interrupt

    def notice() -> None:
        typer.echo("stopping after the current batch (Ctrl-C again to abort)", err=True)

    with graceful_interrupt(stop, notice):
        yield


def stage_bars(*, enabled: bool = True, transient: bool = False):
    """A bar factory for :mod:`autolabel.pipeline`: ``(stage, unit) -> StageBar``."""

    def make(stage: str, unit: str) -> StageBar:
        return StageBar(stage, unit=unit, enabled=enabled, transient=transient)

    return make


def plain_usage_names() -> None:
    """Name arguments in usage lines the way the help text does: ``IN_DIR OUT_DIR``,
    ``[DIRECTORY]``, ``FOLDER...`` (typer >= 0.16 prints ``{in_dir} {out_dir}``).

    Patches :class:`typer.core.TyperArgument` once; a typer without the hook is left alone.
    """
    from typer.core import TyperArgument

    if not hasattr(TyperArgument, "_usage_display_name"):
        return

    def usage_name(self: Any) -> str:
        name = str(self.metavar or self.name or "").upper()
        ellipsis = self.nargs != 1 and not name.endswith("...")
        name += "..." if ellipsis else ""
        return name if self.required else f"[{name}]"

    TyperArgument._usage_display_name = usage_name


def echo_json(obj: Any) -> None:
    """Print one JSON document (sorted keys, UTF-8 kept readable)."""
    typer.echo(json.dumps(obj, ensure_ascii=False, sort_keys=True, default=str))
