"""Whole-``autocrop`` scale benchmark: ingest -> propose -> select -> export at N images.

Synthetic small phone screenshots (``autolabel.synth``, 180x320 JPEG, one product each, a
unique patch per file) and a small seed set (hand crops + originals) go through
:func:`autolabel.pipeline.autocrop` with a weight-free detector (``--detector``, default
``exemplar``). Each size runs in its own process, which reports:

- per-stage seconds and images/s (ingest, seed, propose, select, export);
- peak RSS of the process (``ru_maxrss``) and the ratio between the two sizes;
- a no-op re-run (same folder again: nothing to ingest, propose, select or export);
- export against its limit: the crops of the version re-cut by ``export_dataset`` in one
  process (workers=1) vs a tight loop doing only open + draft + decode + resize + PNG
  encode of the same crops (one core each);
- a projection to 10^6 images on this machine and on ``--ray-workers`` Ray workers
  (propose and export spread, ingest and select on the driver).

    python benchmarks/bench_autocrop_scale.py                    # 500 and 2000 images
    python benchmarks/bench_autocrop_scale.py --images 10000     # 2000 and 10000
    python benchmarks/bench_autocrop_scale.py --images 100000 --small 10000

Targets (issue 20): RSS(big) / RSS(small) <= 1.1; no-op re-run at 100k <= 30 s;
export >= 0.8 of the tight loop.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SIZE = (180, 320)
CROP = 128


def make_data(root: Path, n: int, *, seed: int = 0) -> tuple[Path, Path]:
    """``n`` screenshots in ``root/in`` and an 8-pair seed set in ``root/seed``."""
    import numpy as np
    from PIL import Image

    from autolabel.synth import make_screenshot, make_seed_set

    seed_dir = root / "seed"
    make_seed_set(seed_dir, 8, seed=seed, size=SIZE)
    rng = np.random.default_rng(seed)
    bases = [make_screenshot(rng, size=SIZE)[0] for _ in range(16)]
    folder = root / "in"
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        img = bases[i % len(bases)].copy()
        patch = rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)
        img.paste(Image.fromarray(patch), (int(rng.integers(0, SIZE[0] - 6)), SIZE[1] - 6))
        img.save(folder / f"shot_{i:07d}.jpg", quality=85)
    return folder, seed_dir


def tight_loop(rows: list[dict]) -> float:
    """Crops/s of open + decode + resize + PNG encode of the manifest's crops (one core)."""
    import io

    from PIL import Image

    by_src: dict[str, list[dict]] = {}
    for r in rows:
        if r["crop"]:
            by_src.setdefault(r["source_path"], []).append(r)
    n = 0
    t = time.perf_counter()
    for src, items in by_src.items():
        im = Image.open(src)
        im.load()  # small originals: export decodes them fully too (no draft below 2x)
        s = im.size[0] / float(items[0]["width"])
        for r in items:
            x0, y0, x1, y1 = (v * s for v in r["crop_box"])
            w, h = x1 - x0, y1 - y0
            k = CROP / max(w, h)
            out = im.resize((max(1, round(w * k)), max(1, round(h * k))), box=(x0, y0, x1, y1))
            out.save(io.BytesIO(), format="PNG", compress_level=1)
            n += 1
    return n / max(time.perf_counter() - t, 1e-9)


def one_size(n: int, detector: str, root: Path) -> dict:
    """Run in a child process: the whole autocrop at ``n`` images, then the extras."""
    from autolabel.config import ExportConfig
    from autolabel.export import export_dataset
    from autolabel.pipeline import autocrop
    from autolabel.store import Workspace

    t = time.perf_counter()
    folder, seed_dir = make_data(root, n)
    gen_s = time.perf_counter() - t
    out = root / "out"
    ws_path = root / "ws"
    Workspace.create(ws_path).close()
    # small screenshots: crops of 128 px, boxes from 32 px (the defaults are 448 / 224)
    # every box not rejected is exported: a throughput benchmark, not a quality one
    (ws_path / "config.yaml").write_text(
        f"export:\n  size: {CROP}\n  min_size: 32\n  include: all\n"
    )
    t = time.perf_counter()
    first = autocrop(
        folder,
        out,
        seed_crops=seed_dir / "crops",
        originals=seed_dir / "originals",
        captions=seed_dir / "captions.jsonl",
        detector=detector,
        workspace=ws_path,
    )
    total_s = time.perf_counter() - t
    print(
        json.dumps(
            {k: first[k] for k in ("proposed", "proposals", "crops", "review_waiting", "export")}
        ),
        file=sys.stderr,
    )
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t = time.perf_counter()
    again = autocrop(folder, out, detector=detector, workspace=ws_path)
    noop_s = time.perf_counter() - t
    rows = [json.loads(line) for line in open(Path(first["export"]) / "meta" / "manifest.jsonl")]
    crops = sum(1 for r in rows if r["crop"])
    ws = Workspace.open(Path(first["workspace"]))
    try:
        t = time.perf_counter()
        opts = ExportConfig(
            formats=["swift"], size=CROP, min_size=32, include="all", workers=1, version="b1"
        )
        export_dataset(ws, root / "bench_out", opts)
        export1 = crops / max(time.perf_counter() - t, 1e-9)
    finally:
        ws.close()
    limit = tight_loop(rows)
    return {
        "images": n,
        "generate_s": round(gen_s, 1),
        "autocrop_s": round(total_s, 1),
        "stages": first["stages"],
        "crops": crops,
        "rss_mb": round(rss_mb, 1),
        "noop_s": round(noop_s, 2),
        "noop_stages": again["stages"],
        "noop_export": again["export"],
        "export_crops_per_s_1proc": round(export1, 1),
        "tight_loop_crops_per_s": round(limit, 1),
        "export_vs_limit": round(export1 / limit, 3),
    }


def projection(res: dict, ray_workers: int) -> dict:
    """Seconds for 10^6 images: linear in the stage times; on Ray propose+export divide."""
    scale = 1_000_000 / res["images"]
    secs = {s["stage"]: s["seconds"] * scale for s in res["stages"]}
    one = sum(secs.values())
    spread = sum(v for k, v in secs.items() if k in ("propose", "export"))
    ray = one - spread + spread / ray_workers
    return {
        "one_machine_h": round(one / 3600, 2),
        f"ray_{ray_workers}_workers_h": round(ray / 3600, 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--images", type=int, default=2000, help="the big size (default 2000)")
    ap.add_argument("--small", type=int, default=None, help="the small size (default big/4)")
    ap.add_argument("--detector", default="exemplar", help="weight-free detector (exemplar)")
    ap.add_argument("--ray-workers", type=int, default=16, help="workers in the projection")
    ap.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--root", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child is not None:
        print(json.dumps(one_size(args.child, args.detector, Path(args.root))))
        return
    small = args.small or max(100, args.images // 4)
    results = {}
    for n in (small, args.images):
        with tempfile.TemporaryDirectory(prefix=f"autocrop{n}-") as tmp:
            cmd = [sys.executable, __file__, "--child", str(n), "--root", tmp]
            cmd += ["--detector", args.detector]
            env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
            results[n] = json.loads(proc.stdout.strip().splitlines()[-1])
    big, lo = results[args.images], results[small]
    report = {
        "load_average": os.getloadavg(),
        "cpus": os.cpu_count(),
        "detector": args.detector,
        "sizes": results,
        "rss_ratio_big_over_small": round(big["rss_mb"] / lo["rss_mb"], 3),
        "projection_1e6": projection(big, args.ray_workers),
    }
    for n, r in results.items():
        per = {s["stage"]: round(n / max(s["seconds"], 1e-9), 1) for s in r["stages"]}
        print(
            f"{n} images: {r['autocrop_s']} s, images/s per stage {per}, "
            f"peak RSS {r['rss_mb']} MB, no-op re-run {r['noop_s']} s, "
            f"export {r['export_crops_per_s_1proc']} crops/s vs tight loop "
            f"{r['tight_loop_crops_per_s']} (ratio {r['export_vs_limit']})"
        )
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
