"""Ingest benchmark: files/s for a first ingest and a re-run, and peak RSS against N.

Generates N distinct 1x1 PNGs (in folders of 1000; in RAM under /dev/shm when available,
so the numbers measure autolabel rather than a shared disk), then, each in a fresh process so peak
RSS is per phase: a first ingest of N files, a re-run over the same N (all known), and a
first ingest of N/10 files to show that peak RSS does not grow with N.

    python benchmarks/bench_ingest.py                 # N = 100000 (about 1-2 min on 2 cores)
    python benchmarks/bench_ingest.py -n 1000000      # the big one
    python benchmarks/bench_ingest.py -n 20000 --workers 1

Target (issue 2): re-run over 100k known files <= 3 s; RSS independent of N.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

_CHILD = r"""
import json, resource, sys, time
from autolabel.ingest import ingest
from autolabel.store import Workspace
ws_path, folder, workers, batch = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
with Workspace.create(ws_path) as ws:
    t, c = time.perf_counter(), time.process_time()
    r = ingest(ws, [folder], workers=workers, batch_size=batch)
    sec, cpu = time.perf_counter() - t, time.process_time() - c
rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"seconds": sec, "cpu_seconds": cpu, "seen": r.seen, "added": r.added,
                  "unchanged": r.unchanged, "errors": r.errors, "peak_rss_mib": rss_kib / 1024}))
"""


def _chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def tiny_png(i: int) -> bytes:
    """A valid 1x1 RGB PNG whose pixel encodes ``i`` (distinct content for i < 2**24)."""
    ihdr = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    pixel = bytes((0, i & 255, (i >> 8) & 255, (i >> 16) & 255))
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", ihdr)
        + _chunk(b"IDAT", zlib.compress(pixel))
        + _chunk(b"IEND", b"")
    )


def make_tree(root: Path, n: int, *, per_folder: int = 1000, offset: int = 0) -> None:
    for i in range(n):
        if i % per_folder == 0:
            folder = root / f"f{i // per_folder:05d}"
            folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{i:07d}.png").write_bytes(tiny_png(offset + i))


def run_phase(ws: Path, folder: Path, workers: int, batch: int) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, str(ws), str(folder), str(workers), str(batch)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=100_000, help="files to generate (default 100000)")
    ap.add_argument("--workers", type=int, default=4, help="ingest threads (default 4)")
    ap.add_argument("--batch-size", type=int, default=1000, help="files per transaction")
    ap.add_argument(
        "--dir",
        type=Path,
        default=None,
        help="scratch folder (default: a new folder in /dev/shm if present, else the tmp dir)",
    )
    ap.add_argument("--keep", action="store_true", help="keep the generated files")
    args = ap.parse_args(argv)

    shm = Path("/dev/shm")
    base = shm if shm.is_dir() and os.access(shm, os.W_OK) else None
    scratch = Path(args.dir or tempfile.mkdtemp(prefix="bench_ingest_", dir=base))
    print(f"scratch folder: {scratch}")
    scratch.mkdir(parents=True, exist_ok=True)
    try:
        t = time.perf_counter()
        big, small = scratch / "big", scratch / "small"
        make_tree(big, args.n)
        make_tree(small, max(1, args.n // 10), offset=args.n)
        gen = time.perf_counter() - t
        print(f"generated {args.n} + {max(1, args.n // 10)} files in {gen:.1f} s")

        first = run_phase(scratch / "ws", big, args.workers, args.batch_size)
        rerun = run_phase(scratch / "ws", big, args.workers, args.batch_size)
        small_first = run_phase(scratch / "ws_small", small, args.workers, args.batch_size)
        assert first["added"] == args.n and rerun["unchanged"] == args.n, (first, rerun)

        def line(name: str, r: dict) -> str:
            rate = r["seen"] / r["seconds"] if r["seconds"] else float("inf")
            return (
                f"{name:<24} {r['seen']:>8} files {r['seconds']:7.2f} s wall "
                f"({r['cpu_seconds']:6.2f} s CPU) {rate:>8,.0f} files/s  "
                f"peak RSS {r['peak_rss_mib']:5.1f} MiB"
            )

        print(
            f"workers={args.workers} batch_size={args.batch_size} cpus={os.cpu_count()} "
            f"load average {os.getloadavg()[0]:.1f} (wall times stretch on a busy machine; "
            "CPU time does not)"
        )
        print(line("first ingest (N)", first))
        print(line("re-run, all known (N)", rerun))
        print(line("first ingest (N/10)", small_first))
        print(
            f"re-run speed-up over first ingest: {first['seconds'] / rerun['seconds']:.1f}x; "
            f"re-run per 100k files: {rerun['seconds'] * 100_000 / args.n:.2f} s wall, "
            f"{rerun['cpu_seconds'] * 100_000 / args.n:.2f} s CPU (target <= 3 s)"
        )
        print(
            "peak RSS ratio, first ingest N vs N/10: "
            f"{first['peak_rss_mib'] / small_first['peak_rss_mib']:.2f} (1.0 = independent of N)"
        )
    finally:
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
