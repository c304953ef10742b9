"""The significance tests, each against an independent computation: McNemar against scipy's binomial test, DeLong
against a re-derivation with loops and against pROC's published values, Holm against its definition, Friedman and
the Nemenyi critical difference against Demšar's table and worked example."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy.stats import binomtest, chi2, friedmanchisquare, norm

from detbench.stats import (
    average_ranks,
    bootstrap_p_value,
    delong,
    friedman,
    friedman_from_ranks,
    holm,
    mcnemar_exact,
    nemenyi_cd,
)


@pytest.mark.parametrize(("a_only", "b_only"), [(0, 0), (0, 1), (3, 0), (5, 5), (2, 9), (17, 4), (40, 61), (0, 30)])
def test_mcnemar_exact_is_the_two_sided_binomial_test(a_only: int, b_only: int) -> None:
    expected = 1.0 if a_only + b_only == 0 else binomtest(b_only, a_only + b_only, 0.5).pvalue
    assert mcnemar_exact(a_only, b_only) == pytest.approx(expected, rel=1e-12, abs=1e-300)
    assert mcnemar_exact(a_only, b_only) == mcnemar_exact(b_only, a_only)


def _delong_by_loops(y: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[float, float, float, float]:
    """DeLong et al. (1988) from their definitions: the Mann-Whitney kernel psi over every (fake, real) pair, the
    structural components V10 (per fake) and V01 (per real), their sample covariances S10 and S01, and
    var(AUC_b - AUC_a) = (S10_aa + S10_bb - 2 S10_ab) / m + (S01_aa + S01_bb - 2 S01_ab) / n."""

    def psi(x: float, z: float) -> float:
        return 1.0 if x > z else (0.5 if x == z else 0.0)

    fakes = [i for i in range(len(y)) if y[i] == 1]
    reals = [j for j in range(len(y)) if y[j] == 0]
    m, n = len(fakes), len(reals)
    comps = {}
    for name, s in (("a", a), ("b", b)):
        v10 = [sum(psi(s[i], s[j]) for j in reals) / n for i in fakes]
        v01 = [sum(psi(s[i], s[j]) for i in fakes) / m for j in reals]
        comps[name] = (v10, v01, sum(v10) / m)

    def cov(u: list[float], v: list[float]) -> float:
        mu, mv = sum(u) / len(u), sum(v) / len(v)
        return sum((x - mu) * (z - mv) for x, z in zip(u, v, strict=True)) / (len(u) - 1)

    (a10, a01, auc_a), (b10, b01, auc_b) = comps["a"], comps["b"]
    var = (cov(a10, a10) + cov(b10, b10) - 2 * cov(a10, b10)) / m + (cov(a01, a01) + cov(b01, b01)
                                                                      - 2 * cov(a01, b01)) / n
    z = (auc_b - auc_a) / math.sqrt(var)
    return auc_a, auc_b, z, 2 * (1 - norm.cdf(abs(z)))


@pytest.mark.parametrize("trial", range(5))
def test_delong_matches_a_rederivation_with_loops(trial: int) -> None:
    rng = np.random.default_rng(trial)
    n = int(rng.integers(12, 60))
    y = rng.integers(0, 2, n)
    y[:4] = (0, 0, 1, 1)
    a = rng.normal(0.5 * y, 1.0)
    b = 0.6 * a + rng.normal(0.8 * y, 0.8)
    if trial % 2:  # ties inside and across classes
        a, b = np.round(a, 0), np.round(b, 1)
    got = delong(y, a, b)
    auc_a, auc_b, z, p = _delong_by_loops(y, a, b)
    assert (got.auc_a, got.auc_b) == (pytest.approx(auc_a, abs=1e-12), pytest.approx(auc_b, abs=1e-12))
    assert got.z == pytest.approx(z, rel=1e-9) and got.p_value == pytest.approx(p, rel=1e-8)
    swapped = delong(y, b, a)
    assert swapped.z == pytest.approx(-got.z) and swapped.p_value == pytest.approx(got.p_value)


# pROC's aSAH data set (Turck et al. 2010; shipped with the R package pROC): outcome Poor = 1 (41 of 113 patients),
# the S100B protein level, the WFNS grade (1-5, an ordinal score with many ties) and the NDKA level.
ASAH_POOR = [
    0, 0, 0, 0, 1, 1, 0, 1, 0, 0, 1, 0, 1, 1, 0, 0, 1, 0, 1, 1, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 1, 1, 0,
    1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 1, 0, 0, 1, 1, 1, 0, 1, 1, 0, 1, 1, 1, 1, 0, 0,
    0, 1, 1, 0, 1, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 0, 0, 0, 1, 0, 0, 0,
]  # fmt: skip
ASAH_S100B = [
    0.13, 0.14, 0.1, 0.04, 0.13, 0.1, 0.47, 0.16, 0.18, 0.1, 0.12, 0.1, 0.44, 0.71, 0.04, 0.08, 0.49, 0.04, 0.07,
    0.33, 0.09, 0.09, 0.07, 0.11, 0.07, 0.17, 0.07, 0.11, 0.13, 0.19, 0.05, 0.16, 0.41, 0.14, 0.34, 0.35, 0.48, 0.09,
    0.96, 0.25, 0.5, 0.46, 0.16, 0.07, 0.43, 0.45, 0.11, 0.08, 0.09, 0.86, 0.52, 0.08, 0.06, 0.13, 2.07, 0.1, 0.14,
    0.15, 0.07, 0.06, 0.77, 0.05, 0.09, 0.3, 0.03, 0.09, 0.04, 0.23, 0.7, 0.09, 0.27, 0.71, 0.08, 0.26, 0.08, 0.16,
    0.09, 0.13, 0.1, 0.08, 0.11, 0.33, 0.11, 0.28, 0.07, 0.1, 0.32, 0.22, 0.07, 0.05, 0.24, 0.38, 0.1, 0.15, 0.08,
    0.14, 0.1, 0.07, 0.04, 0.19, 0.56, 0.14, 0.58, 0.32, 0.82, 0.74, 0.15, 0.47, 0.17, 0.44, 0.15, 0.5, 0.48,
]  # fmt: skip
ASAH_WFNS = [
    1, 1, 1, 1, 3, 2, 5, 4, 1, 2, 5, 2, 5, 5, 1, 2, 5, 2, 2, 5, 2, 1, 1, 1, 1, 2, 1, 2, 1, 1, 3, 4, 2, 1, 4, 5, 4, 1,
    4, 2, 5, 5, 1, 1, 2, 4, 1, 1, 2, 5, 5, 2, 1, 2, 5, 1, 2, 2, 2, 1, 5, 1, 1, 2, 5, 2, 1, 4, 5, 2, 4, 4, 1, 4, 1, 2,
    1, 4, 2, 1, 2, 3, 2, 4, 2, 1, 4, 5, 1, 1, 5, 4, 2, 2, 1, 1, 1, 3, 1, 2, 5, 2, 2, 5, 5, 5, 2, 4, 4, 5, 1, 1, 1,
]  # fmt: skip
ASAH_NDKA = [
    3.01, 8.54, 8.09, 10.42, 17.4, 12.75, 6.0, 13.2, 15.54, 6.01, 15.96, 17.86, 5.18, 8.9, 13.41, 20.75, 11.6, 16.11,
    32.37, 54.82, 32.41, 49.94, 40.34, 9.47, 6.29, 12.53, 6.54, 6.3, 80.3, 12.8, 9.8, 9.81, 9.85, 18.21, 5.03, 14.04,
    21.93, 8.02, 7.42, 8.38, 6.59, 9.63, 13.12, 7.96, 14.34, 41.43, 7.63, 7.06, 12.59, 13.56, 3.87, 9.44, 7.66,
    12.98, 419.19, 27.19, 22.27, 9.95, 21.22, 11.73, 10.4, 58.83, 6.39, 11.09, 12.22, 13.67, 17.21, 22.63, 12.9, 9.7,
    21.57, 8.23, 72.57, 15.54, 10.51, 10.6, 14.57, 5.19, 9.63, 4.61, 21.48, 17.3, 12.71, 9.44, 11.07, 19.46, 10.83,
    5.37, 11.97, 7.75, 9.83, 10.55, 28.49, 8.53, 12.57, 12.9, 46.83, 11.68, 12.67, 9.01, 9.57, 34.06, 11.72, 14.26,
    47.61, 11.67, 24.58, 10.33, 13.87, 15.89, 22.43, 6.79, 13.45,
]  # fmt: skip


def test_delong_reproduces_proc_on_the_asah_data() -> None:
    """pROC's published values: ``var(roc(aSAH$outcome, aSAH$wfns))`` = 0.00146991470882363 and the same for ndka
    and s100b (its tests/testthat/test-var.R), and the ``roc.test`` example of its manual, s100b against wfns:
    AUC 0.7314 and 0.8237, Z = -2.209, p-value = 0.02718."""
    y = np.array(ASAH_POOR)
    assert (y.size, int(y.sum())) == (113, 41)
    wfns_s100b = delong(y, ASAH_WFNS, ASAH_S100B)  # b - a = s100b - wfns, roc.test(s100b, wfns)'s sign
    assert wfns_s100b.var_a == pytest.approx(0.00146991470882363, rel=1e-12)
    assert wfns_s100b.var_b == pytest.approx(0.00266868245717244, rel=1e-12)
    assert delong(y, ASAH_NDKA, ASAH_S100B).var_a == pytest.approx(0.0031908105493913, rel=1e-12)
    assert round(wfns_s100b.auc_b, 4) == 0.7314 and round(wfns_s100b.auc_a, 4) == 0.8237
    assert round(wfns_s100b.z, 3) == -2.209 and round(wfns_s100b.p_value, 5) == 0.02718


def test_delong_undefined_and_degenerate_cases() -> None:
    one_class = delong([1, 1, 1, 1], [0.1, 0.2, 0.3, 0.4], [0.4, 0.3, 0.2, 0.1])
    assert math.isnan(one_class.z) and math.isnan(one_class.p_value) and math.isnan(one_class.auc_a)
    same = delong([0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4], [0.1, 0.2, 0.3, 0.4])
    assert same.z == 0.0 and same.p_value == 1.0  # no difference and no variance: nothing to reject
    with pytest.raises(ValueError, match="differ in length"):
        delong([0, 1], [0.1, 0.2], [0.3])


def _holm_rejections(p: list[float], alpha: float) -> set[int]:
    """Holm (1979): order the m p-values, reject H_(1), H_(2), ... while p_(k) <= alpha / (m - k + 1), stop at the
    first that is not."""
    order = sorted(range(len(p)), key=lambda i: p[i])
    rejected: set[int] = set()
    for k, i in enumerate(order, start=1):
        if p[i] > alpha / (len(p) - k + 1):
            break
        rejected.add(i)
    return rejected


@pytest.mark.parametrize("trial", range(8))
def test_holm_adjusted_values_reject_what_holms_procedure_rejects(trial: int) -> None:
    rng = np.random.default_rng(trial)
    p = list(np.round(rng.random(int(rng.integers(1, 9))) ** 3, 3))  # small values and ties
    adjusted = holm(p)
    order = np.argsort(p, kind="stable")
    m = len(p)
    expected = [max(min(1.0, (m - j) * p[order[j]]) for j in range(k + 1)) for k in range(m)]
    np.testing.assert_allclose(adjusted[order], expected, rtol=0, atol=1e-15)
    for alpha in np.linspace(0.0005, 0.9995, 1000):  # (capped at 1, every adjusted value is <= alpha = 1)
        assert {i for i in range(m) if adjusted[i] <= alpha} == _holm_rejections(p, alpha), alpha
    assert all(a >= q for a, q in zip(adjusted, p, strict=True)) and max(adjusted) <= 1.0


def test_holm_leaves_undefined_p_values_out_of_the_family() -> None:
    adjusted = holm([0.01, float("nan"), 0.04])
    assert adjusted[0] == pytest.approx(0.02) and math.isnan(adjusted[1]) and adjusted[2] == pytest.approx(0.04)
    assert holm([]).size == 0 and math.isnan(holm([float("nan")])[0])


def test_bootstrap_p_value_counts_both_sides() -> None:
    assert bootstrap_p_value(np.full(999, 0.1)) == pytest.approx(2 / 1000)  # every replicate above 0
    assert bootstrap_p_value(np.zeros(50)) == 1.0  # identical runs
    d = np.array([-1.0] * 30 + [1.0] * 70)
    assert bootstrap_p_value(d) == pytest.approx(2 * 31 / 101)
    assert bootstrap_p_value(-d) == bootstrap_p_value(d)
    assert math.isnan(bootstrap_p_value([])) and math.isnan(bootstrap_p_value([0.1, float("nan")]))
    for sample in itertools.islice(itertools.count(), 3):
        draws = np.random.default_rng(sample).normal(0.5, 1.0, 400)
        assert 0 < bootstrap_p_value(draws) <= 1


# Demšar (2006), Table 5(a): critical values q_alpha of the two-tailed Nemenyi test for k = 2..10 classifiers.
DEMSAR_Q_005 = (1.960, 2.343, 2.569, 2.728, 2.850, 2.949, 3.031, 3.102, 3.164)
DEMSAR_Q_010 = (1.645, 2.052, 2.291, 2.459, 2.589, 2.693, 2.780, 2.855, 2.920)


@pytest.mark.parametrize("k", range(2, 11))
def test_nemenyi_critical_difference_matches_demsars_table(k: int) -> None:
    for alpha, table in ((0.05, DEMSAR_Q_005), (0.10, DEMSAR_Q_010)):
        for n in (1, 14, 30):
            q = nemenyi_cd(k, n, alpha) / math.sqrt(k * (k + 1) / (6 * n))
            assert q == pytest.approx(table[k - 2], abs=1.5e-3)  # the table rounds a 3-decimal q / sqrt(2)


def test_friedman_reproduces_demsars_worked_example() -> None:
    """Demšar (2006), section 3.2.2: four variants of C4.5 on 14 data sets, average ranks 3.143, 2.000, 2.893 and
    1.964, give chi2_F = 9.28, F_F = 3.69 and a Nemenyi critical difference of 1.25 at alpha 0.05."""
    result = friedman_from_ranks([3.143, 2.000, 2.893, 1.964], n=14)
    assert round(result.chi2, 2) == 9.28 and round(result.f, 2) == 3.69 and round(result.cd, 2) == 1.25
    assert result.p_value == pytest.approx(chi2.sf(result.chi2, 3)) and result.p_f < 0.05  # the F_(3,39) test rejects


def test_friedman_chi2_matches_scipy_without_ties() -> None:
    rng = np.random.default_rng(0)
    values = rng.random((9, 5)) + np.arange(5) * 0.1  # 9 generators, 5 detectors, no ties
    result = friedman(values)
    expected = friedmanchisquare(*values.T)
    assert result.chi2 == pytest.approx(expected.statistic, rel=1e-12)
    assert result.p_value == pytest.approx(expected.pvalue, rel=1e-12)
    ranks_by_hand = [np.mean([1 + np.sum(row > row[j]) for row in values]) for j in range(5)]  # 1 = highest
    np.testing.assert_allclose(result.ranks, ranks_by_hand)
    assert friedman(-values, higher_is_better=False).ranks == result.ranks
    tied = average_ranks([[0.9, 0.9, 0.5], [0.7, 0.8, 0.8]])
    np.testing.assert_allclose(tied, [(1.5 + 3) / 2, (1.5 + 1.5) / 2, (3 + 1.5) / 2])
    assert math.isnan(friedman_from_ranks([1.0], n=5).chi2)
