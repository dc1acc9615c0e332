"""autolabel: from a handful of hand crops to a large, human-verified grounding dataset."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from autolabel.errors import AutolabelError
from autolabel.store import Workspace
from autolabel.types import Label, Proposals

try:
    __version__ = version("autolabel")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

__all__ = ["AutolabelError", "Label", "Proposals", "Workspace", "__version__"]
