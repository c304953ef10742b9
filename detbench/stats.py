"""Significance tests for paired comparisons of detectors on the same images.

- :func:`mcnemar_exact`: accuracy, each detector at its own threshold; the exact two-sided binomial test on the
  images exactly one of the two gets right.
- :func:`delong`: AUC; DeLong, DeLong & Clarke-Pearson (Biometrics 1988), with the structural components (placement
  values) computed from midranks as Sun & Xu (IEEE SPL 2014) do.
- :func:`bootstrap_p_value`: any metric; from the paired bootstrap distribution of the difference.
- :func:`holm`: Holm's step-down adjustment of a family of p-values.
- :func:`friedman` and :func:`nemenyi_cd`: ranking many detectors over many generators, as Demšar (JMLR 2006)
  recommends: average ranks, the Friedman test (and Iman and Davenport's F form of it) and the Nemenyi critical
  difference of average ranks.

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
    the share of fakes that outscore it; both from midranks.
    """
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


def average_ranks(values, higher_is_better: bool = True) -> np.ndarray:
    """Each method's rank within each block (1 = best, ties share the average of their ranks), averaged.

    Args:
        values: ``(blocks, methods)``: e.g. one row per generator, one column per detector; no NaN.
        higher_is_better: the metric's direction.

    Returns:
        ``(methods,)`` average ranks.
    """
    from scipy.stats import rankdata

    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 2 or np.isnan(v).any():
        raise ValueError("values must be a complete (blocks, methods) table")
    return rankdata(-v if higher_is_better else v, axis=1).mean(axis=0)


@dataclass(frozen=True)
class Friedman:
    """The Friedman test of ``k`` methods over ``n`` blocks from their average ranks (Demšar 2006, section 3.2.2).

    ``chi2`` = 12 n / (k (k + 1)) [sum R_j^2 - k (k + 1)^2 / 4] with ``p_value`` from chi-square with k - 1 degrees
    of freedom; ``f`` = (n - 1) chi2 / (n (k - 1) - chi2), Iman and Davenport's less conservative form, with
    ``p_f`` from F with k - 1 and (k - 1)(n - 1) degrees of freedom; ``cd``: the Nemenyi critical difference at
    ``alpha``.
    """

    n: int
    k: int
    ranks: tuple[float, ...]
    chi2: float
    p_value: float
    f: float
    p_f: float
    cd: float
    alpha: float


def friedman_from_ranks(ranks, n: int, alpha: float = 0.05) -> Friedman:
    """:class:`Friedman` of methods with these average ranks over ``n`` blocks.

    Args:
        ranks: each method's average rank.
        n: the blocks (e.g. generators).
        alpha: the level of the Nemenyi critical difference.

    Returns:
        The test (NaN statistics unless there are two or more methods and blocks).
    """
    from scipy.stats import chi2 as chi2_dist
    from scipy.stats import f as f_dist

    r = np.asarray(ranks, dtype=np.float64)
    k = r.size
    if k < 2 or n < 2:
        return Friedman(n, k, tuple(map(float, r)), _NAN, _NAN, _NAN, _NAN, _NAN, alpha)
    chi2 = 12 * n / (k * (k + 1)) * (float(np.sum(r**2)) - k * (k + 1) ** 2 / 4)
    denominator = n * (k - 1) - chi2
    f = (n - 1) * chi2 / denominator if denominator > 0 else float("inf")
    p_f = float(f_dist.sf(f, k - 1, (k - 1) * (n - 1))) if np.isfinite(f) else 0.0
    return Friedman(n, k, tuple(map(float, r)), float(chi2), float(chi2_dist.sf(chi2, k - 1)), float(f), p_f,
                    nemenyi_cd(k, n, alpha), alpha)


def friedman(values, higher_is_better: bool = True, alpha: float = 0.05) -> Friedman:
    """:class:`Friedman` of a complete ``(blocks, methods)`` table (see :func:`average_ranks`).

    Args:
        values: one row per block (generator), one column per method (detector).
        higher_is_better: the metric's direction.
        alpha: the level of the Nemenyi critical difference.

    Returns:
        The test.
    """
    v = np.asarray(values, dtype=np.float64)
    return friedman_from_ranks(average_ranks(v, higher_is_better), v.shape[0], alpha)


def nemenyi_cd(k: int, n: int, alpha: float = 0.05) -> float:
    """The Nemenyi critical difference: two of ``k`` methods ranked over ``n`` blocks differ at level ``alpha`` when
    their average ranks differ by more than ``q_alpha sqrt(k (k + 1) / (6 n))``, with ``q_alpha`` the studentized
    range quantile for ``k`` means and infinite degrees of freedom divided by sqrt 2 (Demšar 2006, Table 5a).

    Args:
        k: the methods (2 or more).
        n: the blocks (1 or more).
        alpha: the level.

    Returns:
        The critical difference of average ranks.
    """
    from scipy.stats import studentized_range

    if k < 2 or n < 1:
        raise ValueError(f"the critical difference needs k >= 2 methods and n >= 1 blocks; got k={k}, n={n}")
    q = float(studentized_range.ppf(1 - alpha, k, np.inf)) / math.sqrt(2)
    return q * math.sqrt(k * (k + 1) / (6 * n))
