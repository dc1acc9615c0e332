"""``autolabel models ...``: list, pull, make tiny test models, inspect checkpoints."""

from __future__ import annotations

from pathlib import Path

import typer

from autolabel.commands._common import echo_json

models_app = typer.Typer(
    name="models",
    help=(
        "Detector and refiner checkpoints: the registry (models/registry.yaml), downloads, "
        "tiny test models.\n\nExample: autolabel models list"
    ),
    no_args_is_help=True,
)


@models_app.command("list")
def list_cmd(
    workspace: Path | None = typer.Argument(
        None, help="Also list this workspace's fine-tuned versions."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document."),
) -> None:
    """List known checkpoints and whether their files are here.

    Example: autolabel models list ./ws --json
    """
    from autolabel.detect.registry import list_models

    rows = list_models()
    if workspace is not None:
        from autolabel.commands._common import find_workspace, open_workspace

        workspace = find_workspace(workspace)
        open_workspace(workspace).close()  # clean error if not a workspace
        try:
            from autolabel.detect.versions import version_rows
        except ImportError:  # pragma: no cover - finetune area absent
            version_rows = None
        if version_rows is not None:
            rows += version_rows(workspace)
    if as_json:
        echo_json(rows)
        return
    width = max([len(r["name"]) for r in rows] + [4])
    typer.echo(f"{'name':<{width}}  {'kind':<24} {'size':>8}  here  source")
    for r in rows:
        size = r.get("size")
        if isinstance(size, int):
            size = f"{size / 1e6:.0f} MB"
        typer.echo(
            f"{r['name']:<{width}}  {r['kind']:<24} {size or '?':>8}  "
            f"{'yes' if r.get('present') else 'no ':<4}  {r.get('source') or ''}"
        )


@models_app.command("pull")
def pull_cmd(
    name: str = typer.Argument(
        ..., help="A name from `autolabel models list`, or a hub id (owner/name)."
    ),
    timeout: float = typer.Option(10.0, "--timeout", min=0.1, help="Network timeout, seconds."),
) -> None:
    """Download a registry model into models/ (checks sha256 where known).

    A registry model's hub id (IDEA-Research/grounding-dino-tiny) pulls that model; another
    hub id goes into the Hugging Face cache. Without internet it fails within seconds and
    says where to put the files by hand.

    Example: autolabel models pull IDEA-Research/grounding-dino-tiny
    """
    from autolabel.detect.registry import pull_model

    typer.echo(str(pull_model(name, timeout=timeout)))


@models_app.command("make-tiny")
def make_tiny_cmd(
    out: Path = typer.Option(Path("models/tiny"), "--out", help="Folder to write into."),
) -> None:
    """Create tiny randomly initialised models (Grounding DINO in transformers and original
    layout, segment_anything SAM, transformers SAM) for tests and the demo; a few seconds.

    Example: autolabel models make-tiny --out models/tiny
    """
    from autolabel.detect.tiny import make_tiny_models

    paths = make_tiny_models(out)
    echo_json({k: str(v) for k, v in paths.items()})


@models_app.command("info")
def info_cmd(
    path: str = typer.Argument(..., help="Model folder, .pth checkpoint or registry name."),
) -> None:
    """Describe a model: format, kind, architecture, size and content hash (model_version).

    Example: autolabel models info models/tiny/grounding-dino
    """
    from autolabel.detect.info import model_info

    echo_json(model_info(path))


def register(app: typer.Typer) -> None:
    """Add the ``models`` command group to the main app."""
    app.add_typer(models_app, name="models")
