"""Consumer tests: a fresh export of a small tricky workspace, read by the real trainers.

Every test in this folder is marked ``consumers``. Consumers that cannot share the project's
environment (ms-swift, label-studio-sdk) run in their own virtual environments built by
``tests/consumers/setup_venvs.sh``; when one is missing the test is skipped with the command
to build it, unless ``AUTOLABEL_REQUIRE_CONSUMERS=1`` (set by ``.ci/run``), which turns the
skip into a failure. Helpers and the workspace live in :mod:`tests.support.consumers`.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import consumers as fd

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config, items):
    for item in items:
        if HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.consumers)


@pytest.fixture(scope="session")
def exported(tmp_path_factory) -> fd.Exported:
    """The tricky workspace exported once with every format (see :mod:`tests.support.consumers`)."""
    root = tmp_path_factory.mktemp("consumers")
    return fd.build_and_export(root, fd.run_cli)
