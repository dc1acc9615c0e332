"""Consumer tests: a fresh export of a small tricky workspace, read by the real trainers.

Every test in this folder is marked ``consumers``. Consumers that cannot share the project's
environment (ms-swift, label-studio-sdk) run in their own virtual environments built by
``tests/consumers/setup_venvs.sh``; when one is missing the test is skipped with the command
to build it, unless ``AUTOLABEL_REQUIRE_CONSUMERS=1`` (set by ``.ci/run``), which turns the
skip into a failure.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.consumers import fixture_data

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config, items):
    for item in items:
        if HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.consumers)


def _skip_or_fail(msg: str) -> None:
    if os.environ.get("AUTOLABEL_REQUIRE_CONSUMERS") == "1":
        pytest.fail(msg + "; AUTOLABEL_REQUIRE_CONSUMERS=1 makes this a failure")
    pytest.skip(msg)


def require(module: str, extra: str = "dev") -> None:
    """Skip (fail under AUTOLABEL_REQUIRE_CONSUMERS=1) when a consumer package is missing."""
    import importlib.util

    if importlib.util.find_spec(module) is None:
        _skip_or_fail(f"{module} is not installed (pip install -e '.[{extra}]')")


def venv_python(name: str) -> Path:
    """The python of consumer venv ``name`` (``swift`` or ``labelstudio``), or skip/fail."""
    env = f"AUTOLABEL_{name.upper()}_VENV"
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "autolabel"
    venv = Path(os.environ.get(env) or cache / f"{name}-venv")
    py = venv / "bin" / "python"
    if not py.is_file():
        msg = (
            f"{name} venv missing at {venv}: build it with "
            f"`tests/consumers/setup_venvs.sh {name}` (or set {env})"
        )
        _skip_or_fail(msg)
    return py


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """``autolabel ARGS`` in a subprocess, with this checkout's package first on the path."""
    env = {**os.environ, "PYTHONPATH": str(HERE.parents[1]), "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-c", "from autolabel.cli import main; main()", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=600,
        check=False,
    )


@pytest.fixture(scope="session")
def exported(tmp_path_factory) -> fixture_data.Exported:
    """The tricky workspace exported once with every format (see :mod:`fixture_data`)."""
    root = tmp_path_factory.mktemp("consumers")
    return fixture_data.build_and_export(root, run_cli)
