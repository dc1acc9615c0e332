"""`autolabel seed ...` end to end through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from autolabel.cli import main as _main
from autolabel.seed.captions import phrase_from_caption
from autolabel.synth import make_seed_set


def run(argv: list[str]) -> int:
    try:
        _main(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


@pytest.fixture(scope="module")
def seed_dir(tmp_path_factory) -> tuple[Path, list]:
    root = tmp_path_factory.mktemp("cli")
    return root, make_seed_set(root / "set", 3, seed=4, n_unrelated=1)


def test_seed_workflow(seed_dir, tmp_path: Path, capsys) -> None:
    root, truth = seed_dir
    ws = tmp_path / "ws"
    assert run(["init", str(ws)]) == 0
    s = root / "set"
    assert (
        run(
            [
                "seed",
                "add",
                str(ws),
                "--crops",
                str(s / "crops"),
                "--originals",
                str(s / "originals"),
                "--captions",
                str(s / "captions.jsonl"),
                "--json",
            ]
        )
        == 0
    )
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["located"] == 3 and report["not_found"] == 1 and report["paired_by"]["stem"] == 3

    assert run(["seed", "list", str(ws), "--json"]) == 0
    rows = [json.loads(x) for x in capsys.readouterr().out.strip().splitlines()]
    assert len(rows) == 4
    for row in rows:
        assert set(row) == {
            "crop",
            "original",
            "box",
            "score",
            "verify",
            "flag",
            "best_box",
            "status",
            "caption",
        }
    by_crop = {Path(r["crop"]).name: r for r in rows}
    for t in truth:
        r = by_crop[Path(t.crop).name]
        assert r["caption"] == t.caption
        if t.original is None:
            assert r["status"] == "not_found" and r["box"] is None and r["original"] is None
        else:
            assert r["status"] == "located" and Path(r["original"]).name == Path(t.original).name
            assert len(r["box"]) == 4 and all(
                abs(a - b) < 6 for a, b in zip(r["box"], t.crop_box, strict=True)
            )
            assert 0.7 <= r["score"] <= 1.0
            assert 0.93 <= r["verify"] <= 1.0 and r["flag"] is None

    assert run(["seed", "list", str(ws), "--status", "not_found"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and out[0].startswith("not_found")

    assert run(["seed", "prompts", str(ws), "--json"]) == 0
    prompt = json.loads(capsys.readouterr().out)["prompt"]
    phrases = prompt.split(". ")
    assert len(phrases) >= 2
    for phrase in phrases:  # every phrase comes from some caption
        assert any(phrase_from_caption(t.caption) == phrase for t in truth), phrase
    assert run(["seed", "prompts", str(ws), "--prompt", "product. gadget"]) == 0
    assert "prompt: product. gadget" in capsys.readouterr().out

    assert run(["seed", "calibrate", str(ws), "--detector", "exemplar", "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["n"] == 3 and result["prompt"] == "product. gadget"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["seed", "list", "{ws}", "--status", "lost"], "--status: expected one of"),
        (["seed", "add", "{ws}", "--crops", "{tmp}/nope"], "--crops"),
        (["seed", "prompts", "{ws}"], "no seed items"),
        (["seed", "calibrate", "{ws}", "--detector", "exemplar"], "no located seed boxes"),
        (["seed", "list", "{tmp}/not-a-workspace"], "no such workspace"),
    ],
)
def test_user_errors_are_clean(tmp_path: Path, capsys, argv, message) -> None:
    ws = tmp_path / "ws"
    assert run(["init", str(ws)]) == 0
    capsys.readouterr()
    code = run([a.format(ws=ws, tmp=tmp_path) for a in argv])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: ") and message in err and "Traceback" not in err
