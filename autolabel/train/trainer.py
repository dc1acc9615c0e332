"""The trainer: one fine-tuning run of Grounding DINO from its ``.partial`` folder.

Grounding DINO's own loss, augmentation, gradient accumulation, mixed precision on GPU,
freezing, early stopping on validation AP50, checkpoint / resume (see
:mod:`autolabel.train.state` for the folder layout), threshold re-calibration and the
finished version folder ``WORKSPACE/models/gdino-vN/`` (``save_pretrained`` +
``metadata.json``).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from autolabel.detect import versions
from autolabel.errors import InputError
from autolabel.train.data import (
    TrainSample,
    augment,
    build_prompt,
    make_target,
    phrase_class_indices,
    resize_longest,
)
from autolabel.train.metrics import average_precision, best_f1_threshold
from autolabel.train.model import apply_freeze, load_trainable, predict, trainable_state
from autolabel.train.promote import challenger_summary
from autolabel.train.state import BEST_WEIGHTS, LAST_CHECKPOINT, TrainState

if TYPE_CHECKING:
    from autolabel.config import FinetuneConfig

Callback = Callable[[dict[str, Any]], None]
# most torch CPU threads a run uses when ``finetune.threads`` is not set
DEFAULT_MAX_THREADS = 8


@dataclass
class FinetuneResult:
    """What a call to :func:`autolabel.train.loop.finetune` did.

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
# small utilities
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


def atomic_torch_save(obj: Any, path: Path) -> None:
    """``torch.save`` through a temporary file, so a crash never leaves half a checkpoint."""
    import torch

    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def write_json(path: Path, obj: Any) -> None:
    """Write ``obj`` as JSON atomically."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1, sort_keys=True, default=str), encoding="utf-8")
    os.replace(tmp, path)


@contextmanager
def pinned_threads(threads: int | None) -> Iterator[int]:
    """Run the body with a fixed number of torch CPU threads, restored afterwards.

    torch sizes its intra-op pool to the machine's cores; beside other CPU-bound work (data
    loading, another stage, a test suite under load) every op then waits on oversubscribed
    cores and steps get many times slower. ``threads`` (``finetune.threads``) or, when None,
    ``min(torch's current count, DEFAULT_MAX_THREADS)`` (so an outer pin such as
    ``OMP_NUM_THREADS`` or ``torch.set_num_threads`` is never raised).
    """
    import torch

    before = torch.get_num_threads()
    n = int(threads) if threads else min(before, DEFAULT_MAX_THREADS)
    torch.set_num_threads(n)
    try:
        yield n
    finally:
        torch.set_num_threads(before)


# ---------------------------------------------------------------------------------------
# the trainer
# ---------------------------------------------------------------------------------------
class Trainer:
    """One run: built from its partial folder and ``run.json``; :meth:`run` trains it.

    Args:
        partial: the ``gdino-vN.partial`` folder (holds ``run.json``, maybe a checkpoint).
        run: the parsed ``run.json`` (base, phrases, counts, train/val snapshot, extra).
        options: the ``finetune`` config section.
        text_threshold: text threshold recorded when no calibration is possible.
        emit: receives the progress events.
    """

    def __init__(
        self,
        partial: Path,
        run: dict[str, Any],
        options: FinetuneConfig,
        *,
        text_threshold: float,
        emit: Callback,
    ) -> None:
        self.partial = partial
        self.run_info = run
        self.opts = options
        self.text_threshold = text_threshold
        self.emit = emit
        self.version = partial.name[: -len(".partial")]
        self.train = [TrainSample.from_json(d) for d in run["train"]]
        self.val = [TrainSample.from_json(d) for d in run["val"]]
        self.phrases = list(run["phrases"])
        self.prompt = build_prompt(self.phrases)
        self.cache = _ImageCache(math.ceil(options.max_size * (1 + options.scale_jitter)))
        self.micro_per_epoch = math.ceil(len(self.train) / options.batch_size)
        steps_per_epoch = math.ceil(self.micro_per_epoch / options.grad_accum)
        self.total_steps = steps_per_epoch * options.epochs
        if options.max_steps is not None:
            self.total_steps = min(self.total_steps, options.max_steps)
        self.state = TrainState()
        self.resumed_from = 0
        self._last_loss = float("nan")
        self._t_start = 0.0
        self._load_model()
        self._build_optimizer()
        self._restore()

    # -- setup ------------------------------------------------------------------------
    def _load_model(self) -> None:
        import torch

        from autolabel.detect.base import load_hf, resolve_device

        self.device = resolve_device(self.opts.device)
        torch.manual_seed(self.opts.seed)
        self.model, self.processor, self.model_id, self.base_version = load_hf(
            self.run_info["base"], kind="grounding-dino", device=self.device, dtype=torch.float32
        )
        self.params = apply_freeze(self.model, self.opts.freeze)
        self.class_of = phrase_class_indices(
            self.processor.tokenizer,
            self.phrases,
            max_text_len=int(self.model.config.max_text_len),
        )

    def _build_optimizer(self) -> None:
        import torch

        self.trainable = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(
            self.trainable, lr=self.opts.lr, weight_decay=self.opts.weight_decay
        )
        self.use_amp = self.device.startswith("cuda")
        bf16 = self.use_amp and torch.cuda.is_bf16_supported()
        self.amp_dtype = torch.bfloat16 if bf16 else torch.float16
        self.scaler = torch.amp.GradScaler(
            "cuda", enabled=self.use_amp and self.amp_dtype == torch.float16
        )

    def _restore(self) -> None:
        """Continue from ``last.pt`` when there is one (weights, optimizer, counters, RNG)."""
        import torch

        path = self.partial / LAST_CHECKPOINT
        if not path.exists():
            return
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
        load_trainable(self.model, ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        if ckpt.get("scaler"):
            self.scaler.load_state_dict(ckpt["scaler"])
        self.state = TrainState.from_dict(ckpt["state"])
        self.resumed_from = self.state.step
        if ckpt.get("torch_rng") is not None:
            torch.set_rng_state(ckpt["torch_rng"])
        if ckpt.get("cuda_rng") is not None and self.device.startswith("cuda"):
            torch.cuda.set_rng_state_all(ckpt["cuda_rng"])

    def save_checkpoint(self) -> None:
        """Write ``last.pt``: what :meth:`_restore` needs to continue exactly here."""
        import torch

        cuda = self.device.startswith("cuda")
        atomic_torch_save(
            {
                "model": trainable_state(self.model),
                "optimizer": self.optimizer.state_dict(),
                "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else None,
                "state": self.state.to_dict(),
                # dropout draws continue where they stopped: a resumed run equals an
                # uninterrupted one (on CPU)
                "torch_rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state_all() if cuda else None,
            },
            self.partial / LAST_CHECKPOINT,
        )

    # -- the run ----------------------------------------------------------------------
    def run(self, stop_at_step: int | None = None) -> FinetuneResult:
        """Train until the epochs, budget or patience end, then write the version.

        Args:
            stop_at_step: simulate an interruption after this optimizer step (checkpoint
                saved, ``interrupted=True`` returned).
        """
        self._emit_start()
        if self.state.ap_before is None:
            self._measure_start()
        self.model.train()
        self._t_start = time.perf_counter() - float(self.state.train_seconds)
        try:
            while not self.state.done and self.state.epoch < self.opts.epochs:
                if self._train_epoch(stop_at_step):
                    return self._result(path=None, metadata={}, interrupted=True)
                self._end_epoch()
        except KeyboardInterrupt:
            self.save_checkpoint()
            raise
        return self._finish()

    def _emit_start(self) -> None:
        self.emit(
            {
                "event": "start",
                "version": self.version,
                "base": self.run_info["base"],
                "device": self.device,
                "train_images": len(self.train),
                "val_images": len(self.val),
                "total_steps": self.total_steps,
                "resumed_from_step": self.resumed_from,
                **self.params,
            }
        )

    def _measure_start(self) -> None:
        ap0, _ = self.evaluate()
        self.state.ap_before = None if math.isnan(ap0) else ap0
        self.state.best_ap = self.state.ap_before
        self.emit({"event": "eval", "epoch": 0, "ap50": self.state.ap_before, "step": 0})
        self.save_checkpoint()

    def _train_epoch(self, stop_at_step: int | None) -> bool:
        """Micro-batches of the current epoch; True when the run was interrupted."""
        s = self.state
        order = np.random.default_rng([self.opts.seed, s.epoch]).permutation(len(self.train))
        while s.micro < self.micro_per_epoch and not s.done:
            micro = s.micro
            self._forward_backward(order, micro)
            boundary = (micro + 1) % self.opts.grad_accum == 0 or micro + 1 == self.micro_per_epoch
            if not boundary:
                continue
            self._optimizer_step()
            if self._should_stop(stop_at_step):
                return True
        return False

    def _forward_backward(self, order: np.ndarray, micro: int) -> None:
        import torch

        t0 = time.perf_counter()
        bs = self.opts.batch_size
        batch = [self.train[i] for i in order[micro * bs : (micro + 1) * bs]]
        rng = np.random.default_rng([self.opts.seed, self.state.epoch, micro])
        images, labels = self._augmented_batch(batch, rng)
        inputs = self.processor(
            images=images,
            text=[self.prompt] * len(images),
            return_tensors="pt",
            padding=True,
            do_resize=False,
        ).to(self.device)
        with torch.autocast("cuda", dtype=self.amp_dtype, enabled=self.use_amp):
            out = self.model(**inputs, labels=labels)
        loss = out.loss.float()
        if not torch.isfinite(loss):
            raise InputError(
                f"finetune: the loss became {loss.item()} at step {self.state.step}; "
                "expected a finite loss (lower --lr)"
            )
        self.scaler.scale(loss / self.opts.grad_accum).backward()
        self._last_loss = float(loss.item())
        self.state.micro = micro + 1
        self.state.step_seconds += time.perf_counter() - t0

    def _augmented_batch(
        self, batch: list[TrainSample], rng: np.random.Generator
    ) -> tuple[list[np.ndarray], list[dict[str, Any]]]:
        """Augmented ``(H, W, 3)`` images and their loss targets (tensors on the device)."""
        import torch

        images, labels = [], []
        for s in batch:
            img, sx, sy, _, _ = self.cache.get(s.path)
            boxes = s.boxes * np.array([sx, sy, sx, sy], np.float32)
            img, boxes = augment(
                img,
                boxes,
                rng,
                max_size=self.opts.max_size,
                hflip=self.opts.hflip,
                scale_jitter=self.opts.scale_jitter,
            )
            t = make_target(boxes, s.phrases, self.class_of, img.shape[1], img.shape[0])
            images.append(img)
            labels.append(
                {
                    "class_labels": torch.as_tensor(t["class_labels"], device=self.device),
                    "boxes": torch.as_tensor(t["boxes"], device=self.device),
                }
            )
        return images, labels

    def _lr_at(self, step: int) -> float:
        warmup = self.opts.warmup_steps
        if warmup > 0 and step < warmup:
            return self.opts.lr * (step + 1) / warmup
        return self.opts.lr

    def _optimizer_step(self) -> None:
        import torch

        t0 = time.perf_counter()
        s = self.state
        for g in self.optimizer.param_groups:
            g["lr"] = self._lr_at(s.step)
        self.scaler.unscale_(self.optimizer)
        if self.opts.clip_grad > 0:
            torch.nn.utils.clip_grad_norm_(self.trainable, self.opts.clip_grad)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        s.step_seconds += time.perf_counter() - t0
        s.step += 1
        s.train_seconds = time.perf_counter() - self._t_start
        s.history.append({"step": s.step, "loss": self._last_loss})
        self.emit(
            {
                "event": "step",
                "step": s.step,
                "total_steps": self.total_steps,
                "epoch": s.epoch + 1,
                "loss": self._last_loss,
            }
        )

    def _should_stop(self, stop_at_step: int | None) -> bool:
        """Mark the run done at the step/time budget, checkpoint; True = interrupt now."""
        s, o = self.state, self.opts
        budget_over = o.time_budget_s is not None and s.train_seconds >= o.time_budget_s
        if (o.max_steps is not None and s.step >= o.max_steps) or budget_over:
            s.done = True
        elif o.checkpoint_every and s.step % o.checkpoint_every == 0:
            self.save_checkpoint()
        if stop_at_step is not None and s.step >= stop_at_step and not s.done:
            self.save_checkpoint()
            return True
        return False

    def _end_epoch(self) -> None:
        """Validate, keep the best weights, count epochs without gain (early stopping)."""
        s = self.state
        ap, _ = self.evaluate()
        s.epoch += 1
        s.micro = 0
        entry = {"epoch": s.epoch, "step": s.step, "ap50": None if math.isnan(ap) else ap}
        self.emit({"event": "eval", **entry})
        s.evals.append(entry)
        best_path = self.partial / BEST_WEIGHTS
        if math.isnan(ap):  # no validation split: the last weights are the result
            atomic_torch_save(trainable_state(self.model), best_path)
            s.best_epoch = s.epoch
        elif s.best_ap is None or ap > s.best_ap + 1e-9:
            s.best_ap, s.best_epoch, s.bad_epochs = ap, s.epoch, 0
            atomic_torch_save(trainable_state(self.model), best_path)
        else:
            s.bad_epochs += 1
            if s.bad_epochs >= self.opts.patience:
                s.stopped_early = s.done = True
        s.train_seconds = time.perf_counter() - self._t_start
        self.save_checkpoint()

    def evaluate(self) -> tuple[float, list[tuple[Any, Any]]]:
        """Validation AP50 and the (prediction, truth) pairs; NaN without a positive image."""
        if not any(len(s.boxes) for s in self.val):
            return float("nan"), []
        preds_small = predict(
            self.model,
            self.processor,
            [self.cache.get(s.path)[0] for s in self.val],
            self.prompt,
            max_size=self.opts.max_size,
            top_k=self.opts.eval_top_k,
            device=self.device,
        )
        preds, truths = [], []
        for s, (xyxy, score, cls) in zip(self.val, preds_small, strict=True):
            _, sx, sy, _, _ = self.cache.get(s.path)
            preds.append((xyxy / np.array([sx, sy, sx, sy], np.float32), score, cls))
            truths.append((s.boxes, np.array([self.class_of[p] for p in s.phrases], np.int64)))
        return average_precision(preds, truths, iou=0.5), list(zip(preds, truths, strict=True))

    # -- the end ----------------------------------------------------------------------
    def _finish(self) -> FinetuneResult:
        """Best weights -> final AP -> saved model -> calibrated thresholds -> version."""
        used = self._load_best_weights()
        ap_after, pairs = self.evaluate()
        final_tmp = self.partial / "final"
        self._save_model(final_tmp)
        thresholds = calibrate(
            final_tmp,
            self.val,
            self.phrases,
            self.device,
            pairs,
            text_threshold=self.text_threshold,
        )
        metadata = self._metadata(used, ap_after, thresholds)
        # champion/challenger (train/promote.py): the score at the match IoU on held-out images
        summary = challenger_summary(self.val, pairs, thresholds.get("box_threshold"))
        metadata["validation"].update(summary)
        heldout = set(summary["heldout_paths"])
        rows = [{"path": s.path, "boxes": s.boxes.tolist()} for s in self.val if s.path in heldout]
        write_json(final_tmp / "heldout.json", rows)
        write_json(final_tmp / versions.METADATA, metadata)
        write_json(final_tmp / "history.json", self.state.history)
        target = self.partial.parent / self.version
        if target.exists():
            shutil.rmtree(target)
        os.replace(final_tmp, target)
        shutil.rmtree(self.partial, ignore_errors=True)
        self.emit(
            {
                "event": "done",
                "version": self.version,
                "path": str(target),
                **metadata["validation"],
            }
        )
        return self._result(path=target, metadata=metadata, interrupted=False)

    def _load_best_weights(self) -> str:
        """Put the best validation weights in the model; returns which weights are used."""
        import torch

        best_path = self.partial / BEST_WEIGHTS
        if best_path.exists():
            state = torch.load(best_path, map_location="cpu", weights_only=False)
            load_trainable(self.model, state)
            return "fine-tuned"
        # training never beat the starting checkpoint on validation: keep the base weights
        from autolabel.detect.base import load_hf

        self.model, _, _, _ = load_hf(
            self.run_info["base"], kind="grounding-dino", device=self.device, dtype=torch.float32
        )
        return "base (no validation improvement)"

    def _save_model(self, folder: Path) -> None:
        if folder.exists():
            shutil.rmtree(folder)
        self.model = self.model.to("cpu").eval()
        self.model.save_pretrained(folder)
        # propose-time resizing matches training: longest side = max_size
        self.processor.image_processor.size = {
            "shortest_edge": int(self.opts.max_size),
            "longest_edge": int(self.opts.max_size),
        }
        self.processor.save_pretrained(folder)

    def _metadata(self, used: str, ap_after: float, thresholds: dict[str, Any]) -> dict[str, Any]:
        run, s = self.run_info, self.state
        base_meta = versions.read_metadata(run["base"]) if Path(run["base"]).is_dir() else {}
        return {
            "version": self.version,
            "base": run["base"],
            "base_model_id": str(self.model_id),
            "base_model_version": self.base_version,
            "base_version_name": base_meta.get("version"),
            "prompt": self.prompt,
            "phrases": run["phrases"],
            "class_ids": self.class_of,
            "data": {
                **run["counts"],
                "train_images": len(self.train),
                "val_images": len(self.val),
                "train_boxes": int(sum(len(x.boxes) for x in self.train)),
                "val_boxes": int(sum(len(x.boxes) for x in self.val)),
            },
            "thresholds": thresholds,
            "validation": {
                "ap50_before": s.ap_before,
                "ap50_after": None if math.isnan(ap_after) else ap_after,
                "per_epoch": s.evals,
                "best_epoch": s.best_epoch,
            },
            "training": self._training_metadata(used),
            "extra": run.get("extra", {}),
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }

    def _training_metadata(self, used: str) -> dict[str, Any]:
        s = self.state
        losses = [h["loss"] for h in s.history]
        return {
            "options": {**self.opts.model_dump(), "text_threshold": self.text_threshold},
            "steps": int(s.step),
            "epochs_run": int(s.epoch),
            "stopped_early": bool(s.stopped_early),
            "weights": used,
            "first_loss": losses[0] if losses else None,
            "last_loss": losses[-1] if losses else None,
            "seconds": round(float(s.train_seconds), 3),
            # forward + backward + update only (validation passes excluded)
            "seconds_per_step": round(float(s.step_seconds) / s.step, 4) if s.step else None,
            "device": self.device,
            "resumed_from_step": self.resumed_from,
            **self.params,
        }

    def _result(
        self, *, path: Path | None, metadata: dict[str, Any], interrupted: bool
    ) -> FinetuneResult:
        return FinetuneResult(
            version=self.version,
            path=path,
            partial_dir=self.partial,
            metadata=metadata,
            interrupted=interrupted,
            resumed_from_step=self.resumed_from,
            steps=int(self.state.step),
            history=self.state.history,
        )


def calibrate(
    folder: Path,
    val: list[TrainSample],
    phrases: list[str],
    device: str,
    pairs: list,
    *,
    text_threshold: float,
) -> dict[str, Any]:
    """Re-choose thresholds on the validation split with the saved version.

    Runs the real ``grounding-dino`` detector on ``folder`` with sweep thresholds and hands
    its proposals to :func:`autolabel.seed.calibrate.choose_thresholds` (best F1 at IoU
    0.5, box + text threshold), exactly like the seed calibration. Falls back to the
    F1-best box threshold of the training-time predictions when that module is missing.
    """
    none = {"box_threshold": None, "text_threshold": text_threshold, "calibration": "none"}
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
    prompt = build_prompt(phrases)
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
