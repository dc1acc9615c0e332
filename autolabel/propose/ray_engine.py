"""The Ray engine of propose: the same per-image work as the local engine, on Ray Data.

id ranges -> pending rows (read tasks) -> decode tasks -> an actor pool holding the model
-> the driver, which writes each batch as the local engine does (one transaction, resume
marks). Actors take ``propose.ray_cpus_per_actor`` CPUs (0.5 by default: with whole CPUs per
actor on 2 cores the read tasks starve and the job hangs).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np

from autolabel.propose.detection import build_models, process_loaded
from autolabel.propose.loading import Loaded, load_for_detector
from autolabel.propose.settings import ProposeSettings
from autolabel.types import Proposals


def _proposals_to_json(p: Proposals) -> str:
    return json.dumps(
        {
            "xyxy": p.xyxy.tolist(),
            "score": p.score.tolist(),
            "phrase": [str(s) for s in p.phrase],
            "data": {
                k: np.asarray(v, np.float64).tolist()
                for k, v in p.data.items()
                if np.asarray(v).ndim == 1
            },
        }
    )


def _proposals_from_json(text: str) -> Proposals:
    d = json.loads(text)
    n = len(d["score"])
    return Proposals(
        xyxy=np.asarray(d["xyxy"], np.float32).reshape(n, 4),
        score=np.asarray(d["score"], np.float32),
        phrase=d["phrase"],
        data={k: np.asarray(v, np.float32) for k, v in d["data"].items()},
    )


class _RayProposer:
    """Ray Data actor: holds the model, turns a batch of decoded images into results."""

    def __init__(self, settings: ProposeSettings) -> None:
        self.settings = settings
        self.detector, self.refiner = build_models(settings)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        loaded = []
        for i in range(len(batch["image_id"])):
            err = str(batch["error"][i])
            img = batch["image"][i]
            loaded.append(
                Loaded(
                    int(batch["image_id"][i]),
                    None if err else np.asarray(img, np.uint8),
                    int(batch["width"][i]),
                    int(batch["height"][i]),
                    err or None,
                )
            )
        results, errors = process_loaded(self.detector, loaded, self.settings.prompt, self.refiner)
        ids = [i for i, _ in results] + [i for i, _ in errors]
        payload = [_proposals_to_json(p) for _, p in results] + ["" for _ in errors]
        errs = ["" for _ in results] + [r for _, r in errors]
        return {
            "image_id": np.asarray(ids, np.int64),
            "result": np.asarray(payload, dtype=object),
            "error": np.asarray(errs, dtype=object),
        }


def ray_batches(
    ws: Any, settings: ProposeSettings, run: Any, stop: threading.Event
) -> Iterator[tuple[list[tuple[int, Proposals]], list[tuple[int, str]], float]]:
    """Ray Data pipeline: id ranges -> pending rows -> decode -> actor pool -> driver."""
    import ray

    from autolabel.store import runs as store_runs

    p = settings.propose
    if not ray.is_initialized():
        ray.init(address=p.ray_address or None, include_dashboard=False)
    lo, hi = store_runs.image_id_bounds(ws)
    span = max(p.batch_size * 64, 256)
    ranges = [{"lo": a, "hi": min(a + span, hi + 1)} for a in range(lo, hi + 1, span)]
    if not ranges:
        return
    db_path = str(ws.db_path)
    key = run.key
    opts = {
        "max_size": settings.detect.max_size,
        "max_pixels": settings.image.max_pixels,
        "max_side": settings.image.max_side,
    }

    def read_range(item: dict[str, Any]) -> list[dict[str, Any]]:
        from autolabel.store.runs import pending_in_range

        return pending_in_range(db_path, key, int(item["lo"]), int(item["hi"]))

    def decode(row: dict[str, Any]) -> dict[str, Any]:
        got = load_for_detector(int(row["id"]), row["path"], **opts)
        return {
            "image_id": got.image_id,
            "image": got.image if got.image is not None else np.zeros((1, 1, 3), np.uint8),
            "width": got.width,
            "height": got.height,
            "error": got.error or "",
        }

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.enable_tensor_extension_casting = True
    ds = ray.data.from_items(ranges).flat_map(read_range, num_cpus=0.25)
    if p.limit is not None:
        ds = ds.limit(p.limit)
    ds = ds.map(decode, num_cpus=0.25).map_batches(
        _RayProposer,
        fn_constructor_kwargs={"settings": settings},
        batch_size=p.batch_size,
        compute=ray.data.ActorPoolStrategy(size=max(1, p.ray_actors)),
        num_cpus=p.ray_cpus_per_actor,
        num_gpus=p.ray_gpus_per_actor or None,
        batch_format="numpy",
    )
    t = time.perf_counter()
    for batch in ds.iter_batches(batch_size=p.batch_size, batch_format="numpy"):
        results: list[tuple[int, Proposals]] = []
        errors: list[tuple[int, str]] = []
        for i in range(len(batch["image_id"])):
            image_id = int(batch["image_id"][i])
            if batch["error"][i]:
                errors.append((image_id, str(batch["error"][i])))
            else:
                results.append((image_id, _proposals_from_json(str(batch["result"][i]))))
        now = time.perf_counter()
        yield results, errors, now - t
        t = now
        if stop.is_set():
            return
