"""Issue 19 cause 6: champion / challenger — a fine-tuned version that does not beat the
current proposals on held-out reviewed images at the match IoU is not promoted, ``latest``
keeps naming the current champion and ``propose`` says why in one line."""

from __future__ import annotations

import json

import numpy as np
import pytest

from autolabel.config import FinetuneConfig
from autolabel.detect import versions
from autolabel.errors import InputError
from autolabel.train.promote import agnostic_ap, decide, heldout_indices
from tests.support.finetune import red_squares, seeded_workspace


@pytest.mark.parametrize(
    ("challenger", "champion", "n", "promoted", "words"),
    [
        (0.6, 0.5, 4, True, "> 0.500"),
        (0.5, 0.5, 4, False, "current proposals kept"),  # a tie keeps the champion
        (0.2, 0.7, 4, False, "<= 0.700"),
        (0.3, None, 4, True, "no current proposals"),
        (None, 0.7, 0, True, "not judged"),
    ],
)
def test_decide(challenger, champion, n, promoted, words) -> None:
    d = decide(challenger, champion, n_images=n, champion_name="gdino-v1", match_iou=0.9)
    assert d["promoted"] is promoted
    assert words in d["reason"] and "\n" not in d["reason"]
    assert d["match_iou"] == 0.9


@pytest.mark.parametrize(
    ("wins", "losses", "promoted"),
    [(1, 0, False), (4, 0, False), (5, 0, True), (6, 1, False), (7, 1, True)],
)
def test_a_better_ap_must_also_win_clearly_more_images(wins, losses, promoted) -> None:
    from autolabel.train.promote import sign_test_p

    d = decide(1.0, 0.95, n_images=20, champion_name="regions-v1", wins=wins, losses=losses)
    assert d["promoted"] is promoted and (d["wins"], d["losses"]) == (wins, losses)
    assert (sign_test_p(wins, losses) <= 0.05) is promoted
    if not promoted:
        assert "not clearly better" in d["reason"] and "sign test" in d["reason"]
    assert sign_test_p(5, 0) == pytest.approx(1 / 32)
    assert sign_test_p(0, 0) == 1.0


def test_top1_correct() -> None:
    from autolabel.train.promote import top1_correct

    t = np.array([[0, 0, 100, 100]], float)
    good = (np.array([[0, 0, 100, 80], [0, 0, 100, 99]], float), np.array([0.2, 0.9]), None)
    bad = (np.array([[0, 0, 100, 80], [0, 0, 100, 99]], float), np.array([0.9, 0.2]), None)
    none = (np.zeros((0, 4)), np.zeros(0), None)
    got = top1_correct(
        [good, bad, none, none, good], [t, t, t, np.zeros((0, 4)), np.zeros((0, 4))], iou=0.9
    )
    assert got == [True, False, False, True, False]


def test_agnostic_ap_uses_the_match_iou_and_threshold() -> None:
    truth = [np.array([[0, 0, 100, 100]], float)]
    loose = [(np.array([[0, 0, 100, 80]], float), np.array([0.9]), np.array([0]))]
    assert agnostic_ap(loose, truth, iou=0.5) == 1.0
    assert agnostic_ap(loose, truth, iou=0.9) == 0.0  # IoU 0.8: wrong for a crop dataset
    assert agnostic_ap(loose, truth, iou=0.5, min_score=0.95) == 0.0


def test_heldout_prefers_reviewed_images() -> None:
    from autolabel.train.data import TrainSample

    s = [
        TrainSample("a", [[0, 0, 1, 1]], ("x",), sources=("seed",)),
        TrainSample("b", [[0, 0, 1, 1]], ("x",), sources=("reviewed",)),
        TrainSample("c", [], ()),
    ]
    assert heldout_indices(s) == [1]
    assert heldout_indices([s[0], s[2]]) == [0]


@pytest.fixture
def _one_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.usefixtures("_one_thread")
def test_worse_finetune_is_not_promoted_and_latest_keeps_the_champion(tmp_path, tiny_models):
    from autolabel.propose.run import champion_note
    from autolabel.store import Workspace
    from autolabel.store import runs as store_runs
    from autolabel.train.loop import finetune_workspace
    from tests.support.proposals import mock_proposals

    samples = red_squares(tmp_path / "imgs", 8, seed=4)
    ws_path = tmp_path / "ws"
    ids = seeded_workspace(ws_path, samples, n_seed=8)
    # the champion: an earlier promoted version whose proposals are exact on every image
    champion = versions.models_dir(ws_path) / "gdino-v1"
    champion.mkdir(parents=True)
    (champion / versions.METADATA).write_text(json.dumps({"version": "gdino-v1"}))
    with Workspace.open(ws_path) as ws:
        ws.conn.execute("UPDATE seed_items SET phrase = 'red square'")
        run0 = store_runs.create_run(
            ws,
            detector="grounding-dino",
            model=str(champion),
            model_version="gdino-v1",
            refiner=None,
            prompt="red square",
            box_threshold=0.3,
            text_threshold=0.25,
        )
        exact = [
            (ids[s.path], mock_proposals(s.boxes.tolist(), phrase=["red square"])) for s in samples
        ]
        store_runs.write_batch(ws, run0, exact)
        store_runs.finish_run(ws, run0)
        opts = FinetuneConfig(
            base=str(tiny_models["grounding-dino"]),
            max_steps=2,
            max_size=64,
            batch_size=2,
            val_split=0.34,
            device="cpu",
            checkpoint_every=0,
        )
        result = finetune_workspace(ws, options=opts, default_model="unused")
    assert result.version == "gdino-v2"
    promo = result.metadata["promotion"]
    assert promo["promoted"] is False, promo
    assert promo["champion"] == 1.0 and promo["n_images"] >= 1
    assert "gdino-v1" in promo["reason"] and "kept" in promo["reason"]
    on_disk = versions.read_metadata(result.path)
    assert on_disk["promotion"] == promo  # recorded in the version's metadata
    # `latest` still names the champion; the new version is there when named
    assert versions.resolve_model("latest", workspace=ws_path) == str(champion)
    assert versions.latest_version_dir(ws_path) == champion
    assert versions.resolve_model("gdino-v2", workspace=ws_path) == str(result.path)
    note = champion_note(ws_path, "latest")
    assert note is not None and "gdino-v2 not promoted" in note and "\n" not in note
    assert champion_note(ws_path, "gdino-v2") is None


def test_latest_without_any_promoted_version_says_why(tmp_path) -> None:
    v1 = versions.models_dir(tmp_path) / "gdino-v1"
    v1.mkdir(parents=True)
    meta = {"version": "gdino-v1", "promotion": {"promoted": False, "reason": "AP@0.9 0.1 <= 0.4"}}
    (v1 / versions.METADATA).write_text(json.dumps(meta))
    with pytest.raises(InputError, match=r"gdino-v1 not promoted: AP@0.9 0.1 <= 0.4"):
        versions.resolve_model("latest", workspace=tmp_path)
    assert versions.latest_version_dir(tmp_path) is None
