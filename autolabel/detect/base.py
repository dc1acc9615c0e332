"""Protocols, the backend registry, and model loading helpers shared by the backends.

Building (weights, device, dtype) is separate from calling: ``build_detector(name, **opts)``
returns an object whose ``detect(images, prompts)`` may be called many times.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

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


DETECTORS: dict[str, Callable[..., Detector]] = {}
REFINERS: dict[str, Callable[..., Refiner]] = {}


def _lazy_detectors() -> None:
    if DETECTORS:
        return

    def grounding_dino(**options: Any) -> Detector:
        from autolabel.detect.grounding_dino import GroundingDinoDetector

        return GroundingDinoDetector(**options)

    def exemplar(**options: Any) -> Detector:
        from autolabel.detect.exemplar import ExemplarDetector

        return ExemplarDetector(**options)

    def regions(**options: Any) -> Detector:
        from autolabel.detect.regions import RegionsDetector

        return RegionsDetector(**options)

    DETECTORS["grounding-dino"] = grounding_dino
    DETECTORS["exemplar"] = exemplar
    DETECTORS["regions"] = regions


def _lazy_refiners() -> None:
    if REFINERS:
        return

    def sam(**options: Any) -> Refiner:
        from autolabel.detect.sam import SamRefiner

        return SamRefiner(**options)

    def hf_sam(**options: Any) -> Refiner:
        from autolabel.detect.sam import HfSamRefiner

        return HfSamRefiner(**options)

    def snap(**options: Any) -> Refiner:
        from autolabel.detect.snap import SnapRefiner

        return SnapRefiner(**options)

    REFINERS["sam"] = sam
    REFINERS["hf-sam"] = hf_sam
    REFINERS["snap"] = snap


def build_detector(name: str, **options: Any) -> Detector:
    """Build a detector by registry name.

    Args:
        name: ``"grounding-dino"`` or ``"exemplar"``.
        **options: backend options (see each backend's class docstring).

    Raises:
        ModelError: unknown name, or the model cannot be loaded.
    """
    _lazy_detectors()
    if name not in DETECTORS:
        raise ModelError(f"unknown detector {name!r}: expected one of {sorted(DETECTORS)}")
    return DETECTORS[name](**options)


def build_refiner(name: str, **options: Any) -> Refiner:
    """Build a refiner by registry name (``"sam"`` or ``"hf-sam"``)."""
    _lazy_refiners()
    if name not in REFINERS:
        raise ModelError(f"unknown refiner {name!r}: expected one of {sorted(REFINERS)}")
    return REFINERS[name](**options)


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
        f"download it on a machine with internet (`autolabel models pull {model}` or "
        f"`huggingface-cli download {model} --local-dir models/{model.split('/')[-1]}`), copy "
        f"the folder here and pass its path"
    )


EXPECTED_MODEL_TYPE = {"grounding-dino": "grounding-dino", "sam": "sam"}


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
    from autolabel.detect.registry import resolve_model

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
    if not local and (os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE")):
        kwargs["local_files_only"] = True
    try:
        processor = proc_cls.from_pretrained(src, **kwargs)
        net = model_cls.from_pretrained(src, dtype=dtype, **kwargs)
    except (OSError, ValueError) as exc:
        if local:
            raise ModelError(
                f"{src}: cannot load {kind} model ({str(exc).splitlines()[0]})"
            ) from None
        raise ModelError(
            f"model {src!r} is not available offline and could not be downloaded "
            f"({str(exc).splitlines()[0][:160]}); {_how_to_place(src)}"
        ) from None
    net = net.to(device).eval()
    if local:
        version = model_version_of(src)
    else:
        version = model_version_of(src, getattr(net.config, "_commit_hash", None))
    return net, processor, src, version
