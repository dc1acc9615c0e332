"""Fault injection: ``kill -9`` at random (seeded) points of ingest, propose, select, export and
autocrop, each followed by a re-run that must give byte-identical output to an uninterrupted
run, with no temp files and no processes left behind (issue 15).

A fast, deterministic fake detector (red-pixel bounding boxes, a short sleep per image so
kills land inside the stage) is registered in the CLI subprocess; everything else is the
real command. "Output" is the stage's database rows (timestamps and timings left out) plus
every file it writes.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.labelled import write_image

pytestmark = [pytest.mark.slow, pytest.mark.skipif(sys.platform != "linux", reason="Linux")]

REPO = Path(__file__).resolve().parents[1]
N_IMAGES = 60
SEED = 15
KILLS = {"ingest": 4, "propose": 5, "select": 3, "export": 5, "autocrop": 4}

# The CLI with one extra detector, "fake": boxes around red pixels, 10 ms per image.
_CLI = r"""
import sys, time
import numpy as np
from autolabel.detect.backends import register_detector
from autolabel.types import Proposals

class Fake:
    name = "fake"; model_id = "fake"; model_version = "fake-1"
    box_threshold = 0.3; text_threshold = 0.25
    def detect(self, images, prompts):
        out = []
        for im in images:
            time.sleep(0.01)
            red = (im[..., 0] > 200) & (im[..., 1] < 60) & (im[..., 2] < 60)
            ys, xs = np.nonzero(red)
            if len(xs) == 0:
                out.append(Proposals.empty()); continue
            box = [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
            frac = float(red.mean())
            out.append(Proposals(
                xyxy=np.array([box, [0, 0, im.shape[1] // 3, im.shape[0] // 3]], np.float32),
                score=np.array([0.5 + min(frac * 4, 0.49), 0.31 + frac / 10], np.float32),
                phrase=["red square", "red square"]))
        return out

register_detector("fake", lambda **kw: Fake())
from autolabel.cli import main
main(sys.argv[1:])
"""

_CONFIG = """\
ingest:
  batch_size: 4
  workers: 1
detect:
  detector: fake
propose:
  prompt: red square
  batch_size: 2
  workers: 0
select:
  diversity: 0
  exemplar_similarity: false
export:
  size: 64
  min_size: 8
  workers: 2
"""


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


def _cmd(*args: object) -> list[str]:
    return [sys.executable, "-c", _CLI, *(str(a) for a in args)]


def _run(*args: object) -> subprocess.CompletedProcess:
    proc = subprocess.run(_cmd(*args), capture_output=True, text=True, env=_env(), timeout=300)
    return proc


def _descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        try:
            kids = Path(f"/proc/{p}/task/{p}/children").read_text().split()
        except OSError:
            continue
        out += [int(k) for k in kids]
        todo += [int(k) for k in kids]
    return out


def _running(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie (a dead child nobody reaped yet)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def _wait_gone(pids: list[int], timeout: float) -> list[int]:
    """The ``pids`` still running after ``timeout`` s (the death signal takes a moment under
    load)."""
    deadline = time.monotonic() + timeout
    alive = [p for p in pids if _running(p)]
    while alive and time.monotonic() < deadline:
        time.sleep(0.1)
        alive = [p for p in alive if _running(p)]
    return alive


def _kill_after(delay: float, *args: object) -> tuple[bool, list[int]]:
    """Start the command, SIGKILL it after ``delay`` s; (killed?, its children at the kill)."""
    proc = subprocess.Popen(
        _cmd(*args), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_env()
    )
    try:
        proc.wait(timeout=delay)
        return False, []
    except subprocess.TimeoutExpired:
        kids = _descendants(proc.pid)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        return True, kids


_SKIP_COLUMNS = {"added_at", "started_at", "finished_at", "created_at", "seconds", "lease_until"}
_PER_CALL = {"queued_new", "queued_updated", "updated", "withdrawn"}
"""Counts in ``select.last`` of what that one call changed (a re-run changes nothing)."""


def _no_timings(value: object) -> object:
    if isinstance(value, dict):
        return {k: _no_timings(v) for k, v in value.items() if k not in _SKIP_COLUMNS | _PER_CALL}
    if isinstance(value, list):
        return [_no_timings(v) for v in value]
    return value


def _dump(db: Path) -> dict[str, list[tuple]]:
    """Every table's rows in id order, without wall-clock columns."""
    conn = sqlite3.connect(db)
    try:
        out = {}
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for t in sorted(tables):
            cols = [r[1] for r in conn.execute(f"PRAGMA table_info({t})")]
            keep = [c for c in cols if c not in _SKIP_COLUMNS]
            if t == "runs":
                keep = [c for c in keep if c != "config"]  # the run's settings incl. paths
            rows = conn.execute(f"SELECT {', '.join(keep)} FROM {t} ORDER BY 1, 2").fetchall()
            if t == "settings":  # JSON summaries: timings and per-call counts left out
                rows = [(k, _no_timings(json.loads(v))) for k, v in rows]
            out[t] = rows
        return out
    finally:
        conn.close()


def _files(root: Path) -> dict[str, bytes]:
    out = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        if p.name.startswith("autolabel.db"):
            continue  # compared as rows
        if p.is_symlink():
            out[rel] = b"-> " + os.readlink(p).encode()
        elif p.is_file():
            out[rel] = p.read_bytes()
    return out


def _state(work: Path) -> tuple[dict, dict]:
    dbs = sorted(work.rglob("autolabel.db"))
    return {str(d.relative_to(work)): _dump(d) for d in dbs}, _files(work)


def _leftovers(work: Path) -> list[str]:
    bad = []
    for p in work.rglob("*"):
        n = p.name
        if n.startswith(".tmp-") or n.endswith(".tmp") or ".commit." in n or n.endswith("-wal"):
            bad.append(str(p.relative_to(work)))
    return bad


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("faults") / "photos"
    rng = random.Random(SEED)
    for i in range(N_IMAGES):
        w, h = rng.choice([(96, 72), (120, 90), (80, 80)])
        write_image(root / f"img_{i:03d}.png", (w, h), seed=i)
    return root


STAGES = {
    # stage: (commands before it, the stage's command) with WS / IN / OUT placeholders
    "ingest": ([], ["ingest", "WS", "IN"]),
    "propose": ([["ingest", "WS", "IN"]], ["propose", "WS", "--quiet"]),
    "select": ([["ingest", "WS", "IN"], ["propose", "WS", "--quiet"]], ["select", "WS"]),
    "export": (
        [["ingest", "WS", "IN"], ["propose", "WS", "--quiet"], ["select", "WS"]],
        ["export", "WS", "--out", "OUT", "--include", "all", "--version", "v1", "--quiet"],
    ),
    "autocrop": ([], ["autocrop", "IN", "OUT", "--detector", "fake", "--prompt", "red square"]),
}


def _fill(cmd: list[str], work: Path, photos: Path) -> list[str]:
    subst = {"WS": str(work / "ws"), "IN": str(photos), "OUT": str(work / "out")}
    return [subst.get(a, a) for a in cmd]


def _prepare(work: Path, photos: Path, before: list[list[str]]) -> None:
    from autolabel.store import Workspace

    shutil.rmtree(work, ignore_errors=True)
    for ws in (work / "ws", work / "out" / ".autolabel"):
        Workspace.create(ws).close()
        (ws / "config.yaml").write_text(_CONFIG, encoding="utf-8")
    for cmd in before:
        res = _run(*_fill(cmd, work, photos))
        assert res.returncode == 0, res.stderr[-3000:]


@pytest.mark.parametrize("stage", list(STAGES))
def test_kill_9_then_rerun_is_byte_identical(stage, photos, tmp_path):
    before, command = STAGES[stage]
    work, template = tmp_path / "work", tmp_path / "template"
    # the uninterrupted run, in the same folder (absolute paths are part of the output)
    _prepare(work, photos, before)
    shutil.copytree(work, template, symlinks=True)
    t0 = time.monotonic()
    ref = _run(*_fill(command, work, photos))
    duration = time.monotonic() - t0
    assert ref.returncode == 0, ref.stderr[-3000:]
    want = _state(work)
    rng = random.Random(f"{SEED}-{stage}")
    kills = 0
    attempts = 0
    while kills < KILLS[stage]:
        attempts += 1
        assert attempts <= 4 * KILLS[stage], "the command always finished before the kill"
        shutil.rmtree(work)
        shutil.copytree(template, work, symlinks=True)
        delay = rng.uniform(0.25, 0.95) * duration
        killed, children = _kill_after(delay, *_fill(command, work, photos))
        if not killed:
            continue
        kills += 1
        again = _run(*_fill(command, work, photos))
        assert again.returncode == 0 or (stage == "export" and "already exists" in again.stderr), (
            f"re-run after a kill at {delay:.2f}s: {again.stderr[-3000:]}"
        )
        got = _state(work)
        for db, tables in want[0].items():
            for table, rows in tables.items():
                diff = [(a, b) for a, b in zip(rows, got[0][db][table], strict=False) if a != b][:2]
                assert got[0][db][table] == rows, (
                    f"{db} {table} differs after a kill at {delay:.2f}s: {diff} "
                    f"({len(rows)} vs {len(got[0][db][table])} rows)"
                )
        assert sorted(got[1]) == sorted(want[1]), f"files differ after a kill at {delay:.2f}s"
        for name, data in want[1].items():
            assert got[1][name] == data, f"{name} differs after a kill at {delay:.2f}s"
        assert not _leftovers(work), _leftovers(work)
        alive = _wait_gone(children, timeout=15.0)
        assert not alive, f"processes outlived the killed command: {alive}"
