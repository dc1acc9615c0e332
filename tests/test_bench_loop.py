"""The oracle benchmark (benchmarks/bench_loop.py): its reviewer, its measuring, a tiny run."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from tests.support.oracle import OracleReviewer, oracle_decision

REPO = Path(__file__).resolve().parents[1]
TRUTH = np.array([[100.0, 100.0, 300.0, 300.0]])


def load_bench():
    spec = importlib.util.spec_from_file_location("bench_loop", REPO / "benchmarks/bench_loop.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize(
    ("box", "taken", "expected"),
    [
        ([100, 100, 300, 300], set(), ("accept", 0, None)),
        ([102, 98, 305, 301], set(), ("accept", 0, None)),  # IoU ~0.95
        ([100, 100, 300, 250], set(), ("adjust", 0, None)),  # IoU 0.75: too loose to keep
        ([290, 290, 400, 400], set(), ("adjust", 0, None)),  # barely overlaps
        ([400, 400, 500, 500], set(), ("reject", None, "no_object")),
        ([100, 100, 300, 300], {0}, ("reject", None, "wrong_object")),  # a duplicate
    ],
)
def test_oracle_rule(box, taken, expected):
    assert oracle_decision(box, TRUTH, taken) == expected


def test_oracle_rule_without_truth_rejects():
    assert oracle_decision([0, 0, 10, 10], np.zeros((0, 4)), set())[0] == "reject"


def test_duplicates_count_as_wrong_and_recall_is_split():
    bench = load_bench()
    truth = {
        "/a.png": {"box": [0, 0, 100, 100], "product_id": 1, "seen": True, "kind": "test"},
        "/b.png": {"box": [0, 0, 100, 100], "product_id": 9, "seen": False, "kind": "test"},
        "/s.png": {"box": [0, 0, 50, 50], "product_id": 1, "seen": True, "kind": "seed"},
    }
    rows = [
        {"source_path": "/a.png", "box": [0, 0, 100, 100], "route": "auto"},
        {"source_path": "/a.png", "box": [1, 1, 99, 100], "route": "auto"},  # same object
        {"source_path": "/b.png", "box": [0, 0, 100, 60], "route": "review"},  # IoU 0.6
        {"source_path": "/s.png", "box": [0, 0, 50, 50], "route": "review"},
    ]
    m = bench.match_exported(rows, truth)
    assert (m["exported"], m["correct"], m["precision"]) == (4, 2, 0.5)
    assert (m["auto"], m["auto_correct"]) == (2, 1)
    assert (m["recall_seen"], m["recall_unseen"], m["n_seen"], m["n_unseen"]) == (1.0, 0.0, 1, 1)


def test_targets_fail_on_unknown_estimate():
    bench = load_bench()
    row = {
        "precision": 1.0,
        "inside": None,
        "abs_error": None,
        "actions_per_crop": 0.1,
        "recall_seen": 1.0,
        "recall_unseen": 0.95,
    }
    verdict = {t["target"].split(" ")[0]: t["pass"] for t in bench.check_targets([row])}
    assert verdict == {
        "`eval`": False,  # no eval numbers in this row
        "exported": True,
        "measured": False,
        "|measured": False,
        "human": True,
        "recall": True,
    }


def test_oracle_decides_over_http(workspace, tmp_path):
    pytest.importorskip("fastapi")
    pytest.importorskip("uvicorn")
    pytest.importorskip("httpx")
    from autolabel.config import ReviewConfig
    from autolabel.review.server import serve_in_thread
    from autolabel.store.labels import iter_labels
    from autolabel.store.queue import add_reviewer
    from tests.support.review import build_queue

    # 3 images, 2 boxes each: [10,10+dy,60,60+dy] and [30,10+dy,80,60+dy] (dy = 0, 5, 10)
    pids = build_queue(workspace, 3, per_image=2, image_dir=tmp_path / "img")
    image_ids = [r[0] for r in workspace.conn.execute("SELECT id FROM images ORDER BY id")]
    truth = {
        image_ids[0]: np.array([[10, 10, 60, 60]]),  # box 1 exact, box 2 overlaps: duplicate
        image_ids[1]: np.array([[10, 0, 60, 70]]),  # box 1 loose -> adjust
        image_ids[2]: np.array([[200, 150, 300, 230]]),  # nothing overlaps -> rejects
    }
    token = add_reviewer(workspace, "oracle")
    with serve_in_thread(workspace.path, ReviewConfig(port=0)) as srv:
        with OracleReviewer(srv.url, truth, token=token) as oracle:
            tally = oracle.review_all()
    assert tally.errors == []
    assert tally.human_actions == len(pids) == 6
    assert dict(tally.actions) == {"accept": 1, "adjust": 1, "reject": 4}
    kept = {lab.image_id: lab.box for lab in iter_labels(workspace, include="reviewed")}
    assert kept == {image_ids[0]: (10, 10, 60, 60), image_ids[1]: (10, 0, 60, 70)}
    n = workspace.conn.execute("SELECT COUNT(*) FROM decisions WHERE reviewer = 'oracle'")
    assert n.fetchone()[0] == 6


@pytest.mark.slow
def test_tiny_benchmark_run(tmp_path, capsys):
    bench = load_bench()
    out = tmp_path / "loop.json"
    result = bench.main(
        [
            "--images", "4", "--rounds", "2", "--seed-crops", "6", "--scale", "0.3",
            "--detector", "auto", "--workdir", str(tmp_path / "w"), "--json", str(out),
        ]
    )  # fmt: skip
    text = capsys.readouterr().out
    assert "targets (issue 19):" in text and "prec@0.9" in text
    saved = json.loads(out.read_text())
    assert [r["round"] for r in saved["rounds"]] == [1, 2]
    assert saved["detector"] in ("regions", "exemplar") and len(saved["targets"]) == 6
    from autolabel.store import Workspace

    with Workspace.open(tmp_path / "w" / "ws") as ws:
        decisions = ws.conn.execute(
            "SELECT COUNT(*) FROM decisions WHERE reviewer = 'oracle' "
            "AND action IN ('accept', 'adjust', 'reject')"
        ).fetchone()[0]
    last = result["rounds"][-1]
    assert last["actions_total"] == decisions == sum(r["human_actions"] for r in result["rounds"])
    for r in result["rounds"]:
        assert 0 <= r["correct"] <= r["exported"]
        if r["exported"]:
            assert r["precision"] == pytest.approx(r["correct"] / r["exported"])
        assert r["n_seen"] + r["n_unseen"] == 2 * r["round"]  # a batch of 2 per round
