"""The whole-autocrop scale benchmark (benchmarks/bench_autocrop_scale.py): its helpers, and
its kill-at-any-point mode at a tiny size."""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "benchmarks" / "bench_autocrop_scale.py"


def load_bench():
    spec = importlib.util.spec_from_file_location("bench_autocrop_scale", BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_source_size_and_crop_size():
    b = load_bench()
    assert b.parse_size("1080x2340") == (1080, 2340)
    assert b.parse_size("180X320") == (180, 320)
    for bad in ("1080", "axb", "32x320"):
        with pytest.raises(argparse.ArgumentTypeError):
            b.parse_size(bad)
    assert b.crop_size((180, 320)) == 128
    assert b.crop_size((1080, 1920)) == 448


def test_kill_moments_are_spread_over_the_run():
    b = load_bench()
    moments = b.kill_moments(100.0, 4, seed=3)
    assert len(moments) == 4
    for i, t in enumerate(moments):  # one in each quarter, never at its very edge
        assert 25 * i < t < 25 * (i + 1)
    assert moments == b.kill_moments(100.0, 4, seed=3)
    assert moments != b.kill_moments(100.0, 4, seed=4)


def test_stage_at_kill_reads_the_stage_log():
    b = load_bench()
    log = [
        "[ingest] ...",
        "[ingest] 30 new images (0 errors) (0.1s)",
        "[seed add] ...",
        "[seed add] 8 hand crops: 8 located (1.9s)",
        "[propose] trained regions-v1 on 8 seed boxes in 0.8s",
    ]
    assert b.stage_at_kill([]) == "before ingest"
    assert b.stage_at_kill(log[:1]) == "ingest"
    assert b.stage_at_kill(log[:3]) == "seed add"
    assert b.stage_at_kill(log[:4]) == "after seed add"
    assert b.stage_at_kill(log) == "after seed add"  # an info line is no stage start
    assert b.stage_at_kill([*log, "[propose] ..."]) == "propose"


def test_tree_digest_ignores_only_the_decision_time(tmp_path: Path):
    b = load_bench()
    rows = [{"proposal_id": 1, "decided_at": "2026-01-01T00:00:00"}, {"proposal_id": 2}]
    for name, when in (("a", "2026-01-01T00:00:00"), ("b", "2027-05-05T00:00:00")):
        (tmp_path / name / "v1" / "meta").mkdir(parents=True)
        rows[0]["decided_at"] = when
        text = "".join(json.dumps(r) + "\n" for r in rows)
        (tmp_path / name / "v1" / "meta" / "manifest.jsonl").write_text(text)
        (tmp_path / name / "v1" / "x.png").write_bytes(b"\x89PNG" + name.encode())
    a, c = b.tree_digest(tmp_path / "a"), b.tree_digest(tmp_path / "b")
    assert b.differences(a, c) == ["v1/x.png"]
    (tmp_path / "b" / "v1" / "x.png").write_bytes(b"\x89PNGa")
    (tmp_path / "b" / "LATEST").write_text("v1\n")
    assert b.differences(a, b.tree_digest(tmp_path / "b")) == ["LATEST"]


def test_projection_fits_a_line_through_both_sizes():
    b = load_bench()
    assert b.fit(100, 3.0, 300, 7.0) == (0.02, 1.0)  # 1 s fixed + 20 ms per image
    assert b.fit(100, 5.0, 300, 3.0) == (0.01, 0.0)  # noise: the big size's plain rate
    lo = {"images": 100, "stages": [{"stage": "ingest", "seconds": 3.0}]}
    big = {
        "images": 300,
        "stages": [
            {"stage": "ingest", "seconds": 7.0},
            {"stage": "seed add", "seconds": 36.0},  # fixed: the seed set does not grow
            {"stage": "propose", "seconds": 30.0},  # no small-size time: 0.1 s per image
        ],
    }
    proj = b.projection(lo, big, ray_workers=10, n=100_000)
    assert proj["one_machine_h"] == round((1 + 2000 + 36 + 10_000) / 3600, 2)
    assert proj["ray_10_workers_h"] == round((1 + 2000 + 36 + 1000) / 3600, 2)


_STAGE_RSS_CHILD = """
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("bench", sys.argv[1])
b = importlib.util.module_from_spec(spec)
spec.loader.exec_module(b)
rss = b.StageRss(every=0.005)
rss.line("[ingest] ...")
rss.line("[ingest] 3 new images (0.1s)")
rss.line("[select] ...")
block = bytearray(64 << 20)  # 64 MB touched while select runs
block[::4096] = b"x" * len(block[::4096])
rss.sample()
rss.line("[select] 3 proposals (0.1s)")
del block
rss.line("[export] ...")
peaks = rss.stop()
print(json.dumps({"peaks": peaks, "again": rss.stop()}))
"""


def test_stage_rss_books_memory_to_the_stage_that_used_it():
    # a fresh process: in a long-lived one the block may reuse freed memory (no RSS growth)
    proc = subprocess.run(
        [sys.executable, "-c", _STAGE_RSS_CHILD, str(BENCH)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    peaks = out["peaks"]
    assert set(peaks) >= {"ingest", "select", "export"}
    assert peaks["select"] >= peaks["ingest"] + 50
    assert out["again"] == peaks  # stopping twice is harmless


@pytest.mark.slow
def test_kill_mode_passes_at_a_tiny_size_and_reuses_a_kept_reference(tmp_path: Path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    keep = tmp_path / "kept"

    def bench(*args: str, into: Path = keep) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, str(BENCH), "--kill", *args, "--keep", str(into)],
            capture_output=True, text=True, env=env, timeout=600,
        )  # fmt: skip

    proc = bench("2", "--images", "30", "--seed", "1")
    lines = [line for line in proc.stdout.splitlines() if line.startswith("kill ")]
    assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]
    assert len(lines) == 2 and all(": PASS" in line for line in lines), proc.stdout
    assert "reusing" not in proc.stdout and (keep / "ref.json").exists()
    # a later run kills at other moments against the kept uninterrupted run
    again = bench("1", "--images", "30", "--seed", "5")
    assert again.returncode == 0, again.stdout + again.stderr[-2000:]
    assert "reusing the uninterrupted run" in again.stdout
    assert [line for line in again.stdout.splitlines() if line.startswith("kill 1 ")]
    assert ": PASS" in again.stdout
    # another size does not compare against it
    other = bench("1", "--images", "31")
    assert other.returncode != 0 and "holds a run of 30 images" in other.stderr
    # the uninterrupted run beside the killed one, kills within a given span
    beside = bench("1", "--images", "30", "--kill-within", "8", into=tmp_path / "beside")
    assert beside.returncode == 0, beside.stdout + beside.stderr[-2000:]
    assert "reusing" not in beside.stdout and (tmp_path / "beside" / "ref.json").exists()
    assert [line for line in beside.stdout.splitlines() if line.startswith("kill 1 at")]
    assert ": PASS" in beside.stdout
    ref = json.loads((tmp_path / "beside" / "ref.json").read_text())
    assert {"ingest", "propose", "select", "export"} <= set(ref["rss_by_stage_mb"])
    assert all(ref["rss_by_stage_mb"][k] > 50 for k in ("ingest", "propose", "select", "export"))
