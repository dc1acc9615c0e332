"""Versioned fine-tuned detectors inside a workspace: ``WORKSPACE/models/gdino-vN/``.

Each finished version is a ``save_pretrained`` folder (model + processor) with a
``metadata.json`` (base model, data counts, prompt, thresholds, validation metrics, time).
A run in progress lives in ``gdino-vN.partial/`` (checkpoints, the data snapshot) and is
renamed into place only when it finishes, so a listed version is always complete.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autolabel.errors import InputError

MODELS_DIR = "models"
PREFIX = "gdino-v"
METADATA = "metadata.json"
_VERSION_RE = re.compile(rf"^{re.escape(PREFIX)}(\d+)$")
_PARTIAL_RE = re.compile(rf"^{re.escape(PREFIX)}(\d+)\.partial$")


@dataclass(frozen=True)
class ModelVersion:
    """A finished fine-tuned version: ``name`` (``gdino-v3``), ``number``, ``path``, metadata."""

    name: str
    number: int
    path: Path
    metadata: dict[str, Any]


def models_dir(ws_path: str | Path) -> Path:
    """``WORKSPACE/models`` (not created)."""
    return Path(ws_path) / MODELS_DIR


def read_metadata(version_dir: str | Path) -> dict[str, Any]:
    """The version's ``metadata.json`` ({} when missing or unreadable)."""
    try:
        return json.loads((Path(version_dir) / METADATA).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def list_versions(ws_path: str | Path) -> list[ModelVersion]:
    """Finished versions of a workspace, oldest first (by number)."""
    root = models_dir(ws_path)
    if not root.is_dir():
        return []
    out = []
    for child in root.iterdir():
        m = _VERSION_RE.match(child.name)
        if m and child.is_dir() and (child / METADATA).exists():
            out.append(ModelVersion(child.name, int(m.group(1)), child, read_metadata(child)))
    return sorted(out, key=lambda v: v.number)


def latest_version_dir(ws_path: str | Path) -> Path | None:
    """The newest finished version's folder, or None when nothing was fine-tuned yet."""
    versions = list_versions(ws_path)
    return versions[-1].path if versions else None


def resolve_version(ws_path: str | Path, name: str) -> Path:
    """``latest`` / ``gdino-v2`` / ``v2`` / ``2`` -> that version's folder.

    Raises:
        InputError: no such version (the message lists the existing ones).
    """
    versions = list_versions(ws_path)
    names = [v.name for v in versions]
    if name == "latest":
        if not versions:
            raise InputError(
                f"{ws_path}: expected a fine-tuned model for 'latest', got none "
                "(run `autolabel finetune` first)"
            )
        return versions[-1].path
    wanted = name if name.startswith(PREFIX) else PREFIX + name.lstrip("v")
    for v in versions:
        if v.name == wanted:
            return v.path
    raise InputError(f"model version {name!r}: expected one of {names or '(none yet)'}")


def looks_like_version(name: str) -> bool:
    """``gdino-v2`` or ``v2`` (a workspace version name rather than a path or hub id)."""
    return bool(re.fullmatch(rf"(?:{re.escape(PREFIX)}|v)\d+", name))


def find_partial(ws_path: str | Path) -> Path | None:
    """An unfinished run's folder (the highest-numbered one), or None."""
    root = models_dir(ws_path)
    if not root.is_dir():
        return None
    found = [
        (int(m.group(1)), c)
        for c in root.iterdir()
        if (m := _PARTIAL_RE.match(c.name)) and c.is_dir()
    ]
    return max(found)[1] if found else None


def next_version_number(ws_path: str | Path) -> int:
    """One more than any finished or partial version number."""
    root = models_dir(ws_path)
    numbers = [0]
    if root.is_dir():
        for c in root.iterdir():
            m = _VERSION_RE.match(c.name) or _PARTIAL_RE.match(c.name)
            if m:
                numbers.append(int(m.group(1)))
    return max(numbers) + 1


def version_name(number: int) -> str:
    return f"{PREFIX}{number}"


def version_rows(ws_path: str | Path) -> list[dict[str, Any]]:
    """Finished versions as rows shaped like :func:`autolabel.detect.registry.list_models`'s
    (name, kind, source, size, licence, sha256, present, path) plus validation AP50
    before/after, the calibrated box threshold and the creation time, oldest first."""
    rows = []
    for v in list_versions(ws_path):
        meta = v.metadata
        val = meta.get("validation", {})
        size = sum(f.stat().st_size for f in v.path.iterdir() if f.is_file())
        rows.append(
            {
                "name": v.name,
                "kind": "grounding-dino",
                "source": f"fine-tuned from {meta.get('base', '?')}",
                "size": size,
                "licence": None,
                "sha256": None,
                "present": True,
                "path": str(v.path),
                "ap50_before": val.get("ap50_before"),
                "ap50_after": val.get("ap50_after"),
                "box_threshold": meta.get("thresholds", {}).get("box_threshold"),
                "created_at": meta.get("created_at"),
            }
        )
    return rows
