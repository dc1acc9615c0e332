"""Review commands: `review` (the web app) and `reviewers add/list/remove`."""

from __future__ import annotations

from pathlib import Path

import typer

from autolabel.commands._common import CONFIG_OPT, WORKSPACE_ARG, echo_json, open_workspace

reviewers_app = typer.Typer(
    help="Manage reviewer accounts (name + access token) of a workspace.",
    no_args_is_help=True,
)


def review(
    workspace: Path = WORKSPACE_ARG,
    host: str = typer.Option(
        None, help="Address to bind (default review.host = 127.0.0.1); others need tokens."
    ),
    port: int = typer.Option(None, help="Port (default review.port = 8765; 0 = any free)."),
    lease_seconds: float = typer.Option(
        None, help="Seconds a claimed item stays reserved (default review.lease_seconds)."
    ),
    config: Path | None = CONFIG_OPT,
) -> None:
    """Start the review web app and print its URL (Ctrl-C stops it).

    Reviewers claim items from the queue that `autolabel select` filled, one at a time with
    a lease; keys: A accept, R reject, E/drag adjust, C caption, S skip, U undo, ? help.
    Binding to anything but 127.0.0.1 needs reviewer tokens (`autolabel reviewers add`).

    Example: autolabel review ./ws --port 8765
    """
    from autolabel import steps

    with open_workspace(workspace) as ws:
        cfg = steps.load_options(
            ws,
            config,
            {"review.host": host, "review.port": port, "review.lease_seconds": lease_seconds},
        )
        ws_path = ws.path

    def ready(url: str) -> None:
        typer.echo(f"review app: {url}  (Ctrl-C to stop)")

    steps.review(ws_path, cfg, on_ready=ready)


@reviewers_app.command("add")
def reviewers_add(
    workspace: Path = WORKSPACE_ARG,
    name: str = typer.Argument(..., help="Reviewer name (letters, digits, _.@-)."),
) -> None:
    """Create a reviewer and print their access token and personal link (shown once).

    Once any reviewer exists, every request to the review app needs a token.

    Example: autolabel reviewers add ./ws alice
    """
    from autolabel import steps
    from autolabel.store import queue as sq

    with open_workspace(workspace) as ws:
        token = sq.add_reviewer(ws, name)
        cfg = steps.load_options(ws).review
    typer.echo(f"reviewer {name} added; token (shown once): {token}")
    typer.echo(f"link: http://{cfg.host}:{cfg.port}/?token={token}")


@reviewers_app.command("list")
def reviewers_list(
    workspace: Path = WORKSPACE_ARG,
    json_: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """List reviewers and how many decisions each made.

    Example: autolabel reviewers list ./ws --json
    """
    from autolabel.store import queue as sq

    with open_workspace(workspace) as ws:
        rows = sq.list_reviewers(ws)
    if json_:
        echo_json(rows)
        return
    if not rows:
        typer.echo("no reviewers (the app runs on 127.0.0.1 without tokens)")
    for r in rows:
        typer.echo(f"{r['name']}\t{r['n_decisions']} decisions\tsince {r['created_at']}")


@reviewers_app.command("remove")
def reviewers_remove(
    workspace: Path = WORKSPACE_ARG,
    name: str = typer.Argument(..., help="Reviewer to remove (their token stops working)."),
) -> None:
    """Remove a reviewer; their decisions stay in the log.

    Example: autolabel reviewers remove ./ws alice
    """
    from autolabel.store import queue as sq

    with open_workspace(workspace) as ws:
        sq.remove_reviewer(ws, name)
    typer.echo(f"reviewer {name} removed")


def register(app: typer.Typer) -> None:
    """Add the review commands."""
    app.command("review")(review)
    app.add_typer(reviewers_app, name="reviewers")
