"""Benchmark propose under load: idle vs beside one competing CPU-bound process.

Runs ``benchmarks/bench_propose.py`` (small flags, no RSS part) as a subprocess twice, first
alone and then beside ``python -c "while True: pass"``, and prints both times and the ratio.
On a 2-core machine one busy process takes half the CPU, so about 2x is the floor; threads
that oversubscribe the cores (one torch thread per core, spinning at barriers) make it much
worse. Target: loaded / idle <= 2.5.

The times compared are ``run_propose``'s wall time, line (b) of ``bench_propose.py``, and the
whole subprocess's wall time. The child gets the thread settings the product would get:
``OMP_NUM_THREADS`` and friends are removed from its environment unless ``--keep-thread-env``.

Usage:
    python benchmarks/bench_load.py                  # ~1-2 min on 2 idle cores
    python benchmarks/bench_load.py --images 16 --repeat 2
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
THREAD_VARS = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
)
TARGET = 2.5


def run_bench(args: argparse.Namespace) -> tuple[float, float | None]:
    """One ``bench_propose.py`` run; returns (whole wall s, run_propose wall s or None)."""
    env = dict(os.environ)
    if not args.keep_thread_env:
        for var in THREAD_VARS:
            env.pop(var, None)
    root = str(HERE.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    cmd = [
        sys.executable, str(HERE / "bench_propose.py"), "--skip-rss",
        "--images", str(args.images), "--image-size", str(args.image_size),
        "--batch-size", str(args.batch_size),
    ]  # fmt: skip
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=args.timeout)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"bench_propose.py failed:\n{proc.stderr[-3000:]}")
    m = re.search(r"\(b\) run_propose wall\s+([0-9.]+) s", proc.stdout)
    return wall, float(m.group(1)) if m else None


def measure(args: argparse.Namespace, busy: bool) -> tuple[float, float | None]:
    """Best of ``args.repeat`` runs, alone or beside one busy-looping process."""
    hog = None
    if busy:
        hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        time.sleep(0.5)
    try:
        runs = [run_bench(args) for _ in range(args.repeat)]
    finally:
        if hog is not None:
            hog.kill()
            hog.wait()
    wall = min(r[0] for r in runs)
    inner = [r[1] for r in runs if r[1] is not None]
    return wall, min(inner) if inner else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--images", type=int, default=6, help="images per propose run")
    ap.add_argument("--image-size", type=int, default=224, help="model input: shortest side")
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--repeat", type=int, default=1, help="runs per condition (best is kept)")
    ap.add_argument("--timeout", type=float, default=600, help="per bench_propose.py run, s")
    ap.add_argument(
        "--keep-thread-env",
        action="store_true",
        help="pass OMP_NUM_THREADS etc. through (default: the product picks its threads)",
    )
    args = ap.parse_args()

    print(f"cores {os.cpu_count()}, load average {os.getloadavg()[0]:.2f}", flush=True)
    idle = measure(args, busy=False)
    print(f"idle          run_propose {_s(idle[1])}   whole benchmark {idle[0]:7.2f} s", flush=True)
    loaded = measure(args, busy=True)
    print(f"beside 1 busy run_propose {_s(loaded[1])}   whole benchmark {loaded[0]:7.2f} s")
    if idle[1] and loaded[1]:
        print(f"ratio run_propose loaded/idle = {loaded[1] / idle[1]:.2f}   (target <= {TARGET})")
    print(f"ratio whole benchmark loaded/idle = {loaded[0] / idle[0]:.2f}   (target <= {TARGET})")


def _s(x: float | None) -> str:
    return f"{x:7.2f} s" if x is not None else "    n/a  "


if __name__ == "__main__":
    main()
