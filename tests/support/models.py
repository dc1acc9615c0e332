"""Where the tiny random-init models used by the tests are cached."""

from __future__ import annotations

import os
from pathlib import Path


def tiny_cache_root() -> Path:
    """Where tiny models are cached, shared by every checkout and worktree.

    ``$AUTOLABEL_CACHE/tiny-models`` if set, else ``$XDG_CACHE_HOME/autolabel/tiny-models``
    (default ``~/.cache/autolabel/tiny-models``). Each model set lives in a sub-folder named
    after the hash of the maker's source, built in a temporary folder and renamed into place,
    so concurrent pytest runs and checkouts with different makers do not clash.
    """
    base = os.environ.get("AUTOLABEL_CACHE")
    if base:
        return Path(base).expanduser() / "tiny-models"
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg).expanduser() / "autolabel" / "tiny-models"
