"""Crash recovery of exports: leftovers of a killed export are cleaned or adopted.

An export commits in this order (:func:`autolabel.export.core.export_dataset`):

1. the complete version is built in ``OUT/.tmp-<version>-<pid>``;
2. ``OUT/.<version>.commit.<pid>.json`` (what the database will record) is written atomically;
3. the temp folder is renamed to ``OUT/<version>`` (the commit point on disk);
4. ``OUT/LATEST`` is replaced atomically (via ``OUT/.LATEST.<pid>.tmp``);
5. the export is recorded in the workspace database;
6. the commit file is removed.

A ``kill -9`` anywhere leaves a state the next export of the same ``OUT`` repairs before it
does anything else (:func:`recover`): temp folders and ``.LATEST.<pid>.tmp`` files of dead
processes are removed; a commit file whose version folder exists is *adopted* (the version
is recorded in the database as the killed export would have recorded it, and ``LATEST``
names it); a commit file without its version folder (killed before the rename) is removed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autolabel.store.db import Workspace

_TMP_DIR_RE = re.compile(r"^\.tmp-(.+)-(\d+)$")
_TMP_FILE_RE = re.compile(r"^\..+\.(\d+)\.tmp$")
_COMMIT_RE = re.compile(r"^\.(.+)\.commit\.(\d+)\.json$")


@dataclass(frozen=True)
class Adopted:
    """A version that a killed export had renamed into place, recorded by :func:`recover`.

    Attributes:
        version: the version name.
        request: what was asked for (formats, options, ``since``).
        marks: ``(max decision id, max proposal id)`` when it was planned.
        counts: its ``export.json`` counts.
        files: its ``export.json`` file list.
    """

    version: str
    request: dict[str, Any]
    marks: tuple[int, int]
    counts: dict[str, int]
    files: list[str]


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists (a zombie counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def commit_path(out: Path, version: str) -> Path:
    """``OUT/.<version>.commit.<pid>.json`` of this process."""
    return out / f".{version}.commit.{os.getpid()}.json"


def write_commit(
    out: Path,
    *,
    version: str,
    request: Mapping[str, Any],
    marks: tuple[int, int],
    items: Iterable[tuple[int, str | None]],
    config: Mapping[str, Any],
) -> Path:
    """Write the commit file (atomically, fsynced) before the version is renamed in."""
    path = commit_path(out, version)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    # the same JSON as json.dump(sort_keys=True), with the items streamed: one entry per
    # label must not be held in memory at 10^6 labels
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write('{"config": ' + json.dumps(dict(config), sort_keys=True, default=str))
        fh.write(', "items": [')
        for k, (p, c) in enumerate(items):
            fh.write((", " if k else "") + json.dumps([int(p), c]))
        fh.write('], "marks": ' + json.dumps(list(marks)))
        fh.write(', "out_dir": ' + json.dumps(str(out)))
        fh.write(', "request": ' + json.dumps(dict(request), sort_keys=True, default=str))
        fh.write(', "version": ' + json.dumps(version) + "}")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return path


def clean_stale(out: Path) -> list[str]:
    """Remove temp folders and ``.*.<pid>.tmp`` files of dead processes; returns names."""
    removed: list[str] = []
    if not out.is_dir():
        return removed
    for entry in sorted(out.iterdir()):
        m = _TMP_DIR_RE.match(entry.name)
        if m and entry.is_dir() and not pid_alive(int(m.group(2))):
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry.name)
            continue
        m = _TMP_FILE_RE.match(entry.name)
        if m and entry.is_file() and not pid_alive(int(m.group(1))):
            entry.unlink(missing_ok=True)
            removed.append(entry.name)
    return removed


def recover(ws: Workspace, out: Path, write_latest: Any) -> list[Adopted]:
    """Clean dead leftovers in ``out`` and adopt versions whose commit was interrupted.

    Args:
        ws: the workspace (adopted versions are recorded in it).
        out: the export folder.
        write_latest: ``write_latest(out, version)`` replaces ``OUT/LATEST`` atomically.

    Returns:
        The adopted versions, oldest first.
    """
    from autolabel.store import exports as store

    clean_stale(out)
    adopted: list[Adopted] = []
    if not out.is_dir():
        return adopted
    recorded = {
        str(r[0])
        for r in ws.conn.execute("SELECT version FROM exports WHERE out_dir = ?", (str(out),))
    }
    for entry in sorted(out.iterdir()):
        m = _COMMIT_RE.match(entry.name)
        if not m or not entry.is_file() or pid_alive(int(m.group(2))):
            continue  # a live export is committing it right now
        version = m.group(1)
        final = out / version
        try:
            body = json.loads(entry.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            body = None
        if body is None or not (final / "export.json").is_file():
            entry.unlink(missing_ok=True)  # killed before the rename (or a torn file)
            continue
        if version not in recorded:
            store.record_export(
                ws,
                version=version,
                out_dir=str(out),
                formats=body["request"]["formats"],
                items=[(int(p), c) for p, c in body["items"]],
                max_decision_id=int(body["marks"][0]),
                max_proposal_id=int(body["marks"][1]),
                config=body["config"],
            )
        write_latest(out, version)
        summary = json.loads((final / "export.json").read_text(encoding="utf-8"))
        adopted.append(
            Adopted(
                version=version,
                request=body["request"],
                marks=(int(body["marks"][0]), int(body["marks"][1])),
                counts=summary.get("counts", {}),
                files=summary.get("files", []),
            )
        )
        entry.unlink(missing_ok=True)
    return adopted
