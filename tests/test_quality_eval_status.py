"""Issue 19: ``autolabel eval`` and ``autolabel status`` agree with truth-based numbers.

With every auto-accepted box audited by a reviewer who knows the truth, the tool's estimate
must equal the precision measured against the truth, at the match IoU; with a partial audit
the truth lies in the stated interval.
"""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from autolabel.cli import app
from autolabel.config import QualityConfig, SelectConfig
from autolabel.evaluate import evaluate
from autolabel.select.run import run_select
from tests.support.quality import build_world, review_open_items, write_truth


def _status(ws) -> dict:
    r = CliRunner().invoke(app, ["status", str(ws.path), "--json"])
    assert r.exit_code == 0, r.output
    return json.loads(r.output)


@pytest.mark.parametrize("audit_rate", [1.0, 0.5])
def test_status_and_eval_agree_with_the_truth(workspace, tmp_path, audit_rate):
    ids = build_world(workspace, 90, seed=21, n_seed=30, loose_share=0.3, deceptive_share=0.5)
    cfg = SelectConfig(
        target_precision=0.8, audit_rate=audit_rate, diversity=0.0, exemplar_similarity=False
    )
    quality = QualityConfig(min_audited=5)
    s = run_select(workspace, cfg, quality=quality)
    assert s["routes"]["auto"] + s["routes"]["audit"] > 10
    review_open_items(workspace, reasons=("audit",))
    truth = write_truth(workspace, tmp_path / "truth.jsonl", ids)
    res = evaluate(workspace, truth, tmp_path / "eval")
    status = _status(workspace)["auto_precision"]
    est = res["audit_estimate"]
    # eval and status report the same estimate of the same set
    assert status["estimate"] == pytest.approx(est["precision"], abs=1e-3)
    assert status["auto"] == est["n_auto"] == res["true_auto_n"] > 10
    true_p = res["true_auto_precision"]
    if audit_rate == 1.0:  # everything audited: the estimate is the truth
        assert est["n_audited"] == est["n_auto"]
        assert est["precision"] == pytest.approx(true_p, abs=1e-5)  # eval rounds to 5 places
    else:
        assert est["low"] <= true_p <= est["high"]
    # deceptive loose boxes (IoU 0.75: right at 0.5) got in; both count them wrong
    assert true_p < 0.97
    assert res["auto_precision_50"] is None or res["auto_precision_50"] >= true_p


def test_status_text_says_unknown_and_why(workspace):
    build_world(workspace, 40, seed=22, n_seed=30)
    run_select(
        workspace,
        SelectConfig(target_precision=0.8, diversity=0.0, exemplar_similarity=False),
        quality=QualityConfig(min_audited=5),
    )
    r = CliRunner().invoke(app, ["status", str(workspace.path)])
    assert r.exit_code == 0, r.output
    assert "precision of auto-accepted boxes: unknown (only 0 of" in r.output
    assert "review the" in r.output
    payload = _status(workspace)
    assert payload["auto_precision"]["status"] == "unknown"
    assert payload["select"]["can_auto"] is True and payload["select"]["warnings"] == []
