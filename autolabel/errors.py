"""Named exceptions. Every message says what was expected and what was got.

The CLI turns any :class:`AutolabelError` into a one-line message and a non-zero exit
code; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class AutolabelError(Exception):
    """Base class of every error a user can cause."""


class ConfigError(AutolabelError):
    """A configuration file or option is invalid."""


class EmptyPromptError(ConfigError):
    """A prompt has no phrase, or no prompt was given anywhere."""


class ShapeError(AutolabelError, ValueError):
    """An array has the wrong shape or length."""


class WorkspaceError(AutolabelError):
    """A workspace is missing, not a workspace, or unusable."""


class SchemaTooNewError(WorkspaceError):
    """The workspace was written by a newer autolabel."""


class DatabaseDamagedError(WorkspaceError):
    """The workspace database is damaged, empty or was changed outside autolabel."""


class ImageError(AutolabelError):
    """An image cannot be used; the message names the path and the reason."""

    def __init__(self, path: object, reason: str, detail: str = "") -> None:
        self.path = str(path)
        self.reason = reason
        self.detail = detail
        msg = f"{self.path}: {reason}"
        super().__init__(f"{msg} ({detail})" if detail else msg)


class ModelError(AutolabelError):
    """A model cannot be found, loaded or run."""


class NotFoundError(AutolabelError):
    """A named record (image, run, reviewer, item) does not exist."""


class ConflictError(AutolabelError):
    """An action conflicts with the current state (e.g. a lost review lease)."""


class InputError(AutolabelError, ValueError):
    """A user-supplied file or value is malformed."""


class AuthError(AutolabelError):
    """A request or server setting lacks the reviewer token it needs."""
