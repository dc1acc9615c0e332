"""Folders of generated app captures for the ``regions`` wiring tests (seed + new images)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from autolabel import synth

SEED_PRODUCTS = list(range(100, 110))


def write_app_folders(
    root: Path, *, n_seed: int = 10, n_new: int = 8, scale: float = 0.4, seed: int = 11
) -> dict[str, object]:
    """Seed originals + hand crops (same stems) and new captures, as a user would have them.

    Layout: ``root/seed/originals/shot_0003.png``, ``root/seed/crops/shot_0003_448.png``
    (no captions), ``root/in/new_0000.png``. Half of the new captures show products absent
    from the seed.

    Returns:
        ``{"originals", "crops", "in", "truth"}``; ``truth`` maps a new capture's file name
        to its main-picture box ``(x0, y0, x1, y1)``.
    """
    seed_set = synth.make_app_samples(
        n_seed,
        seed,
        products=SEED_PRODUCTS,
        with_crops=True,
        scale=scale,
        sizes=synth.PHONE_SIZES[:2],
        exif_prob=0.0,
    )
    seen = synth.make_app_samples(
        n_new - n_new // 2, seed + 1, products=SEED_PRODUCTS[::-1], scale=scale, exif_prob=0.0
    )
    unseen = synth.make_app_samples(
        n_new // 2, seed + 2, products=list(range(5000, 5000 + n_new)), scale=scale, exif_prob=0.0
    )
    originals, crops, new = root / "seed" / "originals", root / "seed" / "crops", root / "in"
    for d in (originals, crops, new):
        d.mkdir(parents=True, exist_ok=True)
    for i, s in enumerate(seed_set):
        Image.fromarray(s.image).save(originals / f"shot_{i:04d}.png")
        Image.fromarray(np.asarray(s.crop)).save(crops / f"shot_{i:04d}_448.png")
    truth = {}
    for i, s in enumerate(seen + unseen):
        name = f"new_{i:04d}.png"
        Image.fromarray(s.image).save(new / name)
        truth[name] = tuple(float(v) for v in s.box)
    return {"originals": originals, "crops": crops, "in": new, "truth": truth}
