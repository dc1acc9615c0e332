"""Regions vs exemplar detector: speed at 1080x2340, training time, peak RSS, top-1 quality.

Generated phone captures (``synth.make_app_samples``): seed captures with hand crops of a few
products, test captures of other layouts where half the products are not in the seed. Each
detector runs in a fresh subprocess so its peak RSS is its own; the parent prints one table
and the ratios regions / exemplar.

- regions: ``train_regions`` on ``--train-seeds`` seed crops (time and CPU time), then
  ``detect`` on the test captures;
- exemplar: built from ``--seeds`` seed crops (it has no training), ``detect`` on the same
  captures (its speed grows with the number of crops; 100 would take minutes per image).

``peak_rss_mb`` includes the generated images each child loads (regions holds all seed
originals to train on, exemplar only the crops); ``rss_over_data_mb`` is the peak above the
RSS right after loading them (the detector's own working memory).

Top-1 "hit" = the best box has IoU >= 0.9 with the main picture (QUALITY.md match IoU),
reported separately for seed products and unseen products.

    python benchmarks/bench_regions.py                  # ~3-4 min on 2 cores
    python benchmarks/bench_regions.py --train-seeds 40 --images 6   # quicker
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np


def _generate(args: argparse.Namespace, path: str) -> None:
    from autolabel import synth

    products = list(range(100, 100 + max(1, args.train_seeds // 2)))
    seed = synth.make_app_samples(
        args.train_seeds, 11, products=products, with_crops=True, sizes=((1080, 2340),)
    )
    n = args.images
    seen = synth.make_app_samples(n // 2, 12, products=products[::-1], sizes=((1080, 2340),))
    new = synth.make_app_samples(
        n - n // 2, 13, products=list(range(5000, 5000 + n)), sizes=((1080, 2340),)
    )
    # separate files, so the exemplar child loads no seed originals; images as .npy (no
    # unpickling transient in the peak RSS)
    test = seen + new
    meta = {
        "crops": [s.product_id for s in seed],
        "originals": [s.box for s in seed],
        "test": [(s.box, s.product_id) for s in test],
        "products": products,
    }
    with open(f"{path}.meta", "wb") as f:
        pickle.dump(meta, f)
    for kind, items in (("crop", [s.crop for s in seed]), ("orig", [s.image for s in seed])):
        for i, a in enumerate(items):
            np.save(f"{path}.{kind}{i}.npy", a)
    for i, s in enumerate(test):
        np.save(f"{path}.test{i}.npy", s.image)


def _load(path: str, name: str):
    with open(f"{path}.meta", "rb") as f:
        meta = pickle.load(f)[name]
    if name == "crops":
        return [(np.load(f"{path}.crop{i}.npy"), pid) for i, pid in enumerate(meta)]
    if name == "originals":
        return [(np.load(f"{path}.orig{i}.npy"), box) for i, box in enumerate(meta)]
    if name == "test":
        return [(np.load(f"{path}.test{i}.npy"), b, pid) for i, (b, pid) in enumerate(meta)]
    return meta


def _status_mb(key: str) -> float:
    """``VmRSS`` (now) or ``VmHWM`` (peak) of this process in MiB. The peak is read here and
    not from ``getrusage``: a child's ``ru_maxrss`` starts at its forking parent's."""
    from proc_status import status_mib

    mib = status_mib(key)
    return mib if mib is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(args: argparse.Namespace) -> None:
    from autolabel.detect import build_detector
    from autolabel.seed.calibrate import box_iou

    crops = _load(args.data, "crops")
    test = _load(args.data, "test")
    products = set(_load(args.data, "products"))
    originals = _load(args.data, "originals") if args.mode == "regions" else []
    rss_data = _status_mb("VmRSS")
    t0, c0 = time.perf_counter(), time.process_time()
    if args.mode == "regions":
        from autolabel.detect.regions import RegionSample, train_regions

        samples = [
            RegionSample(img, [box], crops=[crop])
            for (img, box), (crop, _) in zip(originals, crops, strict=True)
        ]
        det = build_detector("regions", model=train_regions(samples))
        n_seed = len(samples)
    else:
        # one crop per product first, so the seed products are all represented
        by_product: dict[int, list] = {}
        for crop, pid in crops:
            by_product.setdefault(pid, []).append(crop)
        picked = [v[0] for v in by_product.values()]
        picked += [v[1] for v in by_product.values() if len(v) > 1]
        picked = picked[: args.seeds]
        det = build_detector("exemplar", exemplars=picked)
        n_seed = len(picked)
    train_s, train_cpu = time.perf_counter() - t0, time.process_time() - c0
    det.detect([test[0][0]], [""])  # warm-up (imports, caches)
    hits: dict[str, list[bool]] = {"seen": [], "new": []}
    t0, c0 = time.perf_counter(), time.process_time()
    for img, box, pid in test:
        got = det.detect([img], [""])[0]
        ok = bool(len(got)) and box_iou(got.xyxy[:1], np.asarray([box]))[0, 0] >= 0.9
        hits["seen" if pid in products else "new"].append(ok)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    rss = _status_mb("VmHWM")
    print(
        json.dumps(
            {
                "mode": args.mode,
                "seed_crops": n_seed,
                "train_s": round(train_s, 2),
                "train_cpu_s": round(train_cpu, 2),
                "img_per_s": round(len(test) / wall, 2),
                "img_per_cpu_s": round(len(test) / cpu, 2),
                "peak_rss_mb": round(rss),
                "rss_over_data_mb": round(rss - rss_data),
                "hit_seen": round(float(np.mean(hits["seen"])), 3) if hits["seen"] else None,
                "hit_new": round(float(np.mean(hits["new"])), 3) if hits["new"] else None,
            }
        )
    )


def run(mode: str, args: argparse.Namespace, data: str) -> dict:
    cmd = [sys.executable, __file__, "--child", "--mode", mode, "--data", data]
    cmd += ["--seeds", str(args.seeds)]
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if out.returncode != 0:
        raise SystemExit(f"{mode} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train-seeds", type=int, default=100, help="seed crops regions trains on")
    ap.add_argument("--seeds", type=int, default=20, help="seed crops the exemplar detector uses")
    ap.add_argument("--images", type=int, default=10, help="test captures (1080x2340)")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--mode", default="regions", help=argparse.SUPPRESS)
    ap.add_argument("--data", default="", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args)
        return
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "data.pkl")
        t0 = time.perf_counter()
        _generate(args, data)
        print(
            f"generated {args.train_seeds} seed + {args.images} test captures at 1080x2340 "
            f"in {time.perf_counter() - t0:.0f} s (cpus: {os.cpu_count()})"
        )
        rows = [run("regions", args, data), run("exemplar", args, data)]
    cols = list(rows[0])
    print(" | ".join(f"{c:>13}" for c in cols))
    for r in rows:
        print(" | ".join(f"{r[c]!s:>13}" for c in cols))
    reg, ex = rows
    print(
        f"regions/exemplar: {reg['img_per_s'] / ex['img_per_s']:.1f}x images/s (wall), "
        f"{reg['img_per_cpu_s'] / ex['img_per_cpu_s']:.1f}x images per CPU-second, "
        f"{reg['rss_over_data_mb'] / max(ex['rss_over_data_mb'], 1):.2f}x RSS over the loaded "
        f"images; regions trains on "
        f"{reg['seed_crops']} crops in {reg['train_s']} s ({reg['train_cpu_s']} CPU-s)"
    )


if __name__ == "__main__":
    main()
