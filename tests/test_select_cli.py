"""`autolabel select` on the command line: summary, JSON, clean errors."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from autolabel.cli import app
from autolabel.errors import AutolabelError
from autolabel.store.images import ScannedFile, find_image, write_scanned
from autolabel.store.runs import create_run, finish_run, write_batch


def _fill(ws, mock_proposals):
    files = [ScannedFile(f"/x/{i}.png", 1, 1, f"h{i}", 100, 100, "PNG") for i in range(30)]
    write_scanned(ws, files)
    run = create_run(
        ws,
        detector="sim",
        model="sim",
        model_version="1",
        refiner=None,
        prompt="obj",
        box_threshold=0.1,
        text_threshold=0.1,
    )
    scores = [0.999] * 20 + [0.5] * 8 + [0.01] * 2
    results = [
        (find_image(ws, f.path).id, mock_proposals([[1, 1, 20, 20]], score=[s]))
        for f, s in zip(files, scores, strict=True)
    ]
    write_batch(ws, run, results)
    finish_run(ws, run)


def test_select_cli_text_and_json(workspace):
    from tests.support.quality import build_world

    build_world(workspace, 60, seed=12, n_seed=30)
    runner = CliRunner()
    args = [
        "select",
        str(workspace.path),
        "--target-precision",
        "0.9",
        "--budget",
        "5",
        "--audit-rate",
        "0.1",
        "--reject-below",
        "0.05",
        "--diversity",
        "0",
    ]
    r = runner.invoke(app, [*args, "--json"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    routes = data["routes"]
    assert routes["auto"] + routes["audit"] > 0 and 0 < routes["review"] <= 5
    assert data["precision_estimate"]["n_audit"] == routes["audit"] > 0
    assert data["precision_estimate"]["status"] == "unknown"
    r = runner.invoke(app, args)  # re-run: same routes, printed for people
    assert r.exit_code == 0, r.output
    assert f"auto-accepted {routes['auto'] + routes['audit']}" in r.output
    assert f"review {routes['review']} images of 5 budget" in r.output
    assert "60 on seed originals" in r.output
    assert f"{routes['audit']} audit" in r.output
    assert "precision of auto-accepted boxes: unknown (only 0 of" in r.output
    assert "calibration of the current detector version: logistic" in r.output


def test_select_cli_says_why_nothing_is_auto_accepted(workspace, mock_proposals):
    _fill(workspace, mock_proposals)
    r = CliRunner().invoke(app, ["select", str(workspace.path), "--budget", "5"])
    assert r.exit_code == 0, r.output
    assert "auto-accepted 0" in r.output
    assert "nothing is auto-accepted: the current detector version has no calibrator" in r.output
    assert "warning: detector version sim 1" in r.output
    assert "review its queue items" in r.output


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["select", "{ws}", "--budget", "lots"], "budget: expected"),
        (["select", "{ws}", "--target-precision", "2"], "target_precision"),
        (["select", "{tmp}/nope"], "no such workspace"),
        (["eval", "{ws}", "--truth", "{tmp}/t.jsonl"], "cannot read"),
    ],
)
def test_select_cli_user_errors(workspace, tmp_path, capsys, args, needle):
    """A user error is one ``error: ...`` line on stderr, exit code 2, no traceback."""
    from autolabel.cli import main

    args = [a.format(ws=workspace.path, tmp=tmp_path) for a in args]
    r = CliRunner().invoke(app, args)
    assert r.exit_code != 0
    assert isinstance(r.exception, AutolabelError) and needle in str(r.exception), r.exception
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code == 2
    err = capsys.readouterr().err  # progress lines may come first
    assert err.splitlines()[-1].startswith("error: ") and needle in err.splitlines()[-1], err
    assert "Traceback" not in err, err
