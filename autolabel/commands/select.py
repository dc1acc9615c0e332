"""`autolabel select`: calibrate P(correct), route proposals, fill the review queue."""

from __future__ import annotations

from pathlib import Path

import typer

from autolabel.commands._common import CONFIG_OPT, WORKSPACE_ARG, echo_json, open_workspace


def select(
    workspace: Path = WORKSPACE_ARG,
    target_precision: float = typer.Option(
        None,
        "--target-precision",
        help="Expected precision the auto-accepted set must reach (default 0.99).",
    ),
    budget: str = typer.Option(
        None,
        "--budget",
        help="Most review items to queue; an item is an image with all its candidate boxes: a "
        "count (500) or a share of the images with undecided boxes (10%). Default: no cap.",
    ),
    audit_rate: float = typer.Option(
        None,
        "--audit-rate",
        help="Share of auto-accepted boxes sampled into the queue as a blind audit (default 0.02).",
    ),
    reject_below: float = typer.Option(
        None,
        "--reject-below",
        help="Reject boxes with calibrated P(correct) below this without review (default 0.05).",
    ),
    explore_share: float = typer.Option(
        None,
        "--explore-share",
        help="Share of the budget drawn at random among boxes more likely right than wrong, "
        "so calibration sees the boxes it would auto-accept (default 0.5; the rest: most "
        "uncertain first).",
    ),
    method: str = typer.Option(
        None, "--method", help="Calibration: logistic (all signals) or isotonic (score only)."
    ),
    diversity: float = typer.Option(
        None,
        "--diversity",
        help="0..<1: discount for each further near-duplicate image in the queue (default 0.3).",
    ),
    seed: int = typer.Option(None, "--seed", help="Random seed of the audit sample."),
    config: Path | None = CONFIG_OPT,
    as_json: bool = typer.Option(False, "--json", help="Print the summary as one JSON object."),
) -> None:
    """Route every undecided proposal: auto-accept, review queue, audit sample or reject.

    Fits P(correct) per detector version on that version's labelled boxes (seed originals,
    review decisions; too few -> nothing of that version is auto-accepted, with a
    warning), auto-accepts the largest set whose expected precision reaches the target,
    queues the most informative images (one item per image, spread over near-duplicate
    images, capped by the budget) and a fresh random audit sample of the newly
    auto-accepted boxes. Proposals on seed originals are never auto-accepted or audited:
    the seed boxes are their labels. Re-run it after each review round: it refits and
    re-routes every proposal nobody decided or claimed.

    Example: autolabel select ./ws --target-precision 0.99 --budget 500 --audit-rate 0.02
    """
    from autolabel import steps
    from autolabel.select.run import precision_estimate
    from autolabel.select.stats import format_summary

    with open_workspace(workspace) as ws:
        cfg = steps.load_options(
            ws,
            config,
            {
                "select.target_precision": target_precision,
                "select.budget": budget,
                "select.audit_rate": audit_rate,
                "select.reject_below": reject_below,
                "select.explore_share": explore_share,
                "select.method": method,
                "select.diversity": diversity,
                "select.seed": seed,
            },
        )
        log = (lambda _: None) if as_json else (lambda m: typer.echo(m, err=True))
        summary = steps.select(ws, cfg, log=log)
        est = precision_estimate(ws, cfg.quality)
    if as_json:
        echo_json({**summary, "precision_estimate": est})
        return
    for line in format_summary(summary, est):
        typer.echo(line)
    for w in summary["warnings"]:
        typer.echo(f"warning: {w}", err=True)


def register(app: typer.Typer) -> None:
    """Add the select command."""
    app.command("select")(select)
