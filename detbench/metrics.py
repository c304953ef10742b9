"""Detection metrics: per-set binary metrics, per-generator tables, bootstrap intervals.

Conventions: label 0 = real, 1 = fake; score = P(fake); fake is the positive class for AP/AUC/EER;
a prediction is fake iff ``score > threshold`` (strictly). Undefined values are NaN, never 0.
Two metrics take real images as the positive class, for comparison with papers that do (RIGID's notebook):
``ap_real`` (AP with reals positive, ranked by falling realness, i.e. rising P(fake)) and ``fpr95_real`` (the
share of fakes passed as real at the threshold that passes 95 % of the reals: its FPR95, computed as the notebook
computes it, see :func:`fpr_at_tpr`). They are named for it and never replace ``ap``.
scikit-learn is imported lazily so that importing this module stays cheap.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from typing import Literal

import numpy as np
import pandas as pd

METRIC_DIRECTIONS: dict[str, str] = {
    "n_real": "none",
    "n_fake": "none",
    "acc": "higher",
    "real_acc": "higher",
    "fake_acc": "higher",
    "balanced_acc": "higher",
    "ap": "higher",
    "auc": "higher",
    "eer": "lower",
    "oracle_acc": "higher",
    "oracle_thr": "none",
    "ap_real": "higher",  # real images positive (RIGID's AP)
    "fpr95_real": "lower",  # real images positive: FPR at 95 % TPR (RIGID's FPR95)
}
REAL_POSITIVE_METRICS = ("ap_real", "fpr95_real")
ORACLE_COLUMNS = ("oracle_acc", "oracle_thr")
SUMMARY_ROWS = ("mean", "worst")  # group names reserved for the macro mean and the worst group
BOOTSTRAP_METRICS = ("acc", "ap")

Objective = Literal["acc", "balanced_acc"]
_NAN = float("nan")
_CHUNK_ELEMS = 1 << 22  # bootstrap weight-matrix elements processed at once (bounds memory)


def _as_arrays(labels, scores) -> tuple[np.ndarray, np.ndarray]:
    """Validate and convert to (int8 labels in {0, 1}, finite float64 scores)."""
    y = np.asarray(labels).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    if y.shape != s.shape:
        raise ValueError(f"labels and scores differ in length: {y.size} vs {s.size}")
    if y.size and not np.isin(y, (0, 1)).all():
        raise ValueError("labels must be 0 (real) or 1 (fake)")
    if not np.isfinite(s).all():
        raise ValueError("scores must be finite (got NaN or inf)")
    return y.astype(np.int8), s


def _eer(y: np.ndarray, s: np.ndarray) -> float:
    """Equal error rate: where FPR = FNR on the ROC curve, linearly interpolated."""
    from sklearn.metrics import roc_curve

    fpr, tpr, _ = roc_curve(y, s, drop_intermediate=False)
    diff = (1.0 - tpr) - fpr  # non-increasing from 1 to -1 along the curve
    i = int(np.argmax(diff <= 0))
    if diff[i] == 0:
        return float(fpr[i])
    t = diff[i - 1] / (diff[i - 1] - diff[i])
    return float(fpr[i - 1] + t * (fpr[i] - fpr[i - 1]))


def best_threshold(labels, scores, objective: Objective = "acc") -> tuple[float, float]:
    """Threshold maximising ``objective`` under the ``score > thr`` rule.

    Every distinct cut is searched in O(n log n): the threshold is midway between adjacent distinct
    scores, just below the minimum (all fake) or at the maximum (all real). Among equal optima the
    lowest threshold wins.

    Args:
        labels: 0 (real) / 1 (fake) per image.
        scores: P(fake) (or any score, higher meaning fake) per image.
        objective: ``acc`` or ``balanced_acc``.

    Returns:
        ``(threshold, value)``; ``(nan, nan)`` unless both classes are present (with one class a constant rule
        is trivially perfect, so the number would mean nothing).
    """
    if objective not in ("acc", "balanced_acc"):
        raise ValueError(f"unknown objective {objective!r}; use 'acc' or 'balanced_acc'")
    y, s = _as_arrays(labels, scores)
    n_fake = int(y.sum())
    n_real = y.size - n_fake
    if n_real == 0 or n_fake == 0:
        return _NAN, _NAN
    order = np.argsort(s, kind="stable")
    s_sorted, y_sorted = s[order], y[order]
    ends = np.append(np.flatnonzero(np.diff(s_sorted)), s.size - 1)  # last index of each distinct value
    distinct = s_sorted[ends]
    fake_le = np.concatenate(([0], np.cumsum(y_sorted)[ends]))  # fakes with score <= cut
    real_le = np.concatenate(([0], ends + 1)) - fake_le  # reals with score <= cut: predicted real
    true_neg, true_pos = real_le, n_fake - fake_le
    if objective == "acc":
        value = (true_neg + true_pos) / y.size
    else:
        value = (true_neg / n_real + true_pos / n_fake) / 2
    lo, hi = distinct[:-1], distinct[1:]
    mid = lo + (hi - lo) / 2
    mid = np.where(mid < hi, mid, lo)  # adjacent floats: lo still separates them under ">"
    thresholds = np.concatenate(([np.nextafter(distinct[0], -np.inf)], mid, [distinct[-1]]))
    k = int(np.argmax(value))
    return float(thresholds[k]), float(value[k])


def binary_metrics(labels, scores, threshold: float = 0.5) -> dict[str, float]:
    """All metrics for one evaluation set; keys in ``METRIC_DIRECTIONS`` order, NaN where undefined.

    Args:
        labels: 0 (real) / 1 (fake) per image.
        scores: P(fake) per image.
        threshold: an image is called fake when its score is above this.

    Returns:
        ``n_real``, ``n_fake``, ``acc``, ``real_acc``, ``fake_acc``, ``balanced_acc``, ``ap``, ``auc``,
        ``eer`` (fractions), the oracle ``oracle_acc``/``oracle_thr`` (threshold chosen with the labels) and the
        real-positive ``ap_real``/``fpr95_real`` (:func:`real_positive_metrics`).
    """
    from sklearn.metrics import average_precision_score, roc_auc_score

    y, s = _as_arrays(labels, scores)
    is_fake = y == 1
    n_fake = int(is_fake.sum())
    n_real = y.size - n_fake
    pred_fake = s > threshold
    real_acc = float(np.mean(~pred_fake[~is_fake])) if n_real else _NAN
    fake_acc = float(np.mean(pred_fake[is_fake])) if n_fake else _NAN
    both = n_real > 0 and n_fake > 0
    oracle_thr, oracle_acc = best_threshold(y, s, "acc")
    return {
        "n_real": n_real,
        "n_fake": n_fake,
        "acc": float(np.mean(pred_fake == is_fake)) if y.size else _NAN,
        "real_acc": real_acc,
        "fake_acc": fake_acc,
        "balanced_acc": (real_acc + fake_acc) / 2,
        "ap": float(average_precision_score(y, s)) if both else _NAN,
        "auc": float(roc_auc_score(y, s)) if both else _NAN,
        "eer": _eer(y, s) if both else _NAN,
        "oracle_acc": oracle_acc,
        "oracle_thr": oracle_thr,
        **real_positive_metrics(y, s),
    }


def real_positive_metrics(labels, scores) -> dict[str, float]:
    """The metrics with real images as the positive class: ``ap_real`` and ``fpr95_real`` (NaN unless both classes
    are present).

    Args:
        labels: 0 (real) / 1 (fake) per image.
        scores: P(fake) per image (higher means fake; an image's realness is ``-score``).

    Returns:
        ``{"ap_real": ..., "fpr95_real": ...}``.
    """
    from sklearn.metrics import average_precision_score

    y, s = _as_arrays(labels, scores)
    if not (y == 0).any() or not (y == 1).any():
        return {"ap_real": _NAN, "fpr95_real": _NAN}
    return {"ap_real": float(average_precision_score(1 - y, -s)), "fpr95_real": fpr_at_tpr(y, s, 0.95, positive=0)}


def fpr_at_tpr(labels, scores, tpr: float = 0.95, positive: int = 0, drop_intermediate: bool = True) -> float:
    """The false-positive rate at the first point of the ROC curve whose true-positive rate reaches ``tpr``.

    Computed as RIGID's notebook computes its FPR95: ``fpr[argmax(tpr_curve >= tpr)]`` of
    ``sklearn.metrics.roc_curve``, whose default ``drop_intermediate`` removes points lying on a straight line
    between their neighbours. Without tied scores that never changes the value; with ties (equal scores of both
    classes form a diagonal step) it can skip the exact first point: ``drop_intermediate=False`` gives the exact
    value, the share of negatives at least as positive as the ``k``-th most positive positive image, ``k`` the
    fewest with ``k / n_positive >= tpr``.

    Args:
        labels: 0 (real) / 1 (fake) per image.
        scores: P(fake) per image.
        tpr: the true-positive rate to reach, in (0, 1].
        positive: the positive class: 0 (real images, ranked by ``-score``: RIGID's convention) or 1 (fake).
        drop_intermediate: as ``roc_curve``'s (True: the notebook's value).

    Returns:
        The FPR in [0, 1]; NaN unless both classes are present.
    """
    from sklearn.metrics import roc_curve

    if not 0 < tpr <= 1 or positive not in (0, 1):
        raise ValueError(f"need 0 < tpr <= 1 and positive 0 or 1; got tpr={tpr}, positive={positive}")
    y, s = _as_arrays(labels, scores)
    is_positive = y == positive
    if is_positive.all() or not is_positive.any():
        return _NAN
    fpr, tpr_curve, _ = roc_curve(is_positive, s if positive else -s, drop_intermediate=drop_intermediate)
    return float(fpr[int(np.argmax(tpr_curve >= tpr))])


def _ap_sorted(y: np.ndarray, s_desc: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """AP for each row of ``weights`` (B, n) over samples sorted by descending score.

    scikit-learn's definition: sum over distinct thresholds of (R_k - R_{k-1}) * P_k, tied scores
    forming one threshold. NaN where a row has no positive weight on fakes.
    """
    ends = np.append(np.flatnonzero(np.diff(s_desc)), s_desc.size - 1)
    tp = np.cumsum(weights * y, axis=1)[:, ends]
    total = np.cumsum(weights, axis=1)[:, ends]
    precision = np.divide(tp, total, out=np.zeros_like(tp), where=total > 0)
    gain = np.diff(tp, axis=1, prepend=0.0)
    n_pos = tp[:, -1]
    num = (gain * precision).sum(axis=1)
    return np.divide(num, n_pos, out=np.full_like(num, np.nan), where=n_pos > 0)


def average_precision(labels, scores, sample_weight=None) -> float | np.ndarray:
    """Fast numpy AP equal to ``sklearn.metrics.average_precision_score`` (fake positive).

    Args:
        labels: 0 (real) / 1 (fake) per image.
        scores: P(fake) per image.
        sample_weight: None, weights ``(n,)``, or a batch ``(B, n)`` (e.g. bootstrap counts).

    Returns:
        The AP (a float, or ``(B,)`` for a batch of weights); NaN when no fake has positive weight.
    """
    y, s = _as_arrays(labels, scores)
    w = np.ones(y.size) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    if w.shape[-1] != y.size or w.ndim > 2:
        raise ValueError(f"sample_weight must have shape (n,) or (B, n) with n = {y.size}")
    order = np.argsort(-s, kind="stable")
    ap = _ap_sorted(y[order].astype(np.float64), s[order], np.atleast_2d(w)[:, order])
    return float(ap[0]) if w.ndim == 1 else ap


def _bootstrap_acc_ap(
    y: np.ndarray, s: np.ndarray, threshold: float, n_boot: int, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """Class-stratified bootstrap distributions of acc and AP (reals and fakes resampled separately)."""
    order = np.argsort(-s, kind="stable")
    y, s = y[order].astype(np.float64), s[order]
    correct = ((s > threshold) == (y == 1)).astype(np.float64)
    classes = [idx for idx in (np.flatnonzero(y == 0), np.flatnonzero(y == 1)) if idx.size]
    n = y.size
    acc, ap = np.empty(n_boot), np.empty(n_boot)
    chunk = max(1, _CHUNK_ELEMS // n)
    for start in range(0, n_boot, chunk):
        b = min(chunk, n_boot - start)
        draws = np.concatenate([idx[rng.integers(0, idx.size, size=(b, idx.size))] for idx in classes], 1)
        flat = (draws + n * np.arange(b)[:, None]).ravel()
        counts = np.bincount(flat, minlength=b * n).reshape(b, n).astype(np.float64)
        acc[start : start + b] = counts @ correct / n
        ap[start : start + b] = _ap_sorted(y, s, counts) if len(classes) == 2 else np.nan
    return {"acc": acc, "ap": ap}


def _interval(dist: np.ndarray, ci: float) -> tuple[float, float]:
    """Percentile interval; NaN if any replicate is undefined."""
    if np.isnan(dist).any():
        return _NAN, _NAN
    lo, hi = np.quantile(dist, [(1 - ci) / 2, (1 + ci) / 2])
    return float(lo), float(hi)


def _aggregate(values: np.ndarray, how: str) -> float:
    """Macro aggregate of per-group values; NaN if any group is NaN (or there are no groups)."""
    if values.size == 0:
        return _NAN
    return float({"mean": np.mean, "min": np.min, "max": np.max}[how](values))


def _group_seed(seed: int, name: object) -> np.random.Generator:
    """Per-group generator: a group's interval does not depend on which other groups are present."""
    return np.random.default_rng([seed, zlib.crc32(repr(name).encode())])


def per_group_metrics(
    df: pd.DataFrame,
    *,
    group: str = "generator",
    threshold: float | Mapping[object, float] = 0.5,
    n_boot: int = 0,
    seed: int = 0,
    ci: float = 0.95,
) -> pd.DataFrame:
    """One row of :func:`binary_metrics` per group (sorted), then macro ``mean`` and ``worst`` rows.

    In the mean/worst rows counts are totals, ``oracle_thr`` is NaN and any NaN group value makes the
    aggregate NaN.

    Args:
        df: columns ``label``, ``score`` and ``group``.
        group: the column that names the groups (reserved values: ``mean``, ``worst``).
        threshold: a float, or a {group: threshold} mapping covering every group.
        n_boot: bootstrap replicates; > 0 adds seeded class-stratified percentile intervals ``acc_lo, acc_hi,
            ap_lo, ap_hi`` (the mean row's is that of the macro mean, all groups resampled in each replicate;
            the worst row's are NaN).
        seed: seeds the bootstrap (per group, independent of the other groups present).
        ci: the interval's coverage, in (0, 1).

    Returns:
        The metrics frame.

    Raises:
        ValueError: a missing column or group value, a reserved group name, an incomplete threshold mapping or
            ``ci`` out of range.
    """
    missing = {"label", "score", group} - set(df.columns)
    if missing:
        raise ValueError(f"df lacks columns {sorted(missing)}")
    if df[group].isna().any():
        raise ValueError(f"column {group!r} has missing values")
    if not 0 < ci < 1:
        raise ValueError(f"ci must be in (0, 1), got {ci}")
    names = sorted(df[group].unique())
    if set(SUMMARY_ROWS) & set(names):
        raise ValueError(f"group values {' and '.join(map(repr, SUMMARY_ROWS))} are reserved for the summary rows")
    if isinstance(threshold, Mapping):
        absent = [g for g in names if g not in threshold]
        if absent:
            raise ValueError(f"threshold mapping lacks groups {absent}")
        thresholds = {g: float(threshold[g]) for g in names}
    else:
        thresholds = dict.fromkeys(names, float(threshold))

    rows: list[dict[str, object]] = []
    dists: dict[str, list[np.ndarray]] = {m: [] for m in BOOTSTRAP_METRICS}
    for name, part in df.groupby(group, sort=True, observed=True):
        y, s = _as_arrays(part["label"].to_numpy(), part["score"].to_numpy())
        row: dict[str, object] = {group: name, **binary_metrics(y, s, thresholds[name])}
        if n_boot > 0:
            boot = _bootstrap_acc_ap(y, s, thresholds[name], n_boot, _group_seed(seed, name))
            for metric in BOOTSTRAP_METRICS:
                dists[metric].append(boot[metric])
                row[f"{metric}_lo"], row[f"{metric}_hi"] = _interval(boot[metric], ci)
        rows.append(row)

    group_rows = list(rows)
    for label in SUMMARY_ROWS:
        summary: dict[str, object] = {group: label}
        for metric, direction in METRIC_DIRECTIONS.items():
            values = np.array([r[metric] for r in group_rows], dtype=np.float64)
            if metric in ("n_real", "n_fake"):
                summary[metric] = int(values.sum())
            elif direction == "none":
                summary[metric] = _NAN
            else:
                how = "mean" if label == "mean" else ("max" if direction == "lower" else "min")
                summary[metric] = _aggregate(values, how)
        if n_boot > 0:
            for metric in BOOTSTRAP_METRICS:
                pooled = label == "mean" and group_rows
                macro = np.mean(dists[metric], axis=0) if pooled else np.full(1, np.nan)
                summary[f"{metric}_lo"], summary[f"{metric}_hi"] = _interval(macro, ci)
        rows.append(summary)
    return pd.DataFrame(rows)
