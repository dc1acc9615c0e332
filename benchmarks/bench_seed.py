"""Seed benchmark: crops/s for locating crops in given originals, and for pairing by search.

Generates synthetic phone screenshots (360x640 JPEG, ``autolabel.synth``) and hand-crop
imitations (jitter, brightness/contrast, 448 resize), then measures in one run:

1. locate with the pair given: ``locate(crop, original)`` per crop -> crops/s, and the
   share located with IoU >= 0.95;
2. pairing by search over ``--originals`` originals: building the thumbnail index
   (originals/s), then per crop the shortlist + full locate of the shortlisted originals ->
   crops/s, and the share paired with the right original (IoU >= 0.95).

    python benchmarks/bench_seed.py                          # ~2-3 min on 2 busy cores
    python benchmarks/bench_seed.py --originals 10000 --search-crops 100 --locate-crops 500

The synthetic set reuses 8 sample photos, so ~1/8 of the originals show another framing of
the crop's photo and often contain the crop's content exactly: a much harder (partly
ambiguous) case for the search than typical screenshots.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--originals", type=int, default=1000, help="originals searched over")
    ap.add_argument("--search-crops", type=int, default=20, help="crops paired by search")
    ap.add_argument("--locate-crops", type=int, default=100, help="crops located, pair given")
    ap.add_argument("--top-k", type=int, default=5, help="search shortlist length")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--unique-photos",
        action="store_true",
        help="mark every product photo with a random label, so no two originals show the "
        "same picture (like real, distinct products)",
    )
    args = ap.parse_args(argv)

    from autolabel.geometry import iou
    from autolabel.imageio import load_rgb
    from autolabel.seed.bootstrap import _locate_best
    from autolabel.seed.locate import locate
    from autolabel.seed.pair import SearchIndex
    from autolabel.synth import make_crop, make_screenshot

    rng = np.random.default_rng(args.seed)
    n_orig = max(args.originals, args.search_crops, args.locate_crops)
    with tempfile.TemporaryDirectory(prefix="bench_seed_") as tmp:
        root = Path(tmp)
        t = time.perf_counter()
        originals, crops, photos = [], [], []
        for i in range(n_orig):
            shot, box, meta = make_screenshot(rng, unique_mark=args.unique_photos)
            photos.append(meta["photo"])
            path = root / f"shot_{i:05d}.jpg"
            shot.save(path, quality=85)
            originals.append(path)
            if i < max(args.search_crops, args.locate_crops):
                crop, cbox, _ = make_crop(rng, shot, box)
                crops.append((np.asarray(crop.convert("RGB")), cbox))
        print(f"generated {n_orig} originals in {time.perf_counter() - t:.1f} s", file=sys.stderr)

        # 1. locate, pair given
        n_loc = args.locate_crops
        t = time.perf_counter()
        good = 0
        for i in range(n_loc):
            crop, cbox = crops[i]
            m = locate(crop, load_rgb(originals[i]))
            good += m.status == "located" and iou(m.box, cbox) >= 0.95
        loc_s = time.perf_counter() - t

        # 2. pairing by search
        t = time.perf_counter()
        index = SearchIndex(originals[: args.originals], load_rgb)
        idx_s = time.perf_counter() - t
        n_s = args.search_crops
        t = time.perf_counter()
        paired = in_shortlist = same_photo = 0
        t_short = 0.0
        for i in range(n_s):
            crop, cbox = crops[i]
            t1 = time.perf_counter()
            shortlist = index.shortlist(crop, k=args.top_k, load=load_rgb)
            t_short += time.perf_counter() - t1
            in_shortlist += i in shortlist
            m, hit, _ = _locate_best(crop, shortlist, index.originals, load_rgb, 0.7)
            paired += hit == i and m.box is not None and iou(m.box, cbox) >= 0.95
            same_photo += hit is not None and photos[hit] == photos[i]
        search_s = time.perf_counter() - t

    out = {
        "unique_photos": args.unique_photos,
        "locate_crops": n_loc,
        "locate_crops_per_s": round(n_loc / loc_s, 2),
        "locate_ms_per_crop": round(1000 * loc_s / n_loc, 1),
        "locate_iou95_share": round(good / n_loc, 4),
        "search_originals": args.originals,
        "index_originals_per_s": round(args.originals / idx_s, 1),
        "search_crops": n_s,
        "search_crops_per_s": round(n_s / search_s, 3),
        "search_ms_per_crop": round(1000 * search_s / n_s, 1),
        "shortlist_ms_per_crop": round(1000 * t_short / n_s, 1),
        "shortlist_recall": round(in_shortlist / n_s, 4),
        "search_paired_iou95_share": round(paired / n_s, 4),
        # paired with some original whose product photo is the same sample photo (another
        # framing of the same picture also contains the crop's content)
        "search_same_photo_share": round(same_photo / n_s, 4),
        "ratio_search_vs_given_pair": round((search_s / n_s) / (loc_s / n_loc), 2),
    }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
