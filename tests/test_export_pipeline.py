"""End-to-end export: every format round-trips, provenance, determinism, atomicity, CLI."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from autolabel.config import ExportConfig, load_config
from autolabel.errors import ConfigError, ConflictError, InputError, NotFoundError
from autolabel.export import export_dataset, read_latest
from autolabel.export.geometry import ORIENTATION_OP, from_norm1000, from_yolo
from autolabel.imageio import open_image
from autolabel.store import exports as store
from autolabel.store.db import utcnow
from autolabel.store.labels import iter_labels
from tests.support.proposals import mock_proposals, store_finished_run

RED = (230, 20, 20)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@functools.lru_cache(maxsize=8)
def _photo(w: int, h: int) -> np.ndarray:
    from skimage import data

    return np.asarray(Image.fromarray(data.coffee()).resize((w, h), Image.Resampling.BILINEAR))


def _background(w: int, h: int, seed: int) -> np.ndarray:
    arr = _photo(w, h).copy()
    arr[..., seed % 3] //= 2 + seed // 3  # distinct files for distinct seeds
    return arr


def _save(path: Path, corrected: np.ndarray, orientation: int = 1) -> None:
    """Save ``corrected`` so that the EXIF orientation turns the stored pixels back into it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(corrected)
    op = ORIENTATION_OP[orientation]
    inverse = {"ROTATE_90": "ROTATE_270", "ROTATE_270": "ROTATE_90"}.get(op, op)
    raw = im if inverse is None else im.transpose(getattr(Image.Transpose, inverse))
    if path.suffix == ".png":
        raw.save(path)
        return
    exif = Image.Exif()
    if orientation != 1:
        exif[0x0112] = orientation
    raw.save(path, quality=92, exif=exif.tobytes())


def _build(root: Path, *, n_extra: int = 0, extra_size: tuple[int, int] = (640, 480)):
    """A workspace with 4 images (one EXIF-rotated), a run, routes and decisions.

    Returns ``(ws, info)`` where info maps names to proposal ids and true boxes.
    """
    from autolabel.ingest import ingest
    from autolabel.store import Workspace

    photos = root / "photos"
    boxes = {}
    # a.jpg: two red squares
    a = _background(800, 600, 0)
    a[100:300, 150:400] = RED
    a[350:550, 500:760] = RED
    _save(photos / "a.jpg", a)
    boxes["a"] = [(150, 100, 400, 300), (500, 350, 760, 550)]
    # rot.jpg: corrected 480x640 (portrait), stored landscape with orientation 6
    r = _background(480, 640, 1)
    r[300:600, 60:300] = RED
    _save(photos / "rot.jpg", r, orientation=6)
    boxes["rot"] = [(60, 300, 300, 600)]
    # small.png: one box too small to crop at min_size 224
    s = _background(300, 200, 2)
    s[50:150, 40:140] = RED
    _save(photos / "small.png", s)
    boxes["small"] = [(40, 50, 140, 150)]
    # sub/a.jpg: same stem as a.jpg
    b = _background(640, 480, 3)
    b[40:440, 100:500] = RED
    _save(photos / "sub" / "a.jpg", b)
    boxes["sub_a"] = [(100, 40, 500, 440)]
    for i in range(n_extra):
        e = _background(*extra_size, i)
        w, h = extra_size
        e[h // 4 : 3 * h // 4, w // 4 : 3 * w // 4] = RED
        _save(photos / "extra" / f"e{i:04d}.jpg", e)
        boxes[f"e{i:04d}"] = [(w // 4, h // 4, 3 * w // 4, 3 * h // 4)]

    ws = Workspace.create(root / "ws")
    ingest(ws, [photos], workers=1)
    path_ids = {r["path"]: r["id"] for r in ws.conn.execute("SELECT id, path FROM images")}
    results = []
    for key, bxs in sorted(boxes.items()):
        rel = {"sub_a": "sub/a.jpg", "small": "small.png"}.get(key, f"{key}.jpg")
        if key.startswith("e") and key[1:].isdigit():
            rel = f"extra/{key}.jpg"
        image_id = path_ids[str((photos / rel).resolve())]
        results.append((image_id, mock_proposals(bxs, phrase=["red box"] * len(bxs))))
    run = store_finished_run(
        ws,
        results,
        detector="grounding-dino",
        model="tiny",
        model_version="mv-123",
        refiner=None,
        prompt="red box",
        box_threshold=0.3,
        text_threshold=0.25,
    )
    pids = {}
    for key in sorted(boxes):
        rel = {"sub_a": "sub/a.jpg", "small": "small.png"}.get(key, f"{key}.jpg")
        if key.startswith("e") and key[1:].isdigit():
            rel = f"extra/{key}.jpg"
        image_id = path_ids[str((photos / rel).resolve())]
        pids[key] = [
            r[0]
            for r in ws.conn.execute(
                "SELECT id FROM proposals WHERE image_id = ? ORDER BY id", (image_id,)
            )
        ]
    # routes: everything auto except a's second box (reviewed + adjusted + captioned)
    everything = [p for v in pids.values() for p in v]
    store.set_routes(ws, everything, "auto")
    store.set_routes(ws, [pids["a"][1]], "review")
    return ws, {"boxes": boxes, "pids": pids, "photos": photos, "run": run}


@pytest.fixture
def built(tmp_path):
    ws, info = _build(tmp_path)
    pids = info["pids"]
    # a[1]: adjusted by a reviewer (slightly moved box) and captioned
    store.add_decision(ws, pids["a"][1], "adjust", reviewer="ann", box=(502, 352, 758, 548))
    store.add_decision(ws, pids["a"][1], "caption", reviewer="ann", caption="a red tile")
    # seed caption for a[0] (IoU ~ 0.9 with the box)
    image_a = ws.conn.execute("SELECT image_id FROM proposals WHERE id=?", (pids["a"][0],))
    with ws.transaction() as c:
        c.execute(
            "INSERT INTO seed_items(crop_path, image_id, x0, y0, x1, y1, status, caption, "
            "phrase, added_at) VALUES (?,?,?,?,?,?,?,?,?,?)",
            ("/seed/c.png", image_a.fetchone()[0], 155, 105, 400, 300, "located", "seed cap",
             "red box", utcnow()),
        )  # fmt: skip
    yield ws, info
    ws.close()


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _tree(root: Path) -> dict[str, bytes]:
    out = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        if p.is_symlink():
            out[rel] = b"->" + os.readlink(p).encode()
        elif p.is_file():
            out[rel] = p.read_bytes()
    return out


def test_export_all_formats_round_trip(built, tmp_path):
    ws, info = built
    photos = info["photos"]
    originals = {p: _sha(p) for p in photos.rglob("*.*")}
    res = export_dataset(ws, tmp_path / "out", ExportConfig(workers=2, val_fraction=0))
    v = res.path
    assert res.version == "v1" and read_latest(tmp_path / "out") == "v1"
    assert res.counts == {
        "images": 4, "labels": 5, "crops": 4, "too_small": 1, "skipped": 0,
        "train_images": 4, "val_images": 0,
    }  # fmt: skip
    # originals untouched, and their hashes are in the manifest
    assert {p: _sha(p) for p in photos.rglob("*.*")} == originals
    manifest = _read_jsonl(v / "meta" / "manifest.jsonl")
    # every original is in the bundle (images/), upright: the EXIF-6 one re-encoded
    source_of = {m["file"]: m["source_path"] for m in manifest}
    assert sorted(source_of) == sorted(f"images/{p.name}" for p in (v / "images").iterdir())
    for rel, src in source_of.items():
        bundle = Image.open(v / rel)
        assert bundle.size == open_image(src).size and bundle.getexif().get(0x0112, 1) == 1
    assert {m["source_sha256"] for m in manifest} == set(originals.values())
    by_pid = {m["proposal_id"]: m for m in manifest}
    adjusted = by_pid[info["pids"]["a"][1]]
    assert adjusted["source"] == "reviewed" and adjusted["reviewer"] == "ann"
    assert adjusted["box"] == [502, 352, 758, 548] and adjusted["decided_at"]
    assert adjusted["caption"] == "a red tile" and adjusted["caption_source"] == "reviewed"
    # image a is a seed original: its seed box is the label (issue 19), not a[0]
    assert info["pids"]["a"][0] not in by_pid
    [seeded] = [m for m in manifest if m["source"] == "seed"]
    assert (seeded["caption"], seeded["caption_source"]) == ("seed cap", "seed")
    assert seeded["box"] == [155, 105, 400, 300] and seeded["reviewer"] is None
    for m in manifest:
        if m["source"] == "seed":
            continue
        assert m["model_version"] == "mv-123" and m["prompt"] == "red box"
        assert m["box_threshold"] == pytest.approx(0.3) and m["export_version"] == "v1"
        assert m["route"] in ("auto", "review")
    small = by_pid[info["pids"]["small"][0]]
    assert small["crop"] is None and small["status"] == "too-small"
    assert _read_jsonl(v / "meta" / "too_small.jsonl")[0]["proposal_id"] == small["proposal_id"]

    # crops: names, size, content is the red square (EXIF-rotated one included)
    crops = sorted(p.name for p in (v / "crops").iterdir())
    ids = {
        Path(r[1]).relative_to(photos).as_posix(): r[0]
        for r in ws.conn.execute("SELECT id, path FROM images")
    }
    a, sub_a = ids["a.jpg"], ids["sub/a.jpg"]
    assert crops == sorted(
        [f"a-{a}_448_v1_1.png", f"a-{a}_448_v1_2.png", f"a-{sub_a}_448_v1.png", "rot_448_v1.png"]
    )
    for name in crops:
        arr = np.asarray(Image.open(v / "crops" / name), np.float32)
        assert max(arr.shape[:2]) == 448
        assert np.abs(arr - RED).mean() < 12, name
    rot = np.asarray(Image.open(v / "crops" / "rot_448_v1.png"))
    assert rot.shape == (448, 358, 3)  # portrait box 240x300 in the corrected image

    # swift rows
    swift = _read_jsonl(v / "swift.jsonl")
    assert len(swift) == 4
    for row in swift:
        assert set(row) == {"image", "text"} and (v / row["image"]).is_file()
    assert {"seed cap", "a red tile", "red box"} == {r["text"] for r in swift}
    msgs = _read_jsonl(v / "swift_messages.jsonl")
    for row in msgs:
        user, assistant = row["messages"]
        assert user["role"] == "user" and user["content"].startswith("<image>")
        assert user["content"].count("<image>") == len(row["images"]) == 1
        assert assistant["role"] == "assistant" and assistant["content"]

    # Qwen-VL v1 grounding rows: coordinates within 1/1000 of the label boxes
    labels = {(lb.image_path, tuple(round(x) for x in lb.box)) for lb in iter_labels(ws)}
    sizes = {str(p): open_image(p).size for p in photos.rglob("*.*")}
    import re

    n_boxes = 0
    for row in _read_jsonl(v / "qwen_vl" / "grounding.jsonl"):
        path = source_of[row["images"][0]]
        w, h = sizes[path]
        answer = row["messages"][1]["content"]
        for phrase, *q in re.findall(
            r"<ref>(.+?)</ref><box>\((\d+),(\d+)\),\((\d+),(\d+)\)</box>", answer
        ):
            assert phrase == "red box"
            back = from_norm1000(tuple(int(x) for x in q), w, h)
            match = [b for p, b in labels if p == path]
            err = min(np.abs((np.array(back) - b) / [w, h, w, h]).max() for b in match)
            assert err <= 1 / 1000
            n_boxes += 1
    assert n_boxes == 5
    # ms-swift grounding rows: placeholders + objects in real pixels
    objs = _read_jsonl(v / "swift_grounding.jsonl")
    assert sum(len(row["objects"]["bbox"]) for row in objs) == 5
    for row in objs:
        o = row["objects"]
        assert o["bbox_type"] == "real" and len(o["ref"]) == 1
        assert row["messages"][0]["content"].count("<ref-object>") == len(o["ref"])
        assert row["messages"][1]["content"].count("<bbox>") == len(o["bbox"])
        assert {tuple(round(x) for x in b) for b in o["bbox"]} <= {
            b for p, b in labels if p == source_of[row["images"][0]]
        }
    assert not (v / "swift_objects.jsonl").exists()  # one file, not two copies of the rows

    # COCO: loads in pycocotools, and COCOeval of the labels against themselves gives AP 1
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt = COCO(str(v / "coco.json"))
    assert len(gt.getAnnIds()) == 5 and len(gt.getImgIds()) == 4
    dets = [
        {"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 1}
        for a in gt.dataset["annotations"]
    ]
    ev = COCOeval(gt, gt.loadRes(dets), "bbox")
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    assert ev.stats[0] == pytest.approx(1.0)
    for ann in gt.dataset["annotations"]:
        img = gt.imgs[ann["image_id"]]
        x, y, bw, bh = ann["bbox"]
        box = (round(x), round(y), round(x + bw), round(y + bh))
        assert (source_of[img["file_name"]], box) in labels

    # YOLO: boxes convert back within 1 px; images are hard links to the bundle's images/
    import yaml

    data = yaml.safe_load((v / "yolo" / "data.yaml").read_text())
    assert data["names"] == {0: "red box"} and data["train"] == "images/train"
    n_yolo = 0
    for txt in sorted((v / "yolo" / "labels" / "train").glob("*.txt")):
        [img] = list((v / "yolo" / "images" / "train").glob(txt.stem + ".*"))
        assert not img.is_symlink() and os.path.samefile(img, v / "images" / img.name)
        target = source_of[f"images/{img.name}"]
        w, h = sizes[target]
        for line in txt.read_text().splitlines():
            _cls, *vals = line.split()
            back = from_yolo(tuple(float(x) for x in vals), w, h)
            match = [b for p, b in labels if p == target]
            assert min(np.abs(np.array(back) - b).max() for b in match) <= 1
            n_yolo += 1
    assert n_yolo == 5

    # Label Studio: percent boxes come back to pixels; URLs relative to the version folder;
    # a.jpg has an auto and a reviewed box: no (partial) annotation, reviewer kept in meta
    tasks = json.loads((v / "labelstudio.json").read_text())
    assert len(tasks) == 4
    for task in tasks:
        path = task["meta"]["path"]
        rel = next(f for f, src in source_of.items() if src == path)
        assert task["data"]["image"] == "/data/local-files/?d=" + rel
        for pred in task["predictions"]:
            assert pred["model_version"] in ("mv-123", "seed")  # seed boxes: run "seed"
            for r in pred["result"]:
                val = r["value"]
                w, h = r["original_width"], r["original_height"]
                back = (val["x"] * w / 100, val["y"] * h / 100)
                back += (back[0] + val["width"] * w / 100, back[1] + val["height"] * h / 100)
                assert tuple(round(x) for x in back) in {b for p, b in labels if p == path}
    assert not any("annotations" in t for t in tasks)  # no image has reviewed boxes only
    [mixed] = [t for t in tasks if t["meta"]["reviewers"]]
    assert mixed["meta"]["reviewers"] == ["ann"] and len(mixed["data"]["captions"]) == 2
    assert "<RectangleLabels" in (v / "labelstudio_config.xml").read_text()

    # ODVG (train split = everything here)
    label_map = json.loads((v / "odvg" / "label_map.json").read_text())
    assert label_map == {"0": "red box"}
    assert json.loads((v / "odvg" / "label_list.json").read_text()) == ["red box"]
    for row in _read_jsonl(v / "odvg" / "od.jsonl"):
        path = source_of[row["filename"]]
        assert (row["width"], row["height"]) == sizes[path]
        for inst in row["detection"]["instances"]:
            assert label_map[str(inst["label"])] == inst["category"]
            assert (path, tuple(round(x) for x in inst["bbox"])) in labels
    vg = _read_jsonl(v / "odvg" / "vg.jsonl")
    assert sum(len(r["grounding"]["regions"]) for r in vg) == 5

    summary = json.loads((v / "export.json").read_text())
    assert summary["counts"] == res.counts
    assert sorted(summary["files"]) == sorted(
        str(p.relative_to(v)) for p in v.rglob("*") if (p.is_file() or p.is_symlink())
        and p.name != "export.json"
    )  # fmt: skip
    assert "ROOT_IMAGE_DIR" in (v / "TRAINING.md").read_text()


def test_two_exports_are_byte_identical_and_versions_never_overwritten(built, tmp_path):
    ws, _ = built
    opts = ExportConfig(version="v1", workers=1, resize="pad", margin=5)
    r1 = export_dataset(ws, tmp_path / "one", opts)
    r2 = export_dataset(ws, tmp_path / "two", opts.model_copy(update={"workers": 2}))
    t1, t2 = _tree(r1.path), _tree(r2.path)
    assert t1 == t2 and len(t1) > 10
    for m in _read_jsonl(r1.path / "meta" / "manifest.jsonl"):
        (x0, y0, x1, y1), (w, h) = m["box"], (m["width"], m["height"])
        mx, my = (x1 - x0) * 0.05, (y1 - y0) * 0.05
        want = [max(0, x0 - mx), max(0, y0 - my), min(w, x1 + mx), min(h, y1 + my)]
        assert m["crop_box"] == pytest.approx(want, abs=0.01)
    for name in os.listdir(r1.path / "crops"):
        assert Image.open(r1.path / "crops" / name).size == (448, 448)  # pad mode
    with pytest.raises(ConflictError, match="already exists"):
        export_dataset(ws, tmp_path / "one", opts)
    # default version continues after the recorded ones
    r3 = export_dataset(ws, tmp_path / "one", ExportConfig(formats=["coco"]))
    assert r3.version == "v2" and not (r3.path / "crops").exists()
    assert read_latest(tmp_path / "one") == "v2"
    assert (r1.path / "coco.json").read_bytes() == t1["coco.json"]  # v1 untouched


def test_include_filters_and_since_last_exports_only_new_items(built, tmp_path):
    ws, info = built
    pids = info["pids"]
    out = tmp_path / "out"
    first = export_dataset(ws, out, ExportConfig(include="auto", formats=["swift", "coco"]))
    assert first.counts["labels"] == 3  # a[1] was reviewed; a[0] is on a seed original
    reviewed = export_dataset(ws, out, ExportConfig(include="reviewed", formats=["coco"]))
    assert reviewed.counts["labels"] == 1
    # nothing new yet but the seed box of image a (in neither the auto nor the reviewed one)
    empty = export_dataset(ws, out, ExportConfig(formats=["swift"]), since="last")
    assert empty.counts["labels"] == 1
    assert [r["text"] for r in _read_jsonl(empty.path / "swift.jsonl")] == ["seed cap"]
    # a reviewer rejects a box and accepts a changed one; a new run adds nothing else
    store.add_decision(ws, pids["sub_a"][0], "reject", reviewer="bob")
    store.add_decision(ws, pids["rot"][0], "caption", reviewer="bob", caption="tall red")
    inc = export_dataset(ws, out, ExportConfig(formats=["swift"]), since="last")
    rows = _read_jsonl(inc.path / "swift.jsonl")
    assert [r["text"] for r in rows] == ["tall red"] and inc.version == "v4"
    full = export_dataset(ws, out, ExportConfig(formats=["swift"]))
    assert full.counts["labels"] == 4  # the rejected box is gone
    with pytest.raises(NotFoundError):
        export_dataset(ws, out, ExportConfig(), since="v99")


def test_missing_and_changed_originals_are_skipped_and_listed(built, tmp_path):
    ws, info = built
    photos = info["photos"]
    (photos / "sub" / "a.jpg").unlink()
    Image.fromarray(_background(480, 640, 9)).save(photos / "rot.jpg", quality=80)
    res = export_dataset(ws, tmp_path / "out", ExportConfig(formats=["swift", "coco"]))
    skipped = _read_jsonl(res.path / "meta" / "skipped.jsonl")
    assert sorted(s["reason"] for s in skipped) == ["changed", "not-found"]
    assert res.counts["labels"] == 3 and res.counts["skipped"] == 2


@pytest.mark.parametrize(
    "caption, seeds, want",
    [
        ("edited", [((0, 0, 10, 10), "seed")], ("edited", "reviewed")),
        (None, [((0, 0, 10, 10), "seed")], ("seed", "seed")),
        (None, [((0, 0, 10, 4), "thin"), ((1, 1, 10, 10), "best")], ("best", "seed")),
        (None, [((0, 0, 10, 4.9), "half")], ("phrase", "phrase")),  # IoU 0.49 < 0.5
        (None, [], ("phrase", "phrase")),
    ],
)
def test_caption_priority(caption, seeds, want):
    from autolabel.export.plan import pick_caption
    from autolabel.types import Label

    label = Label(1, 1, "/x.jpg", None, 20, 20, (0, 0, 10, 10), "phrase", caption, 0.9,
                  "auto", "auto", 1, None, None)  # fmt: skip
    assert pick_caption(label, seeds) == want


@pytest.mark.parametrize(
    "opts, error, match",
    [
        ({"resize": "stretch"}, ConfigError, "export.resize: .*'fit', 'pad' or 'short-side'"),
        ({"include": "maybe"}, ConfigError, "export.include: .*'accepted'"),
        ({"size": 4}, ConfigError, "export.size: .*greater than or equal to 8"),
        ({"formats": ["coco", "voc"]}, InputError, "formats: expected names from .* got voc"),
        ({"version": "../x"}, InputError, "version: expected letters"),
    ],
)
def test_bad_options_raise_named_errors(workspace, tmp_path, opts, error, match):
    # the config section validates types and ranges; export checks names the section cannot
    with pytest.raises(error, match=match):
        cfg = load_config(overrides={f"export.{k}": v for k, v in opts.items()})
        export_dataset(workspace, tmp_path / "o", cfg.export)
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_cli_export_and_clean_user_errors(built, tmp_path):
    ws, _ = built
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    out = tmp_path / "cli"
    cmd = [sys.executable, "-m", "autolabel.cli", "export", str(ws.path), "--out", str(out)]
    ok = subprocess.run(
        [*cmd, "--formats", "swift,coco", "--size", "224", "--min-size", "64", "--json", "-q"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert ok.returncode == 0, ok.stderr
    summary = json.loads(ok.stdout)
    assert summary["version"] == "v1" and summary["counts"]["crops"] == 5
    assert (out / "v1" / "crops" / "rot_224_v1.png").is_file()
    bad = subprocess.run(
        [*cmd, "--formats", "voc"], capture_output=True, text=True, env=env, timeout=120
    )
    assert bad.returncode == 2 and bad.stderr.startswith("error: formats: expected")
    assert "Traceback" not in bad.stderr


def test_kill_during_export_leaves_previous_export_intact(tmp_path):
    ws, _ = _build(tmp_path, n_extra=30, extra_size=(1024, 768))
    out = tmp_path / "out"
    first = export_dataset(ws, out, ExportConfig(formats=["swift"], workers=1))
    before = _tree(first.path)
    ws.close()
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "autolabel.cli",
            "export",
            str(tmp_path / "ws"),
            "--out",
            str(out),
            "--workers",
            "1",
            "--formats",
            "swift",
            "-q",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 60
    killed = False
    while time.time() < deadline and proc.poll() is None:
        tmp = [p for p in out.glob(".tmp-v2-*") if (p / "crops").is_dir()]
        if tmp and len(list((tmp[0] / "crops").iterdir())) >= 5:
            os.kill(proc.pid, signal.SIGKILL)
            killed = True
            break
        time.sleep(0.01)
    proc.wait(timeout=30)
    assert killed, "export finished before it could be killed; make the test export bigger"
    assert not (out / "v2").exists()
    assert read_latest(out) == "v1"
    assert _tree(first.path) == before
    # the next export cleans the dead temp folder and completes
    from autolabel.store import Workspace

    with Workspace.open(tmp_path / "ws") as ws2:
        again = export_dataset(ws2, out, ExportConfig(formats=["swift"], workers=2))
    assert again.version == "v2" and read_latest(out) == "v2"
    assert not list(out.glob(".tmp-*"))
    assert again.counts["crops"] == first.counts["crops"] == 33  # a[1] is not accepted


def test_absolute_paths_point_inside_the_version_folder(built, tmp_path):
    ws, _ = built
    opts = ExportConfig(absolute_paths=True, formats=["swift", "swift-grounding", "coco"])
    res = export_dataset(ws, tmp_path / "out", opts)
    refs = [r["image"] for r in _read_jsonl(res.path / "swift.jsonl")]
    for name in ("swift_grounding.jsonl", "val/swift_grounding.jsonl"):
        if (res.path / name).exists():
            refs += [im for r in _read_jsonl(res.path / name) for im in r["images"]]
    refs += [im["file_name"] for im in json.loads((res.path / "coco.json").read_text())["images"]]
    assert refs
    for ref in refs:
        p = Path(ref)
        assert p.is_absolute() and p.is_file() and p.is_relative_to(res.path), ref
