"""Benchmark `autolabel finetune`: does a small random-init Grounding DINO learn the task?

Generated phone screenshots (``autolabel.synth.make_screenshot``: one product photo amid
banners, price tags and distractor thumbnails), prompt "product photo". The tiny random-init
Grounding DINO (``autolabel.detect.tiny``) is fine-tuned for a fixed wall-clock budget on
the train split (early stopping on the validation split) and measured, in one run, on a
held-out test split it never saw:

- test AP50 of the starting checkpoint and of the fine-tuned version;
- validation AP50 before/after (what ``metadata.json`` records);
- seconds per optimizer step, steps done, the calibrated box threshold.

A random-init model starts near AP50 0; how far it gets in the budget is the number to
report, whatever it is. Real fine-tuning starts from pretrained weights (see docs).

Usage:
    python benchmarks/bench_finetune.py                  # 150 s budget, ~3-4 min on 2 cores
    python benchmarks/bench_finetune.py --full           # 10 min budget, more images
    python benchmarks/bench_finetune.py --budget 300 --train 96 --device cuda
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np

PHRASE = "product photo"


def make_split(folder: Path, n: int, seed: int, size: tuple[int, int]):
    from autolabel.synth import make_screenshot
    from autolabel.train.data import TrainSample

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        shot, box, _ = make_screenshot(rng, size=size)
        path = folder / f"shot_{i:04d}.png"
        shot.save(path)
        out.append(TrainSample(str(path), [box], (PHRASE,)))
    return out


def test_ap50(model_dir: str, samples, max_size: int, device: str) -> float:
    import torch

    from autolabel.detect.base import load_hf
    from autolabel.imageio import load_rgb
    from autolabel.train.loop import predict
    from autolabel.train.metrics import average_precision

    model, processor, _, _ = load_hf(
        model_dir, kind="grounding-dino", device=device, dtype=torch.float32
    )
    images = [load_rgb(s.path) for s in samples]
    preds = predict(model, processor, images, PHRASE + ".", max_size=max_size, device=device)
    truths = [(s.boxes, np.zeros(len(s.boxes), np.int64)) for s in samples]
    return average_precision(preds, truths)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train", type=int, default=64, help="training screenshots")
    ap.add_argument("--val", type=int, default=16, help="validation screenshots")
    ap.add_argument("--test", type=int, default=32, help="held-out test screenshots")
    ap.add_argument("--budget", type=float, default=150.0, help="training seconds")
    ap.add_argument("--max-size", type=int, default=128, help="longest side for training")
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (1: oversubscribed 2-core machines are ~50x slower with 2)",
    )
    ap.add_argument("--full", action="store_true", help="10-minute budget, 160/32/64 images")
    ap.add_argument("--out", type=Path, default=None, help="write the numbers as JSON here")
    args = ap.parse_args()
    if args.full:
        args.budget, args.train, args.val, args.test = 600.0, 160, 32, 64

    import torch

    torch.set_num_threads(args.threads)
    from autolabel.config import FinetuneConfig
    from autolabel.detect.tiny import make_tiny_models
    from autolabel.train.data import TrainingSet
    from autolabel.train.loop import finetune

    with tempfile.TemporaryDirectory(prefix="bench-finetune-") as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        base = str(make_tiny_models(root / "tiny", keys=("grounding-dino",))["grounding-dino"])
        size = (180, 320)  # screenshots at half phone resolution
        train = make_split(root / "train", args.train, 1, size)
        val = make_split(root / "val", args.val, 2, size)
        test = make_split(root / "test", args.test, 3, size)
        print(
            f"data + model: {time.perf_counter() - t0:.1f}s "
            f"({args.train} train / {args.val} val / {args.test} test screenshots, "
            f"{size[0]}x{size[1]}, prompt {PHRASE!r})",
            flush=True,
        )

        before = test_ap50(base, test, args.max_size, args.device)
        samples = train + val
        opts = FinetuneConfig(
            epochs=100_000,
            lr=args.lr,
            batch_size=args.batch_size,
            max_size=args.max_size,
            val_split=len(val) / len(samples),
            patience=1000,
            device=args.device,
            time_budget_s=args.budget,
            checkpoint_every=0,
            scale_jitter=0.1,
            threads=args.threads,
        )
        last = {"t": time.perf_counter()}

        def cb(e: dict) -> None:
            if e["event"] == "eval" or (
                e["event"] == "step" and time.perf_counter() - last["t"] > 30
            ):
                last["t"] = time.perf_counter()
                print(
                    "  ",
                    {k: (round(v, 4) if isinstance(v, float) else v) for k, v in e.items()},
                    flush=True,
                )

        t1 = time.perf_counter()
        res = finetune(
            root / "ws",
            TrainingSet(samples, [PHRASE], {"images": len(samples)}),
            base=base,
            options=opts,
            callback=cb,
        )
        wall = time.perf_counter() - t1
        after = test_ap50(str(res.path), test, args.max_size, args.device)
        meta = res.metadata
        tr = meta["training"]
        numbers = {
            "device": args.device,
            "threads": args.threads,
            "budget_s": args.budget,
            "steps": tr["steps"],
            "seconds_per_step": tr["seconds_per_step"],
            "batch_size": args.batch_size,
            "max_size": args.max_size,
            "first_loss": tr["first_loss"],
            "last_loss": tr["last_loss"],
            "val_ap50_before": meta["validation"]["ap50_before"],
            "val_ap50_after": meta["validation"]["ap50_after"],
            "test_ap50_before": before,
            "test_ap50_after": after,
            "box_threshold": meta["thresholds"]["box_threshold"],
            "wall_s": round(wall, 1),
        }
    print(json.dumps(numbers, indent=1))
    print(
        f"test AP50 {before:.3f} -> {after:.3f} after {tr['steps']} steps "
        f"({tr['seconds_per_step']:.3f} s/step, batch {args.batch_size}, {args.max_size}px, "
        f"{args.device}); loss {tr['first_loss']:.1f} -> {tr['last_loss']:.1f}"
    )
    if args.out:
        args.out.write_text(json.dumps(numbers, indent=1))


if __name__ == "__main__":
    sys.exit(main())
