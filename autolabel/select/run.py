"""``autolabel select``: signals -> calibrated P(correct) -> routes, queue and audit sample.

The one module of the select stage that talks to the store; the others are pure. Reads
everything from the workspace, so it can be re-run after every review round: it
refits the calibration on the decisions made so far and re-routes every proposal that no
person has decided or claimed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from autolabel import constants as C
from autolabel.geometry import box_iou
from autolabel.select.calibrate import (
    SIDES,
    Calibrator,
    LazyFeatures,
    fit_calibrator,
    fit_rate_calibrator,
    weak_sides_column,
)
from autolabel.select.dedupe import learned_max_per_image, one_crop_per_object
from autolabel.select.layout import fit_layout, layout_signals, suspicious_upscale
from autolabel.select.route import (
    RoutePlan,
    auto_accept_mask,
    name_column,
    parse_budget,
    plan_routes,
    review_value,
)
from autolabel.select.signals import (
    EMBED_DIM,
    exemplar_similarity,
    group_competition,
    size_aspect_outliers,
)
from autolabel.select.stats import compact_estimate, estimate_from_outcomes

if TYPE_CHECKING:  # pragma: no cover
    from autolabel.config import QualityConfig, SelectConfig
    from autolabel.store import Workspace
    from autolabel.store.select import CurrentProposals, Decisions

Log = Callable[[str], None]
ASSESS_CHUNK = 1 << 13
"""Boxes whose features are made and assessed at a time."""


def _quiet(_: str) -> None:
    pass


def _preload_sklearn() -> None:
    try:
        import sklearn.linear_model
        import sklearn.pipeline
        import sklearn.preprocessing  # noqa: F401
    except ImportError:  # pragma: no cover - reported where it is used
        pass


@dataclass
class RowSignals:
    """Every signal of chosen rows of the current proposals, made on demand: the stored ones
    read from the store (:func:`autolabel.store.select.read_signals`), the rest computed —
    ``margin`` and ``n_competing`` per (image, phrase) group (held for all rows: 16 bytes a
    box), size / aspect outliers (>= 3 located seed boxes) and layout
    (``layout_outlier``, ``upscale``: :mod:`autolabel.select.layout`) per box.

    Select calls it a chunk of rows at a time through
    :class:`autolabel.select.calibrate.LazyFeatures`, so no signal column of every box is
    in memory. A detector's own ``n_competing`` wins where present.

    Attributes:
        cur: the current proposals (``n`` rows).
        read: proposal ids ``(m,)`` -> their stored signals, name -> ``(m,)``.
        margin / competing: ``(n,)`` computed across each row's group (``competing``: whole
            counts, float32).
        seed: :func:`autolabel.store.select.load_seed_boxes` output.
        prior: the seed's layout (None: layout signals are NaN).
        export_size: long side of exported crops (None: ``upscale`` is NaN).
        extra: more ``(n,)`` columns (``exemplar_sim``).
    """

    cur: CurrentProposals
    read: Callable[[np.ndarray], dict[str, np.ndarray]]
    margin: np.ndarray
    competing: np.ndarray
    seed: dict[str, np.ndarray]
    prior: Any
    export_size: int | None
    extra: dict[str, np.ndarray]

    def __call__(self, idx: np.ndarray) -> dict[str, np.ndarray]:
        """name -> ``(m,)`` values of rows ``idx`` (``(m,)`` int)."""
        cur = self.cur
        sig = self.read(cur.ids[idx])
        det = sig.get("n_competing")
        comp = self.competing[idx].astype(np.float64)
        sig["margin"] = self.margin[idx]
        sig["n_competing"] = comp if det is None else np.where(np.isnan(det), comp, det)
        xyxy, wh = cur.xyxy[idx], self._wh(idx)
        if self.seed["xyxy"].shape[0]:
            sig["size_outlier"], sig["aspect_outlier"] = size_aspect_outliers(
                xyxy, wh, self.seed["xyxy"], self.seed["wh"]
            )
        sig.update(layout_signals(xyxy, wh, self.prior, export_size=self.export_size))
        sig.update({k: v[idx] for k, v in self.extra.items()})
        return sig

    def _wh(self, idx: np.ndarray | slice) -> np.ndarray:
        """``(m, 2)`` float64 image width and height of rows ``idx``."""
        return np.stack([self.cur.width[idx], self.cur.height[idx]], axis=1).astype(np.float64)

    def suspicious_upscale(self, chunk: int = 1 << 15) -> np.ndarray:
        """``(n,)`` bool: :func:`autolabel.select.layout.suspicious_upscale` of every row."""
        cur = self.cur
        out = np.zeros(len(cur), bool)
        for a in range(0, len(cur), chunk):
            r = slice(a, a + chunk)
            up = layout_signals(cur.xyxy[r], self._wh(r), self.prior, export_size=self.export_size)
            out[r] = suspicious_upscale(up["upscale"])
        return out


def row_signals(
    ws: Workspace,
    cur: CurrentProposals,
    seed: dict[str, np.ndarray],
    *,
    export_size: int | None = None,
    extra: dict[str, np.ndarray] | None = None,
) -> RowSignals:
    """:class:`RowSignals` of ``cur``, reading stored signals from ``ws``."""
    from autolabel.store.select import read_signals

    # one code per (image, phrase) pair: group_competition needs equal codes, not dense ones
    # (group_codes' two np.unique passes held ~10 columns of every box at once)
    margin, comp = group_competition(cur.score, cur.image_id * len(cur.phrases) + cur.phrase_code)
    prior = fit_layout(seed["xyxy"], seed["wh"], export_size=export_size)
    return RowSignals(
        cur=cur,
        read=lambda ids: read_signals(ws, ids),
        margin=margin,
        competing=comp.astype(np.float32),  # whole counts: exact
        seed=seed,
        prior=prior,
        export_size=export_size,
        extra=dict(extra or {}),
    )


def _rows_of(cur: CurrentProposals, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows of ``cur`` (ids sorted) holding proposal ``ids``: ``(pos (m,), found (m,))``;
    ``pos`` is only meaningful where ``found``."""
    if not len(cur):
        return np.zeros(len(ids), np.int64), np.zeros(len(ids), bool)
    pos = np.clip(np.searchsorted(cur.ids, ids), 0, len(cur) - 1)
    return pos, cur.ids[pos] == ids


def labelled_examples(
    cur: CurrentProposals,
    decisions: Decisions,
    seed: dict[str, np.ndarray],
    *,
    match_iou: float = C.MATCH_IOU,
) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """Rows of ``cur`` with a known outcome and that outcome (1 = correct).

    - Review decisions: accept = correct; adjust to a box with IoU >= ``match_iou`` with
      the proposal = correct; a larger adjustment or a reject = wrong.
    - Seed originals: every undecided current proposal on an image with located seed boxes
      is correct iff its IoU with one of them is >= ``match_iou``.

    Returns:
        ``(idx (m,), y (m,), {"decisions": ..., "seed": ...})``.
    """
    from autolabel.store.select import decision_correct

    idx_parts: list[np.ndarray] = []
    y_parts: list[np.ndarray] = []
    pos, in_cur = _rows_of(cur, decisions.proposal_id)
    d_idx = pos[in_cur]
    d_y = np.array(
        [
            decision_correct(a, tuple(pb), tuple(b), match_iou=match_iou)
            for a, pb, b in zip(
                decisions.action[in_cur],
                decisions.proposal_box[in_cur],
                decisions.box[in_cur],
                strict=True,
            )
        ],
        dtype=np.int64,
    )
    idx_parts.append(d_idx)
    y_parts.append(d_y)
    n_seed = 0
    if seed["image_id"].size and len(cur):
        decided = np.zeros(len(cur), bool)
        decided[d_idx] = True
        on_seed = np.flatnonzero(np.isin(cur.image_id, seed["image_id"]) & ~decided)
        if on_seed.size:
            ys = np.zeros(on_seed.size, np.int64)
            for img in np.unique(cur.image_id[on_seed]):
                rows = on_seed[cur.image_id[on_seed] == img]
                boxes = seed["xyxy"][seed["image_id"] == img]
                iou = box_iou(cur.xyxy[rows], boxes).max(axis=1)
                ys[np.searchsorted(on_seed, rows)] = (iou >= match_iou).astype(np.int64)
            idx_parts.append(on_seed)
            y_parts.append(ys)
            n_seed = int(on_seed.size)
    idx = np.concatenate(idx_parts) if idx_parts else np.zeros(0, np.int64)
    y = np.concatenate(y_parts) if y_parts else np.zeros(0, np.int64)
    return idx, y, {"decisions": int(d_idx.size), "seed": n_seed}


def _exemplar_sim(
    ws: Workspace, cur: CurrentProposals, cfg: SelectConfig, log: Log
) -> np.ndarray | None:
    from autolabel.errors import ImageError
    from autolabel.imageio import load_rgb
    from autolabel.select.diversity import EmbeddingCache
    from autolabel.select.signals import crop_embedding, image_embedding
    from autolabel.store.select import image_paths, seed_crop_paths

    if not cfg.exemplar_similarity or not len(cur):
        return None
    crops = seed_crop_paths(ws)
    if not crops:
        return None
    images = np.unique(cur.image_id)
    if images.size > cfg.max_image_loads:
        log(
            f"exemplar similarity skipped: {images.size} images > select.max_image_loads "
            f"({cfg.max_image_loads})"
        )
        return None
    seed_rows = []
    for path in crops:
        try:
            seed_rows.append(image_embedding(load_rgb(path)))
        except ImageError:
            continue
    if not seed_rows:
        return None
    cache = EmbeddingCache(ws.path / "cache" / "crop_embeddings.npz")
    emb, found = cache.lookup(cur.ids, EMBED_DIM)
    todo = np.flatnonzero(~found)
    if todo.size:
        paths = image_paths(ws, np.unique(cur.image_id[todo]).tolist())
        log(f"exemplar similarity: embedding boxes of {len(paths)} images (cached afterwards)")
        for img in np.unique(cur.image_id[todo]):
            rows = todo[cur.image_id[todo] == img]
            try:
                pixels = load_rgb(paths[int(img)])
            except (ImageError, KeyError):
                continue
            emb[rows] = crop_embedding(pixels, cur.xyxy[rows])
            cache.put(cur.ids[rows], emb[rows])
        cache.save()
    sim = np.full(len(cur), np.nan)
    ok = ~np.isnan(emb).any(axis=1)
    sim[ok] = exemplar_similarity(emb[ok], np.stack(seed_rows))
    return sim


def _clusters(
    ws: Workspace,
    cur: CurrentProposals,
    rows: np.ndarray,
    p: np.ndarray,
    cfg: SelectConfig,
    budget: int | None,
    log: Log,
) -> np.ndarray:
    """Cluster label per routable row (images beyond the embedding cap are singletons)."""
    from autolabel.select.diversity import EmbeddingCache, cluster_images, embed_image_file
    from autolabel.store.select import image_paths

    img = cur.image_id[rows]
    labels = np.int64(1 << 40) + img  # singleton per image by default
    auto = auto_accept_mask(p, cfg.target_precision, floor=max(0.5, cfg.reject_below))
    cand = np.flatnonzero(~auto & (p >= cfg.reject_below / 2.0))
    if cand.size == 0:
        return labels
    cap = cfg.max_image_loads if budget is None else min(cfg.max_image_loads, 4 * budget + 64)
    order = cand[np.argsort(-review_value(p[cand]), kind="stable")]
    _, first = np.unique(img[order], return_index=True)
    chosen = img[order][np.sort(first)][:cap]
    if chosen.size < 2:
        return labels
    cache = EmbeddingCache(ws.path / "cache" / "image_embeddings.npz")
    emb, found = cache.lookup(chosen, EMBED_DIM)
    todo = np.flatnonzero(~found)
    if todo.size:
        paths = image_paths(ws, chosen[todo].tolist())
        new = []
        for j in todo:
            vec = embed_image_file(paths.get(int(chosen[j]), ""))
            if vec is not None:
                emb[j] = vec
                new.append(j)
        cache.put(chosen[new], emb[new])
        cache.save()
        if len(new) < todo.size:
            log(f"diversity: {todo.size - len(new)} images could not be read (no embedding)")
    k = int(min(256, max(2, round(2 * np.sqrt(chosen.size)))))
    lab = cluster_images(emb, k=k)
    pos = np.searchsorted(np.sort(chosen), img)
    srt = np.argsort(chosen)
    pos = np.clip(pos, 0, chosen.size - 1)
    hit = chosen[srt][pos] == img
    labels[hit] = lab[srt][pos[hit]]
    return labels


@dataclass
class VersionCalibration:
    """P(correct) of every current proposal, from one calibrator per detector version.

    Attributes:
        p: ``(n,)`` P(correct) (the raw score where the version has no fitted calibrator).
        can_auto: ``(n,)`` bool, the row's version has a fitted calibrator.
        support: ``(n,)`` reviewed boxes behind each row's P(correct) (``rate``
            calibrators; NaN otherwise).
        code: ``(n,)`` int version code of each row (index into ``keys``).
        keys: version keys (run keys), by code.
        info: per version key: ``{"label", "calibration", "sources", "n_current",
            "can_auto"}`` (``calibration`` is :meth:`Calibrator.describe`), plus
            ``weak_sides`` ``{"calibration", "labelled", "n_current", "can_auto"}`` where the
            version has boxes with a side on no edge.
        current: the key of the newest version among the current proposals (None if none).
    """

    p: np.ndarray
    can_auto: np.ndarray
    support: np.ndarray
    code: np.ndarray
    keys: list[str]
    info: dict[str, dict[str, Any]]
    current: str | None


def calibrate_versions(
    ws: Workspace,
    cur: CurrentProposals,
    features: LazyFeatures,
    labelled: tuple[np.ndarray, np.ndarray, dict[str, int]],
    *,
    method: str,
    min_labelled: int,
    exclude: np.ndarray,
    weak: np.ndarray,
) -> VersionCalibration:
    """Fit one calibrator per detector version on that version's labelled boxes only.

    A calibrator fitted on one detector's proposals says nothing about another's (a
    fine-tuned model's junk boxes got P(correct) 0.9998 from the exemplar detector's
    calibrator), so rows of a version without enough labelled boxes of its own keep the raw
    score and ``can_auto`` False. A version that learned from the seed (regions, exemplar, a
    workspace fine-tune: :func:`autolabel.store.select.seed_trained_versions`) is calibrated
    on reviews only: its boxes on the seed originals are in-sample. When a version's
    labelled boxes are (almost) all one class, its reviewed boxes give a conservative ``rate``
    estimate (:func:`autolabel.select.calibrate.fit_rate_calibrator`); ``can_auto`` is then
    True only for rows with enough reviewed boxes at or below their score. Boxes with a side
    on no edge (:func:`autolabel.select.calibrate.weak_sides`) get a calibrator of their own
    kind's labelled boxes, with the same rules: the reviews of well-edged boxes do not vouch
    for them.

    Args:
        cur: current proposals (``n`` rows).
        features: the ``n`` rows' features, computed chunk by chunk.
        labelled: :func:`labelled_examples` output (decision rows first, then seed rows).
        min_labelled: labelled boxes a version needs (``quality.min_labelled``).
        exclude: ``(n,)`` bool rows that do not define the current version (seed originals).
        weak: ``(n,)`` bool rows with weak sides
            (:func:`autolabel.select.calibrate.weak_sides_column` of their ``snap_sides``).
    """
    from autolabel.store.select import run_versions, seed_trained_versions

    idx, y, sources = labelled
    runs = run_versions(ws)
    in_sample = seed_trained_versions(ws)
    run_ids = np.unique(cur.run_id)  # a few runs: codes by searchsorted, no (n,) inverse
    key_of_run = [runs.get(int(r), ("?", "?"))[0] for r in run_ids]
    keys = sorted(set(key_of_run))
    run_code = np.array(
        [keys.index(k) for k in key_of_run], np.int16 if len(keys) < 1 << 15 else int
    )
    code = run_code[np.searchsorted(run_ids, cur.run_id)] if len(cur) else np.zeros(0, int)
    label_of = {k: lab for k, lab in runs.values()}
    from_seed = np.arange(idx.size) >= sources["decisions"]
    X_lab = features.rows(idx)
    fits: dict[tuple[int, bool], tuple[Calibrator, np.ndarray]] = {}
    n_rows: dict[tuple[int, bool], int] = {}
    for c, key in enumerate(keys):
        in_version = code == c
        lab_version = code[idx] == c
        n_in_sample = int((lab_version & from_seed).sum()) if key in in_sample else 0
        if n_in_sample:  # it learned from the seed originals: only reviews say how it
            lab_version &= ~from_seed  # does on boxes it has not seen
        for stratum in (False, True):  # well-edged boxes, then those with a side on no edge
            n_rows[c, stratum] = int((in_version & (weak == stratum)).sum())
            lab = lab_version & (weak[idx] == stratum)
            if stratum and not n_rows[c, stratum] and not lab.any():
                continue
            cal = _fit_labelled(X_lab[lab], y[lab], ~from_seed[lab], method, min_labelled)
            if n_in_sample and not cal.fitted:
                cal.reason += (
                    f" ({n_in_sample} boxes on seed originals do not count: the detector "
                    "learned from them)"
                )
            fits[c, stratum] = (cal, lab)
    del X_lab
    p, can_auto, support = _assess(features, code, weak, {k: v[0] for k, v in fits.items()})
    info: dict[str, dict[str, Any]] = {}
    for c, key in enumerate(keys):
        cal, lab = fits[c, False]
        in_version = code == c
        info[key] = {
            "label": label_of.get(key, key),
            "calibration": cal.describe(),
            "sources": {
                "seed": int((lab & from_seed).sum()),
                "decisions": int((lab & ~from_seed).sum()),
            },
            "n_current": int(in_version.sum()),
            "can_auto": bool(can_auto[in_version].any()) if in_version.any() else cal.fitted,
        }
        if (c, True) in fits:
            wcal, wlab = fits[c, True]
            info[key]["weak_sides"] = {
                "calibration": wcal.describe(),
                "labelled": int(wlab.sum()),
                "n_current": n_rows[c, True],
                "can_auto": bool(can_auto[in_version & weak].any()),
            }
    pool = np.flatnonzero(~exclude) if (~exclude).any() else np.arange(len(cur))
    current = keys[int(code[pool[np.argmax(cur.run_id[pool])]])] if pool.size else None
    return VersionCalibration(np.round(p, 6), can_auto, support, code, keys, info, current)


def _assess(
    features: LazyFeatures,
    code: np.ndarray,
    weak: np.ndarray,
    cals: dict[tuple[int, bool], Calibrator],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:meth:`Calibrator.assess` of every box by the calibrator of its ``(version code,
    weak sides)``, one pass over the boxes' features a chunk at a time.

    Returns:
        ``p (n,)``, ``can_auto (n,)`` bool and ``support (n,)`` (NaN where unknown).
    """
    n = len(features)
    p = np.zeros(n)
    can_auto = np.zeros(n, bool)
    support = np.full(n, np.nan)
    # 8k boxes a chunk: their parsed stored signals (~0.5 kB of Python objects a box) are
    # the largest transient of select
    for r, x in features.chunks(ASSESS_CHUNK):
        for (c, stratum), cal in cals.items():
            m = np.flatnonzero((code[r] == c) & (weak[r] == stratum))
            if m.size:
                p[r[m]], can_auto[r[m]], support[r[m]] = cal.assess(x[m])
    return p, can_auto, support


def _fit_labelled(
    X: np.ndarray, y: np.ndarray, reviewed: np.ndarray, method: str, min_labelled: int
) -> Calibrator:
    """A calibrator of labelled boxes: ``method`` where both classes are there, else the
    ``rate`` estimate of the ``reviewed`` ones (``(m,)`` bool) when there are enough."""
    cal = fit_calibrator(X, y, method=method, min_examples=min_labelled)
    if not cal.fitted and cal.n_examples >= min_labelled:  # (almost) one class
        cal = fit_rate_calibrator(
            X[reviewed, 0], y[reviewed], min_examples=min_labelled, why=cal.reason,
            X=X[reviewed],
        )  # fmt: skip
    return cal


def _calibration_lines(vc: VersionCalibration, min_labelled: int, log: Log) -> list[str]:
    """Log each version's calibration; return the warnings of versions that auto-accept
    nothing (:func:`_version_warning`)."""
    warnings = []
    for key, info in vc.info.items():
        cal, src = info["calibration"], info["sources"]
        if cal["method"] != "raw-score":
            log(
                f"calibration [{key}]: {cal['method']} on {cal['n_examples']} labelled boxes "
                f"({src['seed']} from seed originals, {src['decisions']} from reviews)"
            )
        if (w := _version_warning(key, info, min_labelled)) is not None:
            warnings.append(w)
    return warnings


def _version_warning(key: str, info: dict[str, Any], min_labelled: int) -> str | None:
    """One line for a version that gets nothing auto-accepted, or None."""
    if info["can_auto"]:
        return None
    cal = info["calibration"]
    why = cal.get("reason") or f"fewer than {min_labelled} labelled boxes"
    return (
        f"detector version {info['label']} [{key}]: {why} of this version, so nothing of it is "
        f"auto-accepted; review its queue items (autolabel review), then run select again"
    )


def _queue_context(
    cur: CurrentProposals, queue: Any, rows: np.ndarray, fixed: np.ndarray, vc: VersionCalibration
) -> dict[str, Any]:
    """Inputs of :func:`plan_routes` that come from the queue: kept audit items, decided
    audit items per version, images with a claimed item or a decided review item (one
    review item per image: its reviewer saw all the image's boxes)."""
    is_audit = queue.reason == C.QUEUE_REASON_AUDIT
    open_audit = queue.proposal_id[is_audit & (queue.status == C.QUEUE_OPEN)]
    taken = np.isin(queue.status, [C.QUEUE_CLAIMED, C.QUEUE_DONE])
    done_rows = np.flatnonzero(np.isin(cur.ids, queue.proposal_id[is_audit & taken]))
    done_p = {
        int(c): vc.p[done_rows[vc.code[done_rows] == c]] for c in np.unique(vc.code[done_rows])
    }
    # an image whose review item was decided is settled: its reviewer saw every candidate
    reviewed = (queue.status == C.QUEUE_DONE) & np.isin(
        queue.reason, [C.QUEUE_REASON_UNCERTAIN, C.QUEUE_REASON_MISSING]
    )
    busy_images = queue.image_id[(queue.status == C.QUEUE_CLAIMED) | reviewed]
    return {
        "keep_audit": np.isin(cur.ids[rows], open_audit),
        "audit_done_p": done_p,
        "image_busy": np.isin(cur.image_id[rows], busy_images),
        "was_auto": np.isin(cur.route[rows], C.AUTO_ROUTES),
    }


def _one_crop(
    ws: Workspace,
    cur: CurrentProposals,
    p: np.ndarray,
    decisions: Decisions,
    seed: dict[str, np.ndarray],
    cfg: SelectConfig,
    log: Log,
) -> tuple[np.ndarray, dict[str, Any]]:
    """P(correct) 0 for duplicates / smaller copies / boxes over ``max_per_image`` (``p``
    is changed in place and returned)."""
    from autolabel.errors import ImageError
    from autolabel.imageio import load_rgb
    from autolabel.store.select import image_paths

    accepted = decisions.proposal_id[np.isin(decisions.action, C.ACCEPTING_ACTIONS)]
    rejected = decisions.proposal_id[decisions.action == C.ACTION_REJECT]

    def load(image_id: int) -> np.ndarray | None:
        # one image's path when it is wanted (at most max_image_loads of them), not a dict
        # of every image's path (100k images: ~20 MB)
        try:
            return load_rgb(image_paths(ws, [image_id])[image_id])
        except (ImageError, KeyError):
            return None

    limit = cfg.max_per_image or learned_max_per_image(seed["image_id"])
    # an adjusted box is where the object is: a duplicate of it is judged against that box
    # (an item whose box was moved from a half picture onto the whole one, and another box
    # of the whole picture, were both exported)
    xyxy = cur.xyxy
    adj = decisions.action == C.ACTION_ADJUST
    if adj.any() and len(cur):
        pos, hit = _rows_of(cur, decisions.proposal_id[adj])
        xyxy = cur.xyxy.astype(np.float64)  # (a copy; the adjusted boxes are float64)
        xyxy[pos[hit]] = decisions.box[adj][hit]
    drop, stats = one_crop_per_object(
        xyxy, cur.image_id, cur.phrase_code, p,
        accepted=np.isin(cur.ids, accepted), ignore=np.isin(cur.ids, rejected), load=load,
        seed_xyxy=seed["xyxy"], seed_image_id=seed["image_id"], min_p=cfg.reject_below,
        max_per_image=limit, max_loads=cfg.max_image_loads,
    )  # fmt: skip
    log(f"one crop per object: {stats} (max_per_image {limit})")
    p[drop] = 0.0
    return p, {**stats, "max_per_image": limit}


def run_select(
    ws: Workspace,
    cfg: SelectConfig,
    *,
    quality: QualityConfig | None = None,
    log: Log = _quiet,
    export_size: int | None = None,
) -> dict[str, Any]:
    """Calibrate per detector version, route and (re)fill the review queue; returns a summary.

    Args:
        ws: the workspace.
        cfg: the ``select`` config section (the caller applies its flags).
        quality: the ``quality`` config section (match IoU, minimum audited / labelled
            boxes); None = its defaults.
        log: receives human-readable progress lines.
        export_size: long side of exported crops (``export.size``), for the ``upscale``
            signal; a box upscaled > 1.5x beyond the seed's is never auto-accepted.

    Returns:
        ``{"n_proposals", "n_routable", "n_fixed", "n_seed_original", "routes": {...},
        "queue": {...}, "calibration": {...} (the current version's), "versions": {key:
        {...}}, "current_version", "warnings": [...], "expected_precision", "auto_cutoff",
        "budget", "budget_images", "audit": {...}, "quality", "seconds"}``; also stored as
        the workspace setting ``select.last``.
    """
    from autolabel.config import QualityConfig
    from autolabel.store.select import (
        fixed_proposal_ids,
        load_current,
        load_decisions,
        load_queue,
        load_seed_boxes,
        sync_seed_labels,
    )

    t0 = time.perf_counter()
    quality = quality if quality is not None else QualityConfig()
    # scikit-learn takes seconds to import; do it while SQLite reads (which frees the GIL)
    threading.Thread(target=_preload_sklearn, daemon=True).start()
    sync_seed_labels(ws)
    # the stored signals other than snap_sides (the weak-sides strata) are read a chunk at
    # a time when the features are made (RowSignals): no column of every box held
    cur = load_current(ws, signals=(SIDES,), compact=True)
    n = len(cur)
    log(f"loaded {n} current proposals in {time.perf_counter() - t0:.1f}s")
    seed = load_seed_boxes(ws)
    decisions = load_decisions(ws)
    sim = _exemplar_sim(ws, cur, cfg, log)
    signals = row_signals(
        ws, cur, seed, export_size=export_size, extra={} if sim is None else {"exemplar_sim": sim}
    )
    labelled = labelled_examples(cur, decisions, seed, match_iou=quality.match_iou)
    on_seed = np.isin(cur.image_id, seed["image_id"])
    vc = calibrate_versions(
        ws,
        cur,
        LazyFeatures(cur.score, signals),
        labelled,
        method=cfg.method,
        min_labelled=quality.min_labelled,
        exclude=on_seed,
        weak=weak_sides_column(cur.signals[SIDES]),
    )
    upscaled = signals.suspicious_upscale()
    del signals, sim  # the held signal columns: gone before dedupe and routing add theirs
    cur.drop_columns("signals", "score", "run_id", "width", "height")  # one-crop: boxes, p
    warnings = _calibration_lines(vc, quality.min_labelled, log)
    p = vc.p
    one_crop: dict[str, Any] = {}
    if len(cur):  # issue 19 cause 5: a thumbnail upscaled to the export size goes to a person
        p = p.copy()  # one working copy, changed in place (vc.p stays the calibrated one)
        np.minimum(p, 0.5, out=p, where=upscaled)
        p, one_crop = _one_crop(ws, cur, p, decisions, seed, cfg, log)
    cur.drop_columns("xyxy", "phrase_code")  # routing: ids, images, routes, P(correct)
    fixed = np.isin(cur.ids, fixed_proposal_ids(ws.conn))
    rows = np.flatnonzero(~fixed & ~on_seed)
    seed_rows = np.flatnonzero(~fixed & on_seed)
    n_images = int(np.unique(cur.image_id[rows]).size)
    budget = parse_budget(cfg.budget, n_images)
    ctx = _queue_context(cur, load_queue(ws), rows, fixed, vc)
    accepted_ids = decisions.proposal_id[np.isin(decisions.action, C.ACCEPTING_ACTIONS)]
    labelled_images = np.unique(cur.image_id[np.isin(cur.ids, accepted_ids)])

    decay = 1.0 - cfg.diversity
    cluster = None
    if decay < 1.0 and rows.size:
        cluster = _clusters(ws, cur, rows, p[rows], cfg, budget, log)
    plan = plan_routes(
        p[rows],
        cur.image_id[rows],
        target_precision=cfg.target_precision,
        budget=budget,
        audit_rate=cfg.audit_rate,
        explore_share=cfg.explore_share,
        reject_below=cfg.reject_below,
        rng=np.random.default_rng(cfg.seed),
        cluster=cluster,
        decay=decay,
        image_has_label=np.isin(cur.image_id[rows], labelled_images),
        group=vc.code[rows],
        can_auto=vc.can_auto[rows],
        min_audit=quality.min_audited,
        max_per_image=one_crop.get("max_per_image"),
        **ctx,
    )
    _prior_support(plan, rows, vc)
    warnings += _short_of_target(vc, rows, p[rows], plan.route, cfg.target_precision)
    written = _write_routes(ws, cur, p, plan, rows, seed_rows, fixed)
    return _summary(
        ws,
        cfg,
        quality,
        vc,
        plan,
        written,
        warnings,
        t0=t0,
        n=n,
        rows=rows,
        n_fixed=int(fixed.sum()),
        n_seed=int(on_seed.sum()),
        budget=budget,
        n_images=n_images,
        labelled=labelled,
        one_crop=one_crop,
    )


def _write_routes(
    ws: Workspace,
    cur: CurrentProposals,
    p: np.ndarray,
    plan: RoutePlan,
    rows: np.ndarray,
    seed_rows: np.ndarray,
    fixed: np.ndarray,
) -> dict[str, int]:
    """:func:`autolabel.store.select.apply_routes` of ``plan`` (over ``rows``), the seed
    originals' proposals (``seed_rows``: pending, unqueued) and the new P(correct) of the
    ``fixed`` (``(n,)`` bool) rows."""
    from autolabel.store.select import apply_routes

    # seed originals: their seed boxes are the labels; their proposals stay pending, unqueued
    write = np.concatenate([rows, seed_rows])
    route = np.concatenate([plan.route, name_column(seed_rows.size, C.ROUTE_PENDING)])
    reason = np.concatenate([plan.reason, name_column(seed_rows.size, "")])
    prio = np.concatenate([plan.priority, np.zeros(seed_rows.size)])
    # the plan's rows are the first ones of these: views, not a second copy of each
    plan.route, plan.reason, plan.priority = (
        route[: rows.size],
        reason[: rows.size],
        prio[: rows.size],
    )
    fixed_rows = np.flatnonzero(fixed)
    unchanged = (cur.route[write] == route) & (cur.p_correct[write] == p[write])
    rescored = fixed_rows[cur.p_correct[fixed_rows] != p[fixed_rows]]
    return apply_routes(
        ws,
        ids=cur.ids[write],
        image_id=cur.image_id[write],
        p_correct=p[write],
        route=route,
        reason=reason,
        priority=prio,
        score_only_ids=cur.ids[rescored],
        score_only_p=p[rescored],
        current_ids=cur.ids,
        unchanged=unchanged,
    )


def _short_of_target(
    vc: VersionCalibration, rows: np.ndarray, p: np.ndarray, route: np.ndarray, target: float
) -> list[str]:
    """One line per version that may auto-accept but where no box reached ``target``: its
    best P(correct) and, for a ``rate`` calibrator, about how many more correct reviews at or
    below that box's score would lift it to the target (``(k + 0.5) / (n + 1)``)."""
    out = []
    for c, key in enumerate(vc.keys):
        mine = vc.code[rows] == c
        ok = mine & vc.can_auto[rows]
        if not ok.any() or np.isin(route[mine], C.AUTO_ROUTES).any():
            continue
        best = int(np.flatnonzero(ok)[np.argmax(p[ok])])
        n = vc.support[rows[best]]
        more = ""
        if np.isfinite(n) and p[best] < target < 1:
            m = int(np.ceil(round((target - p[best]) * (n + 1) / (1 - target), 6)))
            more = (
                f" ({int(n)} reviewed boxes behind it; about {m} more correct review(s) of "
                "boxes scored at or below it would lift it to the target)"
            )
        out.append(
            f"detector version {vc.info[key]['label']} [{key}]: no box reached the target "
            f"precision {target:g}: the best P(correct) is {p[best]:.4f}{more}; review its "
            "queue items (autolabel review), then run select again"
        )
    return out


def _prior_support(plan: RoutePlan, rows: np.ndarray, vc: VersionCalibration) -> None:
    """Per version: reviewed boxes behind a typical (median) auto-accepted box, as
    ``plan.groups[c]["prior_n"]`` (None unless every one has a count: ``rate`` only)."""
    auto_rows = rows[np.isin(plan.route, C.AUTO_ROUTES)]
    for c, g in plan.groups.items():
        s = vc.support[auto_rows[vc.code[auto_rows] == c]]
        g["prior_n"] = float(np.median(s)) if s.size and np.isfinite(s).all() else None


def _summary(
    ws: Workspace,
    cfg: SelectConfig,
    quality: QualityConfig,
    vc: VersionCalibration,
    plan: RoutePlan,
    written: dict[str, int],
    warnings: list[str],
    *,
    t0: float,
    n: int,
    rows: np.ndarray,
    n_fixed: int,
    n_seed: int,
    budget: int | None,
    n_images: int,
    labelled: tuple[np.ndarray, np.ndarray, dict[str, int]],
    one_crop: dict[str, Any],
) -> dict[str, Any]:
    """The select summary (stored as ``select.last``)."""
    counts = plan.counts()
    for c, g in plan.groups.items():
        vc.info[vc.keys[c]].update(
            {k: g.get(k) for k in ("auto", "expected_precision", "auto_cutoff", "prior_n")},
            audit={k: g.get(k, 0) for k in ("new_auto", "audit_fresh", "audit_topup")},
        )
    cur_info = vc.info.get(vc.current or "", {})
    calibration = dict(cur_info.get("calibration", {"method": "raw-score", "n_examples": 0}))
    calibration["sources"] = cur_info.get("sources", labelled[2])
    summary: dict[str, Any] = {
        "n_proposals": n,
        "n_routable": int(rows.size),
        "n_fixed": n_fixed,
        "n_seed_original": n_seed,
        "routes": {k: counts[k] for k in ("auto", "audit", "review", "pending", "rejected")},
        "queue": {
            "uncertain": counts["queue_uncertain"],
            "missing": counts["queue_missing"],
            "audit": counts["queue_audit"],
            **written,
        },
        "calibration": calibration,
        "versions": vc.info,
        "current_version": vc.current,
        "can_auto": bool(cur_info.get("can_auto", False)),
        "warnings": warnings,
        "one_crop": one_crop,
        "expected_precision": cur_info.get("expected_precision"),
        "auto_cutoff": cur_info.get("auto_cutoff"),
        "budget": budget,
        "budget_images": n_images,
        "target_precision": cfg.target_precision,
        "quality": quality.model_dump(),
        "seconds": round(time.perf_counter() - t0, 3),
    }
    ws.set_setting("select.last", summary)
    return summary


def _quality(ws: Workspace, quality: QualityConfig | None) -> Any:
    """The quality settings: given, else those the last select ran with, else defaults."""
    from autolabel.config import QualityConfig

    if quality is not None:
        return quality
    stored = (ws.get_setting("select.last", {}) or {}).get("quality")
    return QualityConfig(**stored) if stored else QualityConfig()


def precision_estimate(ws: Workspace, quality: QualityConfig | None = None) -> dict[str, Any]:
    """Precision of the current auto-accepted set of the current detector version, from a
    fresh random audit of it (Wilson 95% interval), or "unknown" with the reason.

    The set: current proposals of the current version (the newest among the current
    proposals at the last select) routed auto / audit with P(correct) at least that
    version's cutoff, seed originals excluded. An audited box is correct when the reviewer
    accepted it or adjusted it by a little (IoU >= ``quality.match_iou`` with the adjusted
    box); a reject or a larger adjustment is wrong. With fewer than ``quality.min_audited``
    decided audit items the precision is None (unknown), never a stale number.

    Returns:
        See :func:`autolabel.select.stats.estimate_from_outcomes`.
    """
    from autolabel.store.select import auto_set

    q = _quality(ws, quality)
    last = ws.get_setting("select.last", {}) or {}
    key = last.get("current_version")
    info = (last.get("versions") or {}).get(key or "", {})
    if key is None:
        outcomes = {"n_auto": 0, "n_audit": 0, "n_audited": 0, "n_correct": 0}
    else:
        s = auto_set(ws, key, min_p=info.get("auto_cutoff"), match_iou=q.match_iou)
        outcomes = {
            "n_auto": int(s.ids.size),
            "n_audit": int((s.audit_open | s.audited).sum()),
            "n_audited": int(s.audited.sum()),
            "n_correct": int(s.correct.sum()),
        }
    ctx = {
        "selected": bool(last),
        "version": key,
        "version_label": info.get("label"),
        "can_auto": info.get("can_auto"),
        "calibration_reason": (info.get("calibration") or {}).get("reason"),
        "expected_precision": info.get("expected_precision"),
        "prior_n": info.get("prior_n"),
    }
    return estimate_from_outcomes(outcomes, ctx, min_audited=q.min_audited, match_iou=q.match_iou)


def estimate_truth_rows(ws: Workspace, est: dict[str, Any], ids: np.ndarray) -> np.ndarray:
    """``(n,)`` bool: which of the proposals ``ids`` belong to the set ``est`` describes."""
    from autolabel.store.select import auto_set

    if not est.get("version"):
        return np.zeros(len(ids), bool)
    last = ws.get_setting("select.last", {}) or {}
    info = (last.get("versions") or {}).get(est["version"], {})
    s = auto_set(ws, est["version"], min_p=info.get("auto_cutoff"))
    return np.isin(ids, s.ids)


def select_state(ws: Workspace) -> dict[str, Any]:
    """What the last select said about auto-accepting, for ``status`` and reports:
    ``{"ran", "can_auto", "current_version", "calibration", "weak_sides", "warnings"}``
    (``weak_sides``: ``{"n_current", "labelled", "can_auto", "method"}`` of the boxes with a
    side on no edge, None when the current version has none)."""
    last = ws.get_setting("select.last", {}) or {}
    info = (last.get("versions") or {}).get(last.get("current_version") or "", {})
    cal = info.get("calibration") or {}
    weak = info.get("weak_sides")
    return {
        "ran": bool(last),
        "can_auto": bool(last.get("can_auto", False)),
        "current_version": info.get("label") or last.get("current_version"),
        "calibration": {
            k: cal.get(k) for k in ("method", "n_examples", "n_correct", "reason") if k in cal
        },
        "weak_sides": None
        if not weak
        else {
            "n_current": weak["n_current"],
            "labelled": weak["labelled"],
            "can_auto": weak["can_auto"],
            "method": weak["calibration"].get("method"),
        },
        "warnings": list(last.get("warnings") or []),
    }


def status_summary(ws: Workspace) -> dict[str, Any]:
    """The ``auto_precision`` entry of ``autolabel status`` (see
    :func:`autolabel.select.stats.compact_estimate`)."""
    return compact_estimate(precision_estimate(ws))
