"""A weight-free detector that learns from the seed where pictures sit in a capture.

Screen captures of shopping apps and web pages put the wanted picture in a rectangular
region among flat UI chrome, text, banners and thumbnails. :mod:`regions_features` proposes
rectangles from image structure (UI colours, connected components, rectangle fits) on a
downscaled copy and describes each one; a small scikit-learn gradient-boosting classifier,
trained in seconds on the seed originals (positives: the located seed boxes; negatives: the
other candidates and loose copies of the seed boxes), scores them; the best boxes are snapped
to straight edges at full resolution (:mod:`autolabel.detect.snap`).

``score`` is a probability calibrated on held-out seed images (Platt scaling of out-of-fold
predictions, grouped by image): higher = more likely a correct (IoU >= 0.9) box.

Signals in ``Proposals.data`` (direction given):

- ``layout``: minus half the squared distance (in seed-spread units) of the box's width and
  place to the nearest seed box (higher = where the seed's pictures sit).
- ``seed_sim``: best grey-thumbnail correlation with a seed crop in [-1, 1] (higher = looks
  like a seed picture; high on seed products, thumbnails of them included).
- ``edge_min``: weakest of the four borders' edge coverage in [0, 1] (higher = a sharp
  rectangle).
- ``bg_inside``: share of UI-coloured pixels inside (higher = more like chrome / text).
- ``snap_shift`` / ``snap_edge`` / ``snap_sides``: see :mod:`autolabel.detect.snap`.
- ``source``: how the candidate was made (an id, no direction).

Library use (the wiring into ``propose``/``finetune`` keeps models as ``regions-vN``)::

    model = train_regions([RegionSample(image, [box], crops=[crop]) for ...])
    model.save("models/regions-v1")
    det = build_detector("regions", model="models/regions-v1")
    props = det.detect([image], [""])[0]
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from autolabel.detect import regions_features as rf
from autolabel.detect.base import rgb_batch
from autolabel.detect.snap import snap_boxes, to_gray
from autolabel.errors import InputError, ModelError, ShapeError
from autolabel.geometry import box_iou, nms
from autolabel.types import Proposals

SIGNALS = (
    "layout", "seed_sim", "edge_min", "bg_inside", "snap_shift", "snap_edge", "snap_sides",
    "source",
)  # fmt: skip
#: IoU with a true box at or above which a candidate is a positive in training.
POS_IOU = 0.9
#: IoU below which a candidate is a negative (in between: left out of training).
NEG_IOU = 0.85
FORMAT_VERSION = 3


@dataclass
class RegionSample:
    """One training image: ``(H, W, 3) uint8`` RGB, true boxes, optional crops/negatives.

    Attributes:
        image: the original capture (EXIF-corrected).
        boxes: true boxes ``[(x0, y0, x1, y1), ...]`` in its pixels (seed boxes, accepted
            or adjusted review boxes).
        crops: hand crops cut from this image (seed similarity); default: the boxes' pixels.
        negatives: boxes known to be wrong (rejected in review).
    """

    image: np.ndarray
    boxes: Sequence[Sequence[float]]
    crops: Sequence[np.ndarray] = ()
    negatives: Sequence[Sequence[float]] = ()


@dataclass
class _Rows:
    """Training rows before the seed-dependent columns are filled."""

    X: np.ndarray  #: (n, F) base features
    y: np.ndarray  #: (n,) 0/1
    group: np.ndarray  #: (n,) training image index
    truth: np.ndarray  #: (n,) bool: the row is a true box itself (seed statistics)
    thumbs: np.ndarray  #: (n, THUMB*THUMB) float16
    hists: np.ndarray  #: (n, 64) float16

    @staticmethod
    def concat(parts: Sequence[_Rows]) -> _Rows:
        return _Rows(*(np.concatenate([getattr(p, k) for p in parts]) for k in _ROW_KEYS))


_ROW_KEYS = ("X", "y", "group", "truth", "thumbs", "hists")


def _rows_for(sample: RegionSample, group: int, rng: np.random.Generator) -> tuple[_Rows, Any]:
    img = np.asarray(sample.image)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ShapeError(
            f"training image {group}: expected an (H, W, 3) uint8 RGB array, got shape "
            f"{img.shape} dtype {img.dtype}"
        )
    p = rf.prepare(img)
    cand, src = rf.candidates(p)
    truth = np.asarray(sample.boxes, np.float64).reshape(-1, 4) * p.f
    neg = np.asarray(sample.negatives, np.float64).reshape(-1, 4) * p.f
    h, w = p.bg.shape
    extra = [np.round(truth).astype(np.int64)]
    # loose copies of the true boxes: teach tightness (IoU 0.4-0.8)
    jit = []
    for b in truth:
        bw, bh = b[2] - b[0], b[3] - b[1]
        for _ in range(6):
            d = rng.uniform(0.06, 0.25, 4) * rng.choice([-1, 1], 4) * np.array([bw, bh, bw, bh])
            jit.append(b + d)
    jit_arr = np.asarray(jit, np.float64).reshape(-1, 4)
    extra.append(np.round(jit_arr).astype(np.int64))
    extra.append(np.round(neg).astype(np.int64))
    # the frame variants of the true boxes (the picture inside a thin border, or the border's
    # outer edge): IoU 0.8-0.9 with the truth, so without this they would be left out, and
    # the scorer could not learn which of the two the seed wants
    if len(truth):
        inner, outer = rf.band_boxes(p, np.round(truth).astype(np.int64))
        frame = np.concatenate([inner, outer])
        frame = frame[box_iou(frame.astype(np.float64), truth).max(axis=1) < POS_IOU]
    else:
        frame = np.zeros((0, 4), np.int64)
    extra.append(frame)
    allb = np.concatenate([cand, *extra]).reshape(-1, 4)
    allb[:, [0, 2]] = allb[:, [0, 2]].clip(0, w)
    allb[:, [1, 3]] = allb[:, [1, 3]].clip(0, h)
    ok = (allb[:, 2] - allb[:, 0] >= 4) & (allb[:, 3] - allb[:, 1] >= 4)
    n_c, n_t, n_j = len(cand), len(truth), len(jit_arr)
    kind = np.concatenate(
        [np.zeros(n_c), np.ones(n_t), np.full(n_j, 2), np.full(len(neg), 3), np.full(len(frame), 4)]
    ).astype(np.int64)
    allb, kind = allb[ok], kind[ok]
    s_all = np.zeros(len(allb), np.int64)
    s_all[kind == 0] = src[ok[:n_c]]
    if len(truth) and n_c:
        # added boxes take the source of their closest candidate (as at inference)
        ov = box_iou(allb[kind > 0], cand)
        s_all[kind > 0] = src[ov.argmax(axis=1)]
    X, t, hist = rf.base_features(p, allb, s_all)
    if len(truth):
        best = box_iou(allb, truth).max(axis=1)
    else:
        best = np.zeros(len(allb))
    y = np.full(len(allb), -1, np.int64)
    y[best >= POS_IOU] = 1
    y[best < NEG_IOU] = 0
    y[kind == 3] = 0
    if len(frame):
        # the frame variants, and candidates on them, are wrong however close
        y[
            (kind == 4) | ((y < 0) & (box_iou(allb.astype(np.float64), frame).max(axis=1) >= 0.9))
        ] = 0
    keep = y >= 0
    rows = _Rows(
        X=X[keep],
        y=y[keep],
        group=np.full(int(keep.sum()), group, np.int64),
        truth=(kind == 1)[keep],
        thumbs=t[keep].astype(np.float16),
        hists=hist[keep].astype(np.float16),
    )
    return rows, p


class _Ensemble:
    """Mean log-odds of a shallow gradient-boosting model and a logistic regression.

    With 20-100 seed images the logistic model generalises to unseen products and layouts
    better; the boosted trees pick up interactions once review decisions add data.
    """

    def __init__(self, models: list[Any]) -> None:
        self.models = models

    def fit(self, X: np.ndarray, y: np.ndarray) -> _Ensemble:
        for m in self.models:
            m.fit(X, y)
        return self

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        out = np.zeros(len(X))
        for m in self.models:
            p = m.predict_proba(X)[:, 1].clip(1e-6, 1 - 1e-6)
            out += np.log(p / (1 - p))
        return out / len(self.models)


def _fit_classifier(X: np.ndarray, y: np.ndarray, seed: int, max_iter: int) -> _Ensemble:
    # no sample weights: sklearn's weighted binning is ~50x slower; Platt scaling
    # recalibrates the unbalanced classes
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return _Ensemble(
        [
            HistGradientBoostingClassifier(
                max_iter=max_iter,
                learning_rate=0.1,
                max_depth=3,
                min_samples_leaf=20,
                l2_regularization=1.0,
                random_state=seed,
            ),
            make_pipeline(StandardScaler(), LogisticRegression(C=0.3, max_iter=500)),
        ]
    ).fit(X, y)


def model_is_current(folder: str | Path) -> bool:
    """Whether a saved regions model was written with this version's feature list (reads
    only ``meta.json``; an older model must be retrained, see :meth:`RegionModel.load`)."""
    try:
        meta = json.loads((Path(folder) / "meta.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return meta.get("features") == list(rf.FEATURES)


@dataclass
class RegionModel:
    """A trained ``regions`` scorer: classifier, calibration, seed statistics, training rows.

    Save it with :meth:`save` and load it with :meth:`load`; :func:`train_regions` with
    ``base=`` retrains it with more labelled images (review decisions).
    """

    classifier: Any
    platt: tuple[float, float]  #: calibration ``p = 1 / (1 + exp(a * margin + b))``
    stats: rf.SeedStats
    rows: _Rows
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def version(self) -> str:
        """Content hash taken when the model was trained (16 hex digits); kept by save/load."""
        v = self.meta.get("version")
        if not v:
            v = _content_hash(self)
            self.meta["version"] = v
        return str(v)

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Calibrated probability per row of features ``(n, F)`` -> ``(n,)``."""
        if len(X) == 0:
            return np.zeros(0, np.float64)
        m = self.classifier.decision_function(np.asarray(X)[:, rf.SCORED])
        a, b = self.platt
        return 1.0 / (1.0 + np.exp(np.clip(a * m + b, -50, 50)))

    def save(self, folder: str | Path) -> Path:
        """Write ``model.joblib`` (classifier, calibration, statistics, training rows) and
        ``meta.json`` into ``folder`` (created). Returns the folder."""
        import joblib

        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        joblib.dump(
            {
                "format": FORMAT_VERSION,
                "classifier": self.classifier,
                "platt": self.platt,
                "stats": self.stats.__dict__,
                "rows": {k: getattr(self.rows, k) for k in _ROW_KEYS},
            },
            out / "model.joblib",
            compress=3,
        )
        meta = {**self.meta, "version": self.version, "features": list(rf.FEATURES)}
        (out / "meta.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")
        return out

    @classmethod
    def load(cls, folder: str | Path) -> RegionModel:
        """Load a folder written by :meth:`save`.

        Raises:
            ModelError: missing or unreadable files, or another format version.
        """
        import joblib

        p = Path(folder).expanduser()
        if not (p / "model.joblib").is_file():
            raise ModelError(
                f"{p}: not a regions model folder: expected model.joblib and meta.json "
                "(written by RegionModel.save)"
            )
        try:
            d = joblib.load(p / "model.joblib")
            meta = json.loads((p / "meta.json").read_text(encoding="utf-8"))
        except Exception as exc:  # joblib/pickle raise many types
            raise ModelError(f"{p}: unreadable regions model ({exc})") from None
        if d.get("format") != FORMAT_VERSION or meta.get("features") != list(rf.FEATURES):
            raise ModelError(
                f"{p}: regions model format {d.get('format')}: expected {FORMAT_VERSION} with "
                "the current feature list (retrain it)"
            )
        return cls(
            d["classifier"],
            tuple(d["platt"]),
            rf.SeedStats(**d["stats"]),
            _Rows(**d["rows"]),
            meta,
        )


def _content_hash(model: RegionModel) -> str:
    import pickle

    h = hashlib.sha256(pickle.dumps((model.classifier, model.platt), protocol=4))
    h.update(model.stats.mean.tobytes() + model.stats.thumbs.tobytes())
    h.update(model.rows.X.tobytes())
    return h.hexdigest()[:16]


def _fill_seed_columns(rows: _Rows, stats: rf.SeedStats) -> np.ndarray:
    X = rows.X.copy()
    t = rows.thumbs.astype(np.float32)
    hi = rows.hists.astype(np.float32)
    for g in np.unique(rows.group):
        sel = rows.group == g
        X[sel] = rf.seed_features(X[sel], t[sel], hi[sel], stats, exclude_origin=int(g))
    return X


def _platt(margin: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    from sklearn.linear_model import LogisticRegression

    if len(np.unique(y)) < 2:
        return (-1.0, 0.0)
    lr = LogisticRegression(C=1e3).fit(margin.reshape(-1, 1), y)
    return (-float(lr.coef_[0, 0]), -float(lr.intercept_[0]))


def train_regions(
    samples: Sequence[RegionSample],
    *,
    base: RegionModel | None = None,
    seed: int = 0,
    max_iter: int = 100,
    workers: int = 2,
    folds: int = 3,
) -> RegionModel:
    """Train (or retrain) the ``regions`` scorer.

    Args:
        samples: labelled images (seed originals with their located boxes and crops; for a
            retrain, review decisions: accepted/adjusted boxes as ``boxes``, rejected ones as
            ``negatives``).
        base: a model to extend: its training rows and seed crops are kept and the new
            samples' rows are added.
        seed: random seed (jittered negatives, classifier).
        max_iter: boosting iterations.
        folds: image-grouped folds for the out-of-fold calibration.
        workers: threads extracting candidates and features (OpenCV releases the GIL).

    Returns:
        A :class:`RegionModel`.

    Raises:
        InputError: no sample with a true box (and no base model).
    """
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    offset = int(base.rows.group.max()) + 1 if base is not None and len(base.rows.y) else 0
    parts: list[_Rows] = [base.rows] if base is not None else []
    crop_t, crop_h, crop_o = [], [], []
    if base is not None:
        crop_t.append(base.stats.thumbs)
        crop_h.append(base.stats.hists)
        crop_o.append(base.stats.origin)
    n_boxes = 0

    def work(i: int) -> _Rows:
        return _rows_for(samples[i], offset + i, np.random.default_rng([seed, i]))[0]

    if workers > 1 and len(samples) > 1:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(workers) as pool:
            new_rows = list(pool.map(work, range(len(samples))))
    else:
        new_rows = [work(i) for i in range(len(samples))]
    for i, s in enumerate(samples):
        g = offset + i
        rows = new_rows[i]
        parts.append(rows)
        n_boxes += len(np.asarray(s.boxes).reshape(-1, 4))
        crops = [np.asarray(c) for c in s.crops]
        if crops:
            t, hh = rf.crop_descriptors(crops)
        else:
            t = rows.thumbs[rows.truth].astype(np.float32)
            hh = rows.hists[rows.truth].astype(np.float32)
        crop_t.append(t)
        crop_h.append(hh)
        crop_o.append(np.full(len(t), g, np.int64))
    if not parts:
        raise InputError("train_regions: expected at least one sample with a box, got none")
    rows = _Rows.concat(parts)
    if not rows.truth.any() or rows.y.sum() == 0:
        raise InputError("train_regions: expected at least one true box, got none")
    stats = rf.seed_stats(
        rows.X[rows.truth],
        np.concatenate(crop_t).astype(np.float32),
        np.concatenate(crop_h).astype(np.float32),
        np.concatenate(crop_o),
        rows.group[rows.truth],
    )
    X = _fill_seed_columns(rows, stats)
    y = rows.y
    groups = np.unique(rows.group)
    margin = np.full(len(y), np.nan)
    if len(groups) >= folds >= 2:
        perm = rng.permutation(groups)
        for k in range(folds):
            test_g = perm[k::folds]
            te = np.isin(rows.group, test_g)
            if y[~te].sum() == 0 or (y[~te] == 0).sum() == 0:
                continue
            clf = _fit_classifier(X[~te][:, rf.SCORED], y[~te], seed, max_iter)
            margin[te] = clf.decision_function(X[te][:, rf.SCORED])
    clf = _fit_classifier(X[:, rf.SCORED], y, seed, max_iter)
    ok = ~np.isnan(margin)
    platt = (
        _platt(margin[ok], y[ok])
        if ok.sum() > 10
        else _platt(clf.decision_function(X[:, rf.SCORED]), y)
    )
    meta = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "n_images": len(groups),
        "n_rows": len(y),
        "n_positive": int(y.sum()),
        "n_new_boxes": n_boxes,
        "train_seconds": round(time.perf_counter() - t0, 3),
        "base": base.version if base is not None else None,
    }
    model = RegionModel(clf, platt, stats, rows, meta)
    meta["version"] = _content_hash(model)
    return model


class RegionsDetector:
    """Picture regions in screen captures, scored by a seed-trained model (``Detector``).

    Args:
        model: a :class:`RegionModel` or a folder written by :meth:`RegionModel.save`.
        phrases: phrase reported for every box (default: the prompt's first phrase, or
            ``"object"``).
        box_threshold: minimum calibrated probability to report a box.
        max_per_image: most boxes per image.
        nms_iou: overlap above which the weaker box is dropped.
        snap: snap the reported boxes to edges at full resolution.
        exemplars: optional seed crops; with ``exemplar_candidates`` their
            :class:`~autolabel.detect.exemplar.ExemplarDetector` matches join the candidates.
        exemplar_candidates: add exemplar matches as candidates (slower: see the
            benchmark).
        device, dtype, text_threshold: accepted so generic detector options work; ignored.
    """

    name = "regions"
    text_threshold = 0.0
    #: longest side propose's loader may shrink images to (snapping wants full resolution)
    input_max_side = 4096

    def __init__(
        self,
        model: RegionModel | str | Path | None = None,
        phrases: str | None = None,
        *,
        box_threshold: float = 0.01,
        max_per_image: int = 10,
        nms_iou: float = 0.6,
        snap: bool = True,
        exemplars: Sequence[Any] | None = None,
        exemplar_candidates: bool = False,
        device: str | None = None,
        dtype: str | None = None,
        text_threshold: float | None = None,
    ) -> None:
        if model is None:
            raise ModelError(
                "regions detector: expected a trained model (a RegionModel or a folder from "
                "RegionModel.save; train one with train_regions on the seed), got none"
            )
        self.model = model if isinstance(model, RegionModel) else RegionModel.load(model)
        if not 0.0 <= box_threshold <= 1.0:
            raise InputError(f"box_threshold: expected a value in [0, 1], got {box_threshold}")
        self.phrase = phrases if isinstance(phrases, str) else None
        self.box_threshold = float(box_threshold)
        self.max_per_image = int(max_per_image)
        self.nms_iou = float(nms_iou)
        self.snap = bool(snap)
        self.exemplar = None
        if exemplar_candidates and exemplars:
            from autolabel.detect.exemplar import ExemplarDetector

            self.exemplar = ExemplarDetector(exemplars, box_threshold=0.6)
        self.model_id = f"regions:{self.model.meta.get('n_images', '?')}"
        self.model_version = self.model.version + ("+ex" if self.exemplar else "")

    def detect(self, images: Sequence[np.ndarray], prompts: Sequence[str]) -> list[Proposals]:
        """Score picture regions in each image.

        Args:
            images: ``B`` arrays ``(H, W, 3) uint8`` RGB.
            prompts: ``B`` prompts (only for the phrase).

        Returns:
            ``B`` ``Proposals``, best first; empty where nothing reaches ``box_threshold``.
        """
        return [self._detect_one(arr, prompt) for arr, prompt in rgb_batch(images, prompts)]

    def _phrase(self, prompt: str) -> str:
        if self.phrase:
            return self.phrase
        from autolabel.detect.grounding_dino import normalize_phrases

        ph = normalize_phrases(prompt or "")
        return ph[0] if ph else "object"

    def _detect_one(self, image: np.ndarray, prompt: str) -> Proposals:
        p = rf.prepare(image)
        cand, src = rf.candidates(p)
        if self.exemplar is not None:
            ex = self.exemplar.detect([image], [prompt])[0]
            if len(ex):
                eb = np.round(ex.xyxy.astype(np.float64) * p.f).astype(np.int64)
                cand = np.concatenate([cand, eb])
                src = np.concatenate([src, np.full(len(eb), 6, np.int64)])
        if len(cand) == 0:
            return Proposals.empty(SIGNALS)
        X, t, hist = rf.base_features(p, cand, src)
        rf.seed_features(X, t, hist, self.model.stats)
        prob = rf.follow_seed_frames(cand, X, self.model.predict(X), self.model.stats)
        keep = nms(cand.astype(np.float64), prob, self.nms_iou)[: self.max_per_image]
        keep = keep[prob[keep] >= self.box_threshold]
        if len(keep) == 0:
            return Proposals.empty(SIGNALS)
        H, W = image.shape[:2]
        boxes = cand[keep].astype(np.float64) / p.f
        boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, W)
        boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, H)
        n = len(keep)
        shift = np.full(n, np.nan, np.float32)
        edge = np.full(n, np.nan, np.float32)
        sides = np.full(n, np.nan, np.float32)
        if self.snap:
            gray = to_gray(image)
            boxes, shift, edge, sides = snap_boxes(
                gray,
                boxes,
                max_shift=0.04,
                min_shift_px=int(np.ceil(2.5 / p.f)),
                min_coverage=0.5,
                move_penalty=0.05,
                nearest=True,
            )
        col = {k: rf.FEATURES.index(k) for k in ("layout", "seed_sim", "edge_min", "bg_inside")}
        return Proposals(
            xyxy=boxes.astype(np.float32),
            score=prob[keep].astype(np.float32),
            phrase=[self._phrase(prompt)] * n,
            data={
                **{k: X[keep, j].astype(np.float32) for k, j in col.items()},
                "snap_shift": shift,
                "snap_edge": edge,
                "snap_sides": sides,
                "source": src[keep].astype(np.float32),
            },
        )
