"""What one propose run needs: the ``detect``, ``propose`` and ``image`` config sections,
resolved against the workspace (prompt, model version, calibrated thresholds, exemplars).

The config sections are the option objects: :class:`ProposeSettings` only bundles them with
the prompt and the detector's extra options, so every default lives in
:mod:`autolabel.config` and nowhere else.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autolabel.config import DetectConfig, ImageConfig, ProposeConfig
from autolabel.errors import ConfigError

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


def normalize_prompt(prompt: str) -> str:
    """Canonical prompt text: phrases separated by ``". "``, no empty phrases.

    ``"white sneaker.handbag."`` and ``" white sneaker. handbag"`` both give
    ``"white sneaker. handbag"``, so they share a run key.

    Raises:
        ConfigError: the prompt has no phrase.
    """
    phrases = split_prompt(prompt)
    if not phrases:
        raise ConfigError(f"prompt: expected phrases separated by '. ', got {prompt!r}")
    return ". ".join(phrases)


def split_prompt(prompt: str) -> list[str]:
    """The phrases of a prompt (``"a. b"`` -> ``["a", "b"]``), whitespace collapsed."""
    return [" ".join(p.split()) for p in prompt.split(".") if p.strip()]


def resolve_settings(
    ws: Any,
    *,
    prompt: str | None = None,
    detector: str | None = None,
    model: str | None = None,
    refiner: str | None = None,
    batch_size: int | None = None,
    device: str | None = None,
    limit: int | None = None,
    engine: str | None = None,
    ray_address: str | None = None,
    box_threshold: float | None = None,
    text_threshold: float | None = None,
    workers: int | None = None,
    refiner_model: str | None = None,
) -> ProposeSettings:
    """Merge CLI flags, the workspace config and the seed stage's settings.

    Precedence: prompt = flag > ``propose.prompt`` > workspace setting ``seed.prompt``;
    thresholds = flag > the fine-tuned version's > workspace setting ``seed.thresholds`` >
    ``detect.*``; model names (``latest``, ``v2``, ``gdino-v2``, registry names) resolve
    through :func:`autolabel.detect.versions.resolve_model`, as in finetune; everything
    else = flag > config.

    Raises:
        ConfigError: no prompt anywhere, or an invalid value (named).
        InputError: ``--model`` names a version the workspace does not have.
    """
    from autolabel.detect.versions import resolve_model, version_thresholds

    cfg = ws.config(
        {
            "detect.detector": detector,
            "detect.model": model,
            "detect.refiner": refiner,
            "detect.refiner_model": refiner_model,
            "detect.device": device,
            "detect.box_threshold": box_threshold,
            "detect.text_threshold": text_threshold,
            "propose.batch_size": batch_size,
            "propose.limit": limit,
            "propose.engine": engine,
            "propose.ray_address": ray_address,
            "propose.workers": workers,
        }
    )
    text = prompt or cfg.propose.prompt or ws.get_setting("seed.prompt")
    if not text:
        raise ConfigError(
            "no prompt: expected --prompt 'white sneaker. handbag', propose.prompt in the "
            "workspace config, or one set by `autolabel seed prompts`; got none"
        )
    model_path = resolve_model(cfg.detect.model, workspace=Path(ws.path))
    seeded = ws.get_setting("seed.thresholds") or {}
    if seeded.get("detector") not in (None, cfg.detect.detector):
        seeded = {}  # calibrated for another detector: its thresholds mean nothing here
    seeded = version_thresholds(model_path) or seeded
    options: dict[str, Any] = {}
    if cfg.detect.detector == "exemplar":
        options = {
            **exemplar_options(ws, str(text)),
            "scale_step": cfg.detect.exemplar_scale_step,
            "coarse_side": cfg.detect.exemplar_coarse_side,
        }
        if "box_threshold" not in seeded and box_threshold is None:
            seeded = {"box_threshold": EXEMPLAR_DEFAULT_THRESHOLD}
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
        prompt=normalize_prompt(str(text)),
        detect=detect,
        propose=cfg.propose,
        image=cfg.image,
        detector_options=options,
    )


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
