"""The ``regions`` detector wired into the stages: versions, propose, calibrate, finetune,
and the weight-free defaults of ``autocrop``/``demo`` (offline, generated app captures)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from autolabel import steps
from autolabel.detect import versions
from autolabel.errors import InputError
from autolabel.geometry import box_iou
from autolabel.store import Workspace
from tests.support.regions import write_app_folders


def _fake_version(root: Path, name: str, **meta) -> Path:
    d = root / "models" / name
    d.mkdir(parents=True)
    (d / "metadata.json").write_text(json.dumps(meta), encoding="utf-8")
    return d


# -- versions and defaults (fast) -------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "kind", "expected"),
    [
        ("latest", "regions", "regions-v3"),
        ("latest", None, "gdino-v2"),
        ("latest", "grounding-dino", "gdino-v2"),
        ("v1", "regions", "regions-v1"),
        ("regions-v1", None, "regions-v1"),
        ("regions-v3", "grounding-dino", "regions-v3"),
        ("v2", None, "gdino-v2"),
    ],
)
def test_regions_versions_are_their_own_family(tmp_path, name, kind, expected):
    for v in ("regions-v1", "regions-v3", "gdino-v2"):
        _fake_version(tmp_path, v)
    got = versions.resolve_model(name, workspace=tmp_path, kind=kind)
    assert Path(got).name == expected


def test_regions_version_numbers_and_rows(tmp_path):
    _fake_version(tmp_path, "regions-v1", source_text="trained on 3 seed boxes")
    _fake_version(tmp_path, "gdino-v4")
    assert versions.next_version_number(tmp_path, versions.REGIONS_PREFIX) == 2
    assert versions.next_version_number(tmp_path) == 5
    rows = {r["name"]: r for r in versions.version_rows(tmp_path)}
    assert rows["regions-v1"]["kind"] == "regions"
    assert rows["regions-v1"]["source"] == "trained on 3 seed boxes"
    assert rows["gdino-v4"]["kind"] == "grounding-dino"
    with pytest.raises(InputError, match=r"expected one of \['regions-v1'\]"):
        versions.resolve_model("regions-v2", workspace=tmp_path, kind="regions")


def _hub_cache(monkeypatch, root: Path) -> Path:
    """Point the Hugging Face cache at ``root`` (read at call time by the cache lookup)."""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(root))
    return root


def test_weights_available_is_local_only(tmp_path, monkeypatch):
    cache = _hub_cache(monkeypatch, tmp_path / "cache")
    assert not versions.weights_available("IDEA-Research/grounding-dino-tiny")
    assert not versions.weights_available("latest", workspace=tmp_path)  # no gdino-vN
    assert versions.weights_available(str(tmp_path))
    _fake_version(tmp_path, "gdino-v1")
    assert versions.weights_available("latest", workspace=tmp_path)
    # a hub id counts once its config and weights are in the cache (a snapshot)
    repo = cache / "models--IDEA-Research--grounding-dino-tiny"
    snap = repo / "snapshots" / "abc123"
    snap.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc123")
    (snap / "config.json").write_text("{}")
    assert not versions.weights_available("IDEA-Research/grounding-dino-tiny")  # no weights
    (snap / "model.safetensors").write_bytes(b"0")
    assert versions.weights_available("IDEA-Research/grounding-dino-tiny")


@pytest.mark.parametrize(
    ("flag", "model", "originals", "crops", "expected", "noted"),
    [
        (None, "hub", True, True, "regions", True),
        (None, "hub", False, True, "exemplar", True),
        (None, "hub", False, False, "grounding-dino", False),
        ("grounding-dino", "hub", True, True, "grounding-dino", False),
        (None, "local", True, True, "grounding-dino", False),
    ],
)
def test_weight_free_choice(tmp_path, monkeypatch, flag, model, originals, crops, expected, noted):
    _hub_cache(monkeypatch, tmp_path / "empty-cache")
    weights = tmp_path / "gdino-weights"
    weights.mkdir()
    with Workspace.create(tmp_path / "ws") as ws:
        cfg = steps.load_options(ws).with_flags(
            {"detect.model": str(weights) if model == "local" else None}
        )
        got, note = steps.weight_free_choice(
            ws, cfg, detector_flag=flag, seed_originals=originals, seed_crops=crops
        )
    assert got.detect.detector == expected
    assert (note is not None) == noted
    if expected == "regions":
        assert got.detect.model == "latest" and "weight-free regions" in note


# -- propose, calibrate, finetune on generated captures ---------------------------------------
@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    return write_app_folders(tmp_path_factory.mktemp("app"), n_seed=8, n_new=8, scale=0.35)


def _top1_ious(ws: Workspace, truth: dict[str, tuple]) -> dict[str, float]:
    rows = ws.conn.execute(
        "SELECT i.path, p.x0, p.y0, p.x1, p.y1 FROM current_proposals p "
        "JOIN images i ON i.id = p.image_id ORDER BY p.image_id, p.score DESC"
    ).fetchall()
    best: dict[str, tuple] = {}
    for r in rows:
        best.setdefault(Path(r[0]).name, tuple(r[1:]))
    out = {}
    for name, box in truth.items():
        got = best.get(name)
        out[name] = 0.0 if got is None else float(box_iou([got], [box])[0, 0])
    return out


def _propose(ws: Workspace, cfg, **kw):
    from autolabel.propose import run_propose

    lines: list[str] = []
    settings = steps.propose_settings(ws, cfg, log=lines.append, **kw)
    return settings, run_propose(ws, settings), lines


@pytest.mark.slow
def test_propose_calibrate_finetune_with_regions(tmp_path, folders):
    from tests.support.simulate import review_proposal

    with Workspace.create(tmp_path / "ws") as ws:
        cfg = steps.load_options(ws, None, {"detect.detector": "regions"})
        steps.ingest(ws, cfg, [folders["in"]])
        report = steps.seed_add(ws, cfg, folders["crops"], originals=folders["originals"])
        assert report.located == 8
        # seed calibrate: held-out numbers, the default threshold (no prompt needed)
        cal = steps.seed_calibrate(ws, cfg)
        assert cal["detector"] == "regions" and cal["box_threshold"] == 0.05
        assert cal["n"] == 8 and 0.5 <= cal["recall"] <= 1.0 and "3-fold" in cal["reason"]

        # propose: regions-v1 is trained on the fly from the seed, with metadata
        settings, first, lines = _propose(ws, cfg, prompt="product photo")
        v1 = Path(settings.detect.model)
        meta = versions.read_metadata(v1)
        assert v1.name == "regions-v1" and settings.detect.box_threshold == 0.05
        assert meta["seed_count"] == 8 and meta["source"] == "seed" and meta["train_seconds"] > 0
        assert lines and "trained regions-v1 on 8 seed boxes" in lines[0]
        run = ws.conn.execute("SELECT detector, model_version FROM runs").fetchone()
        assert tuple(run) == ("regions", meta["content_hash"])
        ious = _top1_ious(ws, folders["truth"])
        assert sum(v >= 0.9 for v in ious.values()) >= 6, ious
        # same model, same key: nothing to do, no new version
        settings, again, lines = _propose(ws, cfg)
        assert again.key == first.key and again.images == 0 and not lines
        assert Path(settings.detect.model) == v1

        # review: accept boxes on the main picture, reject the others
        rows = ws.conn.execute(
            "SELECT p.id, i.path, p.x0, p.y0, p.x1, p.y1 FROM current_proposals p "
            "JOIN images i ON i.id = p.image_id"
        ).fetchall()
        accepted = rejected = 0
        reviewed = set()
        counts: dict[str, list[int]] = {}
        for pid, path, *box in rows:
            truth = folders["truth"].get(Path(path).name)
            if truth is None:
                continue
            reviewed.add(path)
            good = box_iou([box], [truth])[0, 0] >= 0.9
            counts.setdefault(path, [0, 0])[0 if good else 1] += 1
            review_proposal(ws, pid, "accept" if good else "reject")
            accepted, rejected = accepted + good, rejected + (not good)
        assert accepted >= 6 and rejected >= 1

        # finetune trains the active detector: regions -> regions-v2, judged on held-out
        # reviewed images against the current proposals (champion / challenger)
        result = steps.finetune(ws, cfg)
        assert result.version == "regions-v2" and result.path.is_dir()
        m2 = result.metadata
        held = m2["heldout_images"]
        with_box = [q for q, c in counts.items() if c[0]]  # images with an accepted box
        assert held == max(1, round(0.2 * len(with_box)))
        assert m2["review_images"] == len(reviewed) - held
        out = set(m2["validation"]["heldout_paths"])
        assert out <= reviewed and len(out) == held
        # the held-out images' decisions are not trained on
        assert m2["review_positive"] == sum(c[0] for q, c in counts.items() if q not in out)
        assert m2["review_negative"] == sum(c[1] for q, c in counts.items() if q not in out)
        assert m2["base"] == "regions-v1"  # the seed rows were reused
        assert m2["content_hash"] != meta["content_hash"]
        promo = m2["promotion"]
        ch, champ = promo["challenger"], promo["champion"]
        assert promo["n_images"] == held and ch is not None and champ is not None
        assert promo["promoted"] is (ch > champ)
        latest = cfg.with_flags({"detect.model": "latest"})
        settings, _, _ = _propose(ws, latest)
        assert Path(settings.detect.model).name == ("regions-v2" if ch > champ else "regions-v1")

        # naming the version uses it; the new content hash is a new run key
        named = cfg.with_flags({"detect.model": "regions-v2"})
        settings, third, lines = _propose(ws, named)
        assert Path(settings.detect.model).name == "regions-v2" and not lines
        # every image is proposed again except the reviewed ones (decisions are final)
        assert third.key != first.key and third.images == third.pending == 16 - len(reviewed)
        used = ws.conn.execute("SELECT model_version FROM runs ORDER BY id DESC").fetchone()[0]
        assert used == m2["content_hash"]
    # the retrained model still finds the main pictures
    from autolabel.detect import build_detector
    from autolabel.imageio import load_rgb

    det = build_detector("regions", model=str(result.path))
    hits = 0
    for name, box in folders["truth"].items():
        got = det.detect([load_rgb(folders["in"] / name)], ["product photo"])[0]
        hits += bool(len(got)) and box_iou(got.xyxy[:1], [box])[0, 0] >= 0.9
    assert hits >= 6


def test_regions_without_seed_or_version_is_a_one_line_error(tmp_path):
    with Workspace.create(tmp_path / "ws") as ws:
        cfg = steps.load_options(ws, None, {"detect.detector": "regions"})
        with pytest.raises(InputError, match="expected located seed boxes"):
            steps.propose_settings(ws, cfg, prompt="x")
        with pytest.raises(InputError, match="expected one of"):
            steps.propose_settings(ws, cfg.with_flags({"detect.model": "regions-v2"}), prompt="x")


@pytest.mark.slow
def test_autocrop_offline_with_only_seed_crops_and_originals(tmp_path, folders):
    out = tmp_path / "out"
    with Workspace.create(out / ".autolabel") as ws:  # the generated captures are small
        ws.config_path.write_text("export:\n  min_size: 64\n", encoding="utf-8")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    env["HF_HUB_CACHE"] = str(tmp_path / "empty-cache")  # no Grounding DINO weights here
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "autolabel",
            "autocrop",
            str(folders["in"]),
            str(out),
            "--seed",
            str(folders["crops"]),
            "--originals",
            str(folders["originals"]),
        ],
        capture_output=True,
        text=True,
        env=env,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert "using the weight-free regions detector" in res.stdout
    assert "using 'product photo'" in res.stdout
    assert "Traceback" not in res.stderr
    # the seed's own boxes are labels already (exported, provenance "seed"); a new detector
    # version with fewer labelled boxes than quality.min_labelled auto-accepts nothing and
    # says so (issue 19): the regions boxes of the new captures wait for review
    manifest = [
        json.loads(line)
        for line in (out / "v1" / "meta" / "manifest.jsonl").read_text().splitlines()
    ]
    exported = [m for m in manifest if m["crop"]]
    assert all((out / "v1" / m["crop"]).is_file() for m in exported)
    assert {m["detector"] for m in manifest} <= {"regions", "seed"}
    assert "nothing of it is auto-accepted" in res.stdout + res.stderr
    best: dict[str, float] = {}
    with Workspace.open(out / ".autolabel") as ws:
        rows = ws.conn.execute(
            "SELECT i.path, p.x0, p.y0, p.x1, p.y1 FROM current_proposals p "
            "JOIN images i ON i.id = p.image_id JOIN runs r ON r.id = p.run_id "
            "WHERE r.detector = 'regions' ORDER BY p.image_id, p.score DESC"
        ).fetchall()
    for path, *box in rows:
        name = Path(path).name
        if name in folders["truth"] and name not in best:  # the top-scored box per image
            best[name] = float(box_iou([box], [folders["truth"][name]])[0, 0])
    # the top box is the main picture on most new captures (measured 6 of 8)
    hits = sum(v >= 0.9 for v in best.values())
    assert hits > len(folders["truth"]) / 2, best


def test_heldout_paths_are_a_stable_share_of_the_reviewed_images():
    from autolabel.train.regions import heldout_paths

    paths = [f"/data/img_{i:03d}.png" for i in range(40)]
    held = heldout_paths(paths, 0.2)
    assert len(held) == 8 and held <= set(paths)
    assert heldout_paths(list(reversed(paths)), 0.2) == held  # by path, not by order
    assert heldout_paths([*paths, "/data/new.png"], 0.2) & held  # mostly the same images
    assert heldout_paths(paths[:4], 0.2) == set()  # too few to judge on
    assert len(heldout_paths(paths[:5], 0.2)) == 1
    assert heldout_paths(paths, 0.0) == set()


@pytest.mark.slow
def test_a_regions_model_from_an_older_autolabel_is_passed_over(tmp_path, folders):
    import json

    from autolabel.seed.regions import ensure_regions_model

    with Workspace.create(tmp_path / "ws") as ws:
        cfg = steps.load_options(ws, None, {"detect.detector": "regions"})
        steps.seed_add(ws, cfg, folders["crops"], originals=folders["originals"])
        v1 = ensure_regions_model(ws)
        meta = json.loads((v1 / "meta.json").read_text())
        meta["features"] = meta["features"][:-1]  # as saved by a version with fewer features
        (v1 / "meta.json").write_text(json.dumps(meta))
        lines: list[str] = []
        v2 = ensure_regions_model(ws, log=lines.append)
        assert v2.name == "regions-v2" and v1.name == "regions-v1"
        assert "regions-v1: saved by an older autolabel" in lines[0]
        assert "trained regions-v2 on 8 seed boxes" in lines[1]
        assert ensure_regions_model(ws) == v2  # current now: used as is
