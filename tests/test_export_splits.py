"""Train/val split: grouped by content and near-duplicates, deterministic, non-trivial."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from autolabel.export.splits import TRAIN, VAL, assign_splits, dhash


def _photo(seed: int, size=(120, 90)) -> Image.Image:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 255, size=(9, 12, 3), dtype=np.uint8)
    return Image.fromarray(small).resize(size, Image.Resampling.BILINEAR)


def test_dhash_is_stable_under_resizing_and_reencoding_but_tells_photos_apart(tmp_path):
    a = _photo(1)
    a.resize((240, 180)).save(tmp_path / "big.jpg", quality=70)
    assert dhash(Image.open(tmp_path / "big.jpg")) == dhash(a)
    assert dhash(_photo(2)) != dhash(a)
    assert len(dhash(a)) == 16


def test_near_duplicates_share_a_split_and_order_does_not_matter():
    n = 40
    content = {i: f"sha{i}" for i in range(n)}
    dh = {i: f"{i:016x}" for i in range(n)}
    dh[7] = dh[3]  # image 7 is a re-encoded copy of image 3
    content[9] = content[4]  # image 9 is a byte copy of image 4
    splits = assign_splits(content, dh, val_fraction=0.3)
    assert splits[7] == splits[3] and splits[9] == splits[4]
    assert {TRAIN, VAL} == set(splits.values())
    rev = assign_splits(dict(reversed(content.items())), dh, val_fraction=0.3)
    assert rev == splits
    # adding images never moves an existing one
    more = assign_splits({**content, 99: "sha99"}, {**dh, 99: None}, val_fraction=0.3)
    assert {i: more[i] for i in splits} == splits


@pytest.mark.parametrize(
    "n, fraction, want_val",
    [(1, 0.1, 0), (2, 0.01, 1), (5, 0.0, 0)],  # one group: all train; tiny share: still one
)
def test_small_exports(n, fraction, want_val):
    content = {i: f"c{i}" for i in range(n)}
    splits = assign_splits(content, {}, val_fraction=fraction)
    assert sum(v == VAL for v in splits.values()) == want_val


def test_dhash_of_a_full_size_original_matches_its_draft_and_thumbnail_sizes():
    # the export hashes whatever it decoded (full, or JPEG-drafted by 2/4/8): the box-averaged
    # path for large images must give the hash of the smaller decodes
    big = _photo(3, size=(1080, 2340))
    want = dhash(big)
    for k in (2, 4, 8):
        assert dhash(big.reduce(k)) == want, k
    assert dhash(big.resize((90, 195), Image.Resampling.BILINEAR)) == want
    assert dhash(_photo(4, size=(1080, 2340))) != want
