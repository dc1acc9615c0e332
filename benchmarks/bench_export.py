"""Export benchmark: crops/s of ``autolabel export`` against a naive Pillow loop, in one run.

Generates N distinct 1920x1080 JPEG phone-screenshot-like images (autolabel.synth, one
product box each, 250..1000 px boxes), ingests them into a fresh workspace with one
auto-accepted box per image, then times

- naive: ``Image.open(p).crop(box).resize(size).save(png)`` per box (one process);
- export (workers=1): ``export_dataset(..., formats=swift)``: crops + JSONL + manifest,
  sha256 of every original, EXIF handling, JPEG draft decoding, fast PNG level;
- export (workers=W): the same with W worker processes.

Both write crops of the same size (long side 448). Page cache is warm for both.

    python benchmarks/bench_export.py                 # N = 400 (about 1-2 min on 2 cores)
    python benchmarks/bench_export.py -n 1000         # the issue's 1,000 crops
    python benchmarks/bench_export.py -n 1000 --workers 4 --keep /tmp/bench_export

Target (issue 7): export >= 2x the naive loop's crops/s on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def make_images(folder: Path, n: int, *, bases: int = 12, seed: int = 0) -> list[tuple]:
    """Write ``n`` distinct 1080p JPEGs; returns ``[(path, box), ...]``."""
    from PIL import Image

    from autolabel.synth import make_screenshot

    rng = np.random.default_rng(seed)
    pool = []
    for _ in range(min(bases, n)):
        img, box, _meta = make_screenshot(rng, size=(1920, 1080))
        pool.append((img, box))
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        img, box = pool[i % len(pool)]
        img = img.copy()
        # a small unique patch keeps files distinct (ingest marks identical files duplicates)
        patch = rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)
        img.paste(Image.fromarray(patch), (int(rng.integers(0, 1896)), 1056))
        # vary the box size 250..1000 px around the product's centre
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        side = float(rng.uniform(250, 1000))
        half_w, half_h = side / 2, side * float(rng.uniform(0.6, 1.0)) / 2
        b = (
            max(0.0, cx - half_w),
            max(0.0, cy - half_h),
            min(1920.0, cx + half_w),
            min(1080.0, cy + half_h),
        )
        path = folder / f"shot_{i:05d}.jpg"
        img.save(path, quality=90)
        out.append((path, b))
    return out


def build_workspace(root: Path, items: list[tuple]):
    from autolabel.ingest import ingest
    from autolabel.store import Workspace
    from autolabel.store import exports as store
    from autolabel.store import runs as store_runs
    from autolabel.types import Proposals

    ws = Workspace.create(root / "ws")
    ingest(ws, [root / "images"], workers=2)
    ids = {r["path"]: r["id"] for r in ws.conn.execute("SELECT id, path FROM images")}
    run = store_runs.create_run(
        ws,
        detector="bench",
        model="bench",
        model_version="bench-1",
        refiner=None,
        prompt="product",
        box_threshold=0.3,
        text_threshold=0.25,
    )
    results = []
    for path, box in items:
        props = Proposals(xyxy=[box], score=[0.9], phrase=["product"])
        results.append((ids[str(path.resolve())], props))
    store_runs.write_batch(ws, run, results)
    store_runs.finish_run(ws, run)
    pids = [r[0] for r in ws.conn.execute("SELECT id FROM proposals")]
    store.set_routes(ws, pids, "auto")
    return ws


def naive(items: list[tuple], out: Path, size: int) -> float:
    from PIL import Image

    from autolabel.export.geometry import resize_plan

    out.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    for i, (path, box) in enumerate(items):
        plan = resize_plan(box[2] - box[0], box[3] - box[1], size, "fit")
        crop_box = tuple(round(v) for v in box)
        Image.open(path).crop(crop_box).resize(plan.out_size).save(out / f"{i}.png")
    return time.perf_counter() - t


def ours(ws, out: Path, size: int, workers: int) -> tuple[float, dict]:
    from autolabel.config import ExportConfig
    from autolabel.export import export_dataset

    t = time.perf_counter()
    res = export_dataset(
        ws, out, ExportConfig(size=size, min_size=0, formats=["swift"], workers=workers)
    )
    return time.perf_counter() - t, res.counts


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-n", "--crops", type=int, default=400, help="images (= crops), default 400")
    ap.add_argument("--size", type=int, default=448)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--keep", type=Path, default=None, help="work folder to keep (default tmp)")
    args = ap.parse_args(argv)

    root = args.keep or Path(tempfile.mkdtemp(prefix="bench_export_"))
    if root.exists() and args.keep:
        shutil.rmtree(root)
    root.mkdir(parents=True, exist_ok=True)
    try:
        t = time.perf_counter()
        items = make_images(root / "images", args.crops)
        gen = time.perf_counter() - t
        ws = build_workspace(root, items)
        print(f"setup: {len(items)} 1920x1080 JPEGs generated in {gen:.1f} s, ingested", flush=True)
        n = len(items)
        t_naive = naive(items, root / "naive", args.size)
        t_one, counts_one = ours(ws, root / "out1", args.size, 1)
        t_many, counts = ours(ws, root / "outN", args.size, args.workers)
        assert counts["crops"] == counts_one["crops"] == n, (counts, counts_one)
        rows = [
            ("naive Image.open().crop().resize().save()", t_naive),
            ("autolabel export, workers=1", t_one),
            (f"autolabel export, workers={args.workers}", t_many),
        ]
        print(f"\n{n} crops (long side {args.size}) from 1080p JPEGs, {os.cpu_count()} CPUs")
        print(f"{'method':<46} {'seconds':>8} {'crops/s':>9} {'vs naive':>9}")
        for name, sec in rows:
            print(f"{name:<46} {sec:8.2f} {n / sec:9.1f} {t_naive / sec:8.2f}x")
        result = {
            "crops": n,
            "naive_crops_per_s": round(n / t_naive, 2),
            "export_w1_crops_per_s": round(n / t_one, 2),
            "export_crops_per_s": round(n / t_many, 2),
            "workers": args.workers,
            "ratio_vs_naive": round(t_naive / t_many, 2),
            "ratio_w1_vs_naive": round(t_naive / t_one, 2),
        }
        print(json.dumps(result))
        ws.close()
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
