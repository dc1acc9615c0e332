"""`autolabel eval`: AP, IoU, auto-accept precision/recall and budget curves vs ground truth."""

from __future__ import annotations

from pathlib import Path

import typer

from autolabel.commands._common import CONFIG_OPT, WORKSPACE_ARG, echo_json, open_workspace


def eval_command(
    workspace: Path = WORKSPACE_ARG,
    truth: Path = typer.Option(
        ...,
        "--truth",
        help='Ground truth: COCO JSON, or JSONL rows {"image": path, "boxes": [[x0,y0,x1,y1]]}.',
    ),
    out: Path = typer.Option(
        None, "--out", help="Folder for eval.json and the PNG plots (default WORKSPACE/eval)."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the random review orders."),
    match_iou: float = typer.Option(
        None,
        "--match-iou",
        help="IoU a box needs with a true box to be correct (default quality.match_iou, 0.9).",
    ),
    config: Path | None = CONFIG_OPT,
    as_json: bool = typer.Option(False, "--json", help="Print eval.json to stdout."),
) -> None:
    """Evaluate the workspace against ground truth; writes eval.json and plots.

    Reports AP50 / AP75 / AP (pycocotools), mean IoU of each image's top box, precision and
    recall at the match IoU (and at 0.5) of the proposals, the auto-accepted set and the
    whole dataset, the truth behind the tool's precision estimate, calibration of
    P(correct), and a budget curve: final dataset precision vs fraction of images reviewed
    for this selector, random order and plain score order.

    Example: autolabel eval ./ws --truth truth.jsonl --out ./ws/eval
    """
    from autolabel import steps
    from autolabel.evaluate import evaluate

    with open_workspace(workspace) as ws:
        cfg = steps.load_options(ws, config, {"quality.match_iou": match_iou})
        res = evaluate(ws, truth, out, seed=seed, match_iou=cfg.quality.match_iou)
        out_dir = out or ws.path / "eval"
    if as_json:
        echo_json(res)
        return

    def f(v: object) -> str:
        return "n/a" if v is None else f"{v:.3f}"

    typer.echo(
        f"{res['n_images']} images, {res['n_truth_boxes']} true boxes, "
        f"{res['n_proposals']} proposals"
    )
    typer.echo(
        f"AP50 {f(res['ap50'])}  AP75 {f(res['ap75'])}  AP {f(res['ap'])}  "
        f"mean IoU (top box) {f(res['mean_iou_top'])}"
    )
    iou = f"IoU >= {res['match_iou']:g}"
    typer.echo(
        f"proposals at {iou}: precision {f(res['proposal_precision'])}, "
        f"recall {f(res['proposal_recall'])}"
    )
    typer.echo(
        f"auto-accepted: {res['n_auto']} boxes, precision {f(res['auto_precision'])}, "
        f"recall {f(res['auto_recall'])} at {iou} (at 0.5: {f(res['auto_precision_50'])}, "
        f"{f(res['auto_recall_50'])})"
    )
    typer.echo(
        f"dataset (auto + reviewed + seed): {res['n_dataset']} boxes, precision "
        f"{f(res['dataset_precision'])}, recall {f(res['dataset_recall'])} at {iou} "
        f"(at 0.5: {f(res['dataset_precision_50'])}, {f(res['dataset_recall_50'])})"
    )
    typer.echo(f"true precision of the set the estimate describes: {f(res['true_auto_precision'])}")
    typer.echo(
        f"budget curve mean precision: selector {f(res['selector_auc'])}, score order "
        f"{f(res['score_auc'])}, random {f(res['random_auc'])}"
    )
    typer.echo(f"wrote {Path(out_dir) / 'eval.json'} and {', '.join(res['plots'])}")


def register(app: typer.Typer) -> None:
    """Add the eval command."""
    app.command("eval")(eval_command)
