"""The whole loop: `autolabel demo`, `autolabel autocrop` (re-run, resume after kill -9), report."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from autolabel.pipeline import autocrop
from autolabel.store import Workspace
from autolabel.synth import make_screenshot, make_seed_set

FAST_EXEMPLAR = (
    "detect:\n  exemplar_scale_step: 1.15\n  exemplar_coarse_side: 240\nexport:\n  min_size: 32\n"
)


def _cli(*args: str, **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", **kw.pop("env", {})}
    return subprocess.run(
        [sys.executable, "-m", "autolabel", *args],
        capture_output=True,
        text=True,
        env=env,
        **kw,
    )


def _screenshots(folder: Path, n: int, seed: int, start: int = 0) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(start, start + n):
        img, _box, _ = make_screenshot(rng, size=(180, 320))
        img.save(folder / f"img_{i:03d}.jpg", quality=90)


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def _swift_rows(version: Path) -> list[dict]:
    """swift.jsonl rows of both splits (train at the top, val in val/)."""
    val = version / "val" / "swift.jsonl"
    return _jsonl(version / "swift.jsonl") + (_jsonl(val) if val.exists() else [])


def _prepare_workspace(path: Path, config: str) -> None:
    ws = Workspace.create(path)
    ws.config_path.write_text(config, encoding="utf-8")
    ws.close()


@pytest.mark.slow
def test_demo_builds_a_consistent_workspace_export_and_report(tmp_path: Path):
    root = tmp_path / "demo"
    res = _cli(
        "demo",
        *(str(root), "--images", "5", "--seed-crops", "3", "--tiny-images", "2", "--json"),
        env={"HF_HUB_CACHE": str(tmp_path / "empty-cache")},  # no Grounding DINO weights
    )
    assert res.returncode == 0, res.stderr[-3000:]
    summary = json.loads(res.stdout)
    stages = [s["stage"] for s in summary["stages"]]
    for stage in ("ingest", "seed add", "seed prompts", "seed calibrate", "select", "export"):
        assert stage in stages
    # no Grounding DINO weights here: every image goes through the weight-free regions detector
    assert any("grounding-dino" in s for s in stages) and any("regions" in s for s in stages)
    ws_path, export = Path(summary["workspace"]), Path(summary["export"])
    with Workspace.open(ws_path) as ws:
        n_images = ws.conn.execute("SELECT COUNT(*) FROM images WHERE status='ok'").fetchone()[0]
        n_seed = ws.conn.execute("SELECT COUNT(*) FROM seed_items").fetchone()[0]
        runs = ws.conn.execute(
            "SELECT detector, n_images FROM runs WHERE kind = 'propose' ORDER BY id"
        ).fetchall()
    assert n_images >= 5 and n_seed == 4
    assert [r[0] for r in runs] == ["grounding-dino", "regions"]
    # export: every swift row points at a crop that exists; manifest has one row per label
    rows = _swift_rows(export)
    for row in rows:
        assert (export / row["image"]).is_file() and row["text"]
    manifest = _jsonl(export / "meta" / "manifest.jsonl")
    assert len({m["proposal_id"] for m in manifest}) == len(manifest)
    assert len([m for m in manifest if m["crop"]]) == len(rows)
    crops = list((export / "crops").iterdir()) if (export / "crops").exists() else []
    assert len(crops) == len(rows)
    # report: HTML and JSON twin agree with the database
    report = json.loads((ws_path / "report.json").read_text(encoding="utf-8"))
    assert report["status"]["images"]["ok"] == n_images
    assert report["status"]["seed_items"]["total"] == n_seed
    html = (ws_path / "report.html").read_text(encoding="utf-8")
    assert "Estimated precision" in html and "Propose runs" in html
    # running the demo again into the same folder is a clean error, not a traceback
    again = _cli("demo", str(root), "--images", "2")
    assert again.returncode == 2 and "earlier demo" in again.stderr
    assert "Traceback" not in again.stderr


@pytest.mark.slow
def test_autocrop_with_seed_exemplars_then_only_new_images(tmp_path: Path):
    seed_dir = tmp_path / "seed"
    make_seed_set(seed_dir, 3, seed=3, size=(180, 320))
    in_dir, out_dir = tmp_path / "in", tmp_path / "out"
    # the new images show the seed originals' products again (copies of the originals)
    in_dir.mkdir()
    for p in sorted((seed_dir / "originals").iterdir()):
        (in_dir / f"new_{p.name}").write_bytes(p.read_bytes())
    _screenshots(in_dir, 2, seed=5)
    _prepare_workspace(out_dir / ".autolabel", FAST_EXEMPLAR)
    kwargs = dict(
        seed_crops=seed_dir / "crops",
        originals=seed_dir / "originals",
        captions=seed_dir / "captions.jsonl",
        detector="exemplar",
        target_precision=0.5,
        size=64,
    )
    first = autocrop(in_dir, out_dir, **kwargs)
    # 5 inputs; the seed originals are byte-identical to 3 of them, so they are duplicates
    assert first["images"] == 5
    assert first["export"] is not None and first["crops"] > 0
    v1 = Path(first["export"])
    rows = _swift_rows(v1)
    assert len(rows) == first["crops"] == len(list((v1 / "crops").iterdir()))
    manifest = _jsonl(v1 / "meta" / "manifest.jsonl")
    small = v1 / "meta" / "too_small.jsonl"
    too_small = _jsonl(small) if small.exists() else []
    assert len([m for m in manifest if m["crop"]]) == len(rows)
    assert len(manifest) == len(rows) + len(too_small)
    # the seed originals are labelled by their seed boxes (issue 19): exported as "seed"
    assert any(m["source"] == "seed" for m in manifest)

    _screenshots(in_dir, 2, seed=9, start=10)
    second = autocrop(in_dir, out_dir, **kwargs)
    assert second["new_images"] == 2 and second["proposed"] == 2
    assert second["images"] == 7


def _tiny_args(tiny: dict, in_dir: Path, out_dir: Path) -> list[str]:
    return [
        "autocrop",
        str(in_dir),
        str(out_dir),
        "--prompt",
        "red square",
        "--detector",
        "grounding-dino",
        "--model",
        str(tiny["grounding-dino"]),
        "--device",
        "cpu",
        "--batch-size",
        "2",
        "--target-precision",
        "0.05",
        "--size",
        "64",
    ]


def _tree(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and ".autolabel" not in p.parts
    }


@pytest.mark.slow
def test_autocrop_kill_9_then_rerun_gives_the_same_out_dir(tmp_path: Path, tiny_models):
    in_dir = tmp_path / "in"
    _screenshots(in_dir, 24, seed=1)
    config = "detect:\n  max_size: 128\nexport:\n  min_size: 8\n"
    ref_out, out = tmp_path / "ref", tmp_path / "out"
    for o in (ref_out, out):
        _prepare_workspace(o / ".autolabel", config)
    ref = _cli(*_tiny_args(tiny_models, in_dir, ref_out), "--json")
    assert ref.returncode == 0, ref.stderr[-3000:]
    ref_summary = json.loads(ref.stdout)
    assert ref_summary["proposed"] == 24

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "autolabel.cli", *_tiny_args(tiny_models, in_dir, out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    db = out / ".autolabel" / "autolabel.db"
    deadline = time.monotonic() + 240
    done = 0
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with sqlite3.connect(db, timeout=1) as c:
                done = c.execute("SELECT COUNT(*) FROM run_images").fetchone()[0]
        except sqlite3.Error:
            done = 0
        if done >= 6:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "autocrop finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    # what the killed run committed (a batch may have landed between the poll and the kill)
    with sqlite3.connect(db, timeout=5) as c:
        committed = c.execute("SELECT COUNT(*) FROM run_images").fetchone()[0]
    assert 0 < done <= committed < 24

    rerun = _cli(*_tiny_args(tiny_models, in_dir, out), "--json")
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    got = json.loads(rerun.stdout)
    assert got["proposed"] == 24 - committed  # exactly the images the killed run left

    ref_tree, tree = _tree(ref_out), _tree(out)
    assert sorted(ref_tree) == sorted(tree)
    for name, data in ref_tree.items():
        if name.endswith("manifest.jsonl"):
            # the resumed propose continues the killed run's row: run ids match too
            assert tree[name] == data, name
        elif name.endswith("export.json"):
            continue  # records the export's own settings, including the workspace path
        else:
            assert tree[name] == data, name


def test_autocrop_refuses_out_dir_inside_in_dir(tmp_path: Path):
    in_dir = tmp_path / "in"
    _screenshots(in_dir, 1, seed=0)
    res = _cli("autocrop", str(in_dir), str(in_dir / "out"), "--prompt", "x")
    assert res.returncode == 2 and "inside IN_DIR" in res.stderr
    missing = _cli("autocrop", str(tmp_path / "nope"), str(tmp_path / "o"), "--prompt", "x")
    assert missing.returncode == 2 and "no such folder" in missing.stderr


@pytest.mark.slow
def test_autocrop_review_serves_then_exports_the_reviewed_boxes(tmp_path: Path):
    import httpx

    seed_dir = tmp_path / "seed"
    make_seed_set(seed_dir, 2, seed=3, size=(180, 320))
    in_dir, out_dir = tmp_path / "in", tmp_path / "out"
    in_dir.mkdir()
    for p in sorted((seed_dir / "originals").iterdir()):
        (in_dir / f"new_{p.name}").write_bytes(p.read_bytes())
    _prepare_workspace(out_dir / ".autolabel", FAST_EXEMPLAR + "review:\n  port: 0\n")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "autolabel.cli", "autocrop", str(in_dir), str(out_dir),
            "--seed", str(seed_dir / "crops"), "--originals", str(seed_dir / "originals"),
            "--captions", str(seed_dir / "captions.jsonl"), "--detector", "exemplar",
            "--target-precision", "0.999", "--size", "64", "--review",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )  # fmt: skip
    url = None
    lines = []
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if line.startswith("review app: "):
            url = line.split()[2]
            break
    assert url, "".join(lines)[-3000:]
    try:
        head = {"X-Reviewer": "ann"}
        item = httpx.post(url + "api/next", headers=head, timeout=30).json()["item"]
        assert item is not None
        r = httpx.post(
            url + "api/decide",
            headers=head,
            json={"item_id": item["item_id"], "action": "accept"},
            timeout=30,
        )
        assert r.status_code == 200, r.text
    finally:
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, rest[-3000:]
    # v1: what autocrop accepted on its own (only the seed boxes at this precision target);
    # v2: after review
    versions = sorted(p.name for p in out_dir.iterdir() if p.name.startswith("v"))
    assert versions == ["v1", "v2"]
    assert {m["source"] for m in _jsonl(out_dir / "v1" / "meta" / "manifest.jsonl")} <= {"seed"}
    latest = out_dir / (out_dir / "LATEST").read_text().strip()
    assert latest.name == "v2"
    manifest = _jsonl(latest / "meta" / "manifest.jsonl")
    reviewed = [m for m in manifest if m["source"] == "reviewed"]
    assert [m["proposal_id"] for m in reviewed] == [item["proposal_id"]]
    assert reviewed[0]["reviewer"] == "ann"
