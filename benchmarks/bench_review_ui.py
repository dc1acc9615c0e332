"""Review page latency in real Chromium: key press (A) -> next item on screen, image decoded.

Builds a workspace with a large review queue straight into SQLite (default 1M items; images
are 1080x2340 phone screenshots, a few distinct files reused under distinct image ids, so
every item still needs its own preview decode on the server), serves it on 127.0.0.1, opens
the review page in Debian's chromium through Playwright and presses ``a`` for each decision.

Latency per decision = from the key event (``keydown`` timestamp in the page) to the first
painted frame showing the next item with its preview decoded (:data:`LATENCY_HOOK`, added
from outside: after ``img.decode()`` and the next animation frame). The page holds 4 items
and their decoded previews ahead and sends decisions in the background, so the reviewer does
not wait on the server. p50/p95/p99 are printed with the load average (the machine may be
shared: compare runs only at similar load).

``--think-ms`` is the time the simulated reviewer looks at an item before pressing (a person
needs 0.3-2 s to check a box); with 0 the benchmark presses as fast as items appear, which
measures the server's throughput as much as the page.

Usage:
    python benchmarks/bench_review_ui.py                        # 1M items, 60 decisions
    python benchmarks/bench_review_ui.py --decisions 200        # the issue's measurement
    python benchmarks/bench_review_ui.py --items 100000 --think-ms 0
    python benchmarks/bench_review_ui.py --decisions 200 --profile     # where the time goes
    python benchmarks/bench_review_ui.py --cpu-throttle 4               # page CPU 4x slower
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from autolabel.store import Workspace
from autolabel.store.db import utcnow

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
W, H = 1080, 2340


def make_images(folder: Path, n: int = 4) -> list[Path]:
    """``n`` distinct 1080x2340 JPEG "screenshots" (noise bands plus a product block)."""
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        arr = np.full((H, W, 3), 245, np.uint8)
        arr[:, :, i % 3] = rng.integers(150, 255, (H, W), dtype=np.uint8)
        arr[300:1200, 100:980] = rng.integers(0, 255, (900, 880, 3), dtype=np.uint8)
        path = folder / f"shot_{i}.jpg"
        Image.fromarray(arr).save(path, quality=88)
        out.append(path)
    return out


def link_next(ws: Workspace, files: list[Path], k: int) -> int:
    """Give the ``k`` next items (highest priority, not done) their image file: a hard link
    to one of ``files`` (image paths must be unique; 1M real files are not needed)."""
    rows = ws.conn.execute(
        "SELECT i.id, i.path FROM queue_items q JOIN images i ON i.id = q.image_id "
        "WHERE q.status != 'done' ORDER BY q.priority DESC, q.id LIMIT ?",
        (k,),
    ).fetchall()
    made = 0
    for image_id, path in rows:
        if not Path(path).exists():
            Path(path).hardlink_to(files[image_id % len(files)])
            made += 1
    return made


def build(ws: Workspace, n_items: int, files: list[Path], seed: int = 0) -> None:
    """Images, one finished run, ``n_items`` proposals and queue items, by direct inserts."""
    rng = random.Random(seed)
    now = utcnow()
    prios = [rng.random() for _ in range(n_items)]
    folder = files[0].parent / "items"
    folder.mkdir(exist_ok=True)
    ws.conn.execute("PRAGMA cache_size = -200000")
    with ws.transaction() as t:
        t.executemany(
            "INSERT INTO images(id, path, width, height, status, sha256, added_at) "
            "VALUES (?,?,?,?,'ok',?,?)",
            ((i, str(folder / f"{i}.jpg"), W, H, f"{i:064x}", now) for i in range(1, n_items + 1)),
        )
        t.execute(
            "INSERT INTO runs(id, detector, model, model_version, prompt, box_threshold, "
            "text_threshold, key, started_at, finished_at) "
            "VALUES (1, 'bench', 'm', 'v1', 'product', 0.3, 0.25, 'k1', ?, ?)",
            (now, now),
        )
        t.executemany(
            "INSERT INTO run_images(run_id, image_id, run_key, status, n_proposals) "
            "VALUES (1, ?, 'k1', 'done', 1)",
            ((i,) for i in range(1, n_items + 1)),
        )

        def proposals():
            for pid in range(1, n_items + 1):
                x0, y0 = rng.uniform(50, 300), rng.uniform(200, 500)
                yield (pid, pid, x0, y0, x0 + 700, y0 + 800, rng.random(), "product photo")

        t.executemany(
            "INSERT INTO proposals(id, run_id, image_id, x0, y0, x1, y1, score, phrase, route) "
            "VALUES (?,1,?,?,?,?,?,?,?,'review')",
            proposals(),
        )
        t.executemany(
            "INSERT INTO queue_items(proposal_id, image_id, reason, priority, created_at) "
            "VALUES (?,?,'uncertain',?,?)",
            ((pid, pid, prios[pid - 1], now) for pid in range(1, n_items + 1)),
        )


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(q / 100 * (len(s) - 1)))]


# Measures from outside the app: the key event's timestamp -> the stage showing another item
# with its <img> decoded and the next frame painted. Works for any version of the page.
LATENCY_HOOK = """
window.__lat = [];
let t0 = null;
document.addEventListener("keydown", (ev) => {
  if (ev.key === "a") t0 = ev.timeStamp;
}, true);
new MutationObserver(async () => {
  if (t0 === null) return;
  const start = t0;
  t0 = null;
  const img = document.getElementById("img");
  try { await img.decode(); } catch (e) { /* broken image: still counts when painted */ }
  requestAnimationFrame(() => setTimeout(() => window.__lat.push(performance.now() - start), 0));
}).observe(document.getElementById("stage"),
           { attributes: true, attributeFilter: ["data-item-id"] });
"""


# --profile: where each decision's time goes. key -> end of the page's key handlers
# (synchronous work) -> <img> decoded -> next frame painted; whether the shown preview had
# already loaded when the key came; long main-thread tasks (> 50 ms) and requests in flight.
PROFILE_HOOK = """
window.__prof = [];
window.__long = [];
let p0 = null;
document.addEventListener("keydown", (ev) => {
  if (ev.key === "a") p0 = { key: ev.timeStamp };
}, true);
window.addEventListener("keydown", (ev) => {
  if (p0 && ev.key === "a") p0.handled = performance.now();
});
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) window.__long.push([e.startTime, e.duration]);
}).observe({ entryTypes: ["longtask"] });
new MutationObserver(async () => {
  if (!p0 || p0.swapped) return;
  const rec = p0;
  rec.swapped = performance.now();
  const img = document.getElementById("img");
  rec.loaded = img.complete && img.naturalWidth > 0;
  rec.src = img.currentSrc;
  try { await img.decode(); } catch (e) { /* counted when painted */ }
  rec.decoded = performance.now();
  requestAnimationFrame(() => setTimeout(() => {
    rec.painted = performance.now();
    window.__prof.push(rec);
  }, 0));
}).observe(document.getElementById("stage"),
           { attributes: true, attributeFilter: ["data-item-id"] });
"""


def profile_report(prof: list[dict], long_tasks: list[list[float]], resources: list[dict]) -> None:
    """Print the phases of the slowest decisions and what overlapped them."""
    rows = []
    for r in prof:
        rows.append(
            {
                "total": r["painted"] - r["key"],
                "sync": r.get("handled", r["swapped"]) - r["key"],
                "decode": r["decoded"] - r["swapped"],
                "frame": r["painted"] - r["decoded"],
                "loaded": r["loaded"],
                "key": r["key"],
                "painted": r["painted"],
            }
        )
    if not rows:
        return
    for k in ("sync", "decode", "frame"):
        vals = [r[k] for r in rows]
        print(
            f"  {k:6s} p50={pct(vals, 50):6.1f}  p95={pct(vals, 95):6.1f}  max={max(vals):6.1f} ms"
        )
    print(f"  preview not loaded at key press: {sum(not r['loaded'] for r in rows)}/{len(rows)}")
    kinds: dict[str, list[float]] = {}
    for x in resources:
        kind = x["name"].split("/api/")[-1].split("?")[0].split("/")[0]
        kinds.setdefault(kind, []).append(x["responseEnd"] - x["startTime"])
    print(
        "  request durations (ms): "
        + "  ".join(
            f"{k} p50={pct(v, 50):.0f} p95={pct(v, 95):.0f}" for k, v in sorted(kinds.items())
        )
    )
    print(
        "  slowest decisions (ms): total sync decode frame loaded | overlapping long tasks, "
        "requests"
    )
    for r in sorted(rows, key=lambda r: -r["total"])[:10]:
        lo, hi = r["key"], r["painted"]
        longs = [f"{d:.0f}" for s, d in long_tasks if s < hi and s + d > lo]
        reqs = sorted(
            {x["name"].split("/api/")[-1].split("?")[0] for x in resources
             if x["startTime"] < hi and x["responseEnd"] > lo}
        )  # fmt: skip
        print(
            f"  {r['total']:6.1f} {r['sync']:5.1f} {r['decode']:6.1f} {r['frame']:6.1f} "
            f"{'y' if r['loaded'] else 'N'} | long={longs} req={reqs}"
        )


def run_browser(
    url: str, decisions: int, think_ms: float, *, profile: bool = False, cpu_throttle: float = 1
) -> list[float]:
    """Press ``a`` ``decisions`` times; returns key -> next-item-painted latencies in ms.

    ``cpu_throttle`` > 1 slows the page's main thread that many times (DevTools CPU
    throttling): a repeatable stand-in for a loaded or slow machine.
    """
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1000, "height": 1000})
            page.set_default_timeout(60_000)
            if cpu_throttle > 1:
                cdp = page.context.new_cdp_session(page)
                cdp.send("Emulation.setCPUThrottlingRate", {"rate": cpu_throttle})
            page.add_init_script("localStorage.setItem('autolabel.reviewer', 'bench');")
            page.goto(url + "/")
            page.wait_for_function(
                "() => document.getElementById('stage').dataset.itemId && "
                "document.getElementById('img').complete"
            )
            page.evaluate(LATENCY_HOOK)
            if profile:
                page.evaluate(PROFILE_HOOK)
                page.evaluate("performance.setResourceTimingBufferSize(100000)")
            time.sleep(1.0)  # let the page claim and decode what it prefetches
            for i in range(decisions):
                page.keyboard.press("a")
                page.wait_for_function(f"() => window.__lat.length > {i}", polling=5)
                if think_ms:
                    time.sleep(think_ms / 1000)
            lat = page.evaluate("window.__lat")
            if profile:
                time.sleep(0.2)
                profile_report(
                    page.evaluate("window.__prof"),
                    page.evaluate("window.__long"),
                    page.evaluate(
                        "performance.getEntriesByType('resource').map(e => ({name: e.name, "
                        "startTime: e.startTime, responseEnd: e.responseEnd}))"
                    ),
                )
            # background sends (if any) must all get through before the page closes
            page.wait_for_function(
                "() => (localStorage.getItem('autolabel.outbox.bench') || '[]') === '[]'",
                timeout=60_000,
            )
        finally:
            browser.close()
    return [float(v) for v in lat]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=1_000_000, help="queue size")
    ap.add_argument("--decisions", type=int, default=60, help="key presses timed (issue: 200)")
    ap.add_argument("--think-ms", type=float, default=300.0, help="reviewer's look per item")
    ap.add_argument("--workspace", type=Path, help="reuse/keep this workspace folder")
    ap.add_argument("--profile", action="store_true", help="print where the slow ones wait")
    ap.add_argument("--cpu-throttle", type=float, default=1.0, help="slow the page's CPU N x")
    args = ap.parse_args(argv)

    from autolabel.config import ReviewConfig
    from autolabel.review.server import serve_in_thread

    tmp = Path(tempfile.mkdtemp(prefix="bench_review_ui_"))
    root = args.workspace or tmp / "ws"
    try:
        fresh = not (root / "autolabel.db").exists()
        ws = Workspace.create(root)
        if fresh:
            t0 = time.perf_counter()
            build(ws, args.items, make_images(root / "images"))
            print(f"built {args.items} queue items in {time.perf_counter() - t0:.1f}s")
        link_next(ws, sorted((root / "images").glob("shot_*.jpg")), args.decisions + 50)
        n_open = ws.conn.execute("SELECT COUNT(*) FROM queue_items WHERE status='open'").fetchone()
        ws.close()
        print(
            f"queue: {n_open[0]} open items; images {W}x{H} JPEG; think time {args.think_ms} ms"
            + (f"; page CPU throttled {args.cpu_throttle:g}x" if args.cpu_throttle > 1 else "")
        )
        load0 = os.getloadavg()
        with serve_in_thread(root, ReviewConfig(port=0, lease_seconds=600)) as server:
            ms = run_browser(
                server.url, args.decisions, args.think_ms, profile=args.profile,
                cpu_throttle=args.cpu_throttle,
            )  # fmt: skip
        load1 = os.getloadavg()
        print(
            f"key A -> next item painted (image decoded), n={len(ms)}: "
            f"p50={pct(ms, 50):.1f} ms  p95={pct(ms, 95):.1f} ms  p99={pct(ms, 99):.1f} ms  "
            f"mean={statistics.fmean(ms):.1f} ms  max={max(ms):.1f} ms  (target p95 <= 50 ms)"
        )
        print(
            f"load average (1 min) {load0[0]:.2f} before, {load1[0]:.2f} after "
            f"({os.cpu_count()} CPUs)"
        )
    finally:
        if args.workspace is None:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
