"""Select benchmark: `autolabel select` over N synthetic proposals — seconds and peak RSS.

Builds a workspace with N proposals (5 per image, signals token_score / exemplar_score,
scores correlated with a hidden "correct" label) and a few thousand review decisions so the
logistic calibration is fitted, then runs select twice, each in a fresh process so peak
RSS is select's own: a first run (routes + queue inserted) and a re-run (routes updated,
queue synced). Image files do not exist, so diversity embeddings are attempted and skipped
(the per-image embedding cost is measured separately on real PNGs, --embed).

    python benchmarks/bench_select.py               # N = 200000 (about 1-2 min on 2 cores)
    python benchmarks/bench_select.py -n 1000000    # the target size
    python benchmarks/bench_select.py -n 250000 --small 25000 --embed 0   # memory growth

Target (issue 6): 1M proposals in < 60 s and < 2 GB peak RSS. On a shared machine the
wall time depends on the load; the CPU seconds of the select process (and the load average)
are printed too.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

_CHILD = r"""
import json, resource, sys, time
from autolabel.select.run import run_select
from autolabel.store import Workspace
ws_path, budget = sys.argv[1], sys.argv[2]
with Workspace.open(ws_path) as ws:
    cfg = ws.config({"select.budget": budget, "select.target_precision": 0.95}).select
    lines = []
    t = time.perf_counter()
    s = run_select(ws, cfg, log=lambda m: lines.append((round(time.perf_counter() - t, 2), m)))
    sec = time.perf_counter() - t
ru = resource.getrusage(resource.RUSAGE_SELF)
rss = ru.ru_maxrss / 1024
print(json.dumps({"seconds": sec, "cpu_s": ru.ru_utime + ru.ru_stime,
                  "peak_rss_mib": rss, "routes": s["routes"],
                  "queue": s["queue"], "calibration": s["calibration"]["method"],
                  "log": lines}))
"""


def build(ws_path: Path, n: int, per_image: int, seed: int) -> float:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo: tests.support
    from autolabel.store import Workspace
    from autolabel.store.images import ScannedFile, write_scanned
    from autolabel.store.queue import enqueue
    from autolabel.store.runs import create_run, finish_run, write_batch
    from autolabel.types import Proposals
    from tests.support.simulate import review_proposal

    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    n_img = (n + per_image - 1) // per_image
    with Workspace.create(ws_path) as ws:
        for a in range(0, n_img, 50_000):
            files = [
                ScannedFile(f"/bench/missing/img_{i:08d}.jpg", 1, 1, None, 1080, 1920, "JPEG")
                for i in range(a, min(n_img, a + 50_000))
            ]
            write_scanned(ws, files)
        run = create_run(
            ws,
            detector="simulated",
            model="simulated",
            model_version="bench",
            refiner=None,
            prompt="product",
            box_threshold=0.3,
            text_threshold=0.25,
        )
        image_ids = [r[0] for r in ws.conn.execute("SELECT id FROM images ORDER BY id").fetchall()]
        correct = rng.random(n) < 0.7
        score = np.where(correct, 0.3 + 0.7 * rng.beta(5, 2, n), 0.3 + 0.7 * rng.beta(2, 3, n))
        token = np.where(correct, rng.beta(6, 2, n), rng.beta(2, 4, n))
        exemplar = np.where(correct, rng.beta(5, 2, n), rng.beta(2, 3, n))
        xy = rng.uniform(0, 800, (n, 2))
        wh = rng.uniform(50, 400, (n, 2))
        xyxy = np.c_[xy, xy + wh].astype(np.float32)
        batch = []
        for j, iid in enumerate(image_ids):
            a, b = j * per_image, min(n, (j + 1) * per_image)
            props = Proposals(
                xyxy=xyxy[a:b],
                score=score[a:b],
                phrase=["product"] * (b - a),
                data={"token_score": token[a:b], "exemplar_score": exemplar[a:b]},
            )
            batch.append((iid, props))
            if len(batch) == 5000:
                write_batch(ws, run, batch)
                batch = []
        if batch:
            write_batch(ws, run, batch)
        finish_run(ws, run)
        # review decisions on a random 0.2% (at least 200) so calibration is fitted
        k = max(200, n // 500)
        pids = rng.choice(n, size=min(k, n), replace=False)
        enqueue(ws, (pids + 1).tolist(), "uncertain")
        for pid in pids.tolist():
            review_proposal(ws, pid + 1, "accept" if correct[pid] else "reject")
    return time.perf_counter() - t0


def embed_cost(count: int) -> float:
    """Seconds per image embedding (open + thumbnail + embedding) on real 1080x1920 PNGs."""
    from PIL import Image

    from autolabel.select.diversity import embed_image_file

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as d:
        paths = []
        for i in range(count):
            arr = rng.integers(0, 255, (1920 // 4, 1080 // 4, 3), dtype=np.uint8)
            img = Image.fromarray(arr).resize((1080, 1920))
            p = Path(d) / f"{i}.jpg"
            img.save(p, quality=85)
            paths.append(str(p))
        t = time.perf_counter()
        for p in paths:
            embed_image_file(p)
        return (time.perf_counter() - t) / count


def run_size(n: int, args: argparse.Namespace) -> dict[str, dict]:
    """Build a workspace of ``n`` proposals and run select on it twice (first, re-run), each
    in a fresh process: ``{phase: the child's result}``."""
    base = Path("/dev/shm") if Path("/dev/shm").is_dir() else None
    with tempfile.TemporaryDirectory(dir=base) as d:
        ws_path = Path(d) / "ws"
        build_s = build(ws_path, n, args.per_image, args.seed)
        print(f"built {n} proposals in {build_s:.1f}s ({ws_path})", flush=True)
        results = {}
        for phase in ("first", "rerun"):
            env = dict(os.environ, OMP_NUM_THREADS="1")
            out = subprocess.run(
                [sys.executable, "-c", _CHILD, str(ws_path), args.budget],
                check=True,
                capture_output=True,
                text=True,
                env=env,
            )
            res = json.loads(out.stdout.strip().splitlines()[-1])
            results[phase] = res
            print(
                f"select ({phase}, {n} proposals): {res['seconds']:.1f} s wall, "
                f"{res['cpu_s']:.1f} s CPU (process incl. imports), "
                f"peak RSS {res['peak_rss_mib']:.0f} MiB, "
                f"calibration {res['calibration']}, routes {res['routes']}",
                flush=True,
            )
            for t, line in res["log"]:
                print(f"    {t:7.2f}s  {line}")
    return results


def rss_growth(n_lo: int, lo: dict, n_hi: int, hi: dict) -> dict[str, float]:
    """Peak RSS of both sizes (worst of first / re-run), their ratio and the bytes each
    extra proposal adds."""
    a = max(r["peak_rss_mib"] for r in lo.values())
    b = max(r["peak_rss_mib"] for r in hi.values())
    return {
        "small_n": n_lo,
        "small_peak_rss_mib": round(a),
        "rss_ratio_big_over_small": round(b / a, 3),
        "bytes_per_extra_proposal": round((b - a) * 2**20 / max(n_hi - n_lo, 1)),
    }


def imports_rss() -> float:
    """Peak RSS (MiB) of a process that only imports what the select child imports."""
    code = (
        "import resource, autolabel.select.run, autolabel.store, sklearn.linear_model; "
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)"
    )
    env = dict(os.environ, OMP_NUM_THREADS="1")
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True, env=env
    )
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=200_000, help="proposals (default 200000)")
    ap.add_argument("--per-image", type=int, default=5, help="proposals per image")
    ap.add_argument("--budget", default="1%", help="review budget passed to select")
    ap.add_argument("--embed", type=int, default=20, help="real images for the embed timing")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--small", type=int, default=None, metavar="N",
        help="also run N proposals and print how peak RSS grows with the proposal count",
    )  # fmt: skip
    args = ap.parse_args()

    results = run_size(args.n, args)
    small = None
    if args.small:
        small = run_size(args.small, args)
    base_rss = imports_rss()
    per = embed_cost(args.embed) if args.embed else float("nan")
    worst = max(r["seconds"] for r in results.values())
    rss = max(r["peak_rss_mib"] for r in results.values())
    scale = 1_000_000 / args.n
    print(
        json.dumps(
            {
                "n_proposals": args.n,
                "first_s": round(results["first"]["seconds"], 2),
                "rerun_s": round(results["rerun"]["seconds"], 2),
                "first_cpu_s": round(results["first"]["cpu_s"], 2),
                "rerun_cpu_s": round(results["rerun"]["cpu_s"], 2),
                "load_average": round(os.getloadavg()[0], 1),
                "cpus": os.cpu_count(),
                "peak_rss_mib": round(rss),
                "proposals_per_s": round(args.n / worst),
                "ratio_time_to_60s_target": round(worst / 60, 3),
                "ratio_rss_to_2GiB_target": round(rss / 2048, 3),
                "linear_estimate_1M_s": round(worst * scale, 1),
                "embed_ms_per_image": round(per * 1000, 2),
                "imports_rss_mib": round(base_rss),
                **(rss_growth(args.small, small, args.n, results) if small else {}),
            }
        )
    )


if __name__ == "__main__":
    main()
