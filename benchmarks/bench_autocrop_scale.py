"""Whole-``autocrop`` scale benchmark: ingest -> propose -> select -> export at N images.

Synthetic phone screenshots (``autolabel.synth``, JPEG, one product each, a unique patch per
file; 180x320 by default, ``--source-size 1080x2340`` for full-size captures) and a small
seed set (hand crops + originals) go through :func:`autolabel.pipeline.autocrop` with a
weight-free detector (``--detector``, default ``regions``: the README's weight-free default,
trained on the seed originals). Each size runs in its own process, which reports:

- per-stage seconds and images/s (ingest, seed, propose, select, export);
- peak RSS of the process (``ru_maxrss``; the inputs are made by the parent, so it is
  autocrop's) and the ratio between the two sizes, and the peak of each stage (a sampler);
- a no-op re-run (same folder again: nothing to ingest, propose, select or export);
- export against its limit: the crops of the version re-cut by ``export_dataset`` in one
  process (workers=1) vs a tight loop doing only the same pixel work (read + open + JPEG
  draft + decode + LANCZOS resize + PNG level-1 encode into memory), one core each, best of
  ``--repeats`` alternated runs; also against the same loop writing its PNGs to files (the
  export writes one file per crop: on small crops creating it is a large part of the cost),
  at the small size and at the big one up to ``--limit-max`` images (it re-cuts every crop
  ``3 x --repeats`` times);
- a projection to 10^6 images on this machine and on ``--ray-workers`` Ray workers
  (propose and export spread, ingest and select on the driver).

``--kill K`` instead runs one size (``--images``) uninterrupted, then K times: a fresh run of
the same inputs killed with SIGKILL (its whole process group) at a random moment of the k-th
K-th of the run, re-run to completion; the output folder (every file, byte for byte) and the
workspace's exported versions must equal the uninterrupted run's. Prints PASS/FAIL per kill
with the stage it hit. ``--keep DIR`` keeps the inputs and the uninterrupted run in DIR and
reuses them on the next ``--kill`` run of the same size (at 100k images the reference alone
takes as long as a killed run and its re-run together). ``--kill-within S`` runs the
uninterrupted run beside the killed ones (one core each) and spreads the kill moments over
the first S seconds instead (take S from an earlier run of that size: a kill after the end
reports "finished before the kill").

    python benchmarks/bench_autocrop_scale.py                    # 500 and 2000 images
    python benchmarks/bench_autocrop_scale.py --images 10000 --small 2000
    python benchmarks/bench_autocrop_scale.py --images 200 --source-size 1080x2340
    python benchmarks/bench_autocrop_scale.py --images 30 --kill 2
    python benchmarks/bench_autocrop_scale.py --images 100000 --kill 1 --kill-within 4000 \
        --keep /data/kill100k

Targets (issue 20): RSS(big) / RSS(small) <= 1.1; no-op re-run at 100k <= 30 s;
export >= 0.8 of the tight loop; a kill at any point, re-run: identical output.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DEFAULT_SOURCE = (180, 320)
DB_FILE = "autolabel.db"
_STAGE_LINE = re.compile(r"^\[([a-z][a-z ]*)\] (.*)$")
_STAGE_END = re.compile(r"\(\d+(\.\d+)?s\)$")
sys.path.insert(0, str(Path(__file__).resolve().parent))  # the benchmarks: proc_status


def parse_size(text: str) -> tuple[int, int]:
    """``"1080x2340"`` -> ``(1080, 2340)`` (width x height, both >= 64)."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT, got {text!r}") from None
    if min(w, h) < 64:
        raise argparse.ArgumentTypeError(f"expected both sides >= 64, got {text!r}")
    return w, h


def crop_size(source: tuple[int, int]) -> int:
    """Export crop size for the sources: 128 px on small screenshots, the default 448 on
    full-size ones (short side >= 720)."""
    return 448 if min(source) >= 720 else 128


def make_data(root: Path, n: int, source: tuple[int, int], *, seed: int = 0) -> tuple[Path, Path]:
    """``n`` screenshots in ``root/in`` and an 8-pair seed set in ``root/seed``."""
    import numpy as np
    from PIL import Image

    from autolabel.synth import make_screenshot, make_seed_set

    seed_dir = root / "seed"
    make_seed_set(seed_dir, 8, seed=seed, size=source)
    rng = np.random.default_rng(seed)
    bases = [make_screenshot(rng, size=source)[0] for _ in range(16)]
    folder = root / "in"
    folder.mkdir(parents=True, exist_ok=True)
    patch_side = max(6, source[0] // 30)
    for i in range(n):
        img = bases[i % len(bases)].copy()
        patch = rng.integers(0, 256, (patch_side, patch_side, 3), dtype=np.uint8)
        x = int(rng.integers(0, source[0] - patch_side))
        img.paste(Image.fromarray(patch), (x, source[1] - patch_side))
        img.save(folder / f"shot_{i:07d}.jpg", quality=85)
    return folder, seed_dir


def write_config(ws_path: Path, crop: int) -> None:
    """Crops of ``crop`` px from boxes of ``crop / 4``; every box not rejected is exported
    (a throughput benchmark, not a quality one)."""
    from autolabel.store import Workspace

    Workspace.create(ws_path).close()
    (ws_path / "config.yaml").write_text(
        f"export:\n  size: {crop}\n  min_size: {crop // 4}\n  include: all\n"
    )


def tight_loop(
    rows: list[dict], size: int, resize: str = "fit", write_dir: Path | None = None
) -> float:
    """Crops/s of the same pixel work as the export, nothing else (one core).

    Per original: read the file, open it, JPEG draft by the export's factor, decode; per crop:
    LANCZOS resize of the region to the export's size (padded in ``pad`` mode), PNG encode
    (level 1) into memory. No hashing, no file writes, no database: the limit the export's
    cut pass is measured against. With ``write_dir`` each PNG is written to a file there
    instead (one new file per crop, as the export must).

    Args:
        rows: ``meta/manifest.jsonl`` rows of the export (``crop``, ``source_path``,
            ``crop_box``).
        size: the export's crop size.
        resize: the export's resize mode.
        write_dir: folder to write the PNGs to (None: into memory).
    """
    import io

    from PIL import Image

    from autolabel.export.crops import PAD_FILL, PNG_COMPRESS_LEVEL
    from autolabel.export.geometry import ResizePlan, draft_factor, resize_plan

    by_src: dict[str, list[tuple[list[float], ResizePlan]]] = {}
    for r in rows:
        if r["crop"]:
            x0, y0, x1, y1 = r["crop_box"]
            plan = resize_plan(x1 - x0, y1 - y0, size, resize)
            by_src.setdefault(r["source_path"], []).append((r["crop_box"], plan))
    n = 0
    t = time.perf_counter()
    for src, items in by_src.items():
        with open(src, "rb") as fh:
            im = Image.open(io.BytesIO(fh.read()))
        w, h = im.size
        reduce = min(draft_factor(b[2] - b[0], b[3] - b[1], *p.out_size) for b, p in items)
        if reduce > 1 and im.format == "JPEG" and min(w, h) >= 8 * reduce:
            im.draft("RGB", (w // reduce, h // reduce))
        im.load()
        s = im.size[0] / float(w)
        for b, p in items:
            box = (b[0] * s, b[1] * s, b[2] * s, b[3] * s)
            out = im.resize(p.out_size, Image.Resampling.LANCZOS, box=box)
            if p.canvas != p.out_size:
                canvas = Image.new("RGB", p.canvas, PAD_FILL)
                canvas.paste(out, p.offset)
                out = canvas
            dest = io.BytesIO() if write_dir is None else write_dir / f"{n}.png"
            out.save(dest, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
            n += 1
    return n / max(time.perf_counter() - t, 1e-9)


def export_vs_limit(ws_path: Path, rows: list[dict], root: Path, crop: int, repeats: int) -> dict:
    """Best-of-``repeats`` crops/s of a one-process export and of :func:`tight_loop` (into
    memory, and writing files), alternated (a shared machine's load moves them alike)."""
    import shutil

    from autolabel.config import ExportConfig
    from autolabel.export import export_dataset
    from autolabel.store import Workspace

    crops = sum(1 for r in rows if r["crop"])
    export_best = limit_best = files_best = 0.0
    ws = Workspace.open(ws_path)
    try:
        for k in range(repeats):
            opts = ExportConfig(
                formats=["swift"], size=crop, min_size=crop // 4, include="all", workers=1,
                version=f"b{k}",
            )  # fmt: skip
            t = time.perf_counter()
            export_dataset(ws, root / "bench_out", opts)
            export_best = max(export_best, crops / max(time.perf_counter() - t, 1e-9))
            shutil.rmtree(root / "bench_out" / f"b{k}")
            limit_best = max(limit_best, tight_loop(rows, crop))
            (root / "tight").mkdir()
            files_best = max(files_best, tight_loop(rows, crop, write_dir=root / "tight"))
            shutil.rmtree(root / "tight")
    finally:
        ws.close()
    return {
        "export_crops_per_s_1proc": round(export_best, 1),
        "tight_loop_crops_per_s": round(limit_best, 1),
        "export_vs_limit": round(export_best / max(limit_best, 1e-9), 3),
        "tight_loop_files_crops_per_s": round(files_best, 1),
        "export_vs_limit_with_files": round(export_best / max(files_best, 1e-9), 3),
    }


class StageRss:
    """Peak resident set per ``autocrop`` stage: a thread samples ``/proc/self/status``
    every ``every`` s and books each sample to the stage whose ``[stage] ...`` line came
    last (:meth:`line`). A sampler, so a spike shorter than ``every`` can be missed; the
    process's ``ru_maxrss`` is the exact overall peak."""

    def __init__(self, every: float = 0.02) -> None:
        import threading

        self.stage = "start"
        self.peaks: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(every,), daemon=True)
        self._thread.start()

    def _run(self, every: float) -> None:
        while not self._stop.wait(every):
            self.sample()

    def sample(self) -> None:
        from proc_status import status_mib

        rss = status_mib("VmRSS")
        if rss is not None and rss > self.peaks.get(self.stage, 0.0):
            self.peaks[self.stage] = round(rss, 1)

    def line(self, text: str) -> None:
        m = _STAGE_LINE.match(text)
        if m is not None:
            self.sample()  # the stage that ends gets the moment before the next one
            self.stage = m.group(1)

    def stop(self) -> dict[str, float]:
        self._stop.set()
        self._thread.join()
        self.sample()
        return dict(self.peaks)


def run_autocrop(
    root: Path, case: str, detector: str, log_file: Path | None = None
) -> tuple[dict, dict[str, float]]:
    """One ``autocrop`` of ``root/in`` with ``root/seed`` into ``root/<case>/out`` (workspace
    ``root/<case>/ws``); ``log_file`` gets each stage's start and end lines as they happen.
    Returns autocrop's summary and the peak RSS (MB) of each stage (:class:`StageRss`)."""
    from autolabel.pipeline import autocrop

    fh = open(log_file, "a", encoding="utf-8") if log_file else None
    rss = StageRss()

    def log(line: str) -> None:
        rss.line(line)
        if fh is not None:
            fh.write(line + "\n")
            fh.flush()

    try:
        summary = autocrop(
            root / "in",
            root / case / "out",
            seed_crops=root / "seed" / "crops",
            originals=root / "seed" / "originals",
            captions=root / "seed" / "captions.jsonl",
            detector=detector,
            workspace=root / case / "ws",
            log=log,
        )
        peaks = rss.stop()
        if fh is not None:  # not a stage line: stage_at_kill passes over it
            fh.write(f"peak RSS by stage (MB): {json.dumps(peaks)}\n")
        return summary, peaks
    finally:
        rss.stop()
        if fh is not None:
            fh.close()


def one_size(
    n: int, detector: str, root: Path, source: tuple[int, int], repeats: int, limit: bool
) -> dict:
    """Run in a child process (the inputs made by the parent, so the peak RSS is
    autocrop's): the whole autocrop at ``n`` images, then the extras; the export-vs-limit
    measurement only when ``limit`` (it re-cuts every crop ``3 * repeats`` times)."""
    crop = crop_size(source)
    write_config(root / "run" / "ws", crop)
    t = time.perf_counter()
    first, stage_rss = run_autocrop(root, "run", detector)
    total_s = time.perf_counter() - t
    keys = ("proposed", "proposals", "crops", "review_waiting", "export")
    print(json.dumps({k: first[k] for k in keys}), file=sys.stderr)
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t = time.perf_counter()
    again, _ = run_autocrop(root, "run", detector)
    noop_s = time.perf_counter() - t
    if first["export"] is None:
        raise SystemExit(f"nothing exported at {n} images: {first}")
    # crops counted a line at a time (250k rows as dicts are ~1 GB); the rows are kept only
    # for the tight loop, which runs only up to --limit-max images
    rows: list[dict] = []
    crops = 0
    with open(Path(first["export"]) / "meta" / "manifest.jsonl", encoding="utf-8") as fh:
        for line in fh:
            row = json.loads(line)
            crops += bool(row["crop"])
            if limit:
                rows.append(row)
    return {
        "images": n,
        "source": list(source),
        "autocrop_s": round(total_s, 1),
        "stages": first["stages"],
        "crops": crops,
        "rss_mb": round(rss_mb, 1),
        "rss_by_stage_mb": stage_rss,
        "noop_s": round(noop_s, 2),
        "noop_stages": again["stages"],
        "noop_export": again["export"],
        **(export_vs_limit(root / "run" / "ws", rows, root, crop, repeats) if limit else {}),
    }


def fit(n_lo: int, t_lo: float, n_hi: int, t_hi: float) -> tuple[float, float]:
    """``(seconds per image, fixed seconds)`` of the line through two sizes' timings; the
    plain per-image rate of the big size when the fit has no positive slope (noise)."""
    slope = (t_hi - t_lo) / max(n_hi - n_lo, 1)
    if slope <= 0:
        return t_hi / max(n_hi, 1), 0.0
    return slope, max(0.0, t_hi - slope * n_hi)


def projection(lo: dict, big: dict, ray_workers: int, n: int = 1_000_000) -> dict:
    """Hours for ``n`` images from the two sizes' stage times: each stage a line through
    both (fixed + per image), the seed stages fixed (the seed set does not grow); on Ray
    the per-image part of propose and export divides by the workers."""
    lo_secs = {s["stage"]: s["seconds"] for s in lo["stages"]}
    one = ray = 0.0
    for s in big["stages"]:
        name, t_hi = s["stage"], s["seconds"]
        if name.startswith("seed"):
            one, ray = one + t_hi, ray + t_hi
            continue
        if name in lo_secs:
            per, fixed = fit(lo["images"], lo_secs[name], big["images"], t_hi)
        else:  # a stage only the big size ran: its plain per-image rate
            per, fixed = t_hi / max(big["images"], 1), 0.0
        one += fixed + per * n
        ray += fixed + per * n / (ray_workers if name in ("propose", "export") else 1)
    return {
        "one_machine_h": round(one / 3600, 2),
        f"ray_{ray_workers}_workers_h": round(ray / 3600, 2),
    }


# -- kill at any point ----------------------------------------------------------------------------
def kill_moments(total_s: float, k: int, seed: int = 0) -> list[float]:
    """``k`` moments in ``(0, total_s)``: one uniformly at random in each k-th of the run
    (so the kills are spread over every stage, not bunched in the longest one)."""
    rng = random.Random(seed)
    return [total_s * (i + rng.uniform(0.05, 0.95)) / k for i in range(k)]


def stage_at_kill(log_lines: list[str]) -> str:
    """The stage running when the log stopped: the last ``[stage] ...`` start line not
    followed by its end line (``[stage] <summary> (<seconds>s)``); ``"before ingest"`` when
    none started, ``"after <stage>"`` between stages."""
    current, last_done = None, None
    for line in log_lines:
        m = _STAGE_LINE.match(line)
        if m is None:
            continue
        name, rest = m.group(1), m.group(2)
        if rest == "...":
            current = name
        elif name == current and _STAGE_END.search(rest):
            current, last_done = None, name
    if current is not None:
        return current
    return f"after {last_done}" if last_done else "before ingest"


def tree_digest(folder: Path) -> dict[str, str]:
    """``{relative path: sha256 hex of its bytes}`` of every file under ``folder``, with the
    ``decided_at`` field of ``manifest.jsonl`` rows left out (the time a box was accepted
    differs between any two runs); every other byte counts. Digests, not bytes: a 100k-image
    output is gigabytes."""
    import hashlib

    out: dict[str, str] = {}
    for dirpath, _dirs, files in os.walk(folder):
        for name in files:
            path = Path(dirpath) / name
            data = path.read_bytes()
            if name == "manifest.jsonl":
                rows = [json.loads(line) for line in data.decode("utf-8").splitlines()]
                for r in rows:
                    r.pop("decided_at", None)
                data = "\n".join(json.dumps(r, sort_keys=True) for r in rows).encode()
            out[str(path.relative_to(folder))] = hashlib.sha256(data).hexdigest()
    return out


def exported_versions(ws_path: Path) -> list[tuple]:
    """The workspace's exports in order: ``(version, formats, options, n_items, items)`` with
    ``items`` the sorted ``(proposal id, crop path)`` pairs."""
    import sqlite3

    conn = sqlite3.connect(ws_path / DB_FILE)
    try:
        rows = conn.execute(
            "SELECT id, version, formats, config, n_items FROM exports ORDER BY id"
        ).fetchall()
        out = []
        for eid, *head in rows:
            items = conn.execute(
                "SELECT proposal_id, crop_path FROM exported_items WHERE export_id = ? "
                "ORDER BY proposal_id",
                (eid,),
            ).fetchall()
            out.append((*head, items))
        return out
    finally:
        conn.close()


def differences(ref: dict[str, str], got: dict[str, str]) -> list[str]:
    """Paths missing on either side or with different bytes (sorted)."""
    names = sorted(set(ref) | set(got))
    return [n for n in names if ref.get(n) != got.get(n)]


def _child_cmd(root: Path, case: str, detector: str, log_file: Path) -> list[str]:
    return [
        sys.executable, __file__, "--autocrop-child", case, "--root", str(root),
        "--detector", detector, "--log-file", str(log_file),
    ]  # fmt: skip


def _version_tuples(versions: list) -> list[tuple]:
    """``exported_versions`` rows as it returns them, from their JSON form (lists)."""
    return [(*v[:4], [tuple(i) for i in v[4]]) for v in versions]


def _kept_reference(root: Path, want: dict) -> dict | None:
    """The uninterrupted run kept in ``root/ref.json`` (``--keep``) when its ``n``, detector
    and source size are ``want``'s; None when there is none. A mismatch is an error."""
    done = root / "ref.json"
    if not done.exists():
        return None
    ref = json.loads(done.read_text(encoding="utf-8"))
    if not all(ref.get(k) == v for k, v in want.items()):
        raise SystemExit(
            f"{root} holds a run of {ref.get('n')} images with {ref.get('detector')}; "
            f"expected {want}: use another --keep folder"
        )
    print(f"reusing the uninterrupted run in {root} ({ref['seconds']:.1f} s)", flush=True)
    ref["versions"] = _version_tuples(ref["versions"])
    return ref


def _logged_rss(log_file: Path) -> dict | None:
    """The ``peak RSS by stage`` line an autocrop child wrote to its log (None if none)."""
    head = "peak RSS by stage (MB): "
    lines = log_file.read_text(encoding="utf-8").splitlines() if log_file.exists() else []
    found = [json.loads(line[len(head) :]) for line in lines if line.startswith(head)]
    return found[-1] if found else None


def _run_reference(root: Path, want: dict, env: dict) -> dict:
    """Run the uninterrupted ``root/ref`` case on the inputs in ``root``: its seconds, file
    digests and exported versions, also written to ``root/ref.json``."""
    write_config(root / "ref" / "ws", crop_size(tuple(want["source"])))
    t = time.perf_counter()
    cmd = _child_cmd(root, "ref", want["detector"], root / "ref.log")
    subprocess.run(cmd, env=env, check=True, capture_output=True)
    ref = {
        **want,
        "seconds": time.perf_counter() - t,
        "rss_by_stage_mb": _logged_rss(root / "ref.log"),
    }
    ref["digest"] = tree_digest(root / "ref" / "out")
    ref["versions"] = exported_versions(root / "ref" / "ws")
    (root / "ref.json").write_text(json.dumps(ref), encoding="utf-8")
    return ref


def _killed_and_rerun(
    root: Path, case: str, at: float, detector: str, crop: int, env: dict
) -> tuple[str, str | None]:
    """Run ``case`` from scratch, SIGKILL its process group after ``at`` s, re-run it to the
    end: ``(stage hit, re-run error or None)``."""
    import shutil

    shutil.rmtree(root / case, ignore_errors=True)
    write_config(root / case / "ws", crop)
    log_file = root / f"{case}.log"
    cmd = _child_cmd(root, case, detector, log_file)
    proc = subprocess.Popen(
        cmd, env=env, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        proc.wait(timeout=at)
        hit = "finished before the kill"
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        hit = stage_at_kill(log_file.read_text(encoding="utf-8").splitlines())
    rerun = subprocess.run(cmd, env=env, capture_output=True, text=True)
    err = None if rerun.returncode == 0 else f"exited {rerun.returncode}: {rerun.stderr[-400:]}"
    return hit, err


def kill_mode(
    n: int,
    kills: int,
    detector: str,
    source: tuple[int, int],
    seed: int,
    keep: Path | None,
    within: float | None = None,
) -> bool:
    """The ``--kill`` run (see the module docstring); True when every kill passed.

    ``within``: kill moments spread over this many seconds instead of the uninterrupted
    run's, which then runs beside the killed runs (2 cores: about half the wall time)."""
    import shutil
    from concurrent.futures import ThreadPoolExecutor

    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    want = {"n": n, "detector": detector, "source": list(source)}
    ok = True
    with (
        tempfile.TemporaryDirectory(prefix=f"autocrop-kill{n}-") as tmp,
        ThreadPoolExecutor(max_workers=1) as beside,
    ):
        root = keep if keep is not None else Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        ref = _kept_reference(root, want)
        pending = None
        if ref is None:
            for sub in ("in", "seed", "ref"):
                shutil.rmtree(root / sub, ignore_errors=True)
            make_data(root, n, source)
            if within is None:
                ref = _run_reference(root, want, env)
            else:
                pending = beside.submit(_run_reference, root, want, env)
        total = within if within is not None else ref["seconds"]
        hits = [
            (at, *_killed_and_rerun(root, f"k{i}", at, detector, crop_size(source), env))
            for i, at in enumerate(kill_moments(total, kills, seed))
        ]
        if pending is not None:
            ref = pending.result()
        print(f"uninterrupted run: {ref['seconds']:.1f} s, {len(ref['digest'])} files, versions "
              f"{[v[0] for v in ref['versions']]}, peak RSS by stage (MB) "
              f"{ref.get('rss_by_stage_mb')}", flush=True)  # fmt: skip
        for i, (at, hit, err) in enumerate(hits):
            if err is not None:
                print(f"kill {i + 1} at {at:.1f} s ({hit}): FAIL, re-run {err.strip()}")
                ok = False
                continue
            diff = differences(ref["digest"], tree_digest(root / f"k{i}" / "out"))
            versions = exported_versions(root / f"k{i}" / "ws")
            passed = not diff and versions == ref["versions"]
            ok = ok and passed
            why = f" (differing files {diff[:5]}, same versions: {versions == ref['versions']})"
            print(f"kill {i + 1} at {at:.1f} s ({hit}): {'PASS' if passed else 'FAIL' + why}",
                  flush=True)  # fmt: skip
    print(f"load average {os.getloadavg()}, {os.cpu_count()} CPUs")
    return ok


def run_sizes(args: argparse.Namespace) -> None:
    """Both sizes in their own processes, then the report."""
    small = args.small or max(100, args.images // 4)
    results = {}
    for n in (small, args.images):
        with tempfile.TemporaryDirectory(prefix=f"autocrop{n}-") as tmp:
            t = time.perf_counter()
            make_data(Path(tmp), n, args.source)
            gen_s = time.perf_counter() - t
            cmd = [sys.executable, __file__, "--child", str(n), "--root", tmp]
            cmd += ["--detector", args.detector, "--source-size", "x".join(map(str, args.source))]
            cmd += ["--repeats", str(args.repeats)]
            if n != small and n > args.limit_max:
                cmd += ["--no-limit"]
            env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
            if proc.returncode != 0:
                raise SystemExit(f"{n} images failed:\n{proc.stderr[-3000:]}")
            results[n] = {**json.loads(proc.stdout.strip().splitlines()[-1]), "generate_s": gen_s}
    big, lo = results[args.images], results[small]
    proj = projection(lo, big, args.ray_workers)
    noop_per, noop_fixed = fit(small, lo["noop_s"], args.images, big["noop_s"])
    report = {
        "load_average": os.getloadavg(),
        "cpus": os.cpu_count(),
        "detector": args.detector,
        "source": list(args.source),
        "sizes": results,
        "rss_ratio_big_over_small": round(big["rss_mb"] / lo["rss_mb"], 3),
        "projection_1e6": proj,
        "projection_1e5": projection(lo, big, args.ray_workers, n=100_000),
        "noop_100k_s": round(noop_fixed + noop_per * 100_000, 1),
    }
    print(json.dumps(report, indent=1))
    for n, r in results.items():
        per = {s["stage"]: round(n / max(s["seconds"], 1e-9), 1) for s in r["stages"]}
        limit = (
            f", export {r['export_crops_per_s_1proc']} crops/s vs tight loop "
            f"{r['tight_loop_crops_per_s']} (ratio {r['export_vs_limit']}; "
            f"{r['export_vs_limit_with_files']} of the loop writing its PNGs to files)"
            if "export_vs_limit" in r
            else ", export vs limit not measured (--limit-max)"
        )
        print(
            f"{n} images ({r['crops']} crops): autocrop {r['autocrop_s']} s, images/s per stage "
            f"{per}, peak RSS {r['rss_mb']} MB (by stage {r['rss_by_stage_mb']}), no-op re-run "
            f"{r['noop_s']} s{limit}"
        )
    print(f"peak RSS {args.images} / {small}: {report['rss_ratio_big_over_small']}")
    print(
        f"no-op re-run: {lo['noop_s']} s at {small}, {big['noop_s']} s at {args.images} images "
        f"-> ~{noop_fixed + noop_per * 100_000:.1f} s at 100k (line through both)"
    )
    print(
        f"projection to 10^6 images: {proj['one_machine_h']} h on this machine, "
        f"{proj[f'ray_{args.ray_workers}_workers_h']} h on {args.ray_workers} Ray workers"
    )
    p5 = report["projection_1e5"]
    print(f"projection to 10^5 images: {p5['one_machine_h'] * 60:.0f} min on this machine")
    print(f"load average {report['load_average']}, {report['cpus']} CPUs")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--images", type=int, default=2000, help="the big size (default 2000)")
    ap.add_argument("--small", type=int, default=None, help="the small size (default big/4)")
    ap.add_argument("--detector", default="regions", help="weight-free detector (default regions)")
    ap.add_argument(
        "--source-size", dest="source", type=parse_size, default=DEFAULT_SOURCE,
        help="screenshot WIDTHxHEIGHT (default 180x320; 1080x2340 for full-size captures)",
    )  # fmt: skip
    ap.add_argument("--repeats", type=int, default=3, help="export vs tight loop: best of N")
    ap.add_argument("--ray-workers", type=int, default=16, help="workers in the projection")
    ap.add_argument("--kill", type=int, default=0, help="kill-at-any-point mode: K kills")
    ap.add_argument("--seed", type=int, default=0, help="random seed of the kill moments")
    ap.add_argument(
        "--kill-within", type=float, default=None, metavar="S",
        help="--kill: spread the kills over S seconds and run the uninterrupted run beside them",
    )  # fmt: skip
    ap.add_argument(
        "--keep", default=None, metavar="DIR",
        help="--kill: inputs and the uninterrupted run in DIR, kept and reused by a later run",
    )  # fmt: skip
    ap.add_argument(
        "--limit-max", type=int, default=20_000, metavar="N",
        help="export vs tight loop: measured at the big size too when it has <= N images "
        "(default 20000; it re-cuts every crop 3 x --repeats times)",
    )  # fmt: skip
    ap.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--no-limit", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--autocrop-child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--log-file", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--root", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child is not None:
        res = one_size(
            args.child, args.detector, Path(args.root), args.source, args.repeats,
            not args.no_limit,
        )  # fmt: skip
        print(json.dumps(res))
        return
    if args.autocrop_child is not None:
        log_file = Path(args.log_file) if args.log_file else None
        run_autocrop(Path(args.root), args.autocrop_child, args.detector, log_file)
        return
    if args.kill:
        keep = Path(args.keep) if args.keep else None
        ok = kill_mode(
            args.images, args.kill, args.detector, args.source, args.seed, keep, args.kill_within
        )
        sys.exit(0 if ok else 1)
    run_sizes(args)


if __name__ == "__main__":
    main()
