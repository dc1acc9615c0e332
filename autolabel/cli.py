"""Thin command-line layer: parse, call the library, turn library errors into clean messages.

Commands live in ``autolabel/commands/<group>.py`` (named after the command group); each
module has ``register(app)``. Keep those modules free of heavy imports (torch, transformers,
cv2, ray) at import time.
"""

from __future__ import annotations

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


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: library errors become ``error: ...`` and exit code 2.

    Usage errors are reported by typer itself (exit code 2); anything else is a bug and
    keeps its traceback.
    """
    try:
        app(args=argv, prog_name="autolabel")
    except AutolabelError as exc:
        typer.echo(f"error: {exc}", err=True)
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
