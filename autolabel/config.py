"""Typed configuration. ``configs/default.yaml`` documents every key; this module validates.

The sections are the option objects of the stages: frozen pydantic models that a command
builds once and passes down. Precedence: built-in defaults < a preset (``autocrop``'s) < a
YAML file (``--config`` or the workspace's ``config.yaml``) < CLI flags
(:meth:`Config.with_flags`). Unknown keys and wrong types are :class:`ConfigError` naming
the key.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from autolabel.constants import (
    DEFAULT_DETECTOR,
    DEFAULT_EXPORT_FORMATS,
    DEFAULT_MODEL,
    IMAGE_EXTENSIONS,
    MATCH_IOU,
)
from autolabel.errors import ConfigError

MAX_CONFIG_BYTES = 1 << 20
"""Larger config files are refused before parsing (a config is a few KB)."""
MAX_YAML_ALIASES = 100
"""More ``*alias`` uses are refused."""
MAX_YAML_NODES = 100_000
"""Documents whose aliases expand to more nodes are refused: a 1 KB alias bomb (9 levels of
9 aliases) expands to 9^9 nodes, gigabytes once validated and echoed."""
MAX_ERROR_CHARS = 300
"""Config error messages are cut to this length (they may echo the input)."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class IngestConfig(_Section):
    recursive: bool = True
    extensions: list[str] = Field(default_factory=lambda: list(IMAGE_EXTENSIONS))
    batch_size: int = Field(1000, ge=1)
    hash_bytes: int = Field(0, ge=0, description="0 = hash whole file")
    follow_symlinks: bool = True
    workers: int = Field(4, ge=1, description="threads hashing files and reading headers")
    retry_errors: bool = False


class ImageConfig(_Section):
    max_pixels: int = Field(200_000_000, ge=1)
    max_side: int = Field(30_000, ge=1)


class SeedConfig(_Section):
    min_match_score: float = Field(0.7, ge=0, le=1)
    min_verify_score: float = Field(0.93, ge=-1, le=1)
    prompt: str | None = None
    prompt_map: dict[str, str] = Field(default_factory=dict)
    target_recall: float | None = Field(None, ge=0, le=1)
    search_top_k: int = Field(5, ge=1)
    max_phrases: int = Field(8, ge=1)
    workers: int = Field(2, ge=1)


class DetectConfig(_Section):
    detector: str = DEFAULT_DETECTOR
    model: str = DEFAULT_MODEL
    refiner: Literal["none", "sam", "hf-sam", "snap"] = "none"
    refiner_model: str | None = None
    device: str = "auto"
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = "auto"
    box_threshold: float = Field(0.35, ge=0, le=1)
    text_threshold: float = Field(0.25, ge=0, le=1)
    max_size: int = Field(800, ge=32)
    exemplar_scale_step: float = Field(1.08, gt=1, le=2)
    exemplar_coarse_side: int = Field(400, ge=32)


class ProposeConfig(_Section):
    prompt: str | None = None
    batch_size: int = Field(4, ge=1)
    limit: int | None = Field(None, ge=1)
    engine: Literal["local", "ray"] = "local"
    ray_address: str | None = None
    workers: int = Field(2, ge=0)
    prefetch: int = Field(4, ge=1)
    ray_actors: int = Field(1, ge=1)
    ray_cpus_per_actor: float = Field(0.5, gt=0)
    ray_gpus_per_actor: float = Field(0.0, ge=0)


class SelectConfig(_Section):
    target_precision: float = Field(0.99, gt=0, le=1)
    budget: int | str | None = None
    audit_rate: float = Field(0.02, ge=0, le=1)
    reject_below: float = Field(0.05, ge=0, le=1)
    explore_share: float = Field(0.5, ge=0, le=1)
    seed: int = 0
    method: Literal["logistic", "isotonic"] = "logistic"
    diversity: float = Field(0.3, ge=0, lt=1)
    exemplar_similarity: bool = True
    max_image_loads: int = Field(2000, ge=0)
    max_per_image: int | None = Field(None, ge=1)


class QualityConfig(_Section):
    """What "correct" means and when a quality number may be stated (docs/select.md)."""

    match_iou: float = Field(MATCH_IOU, gt=0, le=1)
    min_audited: int = Field(10, ge=1)
    min_labelled: int = Field(20, ge=2)
    min_recall: float = Field(0.3, ge=0, le=1)


class ReviewConfig(_Section):
    host: str = "127.0.0.1"
    port: int = Field(8765, ge=0, le=65535)
    lease_seconds: float = Field(120.0, gt=0, le=365 * 24 * 3600)  # finite: time math
    preview_max_side: int = Field(1600, ge=64)


class FinetuneConfig(_Section):
    """The fine-tuning options (frozen: the option object handed to ``autolabel.train``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    base: str | None = None
    epochs: int = Field(10, ge=1)
    lr: float = Field(1e-4, gt=0)
    batch_size: int = Field(2, ge=1)
    grad_accum: int = Field(1, ge=1)
    freeze: Literal["text", "backbone", "none"] = "text"
    val_split: float = Field(0.2, ge=0, lt=1)
    patience: int = Field(3, ge=1)
    seed: int = 0
    device: str = "auto"
    max_size: int = Field(800, ge=32)
    hflip: bool = True
    scale_jitter: float = Field(0.2, ge=0, lt=1)
    weight_decay: float = Field(1e-4, ge=0)
    clip_grad: float = Field(0.1, ge=0, description="0 = no gradient clipping")
    warmup_steps: int = Field(10, ge=0)
    checkpoint_every: int = Field(50, ge=0)
    eval_top_k: int = Field(100, ge=1)
    max_steps: int | None = Field(None, ge=1)
    time_budget_s: float | None = Field(None, gt=0)
    threads: int | None = Field(None, ge=1, description="torch CPU threads; None = min(cores, 8)")


class ExportConfig(_Section):
    size: int = Field(448, ge=8)
    max_size: int = Field(4096, ge=8)
    max_upscale: float = Field(8.0, gt=0)
    resize: Literal["fit", "pad", "short-side"] = "fit"
    margin: float = Field(0.0, ge=0, le=100)
    min_size: int = Field(224, ge=0)
    version: str | None = None
    formats: list[str] = Field(default_factory=lambda: list(DEFAULT_EXPORT_FORMATS))
    include: Literal["accepted", "auto", "reviewed", "all"] = "accepted"
    absolute_paths: bool = False
    workers: int = Field(2, ge=1)
    engine: Literal["local", "ray"] = "local"
    ray_address: str | None = None
    ray_actors: int = Field(2, ge=1)
    ray_cpus_per_actor: float = Field(0.5, gt=0)
    instruction: str = "Describe the product in the image."
    labelstudio_root: str = ""
    val_fraction: float = Field(0.1, ge=0, lt=1)


class Config(_Section):
    """The whole configuration; one section per stage."""

    ingest: IngestConfig = Field(default_factory=IngestConfig)
    image: ImageConfig = Field(default_factory=ImageConfig)
    seed: SeedConfig = Field(default_factory=SeedConfig)
    detect: DetectConfig = Field(default_factory=DetectConfig)
    propose: ProposeConfig = Field(default_factory=ProposeConfig)
    select: SelectConfig = Field(default_factory=SelectConfig)
    quality: QualityConfig = Field(default_factory=QualityConfig)
    review: ReviewConfig = Field(default_factory=ReviewConfig)
    finetune: FinetuneConfig = Field(default_factory=FinetuneConfig)
    export: ExportConfig = Field(default_factory=ExportConfig)

    def with_flags(self, flags: Mapping[str, Any] | None = None) -> Config:
        """A validated copy with the CLI flags that were given applied on top.

        Args:
            flags: ``{"section.key": value}``; ``None`` values mean "flag not given" and are
                skipped.

        Raises:
            ConfigError: an unknown key or a value of the wrong type (the message names it).
        """
        given = {k: v for k, v in (flags or {}).items() if v is not None}
        if not given:
            return self
        data = self.model_dump()
        for dotted, value in given.items():
            _set_dotted(data, dotted, value)
        return _validate(data, "flags")

    @property
    def prompt(self) -> str | None:
        """The prompt the config names: ``propose.prompt``, else ``seed.prompt``."""
        return self.propose.prompt or self.seed.prompt


def _short(text: str, limit: int = MAX_ERROR_CHARS) -> str:
    """``text`` on one line, cut to ``limit`` characters (``...`` marks the cut)."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _format_validation(exc: ValidationError, source: str) -> str:
    import reprlib

    short = reprlib.Repr()
    short.maxstring, short.maxother, short.maxlist, short.maxdict, short.maxlevel = 60, 60, 4, 4, 2
    parts = []
    for err in exc.errors()[:5]:
        key = _short(".".join(str(p) for p in err["loc"]) or "(root)", 60)
        if err["type"] == "extra_forbidden":
            parts.append(f"unknown key {key!r}")
        else:
            parts.append(f"{key}: {err['msg']} (got {short.repr(err.get('input'))})")
    return _short(f"{source}: " + "; ".join(parts))


def _load_yaml(text: str, source: str) -> Any:
    """``yaml.safe_load`` that refuses more than :data:`MAX_YAML_ALIASES` aliases, or a
    document whose aliases expand to more than :data:`MAX_YAML_NODES` nodes."""
    import yaml

    def expanded(node: Any, memo: dict[int, int]) -> int:
        # nodes in the tree the document unfolds to (a shared node counts once per use)
        key = id(node)
        if key not in memo:
            memo[key] = 0  # a recursive alias counts once
            if isinstance(node, yaml.SequenceNode):
                memo[key] = 1 + sum(expanded(c, memo) for c in node.value)
            elif isinstance(node, yaml.MappingNode):
                memo[key] = 1 + sum(expanded(k, memo) + expanded(v, memo) for k, v in node.value)
            else:
                memo[key] = 1
        return memo[key]

    class LimitedLoader(yaml.SafeLoader):
        aliases = 0

        def compose_node(self, parent: Any, index: Any) -> Any:
            if self.check_event(yaml.AliasEvent):
                self.aliases += 1
                if self.aliases > MAX_YAML_ALIASES:
                    raise ConfigError(
                        f"{_short(source, 120)}: expected at most {MAX_YAML_ALIASES} aliases "
                        f"(*name), got more than {MAX_YAML_ALIASES}"
                    )
            return super().compose_node(parent, index)

    loader = LimitedLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if loader.aliases and expanded(node, {}) > MAX_YAML_NODES:
            raise ConfigError(
                f"{_short(source, 120)}: expected aliases (*name) that expand to at most "
                f"{MAX_YAML_NODES} values, got more (an alias bomb?)"
            )
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    node = data
    keys = dotted.split(".")
    for k in keys[:-1]:
        child = node.setdefault(k, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {dotted!r}: {k!r} is not a section")
        node = child
    node[keys[-1]] = value


def _validate(data: dict[str, Any], source: str) -> Config:
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_validation(exc, source)) from None


def _merge(base: dict[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = {**out[key], **value}
        else:
            out[key] = value
    return out


def load_config(
    path: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    *,
    preset: Mapping[str, Any] | None = None,
) -> Config:
    """Load and validate a config.

    Args:
        path: a YAML file, or None for the defaults.
        overrides: ``{"section.key": value}``; ``None`` values are ignored (flag not given).
        preset: ``{"section.key": value}`` defaults of one command (``autocrop``) that the
            file may override.

    Raises:
        ConfigError: unreadable YAML, unknown keys or wrong types (the message names the key).
    """
    import yaml

    data: dict[str, Any] = {}
    source = "defaults"
    if path is not None:
        source = str(path)
        try:
            size = Path(path).stat().st_size
            if size > MAX_CONFIG_BYTES:
                raise ConfigError(f"{path}: expected <= {MAX_CONFIG_BYTES} bytes, got {size}")
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read config ({exc.strerror})") from exc
        except UnicodeDecodeError as exc:
            raise ConfigError(
                f"{path}: expected a UTF-8 text config, got byte {exc.object[exc.start]:#04x} "
                f"at offset {exc.start}"
            ) from None
        try:
            loaded = _load_yaml(text, source)
        except yaml.YAMLError as exc:
            raise ConfigError(_short(f"{path}: invalid YAML ({exc})")) from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: expected a mapping at the top, got {type(loaded).__name__}")
        data = loaded
    if preset:
        base: dict[str, Any] = {}
        for dotted, value in preset.items():
            _set_dotted(base, dotted, value)
        data = _merge(base, data)
    for dotted, value in (overrides or {}).items():
        if value is not None:
            _set_dotted(data, dotted, value)
    return _validate(data, source)
