"""One text rule for exported boxes: reviewer caption > seed box > the one seed caption the
box's phrase was derived from > the phrase (issue 18 item 5)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from autolabel.config import ExportConfig
from autolabel.export import export_dataset
from autolabel.export.plan import pick_caption
from autolabel.seed.calibrate import derive_prompts
from autolabel.store import exports as store
from autolabel.store import runs as store_runs
from autolabel.store.db import utcnow
from autolabel.store.seed import PHRASE_CAPTIONS, phrase_captions
from autolabel.types import Label
from tests.support.proposals import mock_proposals

SHOE = "White running shoe with blue stripes, size 42"
BAG = "Black leather handbag for women"
BOX = (40.0, 30.0, 200.0, 190.0)


def _label(phrase: str, caption: str | None = None) -> Label:
    return Label(1, 1, "/x.jpg", None, 300, 300, BOX, phrase, caption, 0.9,
                 "auto", "auto", 1, None, None)  # fmt: skip


def _seed(ws, crop: str, caption: str | None, image_id: int | None = None) -> None:
    with ws.transaction() as c:
        c.execute(
            "INSERT INTO seed_items(crop_path, image_id, x0, y0, x1, y1, status, caption, "
            "added_at) VALUES (?,?,?,?,?,?,?,?,?)",
            (crop, image_id, *(BOX if image_id else (None,) * 4),
             "located" if image_id else "no_original", caption, utcnow()),
        )  # fmt: skip


@pytest.mark.parametrize(
    "caption, seeds, mapping, want",
    [
        ("edited", [(BOX, "seed")], {"white running shoe": SHOE}, ("edited", "reviewed")),
        (None, [(BOX, "seed")], {"white running shoe": SHOE}, ("seed", "seed")),
        (None, [], {"white running shoe": SHOE}, (SHOE, "seed-phrase")),
        (None, [], {"handbag": BAG}, ("white running shoe", "phrase")),
        (None, [], None, ("white running shoe", "phrase")),
    ],
)
def test_pick_caption_rule(caption, seeds, mapping, want):
    assert pick_caption(_label("white running shoe", caption), seeds, mapping) == want


def test_phrase_sources_one_caption_many_captions_and_manual_prompt(workspace):
    ws = workspace
    _seed(ws, "/s/shoe.png", SHOE, None)
    _seed(ws, "/s/bag1.png", BAG, None)
    _seed(ws, "/s/bag2.png", "Black leather handbag with chain", None)
    _seed(ws, "/s/none.png", None, None)
    derive_prompts(ws)
    stored = ws.get_setting(PHRASE_CAPTIONS)
    assert stored["white running shoe"] == [SHOE]
    assert sorted(stored["black leather handbag"]) == sorted(
        [BAG, "Black leather handbag with chain"]
    )
    # two products gave "black leather handbag": which one a box shows is unknown
    assert phrase_captions(ws) == {"white running shoe": SHOE}
    # --prompt: an item keeps its caption phrase only when the prompt has it; a phrase that
    # replaces the caption's own (the prompt's first) was not derived from that caption
    derive_prompts(ws, prompt="product. white running shoe")
    assert phrase_captions(ws) == {"white running shoe": SHOE}
    derive_prompts(ws, prompt="gadget")
    assert phrase_captions(ws) == {}


def _image(path: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 255, (300, 300, 3), dtype=np.uint8)).save(path)


def _manifest(version: Path) -> list[dict]:
    text = (version / "meta" / "manifest.jsonl").read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines()]


def test_export_seed_box_and_auto_box_share_the_full_caption(workspace, tmp_path):
    from autolabel.ingest import ingest

    ws = workspace
    photos = tmp_path / "photos"
    for i, name in enumerate(("seed", "auto", "edited", "typed")):
        _image(photos / f"{name}.png", i)
    ingest(ws, [photos], workers=1)
    ids = {Path(r[1]).stem: r[0] for r in ws.conn.execute("SELECT id, path FROM images")}
    _seed(ws, "/s/shoe.png", SHOE, ids["seed"])
    _seed(ws, "/s/plain.png", None, None)  # a crop without caption
    derive_prompts(ws)  # the `seed prompts` step: "white running shoe" from SHOE
    run = store_runs.create_run(
        ws, detector="exemplar", model="m", model_version="v1", refiner=None,
        prompt="white running shoe", box_threshold=0.3, text_threshold=0.25,
    )  # fmt: skip
    found = [(ids[k], mock_proposals([BOX], phrase=["white running shoe"])) for k in
             ("auto", "edited")]  # fmt: skip
    store_runs.write_batch(ws, run, found)
    store_runs.finish_run(ws, run)
    typed = store_runs.create_run(
        ws, detector="grounding-dino", model="m", model_version="v1", refiner=None,
        prompt="gadget", box_threshold=0.3, text_threshold=0.25,
    )  # fmt: skip
    store_runs.write_batch(ws, typed, [(ids["typed"], mock_proposals([BOX], phrase=["gadget"]))])
    store_runs.finish_run(ws, typed)
    pids = {r[1]: r[0] for r in ws.conn.execute("SELECT id, image_id FROM proposals")}
    store.set_routes(ws, list(pids.values()), "auto")
    store.add_decision(ws, pids[ids["edited"]], "caption", reviewer="ann", caption="my words")

    res = export_dataset(
        ws, tmp_path / "out", ExportConfig(formats=["swift"], val_fraction=0, size=160, min_size=32)
    )
    by_image = {Path(m["source_path"]).stem: m for m in _manifest(res.path)}
    got = {k: (m["caption"], m["caption_source"]) for k, m in by_image.items()}
    assert got == {
        "seed": (SHOE, "seed"),
        "auto": (SHOE, "seed-phrase"),
        "edited": ("my words", "reviewed"),
        "typed": ("gadget", "phrase"),
    }
    texts = sorted(r["text"] for r in map(json.loads, (res.path / "swift.jsonl").open()))
    assert texts == sorted([SHOE, SHOE, "my words", "gadget"])
