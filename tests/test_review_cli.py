"""`autolabel review` and `autolabel reviewers ...` from the command line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from autolabel.cli import main
from autolabel.store import queue as sq


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(list(argv))
    out = capsys.readouterr()
    return int(exc.value.code or 0), out.out, out.err


def test_reviewers_add_list_remove(workspace, capsys):
    ws = str(workspace.path)
    code, out, _ = run_cli(capsys, "reviewers", "add", ws, "ann")
    assert code == 0 and "reviewer ann added" in out
    token = out.split("token (shown once): ")[1].split()[0]
    assert f"/?token={token}" in out
    assert sq.reviewer_for_token(workspace, token) == "ann"
    code, out, err = run_cli(capsys, "reviewers", "add", ws, "ann")
    assert code == 2 and err.startswith("error: reviewer 'ann' already exists")
    code, out, _ = run_cli(capsys, "reviewers", "list", ws, "--json")
    assert code == 0 and '"name": "ann"' in out and '"n_decisions": 0' in out
    code, out, _ = run_cli(capsys, "reviewers", "remove", ws, "ann")
    assert code == 0 and sq.count_reviewers(workspace) == 0
    code, _, err = run_cli(capsys, "reviewers", "remove", ws, "ann")
    assert code == 2 and "no such reviewer" in err and "Traceback" not in err


def test_review_refuses_public_bind_without_tokens(workspace, capsys):
    code, _, err = run_cli(capsys, "review", str(workspace.path), "--host", "0.0.0.0")
    assert code == 2
    assert err.startswith("error: host 0.0.0.0: binding beyond 127.0.0.1 needs reviewer tokens")


def test_review_help_has_example(capsys):
    code, out, _ = run_cli(capsys, "review", "--help")
    assert code == 0 and "Example: autolabel review ./ws" in out
    code, out, _ = run_cli(capsys, "reviewers", "add", "--help")
    assert code == 0 and "Example: autolabel reviewers add ./ws alice" in out


@pytest.mark.slow
def test_review_command_serves_and_stops(workspace):
    httpx = pytest.importorskip("httpx")
    proc = subprocess.Popen(
        [sys.executable, "-m", "autolabel.cli", "review", str(workspace.path), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        line = proc.stdout.readline()
        assert line.startswith("review app: http://127.0.0.1:"), line + proc.stderr.read()
        url = line.split()[2]
        r = httpx.get(url + "api/config", headers={"X-Reviewer": "ann"}, timeout=30)
        assert r.status_code == 200 and r.json()["reviewer"] == "ann"
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:  # pragma: no cover
            proc.kill()
            proc.wait()
