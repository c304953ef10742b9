"""Significance tests for paired comparisons of detectors on the same images.

- :func:`mcnemar_exact`: accuracy, each detector at its own threshold; the exact two-sided binomial test on the
  images exactly one of the two gets right.
- :func:`delong`: AUC; DeLong, DeLong & Clarke-Pearson (Biometrics 1988), with the structural components (placement
  values) computed from midranks as Sun & Xu (IEEE SPL 2014) do.
- :func:`bootstrap_p_value`: any metric; from the paired bootstrap distribution of the difference.
- :func:`holm`: Holm's step-down adjustment of a family of p-values.

Only numpy and scipy; every function is pure.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

_NAN = float("nan")


def mcnemar_exact(a_only: int, b_only: int) -> float:
    """Exact McNemar test: under H0 the ``a_only + b_only`` discordant images split as Binomial(n, 1/2).

    Args:
        a_only: images the first detector gets right and the second wrong.
        b_only: images the second detector gets right and the first wrong.

    Returns:
        The two-sided p-value, ``min(1, 2 P(X <= min(a_only, b_only)))``; 1 without discordant images.
    """
    from scipy.stats import binom

    if a_only < 0 or b_only < 0:
        raise ValueError(f"counts must be >= 0; got {a_only}, {b_only}")
    n = a_only + b_only
    if n == 0:
        return 1.0
    return float(min(1.0, 2.0 * binom.cdf(min(a_only, b_only), n, 0.5)))


@dataclass(frozen=True)
class DeLong:
    """DeLong's test of two correlated AUCs: the AUCs, the variance of their difference, z and p."""

    auc_a: float
    auc_b: float
    var_a: float
    var_b: float
    cov: float
    z: float
    p_value: float


def _placements(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Structural components: for each fake, the share of reals it outscores (ties one half), and for each real
    the share of fakes that outscore it; both from midranks."""
    from scipy.stats import rankdata

    fake, real = s[y == 1], s[y == 0]
    m, n = fake.size, real.size
    all_ranks = rankdata(np.concatenate([fake, real]))
    v10 = (all_ranks[:m] - rankdata(fake)) / n  # reals below each fake
    v01 = 1.0 - (all_ranks[m:] - rankdata(real)) / m  # fakes above each real
    return v10, v01


def delong(labels, scores_a, scores_b) -> DeLong:
    """DeLong's test of ``AUC(b) - AUC(a)`` on the same images (fake = 1 the positive class, higher = more fake).

    Args:
        labels: 0 (real) / 1 (fake) per image.
        scores_a: the first detector's scores.
        scores_b: the second detector's scores, for the same images in the same order.

    Returns:
        :class:`DeLong`; z = (AUC_b - AUC_a) / sd and the two-sided normal p-value. All NaN unless both classes
        have an image (and the variances need two of each); p = 1 when the two AUCs and every placement agree
        (a zero variance with no difference).
    """
    from scipy.stats import norm

    y = np.asarray(labels).ravel()
    a = np.asarray(scores_a, dtype=np.float64).ravel()
    b = np.asarray(scores_b, dtype=np.float64).ravel()
    if not (y.shape == a.shape == b.shape):
        raise ValueError(f"labels and scores differ in length: {y.size}, {a.size}, {b.size}")
    m, n = int((y == 1).sum()), int((y == 0).sum())
    if m < 2 or n < 2:
        return DeLong(*([_NAN] * 7))
    a10, a01 = _placements(y, a)
    b10, b01 = _placements(y, b)
    s10 = np.cov(np.vstack([a10, b10]))  # (2, 2), over the fakes
    s01 = np.cov(np.vstack([a01, b01]))  # over the reals
    cov = s10 / m + s01 / n
    auc_a, auc_b = float(a10.mean()), float(b10.mean())
    var = float(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1])
    diff = auc_b - auc_a
    if var <= 0:
        z, p = (0.0, 1.0) if diff == 0 else (_NAN, _NAN)
    else:
        z = diff / math.sqrt(var)
        p = float(2 * norm.sf(abs(z)))
    return DeLong(auc_a, auc_b, float(cov[0, 0]), float(cov[1, 1]), float(cov[0, 1]), z, p)


def bootstrap_p_value(deltas) -> float:
    """Two-sided p-value of a difference from its bootstrap distribution (percentile inversion).

    Twice the smaller share of replicates on either side of 0, each side counting the observed sample once:
    ``min(1, 2 min(1 + #{d <= 0}, 1 + #{d >= 0}) / (B + 1))``. It is below 0.05 about when the percentile
    interval of the same replicates leaves out 0, and never 0.

    Args:
        deltas: the replicates of the difference.

    Returns:
        The p-value; NaN without replicates or with an undefined one.
    """
    d = np.asarray(deltas, dtype=np.float64).ravel()
    if d.size == 0 or np.isnan(d).any():
        return _NAN
    below, above = int((d <= 0).sum()), int((d >= 0).sum())
    return float(min(1.0, 2 * (1 + min(below, above)) / (d.size + 1)))


def holm(p_values) -> np.ndarray:
    """Holm's step-down adjustment: the k-th smallest of m p-values becomes ``max_{j <= k} min(1, (m - j + 1)
    p_(j))``. Rejecting where the adjusted value is <= alpha is Holm's procedure at level alpha.

    Args:
        p_values: the family (NaN entries are left out of it and stay NaN).

    Returns:
        The adjusted p-values, in the input order.
    """
    p = np.asarray(p_values, dtype=np.float64).ravel()
    out = np.full(p.shape, np.nan)
    valid = np.flatnonzero(~np.isnan(p))
    m = valid.size
    if m == 0:
        return out
    order = valid[np.argsort(p[valid], kind="stable")]
    scaled = np.minimum(1.0, (m - np.arange(m)) * p[order])
    out[order] = np.maximum.accumulate(scaled)
    return out
