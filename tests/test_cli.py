"""CLI: every command documented with an example, light imports, clean errors, core commands."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import typer
from PIL import Image

from autolabel.cli import app
from autolabel.cli import main as _main


def main(argv: list[str]) -> None:
    """Run the CLI like the console script; success (exit 0) returns, failures re-raise."""
    try:
        _main(argv)
    except SystemExit as exc:
        if exc.code not in (0, None):
            raise


def _is_group(cmd) -> bool:
    return isinstance(getattr(cmd, "commands", None), dict)


def _walk(cmd, path: tuple[str, ...] = ()):
    """(path, command) for the root and every command and sub-command (typer vendors click,
    so the checks are duck-typed)."""
    yield path, cmd
    if _is_group(cmd):
        for name, sub in sorted(cmd.commands.items()):
            yield from _walk(sub, (*path, name))


COMMANDS = list(_walk(typer.main.get_command(app)))


def test_core_commands_are_registered():
    names = {" ".join(p) for p, _ in COMMANDS}
    assert {"init", "ingest", "status"} <= names


@pytest.mark.parametrize(
    ("path", "cmd"), COMMANDS, ids=[" ".join(p) or "root" for p, _ in COMMANDS]
)
def test_every_command_has_help_text_and_help_works(path, cmd, capsys):
    assert (cmd.help or "").strip(), f"`autolabel {' '.join(path)}` has no help text"
    if path and not _is_group(cmd):
        assert "Example" in cmd.help, f"`autolabel {' '.join(path)}` help has no example"
    for param in cmd.params:
        is_option = getattr(param, "param_type_name", "") == "option"
        if is_option and not getattr(param, "hidden", False) and param.name != "help":
            assert (param.help or "").strip(), f"{' '.join(path)} {param.opts} has no help"
    main([*path, "--help"])
    out = capsys.readouterr().out
    assert "Usage:" in out


HEAVY = ["torch", "transformers", "cv2", "ray", "sklearn", "fastapi", "matplotlib",
         "segment_anything", "scipy"]  # fmt: skip


def test_import_cli_and_every_help_do_not_import_heavy_libraries():
    paths = [list(p) for p, _ in COMMANDS]
    code = (
        "import contextlib, io, sys\n"
        "from autolabel.cli import main\n"
        f"heavy = {HEAVY!r}\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
        f"for path in {paths!r}:\n"
        "    with contextlib.redirect_stdout(io.StringIO()):\n"
        "        try:\n"
        "            main([*path, '--help'])\n"
        "        except SystemExit:\n"
        "            pass\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split("\n")[:2] == ["[]", "[]"]


def test_python_m_autolabel_help_works():
    out = subprocess.run(
        [sys.executable, "-m", "autolabel", "--help"], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert "Usage: autolabel" in out.stdout and "autocrop" in out.stdout


def test_command_modules_are_named_after_their_commands():
    from autolabel.commands import COMMAND_MODULES

    names = {m.__name__.rsplit(".", 1)[1] for m in COMMAND_MODULES}
    groups = {p[0] for p, c in COMMANDS if len(p) == 1 and _is_group(c)}
    assert groups - {"reviewers"} <= names  # `reviewers` lives beside `review`
    assert "detect" not in names


def test_init_ingest_status_end_to_end(tmp_path, capsys):
    folder = tmp_path / "shots"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (8, 10, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    (folder / "bad.jpg").write_text("nope")
    ws = tmp_path / "ws"
    main(["init", str(ws)])
    assert "workspace ready" in capsys.readouterr().out
    main(["ingest", str(ws), str(folder), "--json"])
    report = json.loads(capsys.readouterr().out)
    assert (report["added"], report["errors"]) == (4, 1)
    main(["ingest", str(ws), str(folder)])
    assert "0 added" in capsys.readouterr().out
    main(["status", str(ws), "--json"])
    status = json.loads(capsys.readouterr().out)
    assert status["images"] == {"total": 4, "ok": 3, "error": 1, "duplicate": 0}
    assert status["image_errors"] == {"not-an-image": 1}
    main(["status", str(ws)])
    text = capsys.readouterr().out
    assert "images: total 4, ok 3, error 1, duplicate 0" in text
    assert "image errors: not-an-image 1" in text


def test_ingest_flags_override_config(tmp_path, capsys):
    folder = tmp_path / "shots"
    (folder / "sub").mkdir(parents=True)
    Image.new("RGB", (4, 4), "red").save(folder / "a.png")
    Image.new("RGB", (4, 4), "blue").save(folder / "sub" / "b.png")
    ws = tmp_path / "ws"
    cfg = tmp_path / "c.yaml"
    cfg.write_text("ingest:\n  recursive: false\n", encoding="utf-8")
    main(["init", str(ws), "--config", str(cfg)])
    capsys.readouterr()
    main(["ingest", str(ws), str(folder), "--json"])  # workspace config: not recursive
    assert json.loads(capsys.readouterr().out)["seen"] == 1
    main(["ingest", str(ws), str(folder), "--recursive", "--json"])
    assert json.loads(capsys.readouterr().out)["added"] == 1


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["status", "{tmp}/missing"], "no such workspace"),
        (["ingest", "{tmp}/ws", "{tmp}/nothing-here"], "expected an existing folder"),
        (["init", "{tmp}/ws2", "--config", "{tmp}/bad.yaml"], "unknown key 'ingest.colour'"),
        (["ingest", "{tmp}/ws", "{tmp}", "--batch-size", "0"], "ingest.batch_size"),
    ],
)
def test_user_mistakes_are_clean_errors(tmp_path, capsys, argv, message):
    main(["init", str(tmp_path / "ws")])
    (tmp_path / "bad.yaml").write_text("ingest:\n  colour: red\n", encoding="utf-8")
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        main([a.replace("{tmp}", str(tmp_path)) for a in argv])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err
    assert not (tmp_path / "ws2").exists()
