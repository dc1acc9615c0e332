"""Docs tests: every CLI command and option is documented; the README commands are sane."""

from __future__ import annotations

import re
from pathlib import Path

import typer

from autolabel.cli import app

REPO = Path(__file__).resolve().parents[1]


def _docs_text() -> str:
    parts = [(REPO / "README.md").read_text(encoding="utf-8")]
    parts += [p.read_text(encoding="utf-8") for p in sorted((REPO / "docs").glob("*.md"))]
    return "\n".join(parts)


def _walk(cmd, path: tuple[str, ...] = ()):
    import click  # noqa: F401  (typer vendors click; only attributes are used below)

    sub = getattr(cmd, "commands", None)
    if sub:
        for name, child in sorted(sub.items()):
            yield from _walk(child, (*path, name))
    else:
        yield path, cmd


def test_every_command_and_option_is_documented():
    text = _docs_text()
    root = typer.main.get_command(app)
    missing: list[str] = []
    for path, cmd in _walk(root):
        full = "autolabel " + " ".join(path)
        if full not in text:
            missing.append(f"command `{full}`")
        for param in cmd.params:
            for opt in getattr(param, "opts", []):
                if opt.startswith("--") and opt != "--help" and opt not in text:
                    missing.append(f"option {opt} of `{full}`")
    assert not missing, "undocumented in README.md/docs/*.md:\n" + "\n".join(missing)


def test_readme_has_the_two_setup_commands_and_ci_runs_the_test_one():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    blocks = {}
    for marker in ("main-command", "test-command"):
        m = re.search(rf"<!-- {marker} -->\s*```bash\n(.+?)\n```", readme, re.S)
        assert m, f"README.md lacks the {marker} block"
        blocks[marker] = m.group(1).strip()
    assert "autolabel demo" in blocks["main-command"]
    assert "pytest" in blocks["test-command"]
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    assert "test-command" in ci


def test_missing_optional_package_is_a_clean_error(monkeypatch, capsys):
    import pytest

    from autolabel import cli

    def boom(*_a, **_k):
        raise ModuleNotFoundError("No module named 'pycocotools'", name="pycocotools")

    monkeypatch.setattr(cli, "app", boom)
    with pytest.raises(SystemExit) as exc:
        cli.main(["eval", "ws", "--truth", "t.jsonl"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "pycocotools" in err and 'pip install "autolabel[eval]"' in err
