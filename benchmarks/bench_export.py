"""Export benchmark: crops/s of ``autolabel export`` against a naive Pillow loop, in one run.

Generates N distinct JPEG screenshot-like images (autolabel.synth; 1920x1080 by default,
``--source-size 1080x2340`` for phone captures; ``--boxes`` boxes each, 250..1000 px at
1080p, scaled with the short side), ingests them into a fresh workspace with the boxes
auto-accepted, then times

- naive: ``Image.open(p).crop(box).resize(size).save(png)`` per box (one process);
- export (workers=1): ``export_dataset(..., formats=swift)``: crops + JSONL + manifest,
  sha256 of every original, EXIF handling, JPEG draft decoding, fast PNG level;
- export (workers=W): the same with W worker processes;
- the tight loop of ``bench_autocrop_scale.py`` (the export's pixel work only: read, draft,
  decode, LANCZOS resize, PNG encode into memory) on the same crops: export (workers=1) /
  tight loop is the cut path's share of its limit.

Both write crops of the same size (long side 448). Page cache is warm for both.

    python benchmarks/bench_export.py                 # N = 400 (about 1-2 min on 2 cores)
    python benchmarks/bench_export.py -n 1000         # the issue's 1,000 crops
    python benchmarks/bench_export.py -n 1000 --workers 4 --keep /tmp/bench_export
    python benchmarks/bench_export.py -n 100 --source-size 1080x2340 --boxes 3

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


def make_images(
    folder: Path,
    n: int,
    *,
    bases: int = 12,
    seed: int = 0,
    source: tuple[int, int] = (1920, 1080),
    boxes: int = 1,
) -> list[tuple]:
    """Write ``n`` distinct JPEGs of ``source`` size; returns ``[(path, box), ...]`` with
    ``boxes`` entries per image."""
    from PIL import Image

    from autolabel.synth import make_screenshot

    W, H = source
    k = min(W, H) / 1080
    rng = np.random.default_rng(seed)
    pool = []
    for _ in range(min(bases, n)):
        img, box, _meta = make_screenshot(rng, size=(W, H))
        pool.append((img, box))
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        img, box = pool[i % len(pool)]
        img = img.copy()
        # a small unique patch keeps files distinct (ingest marks identical files duplicates)
        patch = rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)
        img.paste(Image.fromarray(patch), (int(rng.integers(0, W - 24)), H - 24))
        path = folder / f"shot_{i:05d}.jpg"
        img.save(path, quality=90)
        for j in range(boxes):
            # vary the box size 250..1000 px (at 1080p) around the product's centre, then
            # around random centres for the extra boxes
            if j == 0:
                cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
            else:
                cx, cy = float(rng.uniform(0, W)), float(rng.uniform(0, H))
            side = float(rng.uniform(250, 1000)) * k
            half_w, half_h = side / 2, side * float(rng.uniform(0.6, 1.0)) / 2
            b = (
                max(0.0, cx - half_w),
                max(0.0, cy - half_h),
                min(float(W), cx + half_w),
                min(float(H), cy + half_h),
            )
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
    per_image: dict[Path, list] = {}
    for path, box in items:
        per_image.setdefault(path, []).append(box)
    results = []
    for path, bs in per_image.items():
        props = Proposals(xyxy=bs, score=[0.9] * len(bs), phrase=["product"] * len(bs))
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


def tight(out: Path, size: int) -> float:
    """Crops/s of ``bench_autocrop_scale.tight_loop`` on the crops of the version in ``out``."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_autocrop_scale import tight_loop

    version = (out / "LATEST").read_text().strip()
    with open(out / version / "meta" / "manifest.jsonl", encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh]
    return tight_loop(rows, size)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-n", "--crops", type=int, default=400, help="images (= crops), default 400")
    ap.add_argument("--size", type=int, default=448)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--keep", type=Path, default=None, help="work folder to keep (default tmp)")
    ap.add_argument(
        "--source-size", dest="source", default="1920x1080", help="WIDTHxHEIGHT of the images"
    )
    ap.add_argument("--boxes", type=int, default=1, help="boxes per image (default 1)")
    args = ap.parse_args(argv)

    root = args.keep or Path(tempfile.mkdtemp(prefix="bench_export_"))
    if root.exists() and args.keep:
        shutil.rmtree(root)
    root.mkdir(parents=True, exist_ok=True)
    try:
        t = time.perf_counter()
        source = tuple(int(v) for v in args.source.lower().split("x"))
        items = make_images(root / "images", args.crops, source=source, boxes=args.boxes)
        gen = time.perf_counter() - t
        ws = build_workspace(root, items)
        print(
            f"setup: {args.crops} {args.source} JPEGs ({len(items)} boxes) generated in "
            f"{gen:.1f} s, ingested",
            flush=True,
        )
        n = len(items)
        t_naive = naive(items, root / "naive", args.size)
        t_one, counts_one = ours(ws, root / "out1", args.size, 1)
        t_many, counts = ours(ws, root / "outN", args.size, args.workers)
        assert counts["crops"] == counts_one["crops"] == n, (counts, counts_one)
        limit = tight(root / "out1", args.size)
        rows = [
            ("naive Image.open().crop().resize().save()", t_naive),
            ("tight loop (pixel work only, in memory)", n / limit),
            ("autolabel export, workers=1", t_one),
            (f"autolabel export, workers={args.workers}", t_many),
        ]
        print(
            f"\n{n} crops (long side {args.size}) from {args.source} JPEGs, {os.cpu_count()} CPUs"
        )
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
            "tight_loop_crops_per_s": round(limit, 2),
            "export_w1_vs_tight_loop": round(n / t_one / limit, 3),
            "load_average": os.getloadavg(),
        }
        print(json.dumps(result))
        ws.close()
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
