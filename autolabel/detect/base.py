"""Protocols and the model loading helpers shared by the backends.

Building (weights, device, dtype) is separate from calling: ``build_detector(name, **opts)``
(:mod:`autolabel.detect.backends`) returns an object whose ``detect(images, prompts)`` may
be called many times. This module imports no backend, so backends may import it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from autolabel.detect.hub import hub_endpoint, hub_offline_env, hub_reachable
from autolabel.errors import ModelError
from autolabel.types import Proposals

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pth", ".pt")


@runtime_checkable
class Detector(Protocol):
    """Finds boxes for text prompts (or exemplars) in a batch of images."""

    name: str
    model_id: str
    model_version: str
    box_threshold: float
    text_threshold: float

    def detect(self, images: Sequence[np.ndarray], prompts: Sequence[str]) -> list[Proposals]:
        """Detect in ``images`` (each ``(H, W, 3) uint8`` RGB), one prompt string per image
        (phrases separated by ``". "``); return one ``Proposals`` per image."""
        ...


@runtime_checkable
class Refiner(Protocol):
    """Turns boxes into masks and tight boxes, adding quality signals."""

    name: str
    model_id: str
    model_version: str

    def refine(self, image: np.ndarray, proposals: Proposals) -> Proposals:
        """Refine all boxes of one ``(H, W, 3) uint8`` image."""
        ...


def resolve_device(device: str = "auto") -> str:
    """``auto`` -> ``cuda`` if available, else ``mps``, else ``cpu``; others are checked.

    Raises:
        ModelError: a requested accelerator is not available.
    """
    import torch

    device = (device or "auto").lower()
    if device == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelError(f"device {device!r} requested but CUDA is not available (use cpu/auto)")
    if device == "mps" and not (
        getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    ):
        raise ModelError("device 'mps' requested but MPS is not available (use cpu/auto)")
    if device != "cpu" and not device.startswith(("cuda", "mps")):
        raise ModelError(f"unknown device {device!r}: expected auto, cpu, cuda, cuda:N or mps")
    return device


def select_dtype(dtype: str, device: str):
    """``auto`` -> float16 on CUDA (bfloat16 if the GPU supports it is NOT chosen by
    default: GD's deformable attention is tested in fp16), float32 elsewhere.

    Raises:
        ModelError: float16 requested on CPU (slow and unsupported by some kernels).
    """
    import torch

    dtype = (dtype or "auto").lower()
    table = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
    if dtype == "auto":
        return torch.float16 if device.startswith("cuda") else torch.float32
    if dtype not in table:
        raise ModelError(f"unknown dtype {dtype!r}: expected auto, float32, float16 or bfloat16")
    if dtype == "float16" and device == "cpu":
        raise ModelError("dtype float16 needs a GPU; on cpu use float32 or bfloat16")
    return table[dtype]


def model_version_of(path_or_id: str | Path, revision: str | None = None) -> str:
    """A stable version string for a model.

    Local folder or file: sha256 over ``config.json`` and weight files (names + contents),
    shortened to 16 hex digits. Hub id: ``"<id>@<revision or 'main'>"``.
    """
    p = Path(path_or_id).expanduser()
    if p.exists():
        h = hashlib.sha256()
        files = (
            [p]
            if p.is_file()
            else sorted(
                f
                for f in p.iterdir()
                if f.is_file() and (f.name == "config.json" or f.suffix in WEIGHT_SUFFIXES)
            )
        )
        for f in files:
            h.update(f.name.encode())
            with open(f, "rb") as fh:
                while block := fh.read(1 << 20):
                    h.update(block)
        return h.hexdigest()[:16]
    return f"{path_or_id}@{revision or 'main'}"


def _how_to_place(model: str) -> str:
    return (
        f"download it on a machine with internet (`autolabel models pull {model}`, or "
        f"`huggingface-cli download {model} --local-dir models/{model.split('/')[-1]}`), copy "
        f"the folder here and pass its path"
    )


EXPECTED_MODEL_TYPE = {"grounding-dino": "grounding-dino", "sam": "sam"}


def _looks_like_hub_id(model: str) -> bool:
    return (
        model.count("/") == 1
        and not model.startswith((".", "/", "~"))
        and not Path(model).expanduser().exists()
    )


def check_hub_model(model: str | Path, *, kind: str) -> None:
    """Fail in seconds, before torch loads, when ``model`` resolves to a hub id that is not
    in the local cache and cannot be downloaded (offline variable set, or the hub does not
    answer :func:`hub_reachable`'s probe). Anything else passes (the loader reports it).

    Raises:
        ModelError: one line advising ``autolabel models pull <hub id>``.
    """
    from autolabel.detect.versions import resolve_model

    try:
        src = resolve_model(str(model), kind="hf-sam" if kind == "sam" else kind)
    except Exception:  # version names and registry problems: the loader says it better
        return
    if not _looks_like_hub_id(src):
        return
    try:
        from huggingface_hub import try_to_load_from_cache

        if isinstance(try_to_load_from_cache(src, "config.json"), str):
            return
    except ImportError:  # pragma: no cover - huggingface_hub comes with transformers
        return
    why = None
    if hub_offline_env():
        why = "HF_HUB_OFFLINE/TRANSFORMERS_OFFLINE is set"
    elif not hub_reachable():
        why = f"the hub ({hub_endpoint()}) is unreachable"
    if why is not None:
        raise ModelError(
            f"model {src!r} is not available offline (not downloaded, and {why}): "
            f"{_how_to_place(src)}"
        )


def load_hf(model: str | Path, *, kind: str, device: str, dtype: Any):
    """Load a transformers model + processor from a local folder or a hub id.

    Args:
        model: local folder (``config.json`` + weights + processor files), a registry name
            from ``models/registry.yaml``, or a hub id.
        kind: ``"grounding-dino"`` or ``"sam"``.

    Returns:
        ``(model, processor, model_id, model_version)``; the model is in eval mode.

    Raises:
        ModelError: missing folder, not a model folder, wrong model type, or a hub id that
            is not cached while offline.
    """
    from autolabel.detect.versions import resolve_model

    model = resolve_model(str(model), kind="hf-sam" if kind == "sam" else kind)
    p = Path(model).expanduser()
    looks_local = p.exists() or str(model).startswith((".", "/", "~")) or str(model).count("/") != 1
    if looks_local:
        if not p.exists():
            raise ModelError(
                f"model folder {str(model)!r} does not exist: expected a folder with "
                "config.json, weights and processor files, or a hub id like "
                "IDEA-Research/grounding-dino-tiny"
            )
        if not p.is_dir() or not (p / "config.json").is_file():
            raise ModelError(
                f"{p}: not a transformers model folder: expected config.json, weights and "
                f"processor files (found {_listing(p)})"
            )
        try:
            mtype = json.loads((p / "config.json").read_text()).get("model_type")
        except (OSError, ValueError) as exc:
            raise ModelError(f"{p / 'config.json'}: unreadable ({exc})") from None
        if mtype != EXPECTED_MODEL_TYPE[kind]:
            raise ModelError(
                f"{p}: mismatched checkpoint: expected a {EXPECTED_MODEL_TYPE[kind]!r} model, "
                f"got model_type {mtype!r}"
            )
    return _from_pretrained(str(p) if looks_local else str(model), kind, device, dtype, looks_local)


def _listing(p: Path) -> str:
    if not p.is_dir():
        return "a file"
    return ", ".join(sorted(x.name for x in p.iterdir())[:6]) or "an empty folder"


def _from_pretrained(src: str, kind: str, device: str, dtype: Any, local: bool):
    import transformers
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()

    if kind == "grounding-dino":
        model_cls, proc_cls = (
            transformers.GroundingDinoForObjectDetection,
            transformers.AutoProcessor,
        )
    else:
        model_cls, proc_cls = transformers.SamModel, transformers.SamProcessor
    kwargs: dict[str, Any] = {}
    offline_why = None
    if not local:
        if hub_offline_env():
            offline_why = "HF_HUB_OFFLINE/TRANSFORMERS_OFFLINE is set"
        elif not hub_reachable():
            offline_why = f"the hub ({hub_endpoint()}) is unreachable"
    if offline_why is not None:
        kwargs["local_files_only"] = True  # the cache only: no minutes of retries
    try:
        processor = proc_cls.from_pretrained(src, **kwargs)
        net = model_cls.from_pretrained(src, dtype=dtype, **kwargs)
    except (OSError, ValueError) as exc:
        if local:
            raise ModelError(
                f"{src}: cannot load {kind} model ({str(exc).splitlines()[0]})"
            ) from None
        if offline_why is not None:
            raise ModelError(
                f"model {src!r} is not available offline (not downloaded, and {offline_why}): "
                f"{_how_to_place(src)}"
            ) from None
        raise ModelError(
            f"model {src!r} could not be downloaded "
            f"({str(exc).splitlines()[0][:160]}); {_how_to_place(src)}"
        ) from None
    net = net.to(device).eval()
    if local:
        version = model_version_of(src)
    else:
        version = model_version_of(src, getattr(net.config, "_commit_hash", None))
    return net, processor, src, version
