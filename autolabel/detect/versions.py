"""Model names, resolved in one place; versioned fine-tuned detectors in a workspace.

:func:`resolve_model` is the one model-name resolver (propose, finetune and the backends use
it). A name may be:

- ``latest``: the newest fine-tuned version of the workspace;
- a workspace version: ``gdino-v2``, ``v2`` -> ``WORKSPACE/models/gdino-v2/``;
- a name from ``models/registry.yaml`` -> its local path once placed, else its hub id;
  a registry model's hub id -> its local path once placed;
- anything else (a hub id, a local transformers folder, an original IDEA ``.pth``) is
  returned unchanged; the backend reads it.

Version layout: each finished version is a ``save_pretrained`` folder (model + processor)
with a ``metadata.json`` (base model, data counts, prompt, thresholds, validation metrics,
time). A run in progress lives in ``gdino-vN.partial/`` (checkpoints, the data snapshot) and
is renamed into place only when it finishes, so a listed version is always complete.
``autolabel finetune`` writes versions through these helpers. Version families are keyed by
prefix (:data:`FAMILIES`), so another trainable backend (e.g. ``regions-vN``) only adds one.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autolabel.errors import InputError, ModelError

MODELS_DIR = "models"
PREFIX = "gdino-v"
METADATA = "metadata.json"
LATEST = "latest"
"""``--model latest``: the newest *promoted* fine-tuned version under ``WORKSPACE/models/``
(a version that lost its champion/challenger check is used only when named)."""
FAMILIES: dict[str, str] = {PREFIX: "grounding-dino"}
"""Version-name prefix -> the detector kind its versions are (``gdino-v`` -> grounding-dino)."""
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


def is_promoted(version: ModelVersion) -> bool:
    """False only for a version whose champion/challenger check kept the current one
    (``metadata["promotion"]["promoted"]``, see :mod:`autolabel.train.promote`)."""
    return (version.metadata.get("promotion") or {}).get("promoted", True) is not False


def latest_version_dir(ws_path: str | Path) -> Path | None:
    """The newest finished *promoted* version's folder, or None when there is none."""
    versions = [v for v in list_versions(ws_path) if is_promoted(v)]
    return versions[-1].path if versions else None


def resolve_version(ws_path: str | Path, name: str) -> Path:
    """``latest`` / ``gdino-v2`` / ``v2`` / ``2`` -> that version's folder.

    Raises:
        InputError: no such version (the message lists the existing ones).
    """
    versions = list_versions(ws_path)
    names = [v.name for v in versions]
    if name == LATEST:
        promoted = [v for v in versions if is_promoted(v)]
        if not versions:
            raise InputError(
                f"{ws_path}: expected a fine-tuned version for 'latest', got none "
                "(run `autolabel finetune` first)"
            )
        if not promoted:
            why = versions[-1].metadata["promotion"].get("reason", "")
            raise InputError(
                f"'latest': expected a promoted fine-tuned version, got none ({versions[-1].name} "
                f"not promoted: {why}); name a version (--model {versions[-1].name}) to use it"
            )
        return promoted[-1].path
    wanted = name if name.startswith(PREFIX) else PREFIX + name.lstrip("v")
    for v in versions:
        if v.name == wanted:
            return v.path
    raise InputError(f"model version {name!r}: expected one of {names or '(none yet)'}")


def looks_like_version(name: str) -> bool:
    """``gdino-v2`` or ``v2`` (a workspace version name rather than a path or hub id)."""
    prefixes = "|".join(re.escape(p) for p in FAMILIES)
    return bool(re.fullmatch(rf"(?:{prefixes}|v)\d+", name))


def resolve_model(
    model: str | Path, *, workspace: str | Path | None = None, kind: str | None = None
) -> str:
    """The one model-name resolver: turn what a user typed into what a backend loads.

    Args:
        model: ``latest``, a workspace version (``gdino-v2``, ``v2``), a registry name, a hub
            id, a local folder or a ``.pth`` file.
        workspace: the workspace whose versions ``latest`` / ``vN`` name (None: no
            workspace, so those names are an error).
        kind: the kind of checkpoint the caller needs (``grounding-dino``, ``sam``,
            ``hf-sam``); a registry name of another kind is an error.

    Returns:
        A version folder, a registry model's local path or hub id, or ``model`` unchanged.

    Raises:
        InputError: ``latest`` / a version name that the workspace does not have (and no
            folder of that name exists), or either one without a workspace.
        ModelError: a registry name of another kind, or a file-only registry model whose
            file has not been placed.
    """
    name = str(model)
    if name == LATEST or looks_like_version(name):
        local = name != LATEST and Path(name).expanduser().exists()
        if workspace is None:
            if local:
                return name
            raise InputError(
                f"model {name!r}: expected a workspace to look the version up in, got none"
            )
        try:
            return str(resolve_version(workspace, name))
        except InputError:
            if local:  # a plain folder that happens to be named like a version
                return name
            raise
    return _resolve_registry_name(name, kind)


def _resolve_registry_name(name: str, kind: str | None) -> str:
    from autolabel.detect.registry import load_registry, missing_message

    try:
        registry = load_registry()
    except ModelError:
        return name
    entry = registry.get(name)
    if entry is None:  # a registry model's hub id: its pulled folder once placed
        entry = next((e for e in registry.values() if e.hub == name and e.is_present()), None)
    if entry is None:
        return name
    if kind is not None and not (entry.kind == kind or entry.kind.startswith(kind + "-")):
        raise ModelError(f"model {name!r} is a {entry.kind} checkpoint, expected a {kind} one")
    if entry.is_present():
        return str(entry.local_path())
    if entry.hub:
        return entry.hub
    raise ModelError(missing_message(entry))


def version_thresholds(model: str | Path) -> dict[str, float]:
    """Thresholds a fine-tuned version re-calibrated on its validation split (else ``{}``).

    ``autolabel finetune`` stores them in ``gdino-vN/metadata.json``; they beat the seed
    stage's thresholds, which were chosen for the base model.
    """
    path = Path(model)
    if not (path / METADATA).is_file():
        return {}
    found = read_metadata(path).get("thresholds") or {}
    return {k: float(found[k]) for k in ("box_threshold", "text_threshold") if k in found}


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
    """``3`` -> ``gdino-v3``."""
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
