"""Detection metrics: per-set binary metrics, per-generator tables, bootstrap intervals.

Conventions: label 0 = real, 1 = fake; score = P(fake); fake is the positive class for AP/AUC/EER;
a prediction is fake iff ``score > threshold`` (strictly). Undefined values are NaN, never 0: every metric but the
per-class accuracies needs both classes (an accuracy over one class is that class's accuracy under another name),
and the macro ``mean`` and ``worst`` are NaN when any group's value is.
Two metrics take real images as the positive class, for comparison with papers that do (RIGID's notebook):
``ap_real`` (AP with reals positive, ranked by falling realness, i.e. rising P(fake)) and ``fpr95_real`` (the
share of fakes passed as real at the threshold that passes 95 % of the reals: its FPR95, computed as the notebook
computes it, see :func:`fpr_at_tpr`). They are named for it and never replace ``ap``.
scikit-learn is imported lazily so that importing this module stays cheap.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Iterator, Mapping
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
        real-positive ``ap_real``/``fpr95_real`` (:func:`real_positive_metrics`). Everything but the counts and
        the accuracy of a class present is NaN unless both classes are.
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
        "acc": float(np.mean(pred_fake == is_fake)) if both else _NAN,
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
    """Class-stratified bootstrap distributions of acc and AP (reals and fakes resampled separately); NaN unless both
    classes are present.
    """
    order = np.argsort(-s, kind="stable")
    y, s = y[order].astype(np.float64), s[order]
    correct = ((s > threshold) == (y == 1)).astype(np.float64)
    both = bool(y.any() and not y.all())
    n = y.size
    acc, ap = np.full(n_boot, np.nan), np.full(n_boot, np.nan)
    if not both:  # neither accuracy nor AP is defined over one class
        return {"acc": acc, "ap": ap}
    for start, counts in stratified_counts(y, n_boot, rng):
        b = len(counts)
        acc[start : start + b] = counts @ correct / n
        ap[start : start + b] = _ap_sorted(y, s, counts)
    return {"acc": acc, "ap": ap}


def stratified_counts(labels, n_boot: int, rng: np.random.Generator) -> Iterator[tuple[int, np.ndarray]]:
    """Class-stratified bootstrap replicates as per-sample counts, in chunks that bound memory.

    Each replicate draws as many reals from the reals and as many fakes from the fakes as there are, with
    replacement; a replicate is the number of times each sample was drawn.

    Args:
        labels: 0 (real) / 1 (fake) per sample, in the order the counts follow.
        n_boot: how many replicates.
        rng: the generator the draws come from (e.g. :func:`group_rng`): the same generator, labels and
            order give the same replicates.

    Yields:
        ``(start, counts)``: the index of the chunk's first replicate and its ``(b, n)`` float64 counts.
    """
    y = np.asarray(labels).ravel()
    classes = [idx for idx in (np.flatnonzero(y == 0), np.flatnonzero(y == 1)) if idx.size]
    n = y.size
    chunk = max(1, _CHUNK_ELEMS // max(n, 1))
    for start in range(0, n_boot, chunk):
        b = min(chunk, n_boot - start)
        draws = np.concatenate([idx[rng.integers(0, idx.size, size=(b, idx.size))] for idx in classes], 1)
        flat = (draws + n * np.arange(b)[:, None]).ravel()
        yield start, np.bincount(flat, minlength=b * n).reshape(b, n).astype(np.float64)


def percentile_interval(dist: np.ndarray, ci: float) -> tuple[float, float]:
    """The percentile interval of bootstrap replicates.

    Args:
        dist: the replicates.
        ci: the coverage, in (0, 1).

    Returns:
        ``(lo, hi)``; NaN if any replicate is undefined.
    """
    if np.isnan(dist).any():
        return _NAN, _NAN
    lo, hi = np.quantile(dist, [(1 - ci) / 2, (1 + ci) / 2])
    return float(lo), float(hi)


def _aggregate(values: np.ndarray, how: str) -> float:
    """Macro aggregate of per-group values; NaN if any group is NaN (or there are no groups)."""
    if values.size == 0:
        return _NAN
    return float({"mean": np.mean, "min": np.min, "max": np.max}[how](values))


def _summary_how(label: str, direction: str) -> str:
    """How a summary row aggregates a metric: the macro mean, or the worst group (max where lower is better)."""
    return "mean" if label == "mean" else ("max" if direction == "lower" else "min")


def summary_value(values, label: str, direction: str, axis: int | None = None) -> float | np.ndarray:
    """A summary row's value of a metric from its per-group values.

    Args:
        values: one value per group (along ``axis``, e.g. groups x bootstrap replicates with ``axis=0``).
        label: ``mean`` (the macro mean) or ``worst`` (the lowest, or the highest where lower is better).
        direction: the metric's direction, ``higher`` or ``lower``.
        axis: None for a 1-D ``values``, else the axis of the groups.

    Returns:
        The value (an array along the other axes with ``axis``); NaN where any group is NaN or there is none.
    """
    how = _summary_how(label, direction)
    if axis is None:
        return _aggregate(np.asarray(values, dtype=np.float64), how)
    v = np.asarray(values, dtype=np.float64)
    if v.shape[axis] == 0:
        return np.full(np.delete(v.shape, axis), np.nan)
    return {"mean": np.mean, "min": np.min, "max": np.max}[how](v, axis=axis)


def group_rng(seed: int, name: object) -> np.random.Generator:
    """The bootstrap's generator for one group: a group's replicates do not depend on which other groups are present.

    Args:
        seed: the bootstrap seed.
        name: the group (e.g. a generator's name).

    Returns:
        A numpy generator seeded by both.
    """
    return np.random.default_rng([seed, zlib.crc32(repr(name).encode())])


def per_group_metrics(
    df: pd.DataFrame,
    *,
    group: str = "generator",
    threshold: float | Mapping[object, float] = 0.5,
    n_boot: int = 0,
    seed: int = 0,
    ci: float = 0.95,
    groups: Iterable[object] | None = None,
) -> pd.DataFrame:
    """One row of :func:`binary_metrics` per group (sorted), then macro ``mean`` and ``worst`` rows.

    In the mean/worst rows counts are totals, ``oracle_thr`` is NaN and any NaN group value makes the
    aggregate NaN: a group with one class (accuracy n/a) or, among ``groups``, without any row makes the mean and
    worst accuracy n/a rather than an average over other groups than a complete table's.

    Args:
        df: columns ``label``, ``score`` and ``group``.
        group: the column that names the groups (reserved values: ``mean``, ``worst``).
        threshold: a float, or a {group: threshold} mapping covering every group.
        n_boot: bootstrap replicates; > 0 adds seeded class-stratified percentile intervals ``acc_lo, acc_hi,
            ap_lo, ap_hi`` (the mean row's is that of the macro mean, all groups resampled in each replicate;
            the worst row's are NaN).
        seed: seeds the bootstrap (per group, independent of the other groups present).
        ci: the interval's coverage, in (0, 1).
        groups: every group evaluated (None: those in ``df``); one without a row in ``df`` (nothing scored) gets a
            row of counts 0 and NaN metrics.

    Returns:
        The metrics frame; its last columns are the operating points and calibration of :func:`with_calibration`.

    Raises:
        ValueError: a missing column or group value, a reserved group name, a group of ``df`` not in ``groups``,
            an incomplete threshold mapping or ``ci`` out of range.
    """
    missing = {"label", "score", group} - set(df.columns)
    if missing:
        raise ValueError(f"df lacks columns {sorted(missing)}")
    if df[group].isna().any():
        raise ValueError(f"column {group!r} has missing values")
    if not 0 < ci < 1:
        raise ValueError(f"ci must be in (0, 1), got {ci}")
    present = sorted(df[group].unique())
    names = present if groups is None else sorted(set(groups))
    if set(present) - set(names):
        raise ValueError(f"groups {sorted(set(present) - set(names))} of df are not in groups")
    if set(SUMMARY_ROWS) & set(names):
        raise ValueError(f"group values {' and '.join(map(repr, SUMMARY_ROWS))} are reserved for the summary rows")
    if isinstance(threshold, Mapping):
        absent = [g for g in present if g not in threshold]
        if absent:
            raise ValueError(f"threshold mapping lacks groups {absent}")
        thresholds = {g: float(threshold[g]) for g in present}
    else:
        thresholds = dict.fromkeys(present, float(threshold))

    rows: list[dict[str, object]] = []
    dists: dict[str, list[np.ndarray]] = {m: [] for m in BOOTSTRAP_METRICS}
    parts = dict(iter(df.groupby(group, sort=True, observed=True)))
    for name in names:
        part = parts.get(name, df.iloc[:0])
        y, s = _as_arrays(part["label"].to_numpy(), part["score"].to_numpy())
        row: dict[str, object] = {group: name, **binary_metrics(y, s, thresholds.get(name, 0.5))}
        if n_boot > 0:
            boot = _bootstrap_acc_ap(y, s, thresholds.get(name, 0.5), n_boot, group_rng(seed, name))
            for metric in BOOTSTRAP_METRICS:
                dists[metric].append(boot[metric])
                row[f"{metric}_lo"], row[f"{metric}_hi"] = percentile_interval(boot[metric], ci)
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
                summary[metric] = _aggregate(values, _summary_how(label, direction))
        if n_boot > 0:
            for metric in BOOTSTRAP_METRICS:
                pooled = label == "mean" and group_rows
                macro = np.mean(dists[metric], axis=0) if pooled else np.full(1, np.nan)
                summary[f"{metric}_lo"], summary[f"{metric}_hi"] = percentile_interval(macro, ci)
        rows.append(summary)
    return with_calibration(pd.DataFrame(rows), df, group)


# ------------------------------------------------------------------ operating points and calibration
# Read from P(fake) alone (no threshold): the true-positive rate at a false-positive budget, and how well the scores
# work as probabilities. Like AP and AUC they are NaN unless both classes are present.

FPR_BUDGETS: dict[str, float] = {"tpr_at_fpr_1": 0.01, "tpr_at_fpr_5": 0.05, "tpr_at_fpr_10": 0.10}
CALIBRATION_DIRECTIONS: dict[str, str] = {
    **dict.fromkeys(FPR_BUDGETS, "higher"),
    "ece": "lower",
    "brier": "lower",
    "nll": "lower",
}
DIRECTIONS: dict[str, str] = {**METRIC_DIRECTIONS, **CALIBRATION_DIRECTIONS}  # every column of metrics.parquet
ECE_BINS = 15  # equal-width bins of P(fake) on [0, 1]
NLL_EPS = 1e-7  # P(fake) is clipped to [NLL_EPS, 1 - NLL_EPS] for the log-likelihood


def _probabilities(scores: np.ndarray) -> np.ndarray:
    """Scores as probabilities: clipped to [0, 1] (a score outside it, e.g. RIGID's 1 - cos, counts as 0 or 1)."""
    return np.clip(scores, 0.0, 1.0)


def calibration_bin(scores) -> np.ndarray:
    """The :data:`ECE_BINS` equal-width bin of each P(fake): bin k holds (k/15, (k+1)/15], the first also 0.

    Args:
        scores: P(fake) per sample (clipped to [0, 1]).

    Returns:
        The bin index of each sample, 0 to ``ECE_BINS - 1`` (scikit-learn's ``calibration_curve`` binning).
    """
    edges = np.linspace(0.0, 1.0, ECE_BINS + 1)
    return np.searchsorted(edges[1:-1], _probabilities(np.asarray(scores, dtype=np.float64)), side="left")


def weighted_metrics(
    labels, scores, weights, names: tuple[str, ...] | list[str], threshold: float = 0.5
) -> dict[str, np.ndarray]:
    """Metrics of weighted samples for a batch of weight vectors (bootstrap counts, or ones for the plain value).

    An integer weight row gives the metric of the sample repeated that many times: ``acc``, ``auc`` (ties count
    one half), ``ap`` (scikit-learn's definition), ``tpr_at_fpr_*`` (the largest TPR whose FPR is at most the
    budget, over the ROC of every distinct threshold, no interpolation), ``ece`` (sum over non-empty bins of the
    bin's share times |mean P(fake) - fraction fake|), ``brier`` (mean (p - y)^2) and ``nll`` (mean negative
    log-likelihood, p clipped to [1e-7, 1 - 1e-7]); scores outside [0, 1] count as 0 or 1 in ece and brier.

    Args:
        labels: 0 (real) / 1 (fake) per sample.
        scores: P(fake) per sample.
        weights: ``(B, n)`` non-negative weights.
        names: the metrics wanted (``acc``, ``auc``, ``ap`` and the keys of :data:`CALIBRATION_DIRECTIONS`).
        threshold: ``acc`` calls a sample fake when its score is above this.

    Returns:
        ``{name: (B,) values}``; NaN in a row whose weights leave out a class (``acc`` only needs weight).

    Raises:
        ValueError: an unknown metric name, or weights of the wrong shape.
    """
    unknown = set(names) - {"acc", "auc", "ap", *CALIBRATION_DIRECTIONS}
    if unknown:
        raise ValueError(f"no weighted form of {sorted(unknown)}")
    y, s = _as_arrays(labels, scores)
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim != 2 or w.shape[1] != y.size:
        raise ValueError(f"weights must have shape (B, {y.size})")
    if y.size == 0:
        return {name: np.full(len(w), np.nan) for name in names}
    yf = y.astype(np.float64)
    total = w.sum(axis=1)
    pos, neg = w @ yf, w @ (1.0 - yf)
    both = (pos > 0) & (neg > 0)

    def ratio(num: np.ndarray, den: np.ndarray, ok: np.ndarray) -> np.ndarray:
        return np.divide(num, den, out=np.full(num.shape, np.nan), where=ok & (den > 0))

    out: dict[str, np.ndarray] = {}
    if "acc" in names:
        out["acc"] = ratio(w @ ((s > threshold) == (y == 1)).astype(np.float64), total, total > 0)
    if "ap" in names:
        order = np.argsort(-s, kind="stable")
        out["ap"] = np.where(both, _ap_sorted(yf[order], s[order], w[:, order]), np.nan)
    if "auc" in names or set(FPR_BUDGETS) & set(names):
        order = np.argsort(-s, kind="stable")
        s_desc = s[order]
        ends = np.append(np.flatnonzero(np.diff(s_desc)), s.size - 1)  # last sample of each distinct score
        tp = np.cumsum(w[:, order] * yf[order], axis=1)[:, ends]
        fp = np.cumsum(w[:, order] * (1.0 - yf[order]), axis=1)[:, ends]
        tp0, fp0 = np.pad(tp, ((0, 0), (1, 0))), np.pad(fp, ((0, 0), (1, 0)))  # the ROC from (0, 0)
        if "auc" in names:
            area = (np.diff(fp0, axis=1) * (tp0[:, 1:] + tp0[:, :-1]) / 2).sum(axis=1)
            out["auc"] = ratio(area, pos * neg, both)
        tpr = ratio(tp0, pos[:, None], both[:, None])
        fpr = ratio(fp0, neg[:, None], both[:, None])
        for name, budget in FPR_BUDGETS.items():
            if name in names:
                reachable = np.where(fpr <= budget, tpr, -np.inf).max(axis=1)
                out[name] = np.where(both, reachable, np.nan)
    p = _probabilities(s)
    if "ece" in names:
        onehot = np.eye(ECE_BINS)[calibration_bin(p)]  # (n, bins)
        gap = np.abs(w @ (onehot * (p - yf)[:, None])).sum(axis=1)
        out["ece"] = ratio(gap, total, both)
    if "brier" in names:
        out["brier"] = ratio(w @ (p - yf) ** 2, total, both)
    if "nll" in names:
        q = np.clip(s, NLL_EPS, 1 - NLL_EPS)
        out["nll"] = ratio(w @ -(yf * np.log(q) + (1 - yf) * np.log1p(-q)), total, both)
    return {name: out[name] for name in names}


def calibration_metrics(labels, scores) -> dict[str, float]:
    """The operating points and calibration of one evaluation set, keys in :data:`CALIBRATION_DIRECTIONS` order.

    Args:
        labels: 0 (real) / 1 (fake) per image.
        scores: P(fake) per image.

    Returns:
        ``tpr_at_fpr_1``, ``tpr_at_fpr_5``, ``tpr_at_fpr_10``, ``ece``, ``brier``, ``nll`` (see
        :func:`weighted_metrics`); NaN unless both classes are present.
    """
    y, s = _as_arrays(labels, scores)
    values = weighted_metrics(y, s, np.ones((1, y.size)), list(CALIBRATION_DIRECTIONS))
    return {name: float(v[0]) for name, v in values.items()}


def reliability_bins(labels, scores) -> pd.DataFrame:
    """The reliability diagram's points: per non-empty bin of P(fake), its images, mean P(fake) and fraction fake.

    Args:
        labels: 0 (real) / 1 (fake) per image.
        scores: P(fake) per image (clipped to [0, 1]).

    Returns:
        Columns ``bin_lo``, ``bin_hi``, ``n``, ``mean_score``, ``frac_fake``, one row per non-empty bin in order
        (the bins of :func:`calibration_bin`).
    """
    y, s = _as_arrays(labels, scores)
    p = _probabilities(s)
    frame = pd.DataFrame({"bin": calibration_bin(p), "p": p, "y": y.astype(np.float64)})
    grouped = frame.groupby("bin", sort=True).agg(n=("p", "size"), mean_score=("p", "mean"), frac_fake=("y", "mean"))
    edges = np.linspace(0.0, 1.0, ECE_BINS + 1)
    bins = grouped.index.to_numpy()
    return pd.DataFrame({"bin_lo": edges[bins], "bin_hi": edges[bins + 1], **{c: grouped[c].to_numpy() for c in
                                                                               grouped.columns}})


def with_calibration(metrics: pd.DataFrame, df: pd.DataFrame, group: str = "generator") -> pd.DataFrame:
    """``metrics`` with the :data:`CALIBRATION_DIRECTIONS` columns computed from the scores in ``df`` (replacing
    any already there): per group, the macro ``mean`` and the ``worst`` (any NaN group makes both NaN).

    Args:
        metrics: a :func:`per_group_metrics` frame of ``df``.
        df: columns ``label``, ``score`` (finite) and ``group``.
        group: the column that names the groups.

    Returns:
        ``metrics`` (row order kept) with the columns appended.
    """
    rows = []
    for name, part in df.groupby(group, sort=True, observed=True):
        rows.append({group: name, **calibration_metrics(part["label"].to_numpy(), part["score"].to_numpy())})
    groups = list(rows)
    for label in SUMMARY_ROWS:
        summary: dict[str, object] = {group: label}
        for metric, direction in CALIBRATION_DIRECTIONS.items():
            summary[metric] = summary_value([r[metric] for r in groups], label, direction)
        rows.append(summary)
    table = pd.DataFrame(rows, columns=[group, *CALIBRATION_DIRECTIONS])
    base = metrics.drop(columns=[c for c in CALIBRATION_DIRECTIONS if c in metrics.columns])
    return base.merge(table, on=group, how="left", sort=False)


def paired_replicates(
    labels, scores: list[np.ndarray], thresholds: list[float], names: list[str], n_boot: int, seed: int, group: object
) -> dict[str, np.ndarray]:
    """Bootstrap replicates of metrics of several detectors scored on the same images: every replicate resamples the
    same images for all of them (class-stratified, :func:`stratified_counts`, seeded per group by :func:`group_rng`).

    Args:
        labels: 0 (real) / 1 (fake) per image.
        scores: each detector's P(fake) per image, in the order of ``labels``.
        thresholds: each detector's decision threshold (for ``acc``).
        names: the metrics (see :func:`weighted_metrics`).
        n_boot: replicates.
        seed: the bootstrap seed.
        group: the group the images form (its name seeds its generator).

    Returns:
        ``{metric: (detectors, n_boot)}`` replicate values.
    """
    y = np.asarray(labels).ravel()
    out = {name: np.empty((len(scores), n_boot)) for name in names}
    for start, counts in stratified_counts(y, n_boot, group_rng(seed, group)):
        stop = start + len(counts)
        for i, (s, threshold) in enumerate(zip(scores, thresholds, strict=True)):
            for name, values in weighted_metrics(y, s, counts, names, threshold).items():
                out[name][i, start:stop] = values
    return out


def as_defined(metrics: pd.DataFrame, groups: Iterable[object] = (), *, group: str = "generator") -> pd.DataFrame:
    """A stored metrics table (:func:`per_group_metrics` output) under today's definitions, whatever version wrote it:
    acc and balanced acc (and acc's interval) n/a for a group without both classes, a row of n/a for each of
    ``groups`` missing from it (nothing scored), and a summary value n/a where any group's is.

    Args:
        metrics: the table, with its ``mean`` and ``worst`` rows.
        groups: every group the run evaluated (e.g. the generators of its record's evaluation counts).
        group: the column naming the groups.

    Returns:
        The table (the same object when nothing changes: a table written by this version).
    """
    is_summary = metrics[group].isin(SUMMARY_ROWS)
    body, summary = metrics[~is_summary], metrics[is_summary].copy()
    absent = sorted({str(g) for g in groups} - {str(g) for g in body[group]})
    one_class = (body["n_real"] == 0) | (body["n_fake"] == 0)
    accs = [c for c in ("acc", "balanced_acc", "acc_lo", "acc_hi") if c in body.columns]
    changed = bool(absent) or bool(body.loc[one_class, accs].notna().any().any())
    if absent:
        empty = pd.DataFrame({group: absent, "n_real": 0, "n_fake": 0})
        body = pd.concat([body, empty], ignore_index=True).sort_values(group, kind="stable")
    body = body.copy()
    body.loc[(body["n_real"] == 0) | (body["n_fake"] == 0), accs] = _NAN
    for metric, direction in METRIC_DIRECTIONS.items():
        if direction == "none" or metric not in body.columns or not body[metric].isna().any():
            continue
        columns = [c for c in (metric, f"{metric}_lo", f"{metric}_hi") if c in summary.columns]
        changed = changed or bool(summary[columns].notna().any().any())
        summary[columns] = _NAN
    return pd.concat([body, summary], ignore_index=True) if changed else metrics
