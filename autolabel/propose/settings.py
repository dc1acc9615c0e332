"""What one propose run needs: the ``detect``, ``propose`` and ``image`` config sections,
resolved against the workspace (prompt, model version, calibrated thresholds, exemplars).

The config sections are the option objects: :class:`ProposeSettings` only bundles them with
the prompt and the detector's extra options, so every default lives in
:mod:`autolabel.config` and nowhere else.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autolabel.config import Config, DetectConfig, ImageConfig, ProposeConfig
from autolabel.errors import ConfigError
from autolabel.types import Prompt

EXEMPLAR_DEFAULT_THRESHOLD = 0.78
"""Box threshold of the exemplar detector when ``seed calibrate`` has not picked one."""

_SECTIONS = ("detect", "propose", "image")


@dataclass(frozen=True)
class ProposeSettings:
    """One propose run's options, resolved from flags, config and workspace settings.

    Attributes:
        prompt: the canonical prompt text (phrases separated by ``". "``).
        detect: detector options; ``model`` is resolved (a version folder rather than
            ``latest``) and the thresholds are the ones the run uses.
        propose: batching, engine and loader options (``propose.prompt`` is not used here:
            ``prompt`` is the resolved one).
        image: decoding limits.
        detector_options: extra keyword arguments for the detector's builder (the
            exemplar detector's crops and phrases).
    """

    prompt: str
    detect: DetectConfig = field(default_factory=DetectConfig)
    propose: ProposeConfig = field(default_factory=ProposeConfig)
    image: ImageConfig = field(default_factory=ImageConfig)
    detector_options: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, prompt: str, **options: Any) -> ProposeSettings:
        """Settings from flat option names (``batch_size=8, model=...``) over the defaults.

        Raises:
            ConfigError: an option no section has, or an invalid value.
        """
        return cls(prompt=prompt).replace(**options)

    def replace(self, **options: Any) -> ProposeSettings:
        """A copy with flat option names routed to their section (``engine`` -> propose).

        ``refiner=None`` means ``"none"``; ``detector_options`` replaces the dict.

        Raises:
            ConfigError: an option no section has, or an invalid value.
        """
        from pydantic import ValidationError

        updates: dict[str, dict[str, Any]] = {name: {} for name in _SECTIONS}
        top: dict[str, Any] = {}
        for key, value in options.items():
            if key in ("prompt", "detector_options"):
                top[key] = value
                continue
            if key == "refiner" and value is None:
                value = "none"
            section = next(
                (s for s in _SECTIONS if key in type(getattr(self, s)).model_fields), None
            )
            if section is None:
                raise ConfigError(f"propose option {key!r}: expected a detect/propose/image key")
            updates[section][key] = value
        for name, upd in updates.items():
            if upd:
                current = getattr(self, name)
                try:
                    top[name] = type(current).model_validate({**current.model_dump(), **upd})
                except ValidationError as exc:
                    raise ConfigError(f"{name}: {exc.errors()[0]['msg']} ({upd})") from None
        return ProposeSettings(**{**self.__dict__, **top})

    @property
    def refiner(self) -> str | None:
        """The refiner backend's name, or None (``detect.refiner: none``)."""
        return None if self.detect.refiner == "none" else self.detect.refiner

    def record(self) -> dict[str, Any]:
        """The run's options as one flat JSON-friendly dict (stored with the run)."""
        out: dict[str, Any] = {"prompt": self.prompt}
        out.update(self.detect.model_dump())
        out["refiner"] = self.refiner
        out.update({k: v for k, v in self.propose.model_dump().items() if k != "prompt"})
        out.update(self.image.model_dump())
        return out

    def detector_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``build_detector(self.detect.detector, **kwargs)``."""
        d = self.detect
        if d.detector == "exemplar":  # weight-free: exemplars come from detector_options
            return {"box_threshold": d.box_threshold, **self.detector_options}
        kw: dict[str, Any] = {
            "model": d.model,
            "device": d.device,
            "dtype": d.dtype,
            "box_threshold": d.box_threshold,
            "text_threshold": d.text_threshold,
        }
        kw.update(self.detector_options)
        return kw

    def refiner_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``build_refiner(self.refiner, **kwargs)``."""
        kw: dict[str, Any] = {"device": self.detect.device}
        if self.detect.refiner_model:
            kw["model"] = self.detect.refiner_model
        return kw


def resolve_settings(
    ws: Any,
    cfg: Config,
    *,
    prompt: str | Prompt,
    box_threshold: float | None = None,
    text_threshold: float | None = None,
    log: Callable[[str], None] | None = None,
) -> ProposeSettings:
    """Combine the run's config sections with what the seed stage and versions calibrated.

    The caller (:mod:`autolabel.steps`) has already applied the CLI flags to ``cfg`` and
    chosen the prompt with the one precedence rule (:func:`autolabel.steps.resolve_prompt`).
    Thresholds: the ``box_threshold``/``text_threshold`` flags > the fine-tuned version's >
    workspace setting ``seed.thresholds`` (when calibrated for the same detector) >
    ``detect.*``. Model names (``latest``, ``v2``, ``gdino-v2``, registry names) resolve
    through :func:`autolabel.detect.versions.resolve_model`, as in finetune. The ``regions``
    detector's model is :func:`regions_model` (trained on the seed when there is none yet).

    Args:
        ws: an open workspace.
        cfg: the loaded config with the command's flags applied.
        prompt: the chosen prompt.
        box_threshold: the ``--box-threshold`` flag (None: not given).
        text_threshold: the ``--text-threshold`` flag (None: not given).
        log: told one line when a ``regions`` model is trained on the fly.

    Raises:
        EmptyPromptError: the prompt has no phrase.
        InputError: ``detect.model`` names a version the workspace does not have.
    """
    from autolabel.detect.versions import resolve_model, version_thresholds

    text = str(Prompt.parse(prompt))
    if cfg.detect.detector == "regions":
        model_path = regions_model(ws, cfg.detect.model, log=log)
    else:
        model_path = resolve_model(cfg.detect.model, workspace=Path(ws.path))
    seeded = ws.get_setting("seed.thresholds") or {}
    if seeded.get("detector") not in (None, cfg.detect.detector):
        seeded = {}  # calibrated for another detector: its thresholds mean nothing here
    seeded = version_thresholds(model_path) or seeded
    options: dict[str, Any] = {}
    if cfg.detect.detector == "exemplar":
        options = {
            **exemplar_options(ws, text),
            "scale_step": cfg.detect.exemplar_scale_step,
            "coarse_side": cfg.detect.exemplar_coarse_side,
        }
        if "box_threshold" not in seeded and box_threshold is None:
            seeded = {"box_threshold": EXEMPLAR_DEFAULT_THRESHOLD}
    elif cfg.detect.detector == "regions" and "box_threshold" not in seeded:
        from autolabel.seed.regions import DEFAULT_BOX_THRESHOLD

        seeded = {"box_threshold": DEFAULT_BOX_THRESHOLD}
    bt = box_threshold if box_threshold is not None else seeded.get("box_threshold")
    tt = text_threshold if text_threshold is not None else seeded.get("text_threshold")
    detect = cfg.detect.model_copy(
        update={
            "model": model_path,
            "box_threshold": float(cfg.detect.box_threshold if bt is None else bt),
            "text_threshold": float(cfg.detect.text_threshold if tt is None else tt),
        }
    )
    return ProposeSettings(
        prompt=text,
        detect=detect,
        propose=cfg.propose,
        image=cfg.image,
        detector_options=options,
    )


def regions_model(ws: Any, model: str, *, log: Callable[[str], None] | None = None) -> str:
    """The ``regions`` model folder for ``detect.model``.

    ``regions-v2`` / ``v2`` name a workspace version, a folder written by
    ``RegionModel.save`` is used as is; anything else (``latest``, or a Grounding DINO hub id
    left in ``detect.model``) means the workspace's newest ``regions-vN``, trained on the
    located seed boxes first when there is none (or the seed changed since; see
    :func:`autolabel.seed.regions.ensure_regions_model`).

    Raises:
        InputError: a version the workspace does not have, or no version and no seed.
        ConfigError: a folder that is not a regions model.
    """
    from autolabel.detect.versions import LATEST, looks_like_version, resolve_model
    from autolabel.seed.regions import ensure_regions_model

    name = str(model)
    if name != LATEST and looks_like_version(name):
        return resolve_model(name, workspace=Path(ws.path), kind="regions")
    local = Path(name).expanduser()
    if name != LATEST and local.exists():
        if not (local / "model.joblib").is_file():
            raise ConfigError(
                f"--detector regions --model {name}: expected a regions model folder "
                "(model.joblib), 'latest' or a regions-vN version, got another folder"
            )
        return str(local)
    return str(ensure_regions_model(ws, log=log))


def exemplar_options(ws: Any, prompt: str) -> dict[str, Any]:
    """Exemplars for the weight-free ``exemplar`` detector: the workspace's seed crops.

    See :func:`autolabel.seed.bootstrap.seed_exemplars` (seed is an earlier stage, so
    propose may use its library).

    Raises:
        ConfigError: the workspace has no seed crops.
    """
    from autolabel.seed.bootstrap import seed_exemplars

    crops, phrases, _ = seed_exemplars(ws, prompt)
    if not crops:
        raise ConfigError(
            "--detector exemplar: expected seed crops in the workspace (run `autolabel seed "
            "add WS --crops DIR` first), got none"
        )
    return {"exemplars": crops, "phrases": phrases}
