"""Benchmark `autolabel propose`: overhead over the model, speed-up over a naive loop, memory.

All measured in one run, on the same images and the same model instance:

(a) pure model time: ``detector.detect`` over pre-decoded images (same batches, no I/O);
(b) ``run_propose`` wall time (streaming from the DB, decoding in loader threads, batched
    detector calls, one transaction per batch); target (b)/(a) <= 1.10;
(c) a naive loop in the style of autodistill: open each image, one forward per prompt
    phrase, batch size 1, keep every result until the end; target (c)/(b) >= 3;

(d) with ``--contended``: (b) again while one competing CPU-bound process runs; torch's
    threads are pinned beside the loader threads (``autolabel.propose.threads``), so
    oversubscription does not multiply the wall time; target (d)/(b) <= 2.5;

plus the peak RSS of the real CLI (`autolabel propose` in a subprocess, tiny model, tiny
images) for two folder sizes (must not grow with the folder size).

The model is a small (not tiny) random-init Grounding DINO (Swin 32-dim, d_model 128,
100 queries, input 320-533 px by default), so the model dominates, as with real weights.

Usage:
    python benchmarks/bench_propose.py                 # ~2-3 min on 2 cores
    python benchmarks/bench_propose.py --full          # 1k and 10k images for the RSS part
    python benchmarks/bench_propose.py --images 128 --batch-size 8 --device cuda
    python benchmarks/bench_propose.py --contended --skip-rss   # idle vs one busy process
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

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np

PHRASES = ["white sneaker", "handbag", "red dress", "wrist watch"]


def make_bench_model(out: Path, image_size: int) -> Path:
    """A small random-init Grounding DINO (bigger than the test one) saved to ``out``."""
    import torch
    from transformers import GroundingDinoForObjectDetection

    from autolabel.detect.tiny import tiny_grounding_dino_config, tiny_grounding_dino_processor

    cfg = tiny_grounding_dino_config(
        embed_dim=32,
        depth=2,
        d_model=128,
        heads=4,
        ffn=256,
        text_layers=2,
        encoder_layers=2,
        decoder_layers=3,
        num_queries=100,
    )
    torch.manual_seed(0)
    model = GroundingDinoForObjectDetection(cfg).eval()
    model.save_pretrained(out)
    proc = tiny_grounding_dino_processor()
    proc.image_processor.size = {
        "shortest_edge": image_size,
        "longest_edge": round(image_size * 1333 / 800),
    }
    proc.save_pretrained(out)
    return out


def make_screenshots(folder: Path, n: int, size: tuple[int, int], seed: int = 0) -> list[Path]:
    """n phone-screenshot-like JPEGs of one size (``size`` = (W, H))."""
    from autolabel.synth import make_screenshot

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        im, _, _ = make_screenshot(rng, size=size)
        p = folder / f"shot_{i:05d}.jpg"
        im.save(p, quality=90)
        paths.append(p)
    return paths


def make_tiny_pngs(folder: Path, n: int, seed: int = 0) -> None:
    """n unique 64x64 PNGs (unique so ingest does not mark duplicates)."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        arr = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
        Image.fromarray(arr).save(folder / f"t_{i:06d}.png", compress_level=1)


def new_workspace(path: Path, folder: Path):
    from autolabel.ingest import ingest
    from autolabel.store import Workspace

    ws = Workspace.create(path)
    ingest(ws, [folder])
    return ws


def pure_model_seconds(detector, paths, settings, rows) -> float:
    """(a): detector time over pre-decoded images, batched exactly as propose batches."""
    from autolabel.propose import group_by_shape, load_for_detector

    decoded = {
        int(r["id"]): load_for_detector(
            int(r["id"]),
            r["path"],
            max_size=settings.detect.max_size,
            max_pixels=settings.image.max_pixels,
            max_side=settings.image.max_side,
        ).image
        for r in rows
    }
    batches = list(
        group_by_shape(
            iter(rows),
            batch_size=settings.propose.batch_size,
            max_size=settings.detect.max_size,
            window=settings.propose.batch_size * 8,
        )
    )
    t = 0.0
    for b in batches:
        ims = [decoded[int(r["id"])] for r in b]
        t0 = time.perf_counter()
        detector.detect(ims, [settings.prompt] * len(ims))
        t += time.perf_counter() - t0
    return t


def naive_seconds(detector, paths, ws) -> tuple[float, int]:
    """(c): autodistill style: open each image, one forward per phrase, keep all, write once."""
    from PIL import Image

    from autolabel.store import runs as store_runs
    from autolabel.store.images import find_image
    from autolabel.types import Proposals

    t0 = time.perf_counter()
    kept = []
    for p in paths:
        image = np.array(Image.open(p).convert("RGB"))
        per_phrase = [detector.detect([image], [phrase])[0] for phrase in PHRASES]
        kept.append((find_image(ws, str(p)).id, Proposals.merge(per_phrase)))
    run = store_runs.create_run(
        ws,
        detector="naive",
        model="bench",
        model_version="naive",
        refiner=None,
        prompt=". ".join(PHRASES),
        box_threshold=detector.box_threshold,
        text_threshold=detector.text_threshold,
    )
    store_runs.write_batch(ws, run, kept)
    return time.perf_counter() - t0, sum(len(k[1]) for k in kept)


def peak_rss_cli(ws_path: Path, model: Path, batch_size: int) -> dict[str, float]:
    """Run `autolabel propose` in a subprocess and watch its memory.

    Returns:
        ``peak`` (ru_maxrss of the process, MiB), ``first_batch`` (RSS once the first batch
        is written), ``peak_processing`` (highest sampled RSS after that), ``wall`` (s,
        including start-up) and ``images``.
    """
    from proc_status import status_mib  # beside this script

    from autolabel.store import Workspace
    from autolabel.store import runs as store_runs

    args = [
        sys.executable, "-m", "autolabel.cli", "propose", str(ws_path), "--prompt",
        "red square. blue circle", "--model", str(model), "--device", "cpu",
        "--batch-size", str(batch_size), "--quiet", "--json",
    ]  # fmt: skip
    t0 = time.perf_counter()
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = peak_proc = 0.0
    with Workspace.open(ws_path) as ws:
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)  # poll() would reap it
            if pid:
                break
            time.sleep(0.5)
            rss = status_mib("VmRSS", proc.pid)
            if rss is None:
                continue
            if not first:
                runs = store_runs.list_runs(ws)
                if runs and runs[-1]["n_images"] > 0:
                    first = rss
            if first:
                peak_proc = max(peak_proc, rss)
    out = proc.stdout.read() if proc.stdout else b""
    err = proc.stderr.read() if proc.stderr else b""
    wall = time.perf_counter() - t0
    if status != 0:
        raise SystemExit(f"propose failed: {err.decode()[-2000:]}")
    summary = json.loads(out.decode().strip().splitlines()[-1])
    return {
        "peak": usage.ru_maxrss / 1024.0,
        "first_batch": first,
        "peak_processing": peak_proc,
        "wall": wall,
        "images": int(summary["images"]),
    }


def speed(args: argparse.Namespace, tmp: Path) -> None:
    """Measure (a), (b) and (c) and print them with the two ratios."""
    from autolabel.detect import build_detector
    from autolabel.propose import ProposeSettings, run_propose
    from autolabel.propose.threads import limit_torch_threads, torch_threads_beside
    from autolabel.store import runs as store_runs

    model_dir = make_bench_model(tmp / "model", args.image_size)
    folder = tmp / "shots"
    paths = make_screenshots(folder, args.images, size=(540, 960))
    prompt = ". ".join(PHRASES)
    detector = build_detector(
        "grounding-dino",
        model=str(model_dir),
        device=args.device,
        box_threshold=0.3,
        text_threshold=0.25,
    )
    settings = ProposeSettings.of(
        prompt,
        model=str(model_dir),
        device=args.device,
        box_threshold=0.3,
        text_threshold=0.25,
        batch_size=args.batch_size,
        max_size=960,
    )
    ws_b = new_workspace(tmp / "ws_b", folder)
    # warm-up (allocator, lazy inits) outside every measurement
    warm = make_screenshots(tmp / "warm", 1, size=(540, 960))
    from PIL import Image

    detector.detect([np.array(Image.open(warm[0]).convert("RGB"))] * 2, [prompt] * 2)

    run = store_runs.create_run(
        ws_b,
        detector="x",
        model="x",
        model_version="probe",
        refiner=None,
        prompt=prompt,
        box_threshold=0.3,
        text_threshold=0.25,
    )
    rows = [dict(r) for r in store_runs.iter_pending_images(ws_b, run.key)]
    # (a) and (c) get the torch thread count run_propose gives the model beside its loaders,
    # so the ratios compare the pipelines, not thread settings
    pinned = torch_threads_beside(settings.propose.workers)
    with limit_torch_threads(pinned):
        a = pure_model_seconds(detector, paths, settings, rows)
    print(f"(a) pure model time   {a:8.2f} s  ({len(rows) / a:.2f} img/s)", flush=True)

    t0 = time.perf_counter()
    summary = run_propose(ws_b, settings, detector=detector)
    b = time.perf_counter() - t0
    assert summary.images == args.images, summary
    print(
        f"(b) run_propose wall  {b:8.2f} s  ({args.images / b:.2f} img/s, "
        f"{summary.proposals} proposals)",
        flush=True,
    )

    ws_c = new_workspace(tmp / "ws_c", folder)
    with limit_torch_threads(pinned):
        c, n_naive = naive_seconds(detector, paths, ws_c)
    print(f"(c) naive loop        {c:8.2f} s  ({args.images / c:.2f} img/s, {n_naive} boxes)")
    print(f"ratio (b)/(a) = {b / a:.3f}   (target <= 1.10)")
    print(f"ratio (c)/(b) = {c / b:.2f}    (target >= 3; {len(PHRASES)} phrases)")
    ws_b.close()
    ws_c.close()
    if args.contended:
        ws_d = new_workspace(tmp / "ws_d", folder)
        busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        try:
            time.sleep(0.5)  # let the competitor reach full speed
            t0 = time.perf_counter()
            run_propose(ws_d, settings, detector=detector)
            d = time.perf_counter() - t0
        finally:
            busy.kill()
            busy.wait()
            ws_d.close()
        print(f"(d) beside a busy CPU {d:8.2f} s  ({args.images / d:.2f} img/s)")
        print(f"ratio (d)/(b) = {d / b:.2f}    (target <= 2.5)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--images", type=int, default=16, help="images for (a), (b), (c)")
    ap.add_argument(
        "--image-size", type=int, default=320, help="model input: shortest side (800 = real GD)"
    )
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--rss-sizes", type=int, nargs=2, default=[200, 1000])
    ap.add_argument("--full", action="store_true", help="RSS for 1k and 10k images")
    ap.add_argument("--skip-rss", action="store_true")
    ap.add_argument("--only-rss", action="store_true", help="skip (a), (b), (c)")
    ap.add_argument(
        "--contended", action="store_true", help="also (d): (b) beside one busy CPU process"
    )
    args = ap.parse_args()
    if args.full:
        args.rss_sizes = [1000, 10000]

    tmp = Path(tempfile.mkdtemp(prefix="bench_propose_"))
    print(f"workdir {tmp}", flush=True)
    if not args.only_rss:
        speed(args, tmp)

    if args.skip_rss:
        return
    from autolabel.detect.tiny import make_tiny_models

    tiny = make_tiny_models(tmp / "tiny", keys=("grounding-dino",))["grounding-dino"]
    for n in args.rss_sizes:
        f = tmp / f"tiny_{n}"
        make_tiny_pngs(f, n, seed=n)
        new_workspace(tmp / f"ws_rss_{n}", f).close()
        m = peak_rss_cli(tmp / f"ws_rss_{n}", tiny, args.batch_size)
        print(
            f"`autolabel propose` {n:6d} images: peak RSS {m['peak']:7.1f} MiB; RSS after the "
            f"first batch {m['first_batch']:7.1f} MiB, highest while processing "
            f"{m['peak_processing']:7.1f} MiB ({m['images']} images in {m['wall']:.1f} s "
            "incl. start-up)",
            flush=True,
        )


if __name__ == "__main__":
    main()
