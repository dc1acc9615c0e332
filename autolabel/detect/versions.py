"""Model names, resolved in one place; versioned fine-tuned detectors in a workspace.

:func:`resolve_model` is the one model-name resolver (propose, finetune and the backends use
it). A name may be:

- ``latest``: the newest fine-tuned version of the workspace;
- a workspace version: ``gdino-v2``, ``regions-v2``, ``v2`` -> ``WORKSPACE/models/gdino-v2/``
  (``latest`` and ``v2`` look in the family of the caller's ``kind``);
- a name from ``models/registry.yaml`` -> its local path once placed, else its hub id;
  a registry model's hub id -> its local path once placed;
- anything else (a hub id, a local transformers folder, an original IDEA ``.pth``) is
  returned unchanged; the backend reads it.

Version layout: each finished ``gdino-vN`` is a ``save_pretrained`` folder (model + processor)
with a ``metadata.json`` (base model, data counts, prompt, thresholds, validation metrics,
time). A run in progress lives in ``gdino-vN.partial/`` (checkpoints, the data snapshot) and
is renamed into place only when it finishes, so a listed version is always complete.
``autolabel finetune`` writes versions through these helpers. Version families are keyed by
prefix (:data:`FAMILIES`): ``regions-vN`` folders hold a ``RegionModel`` (``model.joblib`` +
``meta.json``) plus the same ``metadata.json`` (seed count, training time, content hash).
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
REGIONS_PREFIX = "regions-v"
FAMILIES: dict[str, str] = {PREFIX: "grounding-dino", REGIONS_PREFIX: "regions"}
"""Version-name prefix -> the detector kind its versions are (``gdino-v`` -> grounding-dino,
``regions-v`` -> regions: a :class:`autolabel.detect.regions.RegionModel` folder)."""


def family_of(kind: str | None) -> str:
    """The version prefix of a detector kind (``regions`` -> ``regions-v``; others ``gdino-v``)."""
    for prefix, k in FAMILIES.items():
        if k == kind:
            return prefix
    return PREFIX


def _version_re(family: str) -> re.Pattern[str]:
    return re.compile(rf"^{re.escape(family)}(\d+)$")


def _partial_re(family: str) -> re.Pattern[str]:
    return re.compile(rf"^{re.escape(family)}(\d+)\.partial$")


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


def list_versions(ws_path: str | Path, family: str = PREFIX) -> list[ModelVersion]:
    """Finished versions of one family (default ``gdino-v``), oldest first (by number)."""
    root = models_dir(ws_path)
    if not root.is_dir():
        return []
    out = []
    pattern = _version_re(family)
    for child in root.iterdir():
        m = pattern.match(child.name)
        if m and child.is_dir() and (child / METADATA).exists():
            out.append(ModelVersion(child.name, int(m.group(1)), child, read_metadata(child)))
    return sorted(out, key=lambda v: v.number)


def is_promoted(version: ModelVersion) -> bool:
    """False only for a version whose champion/challenger check kept the current one
    (``metadata["promotion"]["promoted"]``, see :mod:`autolabel.train.promote`)."""
    return (version.metadata.get("promotion") or {}).get("promoted", True) is not False


def latest_version_dir(ws_path: str | Path, family: str = PREFIX) -> Path | None:
    """The newest finished *promoted* version's folder of ``family``, or None."""
    versions = [v for v in list_versions(ws_path, family) if is_promoted(v)]
    return versions[-1].path if versions else None


def resolve_version(ws_path: str | Path, name: str, family: str = PREFIX) -> Path:
    """``latest`` / ``gdino-v2`` / ``regions-v2`` / ``v2`` / ``2`` -> that version's folder.

    A full version name picks its own family; ``latest`` and ``v2`` look in ``family``.

    Raises:
        InputError: no such version (the message lists the existing ones).
    """
    family = next((f for f in FAMILIES if name.startswith(f)), family)
    versions = list_versions(ws_path, family)
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
    wanted = name if name.startswith(family) else family + name.lstrip("v")
    for v in versions:
        if v.name == wanted:
            return v.path
    raise InputError(f"model version {name!r}: expected one of {names or '(none yet)'}")


def looks_like_version(name: str) -> bool:
    """``gdino-v2``, ``regions-v2`` or ``v2`` (a workspace version name, not a path or hub id)."""
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
            ``hf-sam``, ``regions``); a registry name of another kind is an error. It also
            picks the version family of ``latest`` / ``vN`` (``regions`` -> ``regions-vN``).

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
            return str(resolve_version(workspace, name, family_of(kind)))
        except InputError:
            if local:  # a plain folder that happens to be named like a version
                return name
            raise
    return _resolve_registry_name(name, kind)


def weights_available(model: str | Path, *, workspace: str | Path | None = None) -> bool:
    """Whether a Grounding DINO checkpoint can be loaded without a download.

    True when ``model`` resolves (:func:`resolve_model`) to an existing local folder or file,
    or to a hub id whose ``config.json`` and weights are in the local Hugging Face cache.
    Never touches the network.

    Args:
        model: what ``detect.model`` says (hub id, registry name, folder, ``latest``...).
        workspace: the workspace whose versions ``latest`` / ``vN`` name.
    """
    try:
        source = resolve_model(model, workspace=workspace, kind="grounding-dino")
    except (InputError, ModelError):
        return False
    if Path(source).expanduser().exists():
        return True
    if source.count("/") != 1 or source.startswith((".", "/", "~")):
        return False  # neither a local path nor a hub id
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return False

    def cached(filename: str) -> bool:
        try:
            return isinstance(try_to_load_from_cache(source, filename), str)
        except Exception:  # malformed repo ids raise validation errors
            return False

    weights = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json")
    return cached("config.json") and any(cached(f) for f in weights)


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


def find_partial(ws_path: str | Path, family: str = PREFIX) -> Path | None:
    """An unfinished run's folder (the highest-numbered one), or None."""
    root = models_dir(ws_path)
    if not root.is_dir():
        return None
    pattern = _partial_re(family)
    found = [
        (int(m.group(1)), c) for c in root.iterdir() if (m := pattern.match(c.name)) and c.is_dir()
    ]
    return max(found)[1] if found else None


def next_version_number(ws_path: str | Path, family: str = PREFIX) -> int:
    """One more than any finished or partial version number of ``family``."""
    root = models_dir(ws_path)
    numbers = [0]
    version_re, partial_re = _version_re(family), _partial_re(family)
    if root.is_dir():
        for c in root.iterdir():
            m = version_re.match(c.name) or partial_re.match(c.name)
            if m:
                numbers.append(int(m.group(1)))
    return max(numbers) + 1


def version_name(number: int, family: str = PREFIX) -> str:
    """``3`` -> ``gdino-v3`` (``regions-v3`` with ``family="regions-v"``)."""
    return f"{family}{number}"


def version_rows(ws_path: str | Path) -> list[dict[str, Any]]:
    """Finished versions as rows shaped like :func:`autolabel.detect.registry.list_models`'s
    (name, kind, source, size, licence, sha256, present, path) plus validation AP50
    before/after, the calibrated box threshold and the creation time, oldest first."""
    rows = []
    for family, kind in FAMILIES.items():
        rows.extend(_family_rows(ws_path, family, kind))
    return rows


def _family_rows(ws_path: str | Path, family: str, kind: str) -> list[dict[str, Any]]:
    rows = []
    for v in list_versions(ws_path, family):
        meta = v.metadata
        val = meta.get("validation", {})
        size = sum(f.stat().st_size for f in v.path.iterdir() if f.is_file())
        source = meta.get("source_text") or f"fine-tuned from {meta.get('base', '?')}"
        rows.append(
            {
                "name": v.name,
                "kind": kind,
                "source": source,
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
