"""Seed add must not depend on the number of worker threads (issue 15, cause 4).

The race: :class:`autolabel.seed.pair.SearchIndex` built its stage-1 mosaics lazily and
published the (still empty) list before filling it, so a second thread searching at the
same time saw no originals: its crop became ``not_found`` with score -1 and no candidates.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from autolabel.imageio import load_rgb
from autolabel.seed.bootstrap import add_seed_crops
from autolabel.seed.pair import SearchIndex
from autolabel.store import Workspace
from autolabel.synth import make_seed_set


@pytest.fixture(scope="module")
def seed_set(tmp_path_factory) -> tuple[Path, Path]:
    """Crops whose names match no original (pairing goes through the search index)."""
    root = tmp_path_factory.mktemp("seedrace") / "set"
    make_seed_set(root, 4, seed=11, size=(180, 320))
    make_seed_set(root / "wide", 2, seed=12, size=(320, 180))  # a second thumbnail shape
    crops = root / "anon"
    crops.mkdir()
    for k, p in enumerate(sorted([*(root / "crops").iterdir(), *(root / "wide/crops").iterdir()])):
        (crops / f"c{k:02d}.png").write_bytes(p.read_bytes())
    originals = root / "all_originals"
    originals.mkdir()
    for p in [*(root / "originals").iterdir(), *(root / "wide/originals").iterdir()]:
        (originals / f"{p.parent.parent.name}_{p.name}").write_bytes(p.read_bytes())
    return crops, originals


def test_search_index_first_use_from_many_threads(seed_set, monkeypatch):
    crops, originals = seed_set
    paths = sorted(originals.iterdir())
    crop = load_rgb(sorted(crops.iterdir())[0])
    want = SearchIndex(paths, load_rgb).shortlist(crop, k=3)
    assert want
    import types

    import numpy as np

    import autolabel.seed.pair as pair

    def slow_zeros(*a, **k):  # widen the window in which the mosaics are being built
        time.sleep(0.02)
        return np.zeros(*a, **k)

    slow_np = types.SimpleNamespace(**{n: getattr(np, n) for n in dir(np) if not n[:2] == "__"})
    slow_np.zeros = slow_zeros
    monkeypatch.setattr(pair, "np", slow_np)
    for _ in range(3):
        index = SearchIndex(paths, load_rgb)
        barrier = threading.Barrier(4)
        got: list[list[int]] = []

        def search(index=index, barrier=barrier, got=got) -> None:
            barrier.wait()
            got.append(index.shortlist(crop, k=3))

        threads = [threading.Thread(target=search) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert got == [want] * 4


def _seed_table(tmp: Path, crops: Path, originals: Path, workers: int) -> list[tuple]:
    with Workspace.create(tmp) as ws:
        add_seed_crops(ws, crops, originals_dir=originals, workers=workers)
        rows = ws.conn.execute(
            "SELECT crop_path, original_path, x0, y0, x1, y1, score, status, info "
            "FROM seed_items ORDER BY crop_path"
        ).fetchall()
    return [tuple(r) for r in rows]


@pytest.mark.slow
def test_seed_add_is_independent_of_worker_count(seed_set, tmp_path):
    crops, originals = seed_set
    want = _seed_table(tmp_path / "ref", crops, originals, workers=1)
    assert len(want) == 6 and all(r[7] == "located" for r in want), want
    for run in range(2):
        for workers in (2, 4):
            got = _seed_table(tmp_path / f"w{workers}-{run}", crops, originals, workers)
            assert got == want, f"workers={workers}, run {run}"
