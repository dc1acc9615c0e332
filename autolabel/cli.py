"""Thin command-line layer: parse, call the library, turn library errors into clean messages.

Commands live in ``autolabel/commands/<group>.py`` (named after the command group); each
module has ``register(app)``. Keep those modules free of heavy imports (torch, transformers,
cv2, ray) at import time.
"""

from __future__ import annotations

import errno
import os
import sqlite3
import sys

import typer

from autolabel.errors import AutolabelError

app = typer.Typer(
    name="autolabel",
    help=(
        "Turn a handful of hand crops into a large, clean, human-verified grounding "
        "dataset.\n\nPipeline: init -> ingest -> seed -> propose -> select -> review -> "
        "finetune -> export. Try `autolabel demo` first."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


OPTIONAL_MODULES = {
    "torch": "models",
    "torchvision": "models",
    "transformers": "models",
    "scipy": "models",
    "segment_anything": "models",
    "cv2": "models",
    "sklearn": "models",
    "jieba": "models",
    "fastapi": "review",
    "uvicorn": "review",
    "ray": "ray",
    "pycocotools": "eval",
    "matplotlib": "eval",
    "skimage": "demo",
}
"""Top-level module of an optional dependency -> the extra that installs it."""


def _register_all() -> None:
    from autolabel.commands import COMMAND_MODULES

    for module in COMMAND_MODULES:
        module.register(app)


_register_all()


@app.callback()
def _root() -> None:
    """autolabel: hand crops -> human-verified grounding dataset."""


ENVIRONMENT_ERRNOS = frozenset(
    {
        errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO,
        errno.EEXIST, errno.ENOTDIR, errno.EISDIR, errno.ENOENT, errno.ENAMETOOLONG,
        errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.EFBIG, errno.EXDEV,
    }
)  # fmt: skip
"""OSErrors caused by the machine (disk full, permissions, read-only, ...), not by a bug."""


def _one_line(text: str, limit: int = 500) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _os_error_message(exc: OSError) -> str:
    what = exc.strerror or str(exc)
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        what = f"{what} (the disk is full: free space and run again; finished work is kept)"
    where = f"{os.fsdecode(exc.filename)}: " if exc.filename is not None else ""
    return _one_line(f"{where}{what}")


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: library errors become ``error: ...`` and exit code 2.

    Usage errors are reported by typer itself (exit code 2). Errors of the machine (a full
    disk, permissions, a damaged database) are one line too; ``AUTOLABEL_DEBUG=1`` keeps
    their traceback. Anything else is a bug and keeps its traceback.
    """
    debug = os.environ.get("AUTOLABEL_DEBUG", "") not in ("", "0")
    try:
        app(args=argv, prog_name="autolabel")
    except AutolabelError as exc:
        typer.echo(f"error: {_one_line(str(exc), 2000)}", err=True)
        sys.exit(2)
    except sqlite3.DatabaseError as exc:
        if debug:
            raise
        text = str(exc)
        if "full" in text:
            hint = "the disk is full: free space and run again"
        elif "locked" in text or "busy" in text:
            hint = "another autolabel process is writing to this workspace; try again"
        else:
            hint = (
                "the workspace database is damaged or was changed outside autolabel; "
                "restore autolabel.db from a backup"
            )
        typer.echo(f"error: database: {_one_line(str(exc))} ({hint})", err=True)
        sys.exit(2)
    except OSError as exc:
        if debug or exc.errno not in ENVIRONMENT_ERRNOS:
            raise
        typer.echo(f"error: {_os_error_message(exc)}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.echo("stopped; re-run the same command to resume", err=True)
        sys.exit(130)
    except ModuleNotFoundError as exc:
        extra = OPTIONAL_MODULES.get((exc.name or "").split(".")[0])
        if extra is None:
            raise
        typer.echo(
            f"error: this command needs the optional package {exc.name!r}, which is not "
            f'installed: pip install "autolabel[{extra}]"',
            err=True,
        )
        sys.exit(2)


if __name__ == "__main__":  # pragma: no cover
    main()
