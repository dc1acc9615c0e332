"""The whole-export passes of a streaming export (file names, train/val split) run in the
spill database: the same result as the in-memory functions, memory flat in the images."""

from __future__ import annotations

import random
import tracemalloc
from pathlib import Path

import pytest

from autolabel.export import core
from autolabel.export.plan import unique_names
from autolabel.export.splits import TRAIN, VAL, assign_splits
from autolabel.export.stream import Spill
from tests.support.export_scale import fake_workspace


def _spill_names(tmp_path: Path, stems: dict[int, str]) -> dict[int, str]:
    with Spill(tmp_path / "names.sqlite") as spill:
        spill.add_stems(stems.items())
        return spill.resolve_names()


@pytest.mark.parametrize(
    "stems",
    [
        {1: "a", 2: "b"},
        {1: "x", 2: "X", 3: "y"},  # case-insensitive clash
        {18: "x", 3: "x", 5: "x-18"},  # a renamed x-18 meets a bare x-18: renamed again
        {1: "Straße", 2: "STRASSE", 3: "strasse-2"},  # casefold, not lower
        {7: "a-1", 1: "a", 2: "a", 9: "a-1"},
    ],
)
def test_names_in_sql_equal_unique_names(tmp_path: Path, stems: dict[int, str]):
    want = {i: n for i, n in unique_names(stems).items() if n != stems[i]}
    assert _spill_names(tmp_path, stems) == want


def test_names_in_sql_equal_unique_names_on_random_collisions(tmp_path: Path):
    rng = random.Random(5)
    stems = {i: rng.choice(["a", "A", "b", "a-3", "a-12", "B-7", "c"]) for i in range(1, 60)}
    want = {i: n for i, n in unique_names(stems).items() if n != stems[i]}
    assert want  # collisions on purpose
    assert _spill_names(tmp_path, stems) == want


def _spill_splits(tmp_path: Path, sha: dict[int, str], dh: dict[int, str | None], vf: float):
    with Spill(tmp_path / f"split{vf}.sqlite") as spill:
        for i in sha:
            spill.add_hashes(i, sha[i], dh[i])
        counts = spill.assign_splits(vf)
        got = dict(spill.conn.execute("SELECT image_id, split FROM hashes"))
    assert counts == {TRAIN: sum(s == TRAIN for s in got.values()), VAL: len(got) - counts[TRAIN]}
    return got


@pytest.mark.parametrize("vf", [0.0, 0.02, 0.3, 0.99])
def test_splits_in_sql_equal_assign_splits(tmp_path: Path, vf: float):
    rng = random.Random(11)
    n = 80
    sha = {i: f"{rng.randrange(60):064x}" for i in range(1, n + 1)}  # byte copies
    dh = {i: rng.choice([None, f"{rng.randrange(50):016x}"]) for i in range(1, n + 1)}
    # chains: 3 ~ 40 by dhash, 40 ~ 77 by sha: one group reached in two steps
    dh[3], dh[40], sha[77] = "f" * 16, "f" * 16, sha[40]
    want = assign_splits(sha, dh, val_fraction=vf)
    assert _spill_splits(tmp_path, sha, dh, vf) == want


@pytest.mark.parametrize("n", [1, 2, 3])
def test_splits_in_sql_small_exports_keep_both_rules(tmp_path: Path, n: int):
    sha = {i: f"{i:064x}" for i in range(1, n + 1)}
    dh: dict[int, str | None] = dict.fromkeys(sha)
    for vf in (0.1, 0.999999):
        assert _spill_splits(tmp_path, sha, dh, vf) == assign_splits(sha, dh, val_fraction=vf)


def _passes_peak(root: Path, n_images: int, per_image: int) -> tuple[int, int]:
    """Peak traced bytes of the names pass and of the split pass over one workspace."""
    ws = fake_workspace(root, n_images, per_image=per_image)
    try:
        with Spill(root / "spill.sqlite") as spill:
            tracemalloc.start()
            try:
                tracemalloc.reset_peak()
                total, renamed = core._names(ws, spill, "all", None)
                names_peak = tracemalloc.get_traced_memory()[1]
                assert total == n_images and renamed == {}
                for image_id in range(1, n_images + 1):  # what the cut pass stores
                    spill.add_hashes(image_id, f"{image_id:064x}", f"{image_id // 2:016x}")
                tracemalloc.reset_peak()
                base = tracemalloc.get_traced_memory()[0]
                counts = spill.assign_splits(0.1)
                split_peak = tracemalloc.get_traced_memory()[1] - base
                assert counts[TRAIN] + counts[VAL] == n_images and counts[VAL] > 0
            finally:
                tracemalloc.stop()
    finally:
        ws.close()
    return names_peak, split_peak


def test_names_and_split_passes_do_not_grow_with_images(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(core, "CHUNK_IMAGE_IDS", 25)  # one label chunk: 25 images
    _passes_peak(tmp_path / "warm", 30, per_image=1)  # one-time allocations (imports, caches)
    small = _passes_peak(tmp_path / "small", 300, per_image=4)
    big = _passes_peak(tmp_path / "big", 3000, per_image=4)  # 10x the images and labels
    # the in-memory passes took ~0.9 KB per image each: +2.4 MB here; a chunk of labels and
    # SQLite's fetches stay (~0.2 MB, within 0.1 MB of each other between runs)
    assert big[0] <= 1.5 * small[0] + 150_000, (small, big)
    assert big[1] <= 1.5 * small[1] + 50_000, (small, big)
