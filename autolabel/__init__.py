"""autolabel: from a handful of hand crops to a large, human-verified grounding dataset.

``import autolabel`` stays light: it loads neither the store (SQLite) nor any stage;
:class:`Workspace` is imported on first use.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

from autolabel.errors import AutolabelError
from autolabel.types import Label, Proposals

if TYPE_CHECKING:  # pragma: no cover
    from autolabel.store import Workspace

try:
    __version__ = version("autolabel")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

__all__ = ["AutolabelError", "Label", "Proposals", "Workspace", "__version__"]


def __getattr__(name: str) -> Any:
    if name == "Workspace":
        from autolabel.store import Workspace

        return Workspace
    raise AttributeError(f"module 'autolabel' has no attribute {name!r}")
