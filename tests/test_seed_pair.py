"""Pairing crops with originals: stems, mapping files, and search over many originals."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from autolabel.errors import InputError
from autolabel.geometry import iou
from autolabel.seed.bootstrap import add_seed_crops
from autolabel.seed.pair import match_stem, read_mapping, resolve_mapping, stem_index
from autolabel.store.seed import list_seed_items
from autolabel.synth import make_seed_set

ORIGINALS = ["shot_0007", "shot_00071", "product_A", "product_A_448", "IMG 12"]


@pytest.mark.parametrize(
    ("crop_stem", "expected"),
    [
        ("shot_0007_448_v2", "shot_0007"),
        ("shot_0007_crop", "shot_0007"),
        ("shot_0007", "shot_0007"),
        ("shot_00071_crop", "shot_00071"),  # not shot_0007: the prefix must end at a separator
        ("shot_00072_crop", None),
        ("product_A_448_v2", "product_A_448"),  # the longest prefix wins
        ("product_A-crop", "product_A"),
        ("product_AB", None),
        ("IMG 12 (1)", "IMG 12"),
        ("other", None),
    ],
)
def test_match_stem(crop_stem: str, expected: str | None) -> None:
    stems = stem_index(Path(f"/o/{s}.jpg") for s in ORIGINALS)
    hit = match_stem(crop_stem, stems)
    assert (hit.stem if hit else None) == expected


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        (
            "m.csv",
            "crop,original\na.png,x.jpg\nb.png,y.jpg\n",
            {"a.png": "x.jpg", "b.png": "y.jpg"},
        ),
        ("m.csv", "a.png, x.jpg\n", {"a.png": "x.jpg"}),
        ("m.json", json.dumps({"a.png": "x.jpg"}), {"a.png": "x.jpg"}),
        ("m.jsonl", '{"crop": "a.png", "original": "x.jpg"}\n\n', {"a.png": "x.jpg"}),
        ("m.csv", "a.png\n", InputError),
        ("m.jsonl", '{"crop": "a.png"}\n', InputError),
        ("m.json", "[1, 2]", InputError),
    ],
)
def test_read_mapping(tmp_path: Path, name: str, text: str, expected) -> None:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    if isinstance(expected, type):
        with pytest.raises(expected):
            read_mapping(p)
    else:
        assert read_mapping(p) == expected


def test_resolve_mapping_by_name_and_path(tmp_path: Path) -> None:
    crops = [tmp_path / "c" / "a.png", tmp_path / "c" / "b.png", tmp_path / "c" / "z.png"]
    originals = [tmp_path / "o" / "x.jpg", tmp_path / "o" / "y.jpg"]
    got = resolve_mapping({"a.png": "x.jpg", str(crops[1]): str(originals[1])}, crops, originals)
    assert got == {crops[0]: originals[0], crops[1]: originals[1], crops[2]: None}


@pytest.fixture(scope="module")
def renamed_set(tmp_path_factory):
    """Crops renamed so stems do not pair: pairing must come from the search."""
    root = tmp_path_factory.mktemp("search")
    truth = make_seed_set(root / "set", 16, seed=3, n_unrelated=2)
    crops = root / "crops"
    crops.mkdir()
    for i, t in enumerate(truth):
        shutil.copy(root / "set" / t.crop, crops / f"img_{i:03d}.png")
    return root, truth


def test_pairing_by_search(renamed_set, workspace) -> None:
    root, truth = renamed_set
    report = add_seed_crops(workspace, root / "crops", originals_dir=root / "set" / "originals")
    assert report.paired_by["search"] == len(truth)
    assert report.located == 16 and report.not_found == 2
    items = {Path(it.crop_path).name: it for it in list_seed_items(workspace)}
    for i, t in enumerate(truth):
        it = items[f"img_{i:03d}.png"]
        if t.original is None:
            assert it.status == "not_found" and it.box is None and it.original_path is None
        else:
            assert it.status == "located"
            assert Path(it.original_path).name == Path(t.original).name
            assert iou(it.box, t.crop_box) >= 0.95
            assert it.image_id is not None


def test_pairing_by_stem_and_mapping(tmp_path: Path, workspace) -> None:
    truth = make_seed_set(tmp_path / "s", 4, seed=9)
    # one crop renamed and paired through a mapping file instead
    src = tmp_path / "s" / truth[0].crop
    dst = src.with_name("renamed.png")
    src.rename(dst)
    mapping = tmp_path / "map.csv"
    mapping.write_text(f"crop,original\nrenamed.png,{Path(truth[0].original).name}\n")
    report = add_seed_crops(
        workspace,
        tmp_path / "s" / "crops",
        originals_dir=tmp_path / "s" / "originals",
        mapping=mapping,
        captions=tmp_path / "s" / "captions.jsonl",
    )
    assert report.paired_by == {"mapping": 1, "stem": 3, "search": 0}
    assert report.located == 4
    items = list_seed_items(workspace)
    by_name = {Path(it.crop_path).name: it for it in items}
    assert Path(by_name["renamed.png"].original_path).name == Path(truth[0].original).name
    # captions matched by the path written in the JSONL (relative to its folder)
    for t in truth[1:]:
        assert by_name[Path(t.crop).name].caption == t.caption
    # a re-run skips unchanged crops; --redo locates again with the same boxes
    again = add_seed_crops(
        workspace, tmp_path / "s" / "crops", originals_dir=tmp_path / "s" / "originals"
    )
    assert again.skipped == 4 and again.located == 0
    redo = add_seed_crops(
        workspace,
        tmp_path / "s" / "crops",
        originals_dir=tmp_path / "s" / "originals",
        mapping=mapping,
        redo=True,
    )
    assert redo.located == 4
    after = {Path(it.crop_path).name: it for it in list_seed_items(workspace)}
    assert len(after) == 4
    for name, it in after.items():
        assert np.allclose(it.box, by_name[name].box)
        assert it.caption == by_name[name].caption  # kept although not given again


def test_crops_only_are_no_original(tmp_path: Path, workspace) -> None:
    truth = make_seed_set(tmp_path / "s", 2, seed=1)
    (tmp_path / "s" / truth[0].crop).with_suffix(".txt").write_text("黑色皮质手提包", "utf-8")
    report = add_seed_crops(workspace, tmp_path / "s" / "crops")
    assert report.no_original == 2
    items = list_seed_items(workspace)
    assert {it.status for it in items} == {"no_original"}
    assert all(it.box is None and it.original_path is None for it in items)
    first = next(it for it in items if it.crop_path.endswith(Path(truth[0].crop).name))
    assert first.caption == "黑色皮质手提包" and first.phrase == "black leather handbag"


def test_missing_or_empty_folder(tmp_path: Path, workspace) -> None:
    with pytest.raises(InputError, match="no such folder"):
        add_seed_crops(workspace, tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="found none"):
        add_seed_crops(workspace, tmp_path / "empty")


def test_unreadable_crop_is_recorded_not_fatal(tmp_path: Path, workspace) -> None:
    make_seed_set(tmp_path / "s", 1, seed=6)
    (tmp_path / "s" / "crops" / "broken_crop.png").write_bytes(b"not a png")
    report = add_seed_crops(
        workspace, tmp_path / "s" / "crops", originals_dir=tmp_path / "s" / "originals"
    )
    assert report.crops == 2 and report.located == 1 and report.errors == 1
    broken = [it for it in list_seed_items(workspace) if it.crop_path.endswith("broken_crop.png")]
    assert broken[0].status == "not_found" and broken[0].box is None


def test_inexact_boxes_are_flagged_not_stored(tmp_path: Path, workspace) -> None:
    """Below the strict full-resolution bar a found crop is not_found, flagged loose, with
    its best box kept for a person; the box never reaches the seed boxes."""
    from autolabel.store.seed import seed_boxes_by_image, seed_verification

    truth = make_seed_set(tmp_path / "s", 3, seed=2)
    report = add_seed_crops(
        workspace,
        tmp_path / "s" / "crops",
        originals_dir=tmp_path / "s" / "originals",
        min_verify=0.9999,  # stricter than any real match: everything is flagged
    )
    assert report.located == 0 and report.not_found == 3 and report.loose == 3
    checks = seed_verification(workspace)
    for it in list_seed_items(workspace):
        assert it.status == "not_found" and it.box is None
        c = checks[it.id]
        assert c["flag"] == "loose" and 0.9 < c["verify"] < 0.9999
        t = next(t for t in truth if it.crop_path.endswith(Path(t.crop).name))
        assert iou(c["best_box"], t.crop_box) >= 0.95  # the box a person would confirm
    assert seed_boxes_by_image(workspace) == {}
