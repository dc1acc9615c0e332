"""Review queue latency at scale: ``next`` + ``decide`` p50/p99 with 1M queued items.

Builds a synthetic workspace (images, one finished run, proposals, queue items) straight
into SQLite, then times, through :class:`autolabel.review.queue.ReviewQueue`:

- ``next``: claim the highest-priority free item and build its page payload (box, caption,
  the image's other boxes);
- ``decide``: log an accept/adjust/reject and finish the item;
- ``undo``: a sample of undos;

and optionally the same loop over HTTP against a real uvicorn server (``--http-ops``).
Target: p99 of next and of decide <= 10 ms at 1M items.

Usage:
    python benchmarks/bench_review.py                    # 250k items, 2000 ops (~1-2 min)
    python benchmarks/bench_review.py --items 1000000    # the 1M target (~3-4 min)
    python benchmarks/bench_review.py --workspace /tmp/ws --keep   # reuse the built db
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from autolabel.review.queue import ReviewQueue
from autolabel.store import Workspace
from autolabel.store import queue as sq
from autolabel.store.db import utcnow


def build(ws: Workspace, n_items: int, per_image: int, seed: int = 0) -> float:
    """Fill images/runs/run_images/proposals with executemany, then enqueue every proposal.

    Returns the seconds spent in :func:`autolabel.store.queue.enqueue`.
    """
    rng = random.Random(seed)
    n_images = (n_items + per_image - 1) // per_image
    now = utcnow()
    c = ws.conn
    c.execute("PRAGMA cache_size = -200000")
    with ws.transaction() as t:
        t.executemany(
            "INSERT INTO images(id, path, width, height, status, sha256, added_at) "
            "VALUES (?,?,?,?,?,?,?)",
            (
                (i, f"/synthetic/{i:08d}.jpg", 1080, 2340, "ok", f"{i:064x}", now)
                for i in range(1, n_images + 1)
            ),
        )
        t.execute(
            "INSERT INTO runs(id, detector, model, model_version, prompt, box_threshold, "
            "text_threshold, key, started_at, finished_at) "
            "VALUES (1, 'bench', 'm', 'v1', 'product', 0.3, 0.25, 'k1', ?, ?)",
            (now, now),
        )
        t.executemany(
            "INSERT INTO run_images(run_id, image_id, run_key, status, n_proposals) "
            "VALUES (1, ?, 'k1', 'done', ?)",
            ((i, per_image) for i in range(1, n_images + 1)),
        )

        def proposals():
            for pid in range(1, n_items + 1):
                image_id = (pid - 1) // per_image + 1
                x0, y0 = rng.uniform(0, 900), rng.uniform(0, 2000)
                yield (
                    pid,
                    image_id,
                    x0,
                    y0,
                    x0 + 150,
                    y0 + 300,
                    rng.random(),
                    "product photo",
                    "review",
                )

        t.executemany(
            "INSERT INTO proposals(id, run_id, image_id, x0, y0, x1, y1, score, phrase, route) "
            "VALUES (?,1,?,?,?,?,?,?,?,?)",
            proposals(),
        )
    ids = list(range(1, n_items + 1))
    prios = [rng.random() for _ in ids]
    t0 = time.perf_counter()
    sq.enqueue(ws, ids, "uncertain", prios)
    return time.perf_counter() - t0


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(q / 100 * (len(s) - 1)))]


def report(name: str, ms: list[float]) -> None:
    print(
        f"  {name:<8} n={len(ms):<6} p50={pct(ms, 50):7.3f} ms  p99={pct(ms, 99):7.3f} ms  "
        f"mean={statistics.fmean(ms):7.3f} ms  max={max(ms):7.3f} ms"
    )


def bench_library(ws: Workspace, ops: int, reviewers: int) -> dict[str, list[float]]:
    """Time ``ops`` next+decide pairs (and an undo every 20th); wall and thread-CPU ms."""
    q = ReviewQueue(ws, lease_seconds=120)
    out: dict[str, list[float]] = {k: [] for k in ("next", "decide", "undo")}
    cpu: dict[str, list[float]] = {k: [] for k in ("next", "decide", "undo")}
    actions = ("accept", "adjust", "reject")

    def timed(name: str, fn, *a, **kw):
        c0, t0 = time.thread_time(), time.perf_counter()
        res = fn(*a, **kw)
        out[name].append((time.perf_counter() - t0) * 1e3)
        cpu[name].append((time.thread_time() - c0) * 1e3)
        return res

    for k in range(ops):
        name = f"r{k % reviewers}"
        item = timed("next", q.next, name)
        assert item is not None
        action = actions[k % 3]
        box = [item["box"][0], item["box"][1], item["box"][2] - 5, item["box"][3] - 5]
        timed(
            "decide",
            q.decide,
            name,
            item["item_id"],
            action,
            box=box if action == "adjust" else None,
        )
        if k % 20 == 19:
            timed("undo", q.undo, name)
            q.decide(name, item["item_id"], "accept")
    return {**out, **{f"{k} cpu": v for k, v in cpu.items()}}


def bench_http(ws: Workspace, ops: int) -> dict[str, list[float]]:
    import httpx

    from autolabel.config import ReviewConfig
    from autolabel.review.server import serve_in_thread

    out: dict[str, list[float]] = {"next": [], "decide": []}
    with serve_in_thread(ws.path, ReviewConfig(port=0, lease_seconds=120)) as server:
        # browsers disable Nagle; so does this client (else ~40 ms delayed-ACK stalls)
        transport = httpx.HTTPTransport(
            socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]
        )
        headers = {"X-Reviewer": "http"}
        with httpx.Client(base_url=server.url, headers=headers, transport=transport) as c:
            for _ in range(ops):
                t0 = time.perf_counter()
                item = c.post("/api/next").json()["item"]
                t1 = time.perf_counter()
                r = c.post("/api/decide", json={"item_id": item["item_id"], "action": "accept"})
                r.raise_for_status()
                t2 = time.perf_counter()
                out["next"].append((t1 - t0) * 1e3)
                out["decide"].append((t2 - t1) * 1e3)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--items", type=int, default=250_000, help="queue items (target: --items 1000000)"
    )
    ap.add_argument("--per-image", type=int, default=4, help="proposals per image")
    ap.add_argument("--ops", type=int, default=2000, help="next+decide pairs to time")
    ap.add_argument("--reviewers", type=int, default=10, help="reviewer names to rotate")
    ap.add_argument("--http-ops", type=int, default=300, help="pairs over HTTP (0 = skip)")
    ap.add_argument("--workspace", type=Path, default=None, help="where to build (default tmp)")
    ap.add_argument("--keep", action="store_true", help="keep the workspace afterwards")
    args = ap.parse_args()

    root = args.workspace or Path(tempfile.mkdtemp(prefix="bench_review_"))
    fresh = not (root / "autolabel.db").exists()
    ws = Workspace.create(root)
    try:
        if fresh:
            t0 = time.perf_counter()
            enqueue_s = build(ws, args.items, args.per_image)
            total = time.perf_counter() - t0
            print(
                f"built {args.items:,} queue items in {total:.1f} s "
                f"(enqueue {enqueue_s:.1f} s = {args.items / enqueue_s:,.0f} items/s)"
            )
        n_open = ws.conn.execute("SELECT COUNT(*) FROM queue_items WHERE status='open'").fetchone()
        print(f"open items: {n_open[0]:,}")
        res = bench_library(ws, args.ops, args.reviewers)
        print("library (ReviewQueue, one connection; 'cpu' = thread CPU time, no preemption):")
        for name, ms in res.items():
            report(name, ms)
        worst = max(pct(res["next"], 99), pct(res["decide"], 99))
        print(f"  p99 target 10 ms: worst wall p99 = {worst:.3f} ms -> {10 / worst:.1f}x headroom")
        load = os.getloadavg()[0]
        print(f"  (load average during the run: {load:.1f} on {os.cpu_count()} CPUs)")
        if args.http_ops:
            http = bench_http(ws, args.http_ops)
            print("HTTP (uvicorn + httpx, one client, includes JSON + request overhead):")
            for name, ms in http.items():
                report(name, ms)
    finally:
        ws.close()
        if not args.keep and args.workspace is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
