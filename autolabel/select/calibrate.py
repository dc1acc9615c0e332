"""Calibration: map signals to P(correct) with scikit-learn.

"Correct" means IoU >= the match IoU (``quality.match_iou``, 0.9) with the accepted / true
box. Labelled examples come from seed boxes (proposals on seed originals) and review
decisions, of ONE detector version (select fits one calibrator per version). With too few
examples the calibrator falls back to the raw detector score and says why; select then
auto-accepts nothing of that version.

When the labelled boxes are (almost) all one class a logistic or isotonic fit is meaningless
(a detector that is nearly always right gives no wrong examples to learn from). Then
:func:`fit_rate_calibrator` assumes only that a higher score never means a lower chance of
being right: the reviewed boxes, in score order, are pooled into monotone blocks (pool
adjacent violators), a block with fewer than ``min_examples`` boxes joins the one below it
(the lowest block excepted), and a box at score ``s`` gets the Jeffreys posterior mean
``(k + 0.5) / (n + 1)`` of the ``n`` reviewed boxes of its block scored at or *below* ``s``
(``k`` correct; under the assumption those can only be worse than a box at ``s``), never
more than the rate of any block above. So it takes 49 correct reviews at or below a score
to reach 0.99 there, a wrong box in a lower block does not pull the top down, one in the
box's own block does, and a low-scored box in a block of high-scored reviews is not
vouched for by them. Boxes below every reviewed score, or with fewer than ``min_examples``
reviewed boxes of their block at or below their score, are not supported (never
auto-accepted).

Boxes with a side the pixels do not confirm (:func:`weak_sides`) are calibrated apart from
the rest, on their own labelled boxes (``select.run.calibrate_versions``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from autolabel.detect.snap import ALL_SIDES
from autolabel.errors import InputError, ShapeError

FEATURES: tuple[str, ...] = (
    "score",
    "token_score",
    "logit_margin",
    "query_rank",
    "second_score",
    "margin",
    "n_competing",
    "sam_iou",
    "sam_stability",
    "mask_box_iou",
    "tta_iou",
    "exemplar_score",
    "match_score",
    "grad_score",
    "exemplar_sim",
    "size_outlier",
    "aspect_outlier",
    "layout_outlier",
    "upscale",
    "snap_sides",
)
"""Signals the calibrator may use, in column order (directions in ``signals.SIGNALS``)."""

METHODS = ("logistic", "isotonic")
MIN_EXAMPLES = 20
"""Fewer labelled examples than this (or fewer than 3 of either class) -> raw score."""
MIN_PER_CLASS = 3
SIDES = "snap_sides"
"""Feature counting a box's sides confirmed by an edge; below 4 = the weak-sides stratum."""


def weak_sides(X: np.ndarray) -> np.ndarray:
    """``(n,)`` bool: rows of ``(n, len(FEATURES))`` with a side on no edge (``snap_sides``
    < 4, :mod:`autolabel.detect.snap`); rows without the signal (no edge refiner) are not.

    Such a box's error rate differs from the rest by an order of magnitude (measured on the
    loop benchmark's desktop mix: 4 wrong of 9 auto-accepted ones against 3 of 426), so
    select calibrates them apart, on labelled boxes of their own kind.
    """
    return weak_sides_column(np.asarray(X, np.float64)[:, FEATURES.index(SIDES)])


def weak_sides_column(snap_sides: np.ndarray) -> np.ndarray:
    """:func:`weak_sides` from the ``(n,)`` ``snap_sides`` signal alone (NaN = no edge
    refiner: not weak)."""
    col = np.asarray(snap_sides, np.float64).reshape(-1)
    return np.nan_to_num(col, nan=ALL_SIDES) < ALL_SIDES - 1e-9


@dataclass(frozen=True)
class RateBlocks:
    """Monotone score blocks of one stratum's reviewed boxes (:func:`monotone_blocks`).

    Attributes:
        starts / n / k: ``(b,)`` each block's lowest score, size and correct count.
        rate: ``(b,)`` each block's Jeffreys rate, capped by every block above it.
        scores: ``(m,)`` the reviewed boxes' scores, sorted (NaN as -inf).
        cum: ``(m,)`` running count of correct boxes in that order.
    """

    starts: np.ndarray
    n: np.ndarray
    k: np.ndarray
    rate: np.ndarray
    scores: np.ndarray
    cum: np.ndarray

    @classmethod
    def fit(cls, score: np.ndarray, y: np.ndarray, min_block: int) -> RateBlocks:
        """Blocks of ``(m,)`` scores and 0/1 labels (``m`` >= 1)."""
        starts, bn, bk = monotone_blocks(score, y, min_block)
        rate = np.minimum.accumulate(((bk + 0.5) / (bn + 1.0))[::-1])[::-1]
        s = np.nan_to_num(np.asarray(score, np.float64), nan=-np.inf)
        order = np.argsort(s, kind="stable")
        return cls(starts, bn, bk, rate, s[order], np.cumsum(np.asarray(y)[order]))

    def lookup(self, score: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(rate (n,), reviewed boxes at or below each score in its block (n,), below
        every block (n,) bool)``; the rate of a box below every block is the lowest block's.
        """
        s = np.nan_to_num(np.asarray(score, np.float64), nan=-np.inf)
        block = np.searchsorted(self.starts, s, side="right") - 1
        below = block < 0
        block = np.maximum(block, 0)
        first = np.searchsorted(self.scores, self.starts[block], side="left")
        upto = np.maximum(np.searchsorted(self.scores, s, side="right"), first)
        c0 = np.concatenate([[0], self.cum])
        n_le = np.where(below, 0.0, upto - first)
        k_le = (c0[upto] - c0[first]).astype(np.float64)
        local = np.minimum((k_le + 0.5) / (n_le + 1.0), self.rate[block])
        return np.where(below, self.rate[0], local), n_le, below


def feature_matrix(score: np.ndarray, signals: Mapping[str, np.ndarray]) -> np.ndarray:
    """Stack the known features into ``(n, len(FEATURES))`` float64 (NaN = missing).

    ``n_competing``, ``query_rank`` and ``upscale`` enter as ``log1p``; ``score`` comes from
    ``score``, not ``signals``.
    """
    score = np.asarray(score, np.float64).reshape(-1)
    n = score.shape[0]
    X = np.full((n, len(FEATURES)), np.nan)  # filled in place: no second copy of the columns
    for j, name in enumerate(FEATURES):
        if name == "score":
            X[:, j] = score
        elif name in signals:
            col = np.asarray(signals[name], np.float64).reshape(-1)
            if col.shape[0] != n:
                raise ShapeError(f"signal {name!r}: expected {n} values, got {col.shape[0]}")
            if name in ("n_competing", "query_rank", "upscale"):
                col = np.log1p(np.clip(col, 0, None))
            X[:, j] = col
    return X


@dataclass(frozen=True)
class LazyFeatures:
    """The ``(n, len(FEATURES))`` :func:`feature_matrix` of ``n`` boxes, computed only for
    the rows asked for: select assesses a million boxes in chunks without the whole matrix
    (160 bytes a box) in memory.

    Attributes:
        score: ``(n,)`` detector scores.
        signals: name -> ``(n,)`` signal values (names outside :data:`FEATURES` are ignored),
            or a function of row indices ``(m,)`` returning name -> ``(m,)`` values of those
            rows (select reads the stored signals a chunk at a time: no column of all ``n``).
    """

    score: np.ndarray
    signals: Mapping[str, np.ndarray] | Callable[[np.ndarray], Mapping[str, np.ndarray]]

    def __post_init__(self) -> None:
        n = len(self)
        if callable(self.signals):
            return
        for name, col in self.signals.items():
            if name in FEATURES and np.shape(col)[:1] != (n,):
                raise ShapeError(f"signal {name!r}: expected {n} values, got {np.shape(col)}")

    def __len__(self) -> int:
        return int(np.shape(self.score)[0])

    def rows(self, idx: np.ndarray) -> np.ndarray:
        """``(len(idx), len(FEATURES))`` float64: the feature rows of boxes ``idx``."""
        idx = np.asarray(idx, np.int64).reshape(-1)
        if callable(self.signals):
            sig = dict(self.signals(idx))  # feature_matrix checks the lengths
        else:
            sig = {k: np.asarray(v)[idx] for k, v in self.signals.items() if k in FEATURES}
        return feature_matrix(np.asarray(self.score)[idx], sig)

    def chunks(self, size: int = 1 << 15) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """``(rows (m,), features (m, len(FEATURES)))`` of consecutive chunks of boxes."""
        for a in range(0, len(self), size):
            idx = np.arange(a, min(len(self), a + size))
            yield idx, self.rows(idx)


@dataclass
class Calibrator:
    """A fitted map from feature rows to P(correct).

    Attributes:
        method: ``logistic``, ``isotonic``, ``rate`` (one-class labels, see
            :func:`fit_rate_calibrator`) or ``raw-score`` (the fallback).
        reason: why the fallback (or the rate estimate) was used; empty for a full fit.
        min_support: ``rate`` only: labelled boxes needed at or below a score.
        envelope: ``rate`` only: ``{feature column: largest value among the correct
            reviewed boxes}`` of the layout signals (:data:`LAYOUT_SIGNALS`).
        n_examples / n_correct: the labelled data it was fitted on.
        columns: the feature columns used (present in the training data).
    """

    method: str
    reason: str = ""
    min_support: int = 0
    envelope: dict[int, float] = field(default_factory=dict)
    n_examples: int = 0
    n_correct: int = 0
    columns: list[str] = field(default_factory=list)
    _medians: np.ndarray | None = None
    _indicators: list[int] = field(default_factory=list)
    _model: Any = None

    @property
    def fitted(self) -> bool:
        return self.method != "raw-score"

    def _design(self, X: np.ndarray) -> np.ndarray:
        idx = [FEATURES.index(c) for c in self.columns]
        Z = X[:, idx].copy()
        miss = np.isnan(Z)
        assert self._medians is not None
        Z = np.where(miss, self._medians[None, :], Z)
        if self._indicators:
            Z = np.concatenate([Z, miss[:, self._indicators].astype(np.float64)], axis=1)
        return Z

    def predict(self, X: np.ndarray) -> np.ndarray:
        """P(correct) for ``(n, len(FEATURES))`` feature rows; returns ``(n,)`` in [0, 1]."""
        X = np.asarray(X, np.float64)
        if X.ndim != 2 or X.shape[1] != len(FEATURES):
            raise ShapeError(f"features: expected shape (n, {len(FEATURES)}), got {X.shape}")
        if X.shape[0] == 0:
            return np.zeros(0)
        if not self.fitted:
            return np.clip(np.nan_to_num(X[:, 0], nan=0.0), 0.0, 1.0)
        if self.method == "isotonic":
            s = np.nan_to_num(X[:, 0], nan=0.0)
            return np.clip(self._model.predict(s), 0.0, 1.0)
        if self.method == "rate":
            return self.assess(X)[0]
        out = np.empty(X.shape[0])
        step = 200_000
        for a in range(0, X.shape[0], step):
            out[a : a + step] = self._model.predict_proba(self._design(X[a : a + step]))[:, 1]
        return out

    def assess(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """P(correct), whether it may be acted on, and the reviewed boxes behind it, in one
        pass: ``(p (n,), supported (n,) bool, evidence (n,))``.

        ``supported``: every row for a logistic / isotonic fit, none for ``raw-score``; for
        ``rate`` the rows with at least ``min_support`` reviewed boxes of their block at or
        below their score and no layout signal beyond :attr:`envelope`. ``evidence``: for
        ``rate`` those reviewed boxes (0 below every block), NaN for other methods.
        """
        X = np.asarray(X, np.float64)
        if self.method != "rate":
            n = X.shape[0]
            return self.predict(X), np.full(n, self.fitted, bool), np.full(n, np.nan)
        raw = np.clip(np.nan_to_num(X[:, 0], nan=0.0), 0.0, 1.0)
        p, n_le, below = self._model.lookup(X[:, 0])
        p = np.where(below, np.minimum(raw, p), p)
        ok = ~below & (n_le >= self.min_support)
        for j, top in self.envelope.items():  # no extrapolation in layout either
            ok &= ~(X[:, j] > top + 1e-9)
        return p, ok, n_le

    def supported(self, X: np.ndarray) -> np.ndarray:
        """``(n,)`` bool: rows whose P(correct) rests on enough labelled data to act on
        (see :meth:`assess`)."""
        return self.assess(X)[1]

    def describe(self) -> dict[str, Any]:
        """JSON-friendly summary (stored in the workspace setting ``select.calibration``)."""
        info: dict[str, Any] = {
            "method": self.method,
            "n_examples": self.n_examples,
            "n_correct": self.n_correct,
            "columns": list(self.columns),
        }
        if self.reason:
            info["reason"] = self.reason
        if self.envelope:
            info["envelope"] = {FEATURES[j]: round(v, 4) for j, v in self.envelope.items()}
        if self.method == "logistic" and self._model is not None:
            lr = self._model[-1]
            names = list(self.columns) + [f"{self.columns[i]}_missing" for i in self._indicators]
            info["coefficients"] = {
                n: round(float(c), 4) for n, c in zip(names, lr.coef_[0], strict=True)
            }
        return info


def fit_calibrator(
    X: np.ndarray,
    y: np.ndarray,
    *,
    method: str = "logistic",
    min_examples: int = MIN_EXAMPLES,
) -> Calibrator:
    """Fit P(correct) on labelled feature rows.

    Args:
        X: ``(n, len(FEATURES))`` features from :func:`feature_matrix` (NaN = missing).
        y: ``(n,)`` 1 = correct (IoU >= the match IoU with the true box), 0 = wrong.
        method: ``logistic`` (standardised logistic regression over every feature present
            in the training data, median-imputed, plus missing-indicators) or ``isotonic``
            (monotone map of the raw score).
        min_examples: fewer examples -> fall back to the raw score.

    Returns:
        A :class:`Calibrator`; ``method == "raw-score"`` with ``reason`` set when it fell back.
    """
    if method not in METHODS:
        raise InputError(
            f"calibration method: expected one of {', '.join(METHODS)}, got {method!r}"
        )
    X = np.asarray(X, np.float64)
    y = np.asarray(y).astype(int).reshape(-1)
    if X.ndim != 2 or X.shape[1] != len(FEATURES) or X.shape[0] != y.shape[0]:
        raise ShapeError(
            f"fit_calibrator: expected X (n, {len(FEATURES)}) and y (n,), got {X.shape} and "
            f"{y.shape}"
        )
    n = int(y.shape[0])
    pos = int(y.sum())
    if n < min_examples:
        return Calibrator(
            "raw-score",
            reason=f"only {n} labelled examples (need >= {min_examples})",
            n_examples=n,
            n_correct=pos,
        )
    if min(pos, n - pos) < MIN_PER_CLASS:
        return Calibrator(
            "raw-score",
            reason=(
                f"labelled examples are almost all one class ({pos} correct, {n - pos} wrong; "
                f"need >= {MIN_PER_CLASS} of each)"
            ),
            n_examples=n,
            n_correct=pos,
        )
    if method == "isotonic":
        from sklearn.isotonic import IsotonicRegression

        iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip")
        iso.fit(np.nan_to_num(X[:, 0], nan=0.0), y)
        return Calibrator("isotonic", n_examples=n, n_correct=pos, columns=["score"], _model=iso)

    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    present = [j for j in range(X.shape[1]) if not np.isnan(X[:, j]).all()]
    columns = [FEATURES[j] for j in present]
    sub = X[:, present]
    miss = np.isnan(sub)
    medians = np.array(
        [np.nanmedian(sub[:, j]) if (~miss[:, j]).any() else 0.0 for j in range(sub.shape[1])]
    )
    indicators = [j for j in range(sub.shape[1]) if miss[:, j].any()]
    cal = Calibrator(
        "logistic",
        n_examples=n,
        n_correct=pos,
        columns=columns,
        _medians=medians,
        _indicators=indicators,
    )
    model = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=1000))
    model.fit(cal._design(X), y)
    cal._model = model
    return cal


LAYOUT_SIGNALS: tuple[str, ...] = ("size_outlier", "aspect_outlier", "layout_outlier", "upscale")
"""Signals of how unusual a box's size, shape and place are (larger = more unusual)."""


def fit_rate_calibrator(
    score: np.ndarray,
    y: np.ndarray,
    *,
    min_examples: int = MIN_EXAMPLES,
    why: str = "",
    X: np.ndarray | None = None,
) -> Calibrator:
    """P(correct) from monotone blocks of reviewed boxes (see the module docstring).

    For labels that are (almost) all one class. Only labels that say something about unseen
    boxes belong here (reviewed boxes, not the boxes a detector was trained on).

    Args:
        score: ``(n,)`` detector scores of the labelled boxes.
        y: ``(n,)`` 1 = correct, 0 = wrong.
        min_examples: boxes a block needs to act on its rate, and labelled boxes in all.
        why: the reason a full fit was not possible (kept in ``reason``).
        X: ``(n, len(FEATURES))`` features of the same boxes: the layout signals of the
            correct ones bound what the calibrator vouches for (a box more unusual in size,
            shape or place than every correct reviewed box is not supported: measured, 10
            of 12 wrong auto-accepted boxes were half or double pictures with aspect
            outliers above any correct reviewed box's).

    Returns:
        A ``rate`` :class:`Calibrator`, or ``raw-score`` with fewer than ``min_examples``.
    """
    score = np.asarray(score, np.float64).reshape(-1)
    y = np.asarray(y).astype(int).reshape(-1)
    if score.shape != y.shape:
        raise ShapeError(
            f"fit_rate_calibrator: expected score and y of one length, got "
            f"{score.shape} and {y.shape}"
        )
    n, pos = int(y.size), int(y.sum())
    if n < min_examples:
        return Calibrator(
            "raw-score",
            reason=f"{why}{'; ' if why else ''}only {n} reviewed boxes for a rate estimate "
            f"(need >= {min_examples})",
            n_examples=n,
            n_correct=pos,
        )
    blocks = RateBlocks.fit(score, y, min_examples)
    return Calibrator(
        "rate",
        reason=f"{why}{'; ' if why else ''}P(correct) from {blocks.starts.size} score block(s) "
        f"of the {n} reviewed boxes (top block: {int(blocks.k[-1])} of {int(blocks.n[-1])} "
        "correct)",
        n_examples=n,
        n_correct=pos,
        columns=["score"],
        min_support=min_examples,
        envelope=_envelope(X, y),
        _model=blocks,
    )


def _envelope(X: np.ndarray | None, y: np.ndarray) -> dict[int, float]:
    """``{column: max over the correct rows}`` of the layout signals present in ``X``."""
    if X is None or not (y == 1).any():
        return {}
    X = np.asarray(X, np.float64)
    out = {}
    for name in LAYOUT_SIGNALS:
        j = FEATURES.index(name)
        col = X[y == 1, j]
        if np.isfinite(col).any():
            out[j] = float(np.nanmax(col))
    return out


def monotone_blocks(
    score: np.ndarray, y: np.ndarray, min_block: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pool adjacent violators over labelled boxes in score order, then merge small blocks.

    Args:
        score: ``(n,)`` scores (NaN sorts lowest).
        y: ``(n,)`` 1 = correct, 0 = wrong.
        min_block: a block with fewer boxes joins the block below it (the lowest excepted).

    Returns:
        ``(starts (b,), n (b,), k (b,))``: each block's lowest score, size and correct count;
        ``k / n`` never decreases with the score.
    """
    s = np.nan_to_num(np.asarray(score, np.float64), nan=-np.inf)
    order = np.argsort(s, kind="stable")
    uniq, first, counts = np.unique(s[order], return_index=True, return_counts=True)
    sums = np.add.reduceat(np.asarray(y, np.float64)[order], first) if first.size else first
    blocks: list[list[float]] = []  # [start, n, k]
    for u, c, k in zip(uniq, counts, sums, strict=True):
        blocks.append([float(u), float(c), float(k)])
        # pool violators and equal rates: the coarsest monotone partition
        while len(blocks) > 1 and blocks[-2][2] / blocks[-2][1] >= blocks[-1][2] / blocks[-1][1]:
            _, n2, k2 = blocks.pop()
            blocks[-1][1] += n2
            blocks[-1][2] += k2
    i = len(blocks) - 1
    while i > 0:
        if blocks[i][1] < min_block:
            _, n2, k2 = blocks.pop(i)
            blocks[i - 1][1] += n2
            blocks[i - 1][2] += k2
        i -= 1
    arr = np.array(blocks, np.float64).reshape(-1, 3)
    return arr[:, 0], arr[:, 1], arr[:, 2]


def reliability(p: np.ndarray, y: np.ndarray, *, bins: int = 10) -> dict[str, list[float]]:
    """Reliability table: mean predicted vs observed accuracy per probability bin.

    Returns ``{"p_mean", "accuracy", "count"}`` lists over the non-empty bins, plus the
    expected calibration error under ``"ece"`` (a one-element list).
    """
    p = np.asarray(p, np.float64).reshape(-1)
    y = np.asarray(y, np.float64).reshape(-1)
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    out: dict[str, list[float]] = {"p_mean": [], "accuracy": [], "count": []}
    ece = 0.0
    for b in range(bins):
        sel = which == b
        if not sel.any():
            continue
        pm, acc, c = float(p[sel].mean()), float(y[sel].mean()), int(sel.sum())
        out["p_mean"].append(pm)
        out["accuracy"].append(acc)
        out["count"].append(c)
        ece += c * abs(pm - acc)
    out["ece"] = [ece / max(len(p), 1)]
    return out
