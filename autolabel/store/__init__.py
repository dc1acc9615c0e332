"""The SQLite workspace. Nothing outside this package writes SQL.

Modules by domain: ``db`` (connections, migrations, :class:`Workspace`), ``images``,
``seed``, ``runs`` (runs and proposals), ``queue`` (review queue and decisions), ``labels``
(the accepted boxes, for export and training), ``exports``.
"""

from __future__ import annotations

from autolabel.store.db import Workspace, connect, migrate, utcnow
from autolabel.store.schema import latest_version

__all__ = ["Workspace", "connect", "latest_version", "migrate", "utcnow"]
