"""The fine-tuning loop: Grounding DINO's own loss, augmentation, gradient accumulation,
mixed precision on GPU, freezing, early stopping on validation AP50, checkpoint / resume,
threshold re-calibration and a versioned output folder.

Layout while a run is in progress (``WORKSPACE/models/gdino-vN.partial/``)::

    run.json     base model, options, phrases, the train/val data snapshot
    last.pt      trainable weights + optimizer + counters (written every
                 ``checkpoint_every`` steps, at each epoch end and on Ctrl-C)
    best.pt      trainable weights of the best validation AP50 so far

When training ends the best weights are saved with ``save_pretrained`` into
``WORKSPACE/models/gdino-vN/`` with ``metadata.json`` and the partial folder is removed.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from autolabel.detect import versions
from autolabel.errors import ConflictError, InputError
from autolabel.train.data import (
    TrainingSet,
    TrainSample,
    augment,
    build_prompt,
    build_training_set,
    cxcywh_norm_to_xyxy,
    make_target,
    phrase_class_indices,
    resize_longest,
    split_train_val,
    token_groups,
)
from autolabel.train.metrics import average_precision, best_f1_threshold

FREEZE_CHOICES = ("text", "backbone", "none")
# options that do not change what is learned (may differ between an interrupted run and its
# resumption)
_RUNTIME_OPTIONS = frozenset({"device", "checkpoint_every"})

Callback = Callable[[dict[str, Any]], None]


@dataclass
class FinetuneOptions:
    """Training options (see ``docs/finetune.md``; defaults mirror ``configs/default.yaml``).

    ``max_steps`` and ``time_budget_s`` end training normally (the version is written) after
    that many optimizer steps / seconds of training; ``None`` = no limit.
    """

    epochs: int = 10
    lr: float = 1e-4
    batch_size: int = 2
    grad_accum: int = 1
    freeze: str = "text"
    val_split: float = 0.2
    patience: int = 3
    seed: int = 0
    device: str = "auto"
    max_size: int = 800
    hflip: bool = True
    scale_jitter: float = 0.2
    weight_decay: float = 1e-4
    clip_grad: float = 0.1
    warmup_steps: int = 10
    checkpoint_every: int = 50
    eval_top_k: int = 100
    text_threshold: float = 0.25
    max_steps: int | None = None
    time_budget_s: float | None = None

    def __post_init__(self) -> None:
        if self.freeze not in FREEZE_CHOICES:
            raise InputError(
                f"freeze: expected one of {', '.join(FREEZE_CHOICES)}, got {self.freeze!r}"
            )
        for name in ("epochs", "batch_size", "grad_accum", "patience", "max_size"):
            if int(getattr(self, name)) < 1:
                raise InputError(f"{name}: expected a positive integer, got {getattr(self, name)}")
        if not self.lr > 0:
            raise InputError(f"lr: expected a positive learning rate, got {self.lr}")
        if not 0 <= self.val_split < 1:
            raise InputError(f"val_split: expected a fraction in [0, 1), got {self.val_split}")
        if not 0 <= self.scale_jitter < 1:
            raise InputError(f"scale_jitter: expected [0, 1), got {self.scale_jitter}")

    @classmethod
    def from_config(cls, cfg: Any, **overrides: Any) -> FinetuneOptions:
        """From a :class:`autolabel.config.FinetuneConfig` plus non-None overrides."""
        names = {f.name for f in fields(cls)}
        values = {k: v for k, v in cfg.model_dump().items() if k in names}
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def fingerprint(self) -> dict[str, Any]:
        """The options that decide what is learned (compared when resuming)."""
        return {k: v for k, v in asdict(self).items() if k not in _RUNTIME_OPTIONS}


@dataclass
class FinetuneResult:
    """What a call to :func:`finetune` did.

    ``interrupted`` runs have no ``path`` yet (their checkpoint is in ``partial_dir``).
    """

    version: str
    path: Path | None
    partial_dir: Path
    metadata: dict[str, Any]
    interrupted: bool
    resumed_from_step: int
    steps: int
    history: list[dict[str, Any]] = field(default_factory=list)


# ---------------------------------------------------------------------------------------
# model helpers
# ---------------------------------------------------------------------------------------
def apply_freeze(model: Any, freeze: str) -> dict[str, int]:
    """Freeze part of a ``GroundingDinoForObjectDetection``; returns parameter counts.

    ``text``: the BERT text encoder (keeps the language side of zero-shot ability);
    ``backbone``: the text encoder and the Swin image backbone; ``none``: train everything.
    """
    inner = model.model
    frozen_modules = []
    if freeze in ("text", "backbone"):
        frozen_modules.append(inner.text_backbone)
    if freeze == "backbone":
        frozen_modules.append(inner.backbone)
    for p in model.parameters():
        p.requires_grad_(True)
    for m in frozen_modules:
        for p in m.parameters():
            p.requires_grad_(False)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return {"trainable_params": int(trainable), "total_params": int(total)}


def _trainable_state(model: Any) -> dict[str, Any]:
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items() if k in names}


def _load_trainable(model: Any, state: dict[str, Any]) -> None:
    missing = model.load_state_dict(state, strict=False)
    if missing.unexpected_keys:
        raise ConflictError(
            f"checkpoint does not fit the base model: unexpected keys {missing.unexpected_keys[:3]}"
        )


def predict(
    model: Any,
    processor: Any,
    images: Sequence[np.ndarray],
    prompt: str,
    *,
    max_size: int,
    top_k: int = 100,
    device: str = "cpu",
    batch_size: int = 4,
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Score every (query, phrase) pair and keep the ``top_k`` best per image.

    A phrase's score for a query is the max sigmoid over the phrase's tokens (as in
    Grounding DINO's evaluation). Images are resized so the longest side is ``max_size``.

    Args:
        images: ``(H, W, 3) uint8`` RGB arrays.

    Returns:
        Per image ``(xyxy (k, 4) float32 in original pixels, score (k,), class id (k,))``.
    """
    import torch

    was_training = model.training
    model.eval()
    out: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    try:
        for start in range(0, len(images), batch_size):
            chunk = list(images[start : start + batch_size])
            resized = [resize_longest(im, max_size)[0] for im in chunk]
            inputs = processor(
                images=resized,
                text=[prompt] * len(chunk),
                return_tensors="pt",
                padding=True,
                do_resize=False,
            ).to(device)
            with torch.no_grad():
                res = model(**inputs)
            ids = inputs["input_ids"][0].tolist()
            groups = token_groups(ids)
            probs = res.logits.float().sigmoid().cpu().numpy()  # (b, q, T_max)
            boxes = res.pred_boxes.float().cpu().numpy()  # (b, q, 4) cxcywh normalised
            for b, im in enumerate(chunk):
                h, w = im.shape[:2]
                per_class = np.stack([probs[b][:, g].max(axis=1) for g in groups], axis=1)
                flat = per_class.reshape(-1)
                k = min(top_k, flat.size)
                idx = np.argpartition(-flat, k - 1)[:k]
                idx = idx[np.argsort(-flat[idx], kind="stable")]
                q, c = np.divmod(idx, per_class.shape[1])
                xyxy = cxcywh_norm_to_xyxy(boxes[b][q], w, h)
                out.append((xyxy, flat[idx].astype(np.float32), c.astype(np.int64)))
    finally:
        model.train(was_training)
    return out


# ---------------------------------------------------------------------------------------
# the run
# ---------------------------------------------------------------------------------------
class _ImageCache:
    """Images loaded once (through :mod:`autolabel.imageio`), pre-shrunk to ``side``."""

    def __init__(self, side: int, capacity: int = 512) -> None:
        self.side = side
        self.capacity = capacity
        self._data: dict[str, tuple[np.ndarray, float, float, int, int]] = {}

    def get(self, path: str) -> tuple[np.ndarray, float, float, int, int]:
        """``(image, sx, sy, orig_w, orig_h)`` with the image's longest side <= ``side``."""
        hit = self._data.get(path)
        if hit is not None:
            return hit
        from autolabel.imageio import load_rgb

        image = load_rgb(path)
        if not image.flags.writeable:  # torch warns on read-only arrays
            image = image.copy()
        h, w = image.shape[:2]
        if max(h, w) > self.side:
            image, sx, sy = resize_longest(image, self.side)
        else:
            sx = sy = 1.0
        item = (image, sx, sy, w, h)
        if len(self._data) < self.capacity:
            self._data[path] = item
        return item


def _atomic_torch_save(obj: Any, path: Path) -> None:
    import torch

    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _write_json(path: Path, obj: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1, sort_keys=True, default=str), encoding="utf-8")
    os.replace(tmp, path)


def _evaluate(model, processor, cache, samples, prompt, class_of, opts, device):
    """Validation AP50 and the (prediction, truth) pairs; NaN without a positive image."""
    if not any(len(s.boxes) for s in samples):
        return float("nan"), []
    images = [cache.get(s.path)[0] for s in samples]
    preds_small = predict(
        model,
        processor,
        images,
        prompt,
        max_size=opts.max_size,
        top_k=opts.eval_top_k,
        device=device,
    )
    preds, truths = [], []
    for s, (xyxy, score, cls) in zip(samples, preds_small, strict=True):
        _, sx, sy, _, _ = cache.get(s.path)
        preds.append((xyxy / np.array([sx, sy, sx, sy], np.float32), score, cls))
        truths.append((s.boxes, np.array([class_of[p] for p in s.phrases], np.int64)))
    return average_precision(preds, truths, iou=0.5), list(zip(preds, truths, strict=True))


def finetune(
    ws_path: str | Path,
    training: TrainingSet | None,
    *,
    base: str,
    options: FinetuneOptions,
    restart: bool = False,
    callback: Callback | None = None,
    stop_at_step: int | None = None,
    extra_metadata: dict[str, Any] | None = None,
) -> FinetuneResult:
    """Fine-tune ``base`` on ``training`` and write ``ws_path/models/gdino-vN``.

    If an unfinished run exists under ``ws_path/models`` it is resumed from its last
    checkpoint with its own data snapshot (``training`` is then ignored), unless
    ``restart`` is set (then it is discarded).

    Args:
        ws_path: the workspace folder (or any folder: versions go to ``<it>/models``).
        training: samples and phrases (from :func:`autolabel.train.data.build_training_set`);
            may be None only when resuming.
        base: model folder, registry name or hub id to start from.
        callback: called with event dicts: ``{"event": "start"|"step"|"eval"|"done", ...}``.
        stop_at_step: simulate an interruption: save a checkpoint after this optimizer step
            and return with ``interrupted=True``.

    Raises:
        ConflictError: an unfinished run with different base/options exists.
        InputError: no training data.
    """
    ws_path = Path(ws_path)
    emit = callback or (lambda _e: None)
    partial = versions.find_partial(ws_path)
    if partial is not None and (restart or not (partial / "last.pt").exists()):
        shutil.rmtree(partial)  # discarded, or stopped before its first checkpoint
        partial = None
    if partial is not None:
        run = json.loads((partial / "run.json").read_text(encoding="utf-8"))
        requested = {"base": str(base), "options": options.fingerprint()}
        stored = {"base": run["base"], "options": run["options"]}
        if requested != stored:
            diff = sorted(
                k
                for k in set(stored["options"]) | {"base"}
                if (stored["options"].get(k) if k != "base" else stored["base"])
                != (requested["options"].get(k) if k != "base" else requested["base"])
            )
            raise ConflictError(
                f"{partial}: an interrupted fine-tuning run with different settings exists "
                f"(differs in: {', '.join(diff)}); rerun with the same settings to resume it, "
                "or pass --restart to discard it"
            )
    else:
        if training is None or not training.samples:
            raise InputError("finetune: expected training samples, got none")
        train, val = split_train_val(training.samples, options.val_split, seed=options.seed)
        if not any(not s.negative for s in train):
            raise InputError("finetune: expected at least one positive training image, got none")
        number = versions.next_version_number(ws_path)
        partial = versions.models_dir(ws_path) / f"{versions.version_name(number)}.partial"
        if partial.exists():
            shutil.rmtree(partial)
        partial.mkdir(parents=True)
        run = {
            "base": str(base),
            "options": options.fingerprint(),
            "phrases": list(training.phrases),
            "counts": dict(training.counts),
            "train": [s.to_json() for s in train],
            "val": [s.to_json() for s in val],
            "created_at": time.time(),
            "extra": dict(extra_metadata or {}),
        }
        _write_json(partial / "run.json", run)
    try:
        return _train(partial, run, options, emit, stop_at_step)
    except BaseException:
        if not (partial / "last.pt").exists():  # nothing to resume: leave no trace
            shutil.rmtree(partial, ignore_errors=True)
        raise


def _train(
    partial: Path, run: dict[str, Any], opts: FinetuneOptions, emit: Callback, stop_at_step
) -> FinetuneResult:
    import torch

    from autolabel.detect.base import load_hf, resolve_device

    version = partial.name[: -len(".partial")]
    device = resolve_device(opts.device)
    torch.manual_seed(opts.seed)
    model, processor, model_id, base_version = load_hf(
        run["base"], kind="grounding-dino", device=device, dtype=torch.float32
    )
    params = apply_freeze(model, opts.freeze)
    phrases = list(run["phrases"])
    prompt = build_prompt(phrases)
    class_of = phrase_class_indices(
        processor.tokenizer, phrases, max_text_len=int(model.config.max_text_len)
    )
    train = [TrainSample.from_json(d) for d in run["train"]]
    val = [TrainSample.from_json(d) for d in run["val"]]
    cache = _ImageCache(math.ceil(opts.max_size * (1 + opts.scale_jitter)))

    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=opts.lr, weight_decay=opts.weight_decay)
    use_amp = device.startswith("cuda")
    amp_dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)

    micro_per_epoch = math.ceil(len(train) / opts.batch_size)
    steps_per_epoch = math.ceil(micro_per_epoch / opts.grad_accum)
    total_steps = steps_per_epoch * opts.epochs
    if opts.max_steps is not None:
        total_steps = min(total_steps, opts.max_steps)

    state: dict[str, Any] = {
        "epoch": 0,
        "micro": 0,
        "step": 0,
        "best_ap": None,
        "best_epoch": 0,
        "bad_epochs": 0,
        "ap_before": None,
        "history": [],
        "train_seconds": 0.0,
        "done": False,
        "stopped_early": False,
    }
    ckpt_path, best_path = partial / "last.pt", partial / "best.pt"
    resumed_from = 0
    if ckpt_path.exists():
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        _load_trainable(model, ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        if ckpt.get("scaler"):
            scaler.load_state_dict(ckpt["scaler"])
        state.update(ckpt["state"])
        resumed_from = int(state["step"])
        if ckpt.get("torch_rng") is not None:
            torch.set_rng_state(ckpt["torch_rng"])
        if ckpt.get("cuda_rng") is not None and device.startswith("cuda"):
            torch.cuda.set_rng_state_all(ckpt["cuda_rng"])

    def save_checkpoint() -> None:
        _atomic_torch_save(
            {
                "model": _trainable_state(model),
                "optimizer": optimizer.state_dict(),
                "scaler": scaler.state_dict() if scaler.is_enabled() else None,
                "state": state,
                # dropout draws continue where they stopped: a resumed run equals an
                # uninterrupted one (on CPU)
                "torch_rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state_all() if device.startswith("cuda") else None,
            },
            ckpt_path,
        )

    emit(
        {
            "event": "start",
            "version": version,
            "base": run["base"],
            "device": device,
            "train_images": len(train),
            "val_images": len(val),
            "total_steps": total_steps,
            "resumed_from_step": resumed_from,
            **params,
        }
    )

    if state["ap_before"] is None:
        ap0, _ = _evaluate(model, processor, cache, val, prompt, class_of, opts, device)
        state["ap_before"] = None if math.isnan(ap0) else ap0
        state["best_ap"] = state["ap_before"]
        emit({"event": "eval", "epoch": 0, "ap50": state["ap_before"], "step": 0})
        save_checkpoint()

    def lr_at(step: int) -> float:
        if opts.warmup_steps > 0 and step < opts.warmup_steps:
            return opts.lr * (step + 1) / opts.warmup_steps
        return opts.lr

    model.train()
    interrupted = False
    t_start = time.perf_counter() - float(state["train_seconds"])
    last_loss = float("nan")
    try:
        while not state["done"] and state["epoch"] < opts.epochs:
            epoch = int(state["epoch"])
            order = np.random.default_rng([opts.seed, epoch]).permutation(len(train))
            while state["micro"] < micro_per_epoch and not state["done"]:
                micro = int(state["micro"])
                t_micro = time.perf_counter()
                batch = [
                    train[i] for i in order[micro * opts.batch_size : (micro + 1) * opts.batch_size]
                ]
                rng = np.random.default_rng([opts.seed, epoch, micro])
                images, labels = [], []
                for s in batch:
                    img, sx, sy, _, _ = cache.get(s.path)
                    boxes = s.boxes * np.array([sx, sy, sx, sy], np.float32)
                    img, boxes = augment(
                        img,
                        boxes,
                        rng,
                        max_size=opts.max_size,
                        hflip=opts.hflip,
                        scale_jitter=opts.scale_jitter,
                    )
                    t = make_target(boxes, s.phrases, class_of, img.shape[1], img.shape[0])
                    images.append(img)
                    labels.append(
                        {
                            "class_labels": torch.as_tensor(t["class_labels"], device=device),
                            "boxes": torch.as_tensor(t["boxes"], device=device),
                        }
                    )
                inputs = processor(
                    images=images,
                    text=[prompt] * len(images),
                    return_tensors="pt",
                    padding=True,
                    do_resize=False,
                ).to(device)
                with torch.autocast("cuda", dtype=amp_dtype, enabled=use_amp):
                    out = model(**inputs, labels=labels)
                loss = out.loss.float()
                if not torch.isfinite(loss):
                    raise InputError(
                        f"finetune: the loss became {loss.item()} at step {state['step']}; "
                        "expected a finite loss (lower --lr)"
                    )
                scaler.scale(loss / opts.grad_accum).backward()
                last_loss = float(loss.item())
                state["micro"] = micro + 1
                state["step_seconds"] = state.get("step_seconds", 0.0) + (
                    time.perf_counter() - t_micro
                )
                boundary = (micro + 1) % opts.grad_accum == 0 or micro + 1 == micro_per_epoch
                if not boundary:
                    continue
                t_update = time.perf_counter()
                for g in optimizer.param_groups:
                    g["lr"] = lr_at(int(state["step"]))
                scaler.unscale_(optimizer)
                if opts.clip_grad > 0:
                    torch.nn.utils.clip_grad_norm_(trainable, opts.clip_grad)
                scaler.step(optimizer)
                scaler.update()
                optimizer.zero_grad(set_to_none=True)
                state["step_seconds"] += time.perf_counter() - t_update
                state["step"] += 1
                state["train_seconds"] = time.perf_counter() - t_start
                state["history"].append({"step": state["step"], "loss": last_loss})
                emit(
                    {
                        "event": "step",
                        "step": state["step"],
                        "total_steps": total_steps,
                        "epoch": epoch + 1,
                        "loss": last_loss,
                    }
                )
                budget_over = (
                    opts.time_budget_s is not None and state["train_seconds"] >= opts.time_budget_s
                )
                if (opts.max_steps is not None and state["step"] >= opts.max_steps) or budget_over:
                    state["done"] = True
                elif opts.checkpoint_every and state["step"] % opts.checkpoint_every == 0:
                    save_checkpoint()
                if stop_at_step is not None and state["step"] >= stop_at_step and not state["done"]:
                    save_checkpoint()
                    interrupted = True
                    break
            if interrupted:
                break
            # end of epoch (or of the budget): validate, early-stop bookkeeping
            ap, _ = _evaluate(model, processor, cache, val, prompt, class_of, opts, device)
            state["epoch"] = epoch + 1
            state["micro"] = 0
            entry = {
                "epoch": epoch + 1,
                "step": state["step"],
                "ap50": None if math.isnan(ap) else ap,
            }
            emit({"event": "eval", **entry})
            state.setdefault("evals", []).append(entry)
            if math.isnan(ap):  # no validation split: the last weights are the result
                _atomic_torch_save(_trainable_state(model), best_path)
                state["best_epoch"] = epoch + 1
            elif state["best_ap"] is None or ap > state["best_ap"] + 1e-9:
                state["best_ap"] = ap
                state["best_epoch"] = epoch + 1
                state["bad_epochs"] = 0
                _atomic_torch_save(_trainable_state(model), best_path)
            else:
                state["bad_epochs"] += 1
                if state["bad_epochs"] >= opts.patience:
                    state["stopped_early"] = True
                    state["done"] = True
            state["train_seconds"] = time.perf_counter() - t_start
            save_checkpoint()
    except KeyboardInterrupt:
        save_checkpoint()
        raise

    if interrupted:
        return FinetuneResult(
            version=version,
            path=None,
            partial_dir=partial,
            metadata={},
            interrupted=True,
            resumed_from_step=resumed_from,
            steps=int(state["step"]),
            history=state["history"],
        )
    return _finish(
        partial,
        run,
        opts,
        model,
        processor,
        cache,
        train,
        val,
        prompt,
        class_of,
        state,
        resumed_from,
        device,
        params,
        model_id,
        base_version,
        emit,
    )


def _calibrate(
    folder: Path, val: list[TrainSample], phrases: list[str], device: str, pairs: list, opts
) -> dict[str, Any]:
    """Re-choose thresholds on the validation split with the saved version.

    Runs the real ``grounding-dino`` detector on ``folder`` with sweep thresholds and hands
    its proposals to :func:`autolabel.seed.calibrate.choose_thresholds` (best F1 at IoU
    0.5, box + text threshold), exactly like the seed calibration. Falls back to the
    F1-best box threshold of the training-time predictions when that module is missing.
    """
    none = {"box_threshold": None, "text_threshold": opts.text_threshold, "calibration": "none"}
    if not any(len(s.boxes) for s in val):
        return none
    try:
        from autolabel.seed.calibrate import (
            SWEEP_BOX_THRESHOLD,
            SWEEP_TEXT_THRESHOLD,
            choose_thresholds,
        )
    except ImportError:  # pragma: no cover - seed area not installed
        threshold, _ = best_f1_threshold([p for p, _ in pairs], [t for _, t in pairs])
        return {**none, "box_threshold": threshold, "calibration": "best-f1"}
    from autolabel.detect import build_detector
    from autolabel.imageio import load_rgb

    det = build_detector(
        "grounding-dino",
        model=str(folder),
        device=device,
        box_threshold=SWEEP_BOX_THRESHOLD,
        text_threshold=SWEEP_TEXT_THRESHOLD,
    )
    prompt = ". ".join(phrases)
    preds, truths = [], []
    for start in range(0, len(val), 4):
        chunk = val[start : start + 4]
        preds.extend(det.detect([load_rgb(s.path) for s in chunk], [prompt] * len(chunk)))
        truths.extend(s.boxes for s in chunk)
    r = choose_thresholds(preds, truths, iou=0.5)
    return {
        "box_threshold": r["box_threshold"],
        "text_threshold": r["text_threshold"],
        "calibration": "seed.calibrate.choose_thresholds",  # max F1 at IoU 0.5 on val
        "f1": r["f1"],
        "precision": r["precision"],
        "recall": r["recall"],
    }


def _finish(
    partial,
    run,
    opts,
    model,
    processor,
    cache,
    train,
    val,
    prompt,
    class_of,
    state,
    resumed_from,
    device,
    params,
    model_id,
    base_version,
    emit,
) -> FinetuneResult:
    import torch

    best_path = partial / "best.pt"
    if best_path.exists():
        _load_trainable(model, torch.load(best_path, map_location="cpu", weights_only=False))
        used = "fine-tuned"
    else:
        # training never beat the starting checkpoint on validation: keep the base weights
        from autolabel.detect.base import load_hf

        model, _, _, _ = load_hf(
            run["base"], kind="grounding-dino", device=device, dtype=torch.float32
        )
        used = "base (no validation improvement)"
    ap_after, pairs = _evaluate(model, processor, cache, val, prompt, class_of, opts, device)
    version = partial.name[: -len(".partial")]
    final_tmp = partial / "final"
    if final_tmp.exists():
        shutil.rmtree(final_tmp)
    model = model.to("cpu").eval()
    model.save_pretrained(final_tmp)
    # propose-time resizing matches training: longest side = max_size
    processor.image_processor.size = {
        "shortest_edge": int(opts.max_size),
        "longest_edge": int(opts.max_size),
    }
    processor.save_pretrained(final_tmp)
    thresholds = _calibrate(final_tmp, val, list(run["phrases"]), device, pairs, opts)
    base_meta = versions.read_metadata(run["base"]) if Path(run["base"]).is_dir() else {}
    losses = [h["loss"] for h in state["history"]]
    metadata = {
        "version": version,
        "base": run["base"],
        "base_model_id": str(model_id),
        "base_model_version": base_version,
        "base_version_name": base_meta.get("version"),
        "prompt": prompt,
        "phrases": run["phrases"],
        "class_ids": class_of,
        "data": {
            **run["counts"],
            "train_images": len(train),
            "val_images": len(val),
            "train_boxes": int(sum(len(s.boxes) for s in train)),
            "val_boxes": int(sum(len(s.boxes) for s in val)),
        },
        "thresholds": thresholds,
        "validation": {
            "ap50_before": state["ap_before"],
            "ap50_after": None if math.isnan(ap_after) else ap_after,
            "per_epoch": state.get("evals", []),
            "best_epoch": state["best_epoch"],
        },
        "training": {
            "options": asdict(opts),
            "steps": int(state["step"]),
            "epochs_run": int(state["epoch"]),
            "stopped_early": bool(state["stopped_early"]),
            "weights": used,
            "first_loss": losses[0] if losses else None,
            "last_loss": losses[-1] if losses else None,
            "seconds": round(float(state["train_seconds"]), 3),
            # forward + backward + update only (validation passes excluded)
            "seconds_per_step": (
                round(float(state.get("step_seconds", 0.0)) / state["step"], 4)
                if state["step"]
                else None
            ),
            "device": device,
            "resumed_from_step": resumed_from,
            **params,
        },
        "extra": run.get("extra", {}),
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    _write_json(final_tmp / versions.METADATA, metadata)
    _write_json(final_tmp / "history.json", state["history"])
    target = partial.parent / version
    if target.exists():
        shutil.rmtree(target)
    os.replace(final_tmp, target)
    shutil.rmtree(partial, ignore_errors=True)
    emit({"event": "done", "version": version, "path": str(target), **metadata["validation"]})
    return FinetuneResult(
        version=version,
        path=target,
        partial_dir=partial,
        metadata=metadata,
        interrupted=False,
        resumed_from_step=resumed_from,
        steps=int(state["step"]),
        history=state["history"],
    )


def resolve_base(ws: Any, base: str | None = None) -> str:
    """The starting checkpoint: ``base`` flag > ``finetune.base`` > newest version > detect.model.

    ``latest`` and version names (``gdino-v2``, ``v2``) resolve inside the workspace.
    """
    cfg = ws.config()
    chosen = base or cfg.finetune.base
    if chosen is None:
        latest = versions.latest_version_dir(ws.path)
        return str(latest) if latest is not None else cfg.detect.model
    return versions.resolve_model(chosen, workspace=ws.path)


def finetune_workspace(
    ws: Any,
    *,
    base: str | None = None,
    options: FinetuneOptions | None = None,
    default_phrase: str | None = None,
    restart: bool = False,
    callback: Callback | None = None,
    stop_at_step: int | None = None,
) -> FinetuneResult:
    """Build the training set from a workspace and fine-tune (see :func:`finetune`).

    Args:
        ws: an open :class:`autolabel.store.Workspace`.
        base: starting model (see :func:`resolve_base`).
        options: training options; default from the workspace config.
        default_phrase: phrase for seed boxes that have none.
    """
    options = options or FinetuneOptions.from_config(ws.config().finetune)
    resolved = resolve_base(ws, base)
    partial = versions.find_partial(ws.path)
    training = None
    if partial is None or restart or not (partial / "run.json").exists():
        training = build_training_set(ws, default_phrase=default_phrase)
    return finetune(
        ws.path,
        training,
        base=resolved,
        options=options,
        restart=restart,
        callback=callback,
        stop_at_step=stop_at_step,
    )
