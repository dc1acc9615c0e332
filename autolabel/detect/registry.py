"""The model registry (``models/registry.yaml``): known checkpoints, local lookup, pulling.

A registry name is turned into a local path (when its files have been placed under
``models/<dir>``) or its hub id by the one model-name resolver,
:func:`autolabel.detect.versions.resolve_model`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autolabel.errors import ModelError

REPO_MODELS = Path(__file__).resolve().parents[2] / "models"


def models_dir() -> Path:
    """``$AUTOLABEL_MODELS_DIR``, else ``./models`` if it exists, else the repo's models/."""
    env = os.environ.get("AUTOLABEL_MODELS_DIR")
    if env:
        return Path(env).expanduser()
    cwd = Path.cwd() / "models"
    return cwd if cwd.is_dir() else REPO_MODELS


@dataclass(frozen=True)
class ModelEntry:
    """One known checkpoint from ``models/registry.yaml``."""

    name: str
    kind: str
    hub: str | None = None
    url: str | None = None
    files: tuple[str, ...] = ()
    sha256: str | None = None
    licence: str | None = None
    size: str | None = None
    dir: str | None = None
    notes: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def local_path(self, root: Path | None = None) -> Path:
        """Where the files go: a folder for hub models, the file for single-file ones."""
        base = (root or models_dir()) / (self.dir or self.name)
        if self.url and len(self.files) == 1:
            return base / self.files[0]
        return base

    def is_present(self, root: Path | None = None) -> bool:
        p = self.local_path(root)
        if p.is_file():
            return True
        return p.is_dir() and (p / "config.json").is_file()


def registry_path() -> Path:
    p = models_dir() / "registry.yaml"
    return p if p.is_file() else REPO_MODELS / "registry.yaml"


def load_registry(path: Path | None = None) -> dict[str, ModelEntry]:
    """Read the registry. Raises ModelError if it is missing or malformed."""
    import yaml

    path = path or registry_path()
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise ModelError(f"{path}: cannot read model registry ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise ModelError(f"{path}: invalid YAML ({exc})") from None
    models = data.get("models") if isinstance(data, dict) else None
    if not isinstance(models, dict):
        raise ModelError(f"{path}: expected a 'models:' mapping")
    known = {"kind", "hub", "url", "files", "sha256", "licence", "size", "dir", "notes"}
    out: dict[str, ModelEntry] = {}
    for name, item in models.items():
        if not isinstance(item, dict) or "kind" not in item:
            raise ModelError(f"{path}: model {name!r}: expected a mapping with a 'kind'")
        out[name] = ModelEntry(
            name=name,
            kind=item["kind"],
            hub=item.get("hub"),
            url=item.get("url"),
            files=tuple(item.get("files") or ()),
            sha256=item.get("sha256"),
            licence=item.get("licence"),
            size=str(item["size"]) if item.get("size") is not None else None,
            dir=item.get("dir"),
            notes=item.get("notes"),
            extra={k: v for k, v in item.items() if k not in known},
        )
    return out


def missing_message(entry: ModelEntry) -> str:
    """How to get a model's files by hand (used when offline)."""
    target = entry.local_path()
    src = entry.url or f"https://huggingface.co/{entry.hub}"
    how = (
        f"download {src} and save it as {target}"
        if entry.url
        else f"download the files {list(entry.files)} from {src} into {target}/"
    )
    return (
        f"model {entry.name!r} is not here and cannot be downloaded: {how} "
        f"(on a machine with internet: `autolabel models pull {entry.name}`)"
    )


def list_models(root: Path | None = None) -> list[dict[str, Any]]:
    """All registry models as JSON-friendly rows (name, kind, source, size, licence,
    present, path). Other areas may append rows (e.g. fine-tuned workspace versions)."""
    rows = []
    for entry in load_registry().values():
        rows.append(
            {
                "name": entry.name,
                "kind": entry.kind,
                "source": entry.hub or entry.url,
                "size": entry.size,
                "licence": entry.licence,
                "sha256": entry.sha256,
                "present": entry.is_present(root),
                "path": str(entry.local_path(root)),
            }
        )
    return rows


def pull_model(name: str, *, root: Path | None = None, timeout: float = 10.0) -> Path:
    """Download a registry model into ``models/`` (checks sha256 where known).

    ``name`` is a registry name or a hub id: the hub id of a registry model pulls that
    model (into ``models/<dir>``, where ``--model <hub id>`` then finds it); any other hub id
    (``owner/name``) is downloaded into the Hugging Face cache, where loading by hub id
    finds it offline. The hub is probed once first, so an unreachable one fails in seconds.

    Raises:
        ModelError: unknown name, no network (fails fast, with how to place the files by
            hand), or a checksum mismatch.
    """
    from autolabel.detect.hub import hub_endpoint, hub_offline_env, hub_reachable

    registry = load_registry()
    entry = registry.get(name) or next((e for e in registry.values() if e.hub == name), None)
    is_hub_id = entry is None and name.count("/") == 1 and not Path(name).exists()
    if entry is None and not is_hub_id:
        raise ModelError(
            f"unknown model {name!r}: expected one of {sorted(registry)} or a hub id like "
            "IDEA-Research/grounding-dino-tiny"
        )
    if entry is not None and entry.is_present(root):
        return entry.local_path(root)
    offline = None
    if hub_offline_env():
        offline = "HF_HUB_OFFLINE/TRANSFORMERS_OFFLINE is set"
    elif (entry is None or not entry.url) and not hub_reachable(min(timeout, 5.0)):
        offline = f"the hub ({hub_endpoint()}) is unreachable"
    try:
        if offline:
            raise OSError(offline)
        if entry is None:
            from huggingface_hub import snapshot_download

            return Path(snapshot_download(name, etag_timeout=timeout))
        target = entry.local_path(root)
        if entry.url:
            _download(entry.url, target, entry.sha256, timeout=timeout)
        else:
            from huggingface_hub import snapshot_download

            snapshot_download(entry.hub, local_dir=target, etag_timeout=timeout)
    except ModelError:
        raise
    except Exception as exc:
        how = (
            missing_message(entry)
            if entry is not None
            else f"model {name!r} cannot be downloaded here: run this on a machine with internet"
        )
        raise ModelError(f"{how}; reason: {str(exc).splitlines()[0][:200]}") from None
    return target


def _download(url: str, target: Path, sha256: str | None, *, timeout: float) -> None:
    import hashlib
    import urllib.request

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".part")
    h = hashlib.sha256()
    with urllib.request.urlopen(url, timeout=timeout) as resp, open(tmp, "wb") as f:
        while block := resp.read(1 << 20):
            f.write(block)
            h.update(block)
    if sha256 and h.hexdigest() != sha256:
        tmp.unlink(missing_ok=True)
        raise ModelError(f"{url}: sha256 mismatch: expected {sha256}, got {h.hexdigest()}")
    tmp.rename(target)
