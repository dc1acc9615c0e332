"""Reliability of export (issue 15): unique crop names, no export into ingested folders,
bounded crop sizes, clean recovery after kill -9."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from autolabel.config import ExportConfig
from autolabel.errors import InputError
from autolabel.export import export_dataset, read_latest
from autolabel.export.plan import image_names
from autolabel.types import Label
from tests.support.labelled import labelled_workspace, write_image

REPO = Path(__file__).resolve().parents[1]


def _label(image_id: int, path: str) -> Label:
    return Label(
        proposal_id=image_id, image_id=image_id, image_path=path, image_sha256=None,
        width=100, height=100, box=(0, 0, 50, 50), phrase="x", caption=None, score=0.9,
        route="auto", source="auto", run_id=1, reviewer=None, decided_at=None,
    )  # fmt: skip


@pytest.mark.parametrize(
    "paths",
    [
        {18: "/p/sub/x.png", 19: "/p/x.png", 20: "/p/x-18.png"},
        {3: "/p/x-18.png", 18: "/p/sub/x.png", 40: "/p/x.png"},
        {1: "/p/a/X.png", 2: "/p/b/x.png", 3: "/p/x-1.png", 4: "/p/x-1-3.png"},
        {5: "/p/a b.png", 6: "/p/a_b.png", 7: "/p/a_b-5.png", 8: "/p/c/a b.png"},
    ],
)
def test_image_names_are_unique_even_when_a_stem_looks_disambiguated(paths):
    labels = [_label(i, p) for i, p in paths.items()]
    names = image_names(labels)
    folded = [n.casefold() for n in names.values()]
    assert len(set(folded)) == len(folded), names
    assert names == image_names(list(reversed(labels)))  # deterministic, order-free
    # a stem that is unique keeps its plain name
    stems = [Path(p).stem.replace(" ", "_") for p in paths.values()]
    for i, p in paths.items():
        stem = Path(p).stem.replace(" ", "_")
        if sum(s.casefold() == stem.casefold() for s in stems) == 1 and not any(
            n.casefold() == stem.casefold() for j, n in names.items() if j != i
        ):
            assert names[i] == stem


def test_export_crop_names_never_collide(tmp_path):
    # x.png and sub/x.png collide; x-<id of one of them>.png is the attacker's third file
    ws, photos, _ = labelled_workspace(tmp_path, ["x.png", "sub/x.png"])
    ids = sorted(int(r[0]) for r in ws.conn.execute("SELECT id FROM images"))
    write_image(photos / f"x-{ids[0]}.png", seed=7)
    write_image(photos / f"x-{ids[1]}.png", seed=8)
    from autolabel.ingest import ingest
    from autolabel.store import exports as store_exports
    from autolabel.store import runs as store_runs
    from tests.support.proposals import mock_proposals

    ingest(ws, [photos], workers=1)
    new = [int(r[0]) for r in ws.conn.execute("SELECT id FROM images WHERE id > ?", (ids[1],))]
    run = store_runs.create_run(
        ws, detector="grounding-dino", model="tiny", model_version="mv-1", refiner=None,
        prompt="red box", box_threshold=0.3, text_threshold=0.25,
    )  # fmt: skip
    store_runs.write_batch(ws, run, [(i, mock_proposals([(80, 60, 240, 180)])) for i in new])
    store_runs.finish_run(ws, run)
    store_exports.set_routes(ws, [int(r[0]) for r in ws.conn.execute("SELECT id FROM proposals")],
                             "auto")  # fmt: skip
    res = export_dataset(ws, tmp_path / "out", ExportConfig(workers=2, min_size=16))
    manifest = [
        json.loads(x) for x in (res.path / "meta" / "manifest.jsonl").read_text().splitlines()
    ]
    crops = [m["crop"] for m in manifest]
    assert len(crops) == 4 and len(set(crops)) == 4, crops
    assert res.counts["crops"] == 4 and len(list((res.path / "crops").iterdir())) == 4
    # every crop is the picture of its own source: same size as its own box, resized
    for m in manifest:
        assert str(m["image_id"]) in Path(m["crop"]).name or Path(m["source_path"]).stem in (
            Path(m["crop"]).name
        )
    assert len(list((res.path / "yolo" / "images").rglob("*.*"))) == 4
    ws.close()


def test_export_refuses_an_out_folder_inside_an_ingested_folder(tmp_path):
    ws, photos, _ = labelled_workspace(tmp_path, ["a.png"])
    with pytest.raises(InputError, match="inside the ingested folder"):
        export_dataset(ws, photos / "exports", ExportConfig(min_size=16))
    assert not (photos / "exports").exists()
    res = export_dataset(ws, tmp_path / "out", ExportConfig(min_size=16))
    assert res.counts["crops"] == 1
    ws.close()


def test_ingest_never_enters_an_export_folder(tmp_path):
    ws, _, _ = labelled_workspace(tmp_path, ["a.png"])
    out = tmp_path / "out"
    export_dataset(ws, out, ExportConfig(min_size=16))
    from autolabel.ingest import ingest

    # ingesting the parent of photos and out would otherwise pick up the crops
    report = ingest(ws, [tmp_path], workers=1)
    paths = [r[0] for r in ws.conn.execute("SELECT path FROM images")]
    assert not [p for p in paths if p.startswith(str(out))], paths
    assert report.added == 0
    ws.close()


@pytest.mark.parametrize("size", [4097, 100_000])
def test_export_size_above_max_size_is_refused(tmp_path, size):
    ws, _, _ = labelled_workspace(tmp_path, ["a.png"])
    with pytest.raises(InputError, match="max_size"):
        export_dataset(ws, tmp_path / "out", ExportConfig(size=size))
    ws.close()


def test_export_upscale_is_bounded_per_box(tmp_path):
    # 80x60 boxes at size 4096 would be upscaled 51x; max_upscale 8 lists them as too small
    ws, _, _ = labelled_workspace(tmp_path, ["a.png"])
    res = export_dataset(ws, tmp_path / "out", ExportConfig(size=4096, min_size=0))
    assert res.counts["crops"] == 0 and res.counts["too_small"] == 1
    row = json.loads((res.path / "meta" / "too_small.jsonl").read_text())
    assert row["max_upscale"] == 8.0
    res = export_dataset(
        ws, tmp_path / "out", ExportConfig(size=1024, min_size=0, max_upscale=16.0)
    )
    assert res.counts["crops"] == 1
    ws.close()


def _limit_memory() -> None:
    gib = 1 << 30
    resource.setrlimit(resource.RLIMIT_AS, (2 * gib, 2 * gib))


@pytest.mark.skipif(sys.platform != "linux", reason="RLIMIT_AS is Linux-only here")
def test_cli_export_huge_size_is_one_line_under_a_memory_limit(tmp_path):
    ws, _, _ = labelled_workspace(tmp_path, ["a.png"], size=(640, 480))
    ws.close()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-m", "autolabel", "export", str(tmp_path / "ws"), "--out",
         str(tmp_path / "out"), "--size", "100000", "--min-size", "0"],
        capture_output=True, text=True, env=env, preexec_fn=_limit_memory, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "max_size" in lines[0], proc.stderr[-2000:]


_BLOCKED_WORKERS = """
import os, sys
from autolabel.export.crops import ImageTask, run_tasks
fifos = sys.argv[1:]
tasks = [ImageTask(path=f, width=10, height=10) for f in fifos]
run_tasks(tasks, workers=2)  # every worker blocks opening its FIFO: nobody writes to it
"""


@pytest.mark.skipif(sys.platform != "linux", reason="FIFOs and prctl: Linux")
def test_export_workers_die_with_a_killed_parent(tmp_path):
    import signal
    import time

    import psutil

    fifos = []
    for i in range(4):
        f = tmp_path / f"blocked{i}.png"
        os.mkfifo(f)
        fifos.append(str(f))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    parent = subprocess.Popen([sys.executable, "-c", _BLOCKED_WORKERS, *fifos], env=env)
    workers: list = []
    try:
        proc = psutil.Process(parent.pid)
        deadline = time.time() + 30
        while time.time() < deadline and len(workers) < 2:
            workers = [c for c in proc.children() if c.pid != parent.pid]
            time.sleep(0.05)
        assert len(workers) >= 2, "the pool did not start"
        time.sleep(0.3)  # the workers are blocked in open() now
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(timeout=10)
        _, alive = psutil.wait_procs(workers, timeout=5)
        assert not alive, f"workers outlived their parent: {[p.pid for p in alive]}"
    finally:  # never leave a process behind, whatever failed
        for p in [*workers, psutil.Process(parent.pid) if parent.poll() is None else None]:
            if p is not None:
                try:
                    p.kill()
                except psutil.NoSuchProcess:
                    pass


_KILL_AT_RECORD = """
import os, signal, sys
from autolabel.config import ExportConfig
from autolabel.export import export_dataset, read_latest
from autolabel.store import Workspace
from autolabel.store import exports as store
store.record_export = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)
with Workspace.open(sys.argv[1]) as ws:
    export_dataset(ws, sys.argv[2], ExportConfig(min_size=16, version="v1"))
"""


def _tree(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_kill_between_rename_and_record_is_adopted_by_the_next_run(tmp_path):
    ws, _, _ = labelled_workspace(tmp_path, ["a.png", "b.png"])
    reference = export_dataset(ws, tmp_path / "ref", ExportConfig(min_size=16, version="v1"))
    ws.close()
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-c", _KILL_AT_RECORD, str(tmp_path / "ws"), str(out)],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == -9, proc.stderr[-2000:]
    assert (out / "v1" / "export.json").is_file()  # renamed in, but never recorded
    assert list(out.glob(".v1.commit.*.json"))
    # a LATEST temp file of another killed export (dead pid) is a leftover too
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()  # fmt: skip
    (out / f".LATEST.{dead}.tmp").write_text("v9\n")
    from autolabel.store import Workspace
    from autolabel.store import exports as store

    with Workspace.open(tmp_path / "ws") as ws2:
        again = export_dataset(ws2, out, ExportConfig(min_size=16, version="v1"))
        assert again.version == "v1"  # the re-run finished the killed export
        assert [e["version"] for e in store.list_exports(ws2) if e["out_dir"] == str(out)] == ["v1"]
        assert sorted(p.name for p in out.iterdir()) == ["LATEST", "v1"]
        assert _tree(out / "v1") == _tree(reference.path)
        assert again.counts == reference.counts
        # and the adopted version counts for --since last: nothing new since
        nxt = export_dataset(ws2, out, ExportConfig(min_size=16), since="last")
        assert nxt.counts["labels"] == 0 and read_latest(out) == nxt.version
