from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from sklearn.calibration import calibration_curve
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    balanced_accuracy_score,
    brier_score_loss,
    log_loss,
    recall_score,
    roc_auc_score,
    roc_curve,
)

from detbench.metrics import (
    CALIBRATION_DIRECTIONS,
    METRIC_DIRECTIONS,
    ORACLE_COLUMNS,
    REAL_POSITIVE_METRICS,
    average_precision,
    best_threshold,
    binary_metrics,
    calibration_metrics,
    fpr_at_tpr,
    per_group_metrics,
    reliability_bins,
    stratified_counts,
    weighted_metrics,
)

KEYS = ["n_real", "n_fake", "acc", "real_acc", "fake_acc", "balanced_acc", "ap", "auc", "eer",
        "oracle_acc", "oracle_thr", "ap_real", "fpr95_real"]
CALIBRATION_KEYS = ["tpr_at_fpr_1", "tpr_at_fpr_5", "tpr_at_fpr_10", "ece", "brier", "nll"]


def _random_set(rng: np.random.Generator, n: int, shift: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    y = rng.integers(0, 2, n)
    s = np.clip(rng.normal(0.35 + shift * y, 0.2), 0, 1)
    return y, s


def _group_df(rng: np.random.Generator, n_per_class: int, groups=("a", "b", "c")) -> pd.DataFrame:
    parts = []
    for i, g in enumerate(groups):
        y = np.repeat([0, 1], n_per_class)
        s = np.clip(rng.normal(0.35 + (0.2 + 0.1 * i) * y, 0.2), 0, 1)
        parts.append(pd.DataFrame({"generator": g, "label": y, "score": s}))
    return pd.concat(parts, ignore_index=True)


def test_constants() -> None:
    assert list(METRIC_DIRECTIONS) == KEYS
    assert METRIC_DIRECTIONS["eer"] == "lower"
    assert METRIC_DIRECTIONS["acc"] == METRIC_DIRECTIONS["ap"] == "higher"
    assert METRIC_DIRECTIONS["n_real"] == METRIC_DIRECTIONS["oracle_thr"] == "none"
    assert ORACLE_COLUMNS == ("oracle_acc", "oracle_thr")


def test_matches_sklearn_on_fixed_arrays() -> None:
    y, s = _random_set(np.random.default_rng(1), 500)
    s = np.round(s, 2)  # plenty of ties
    m = binary_metrics(y, s)
    pred = (s > 0.5).astype(int)
    assert list(m) == KEYS
    assert (m["n_real"], m["n_fake"]) == (int((y == 0).sum()), int(y.sum()))
    assert m["acc"] == pytest.approx(accuracy_score(y, pred))
    assert m["real_acc"] == pytest.approx(recall_score(y, pred, pos_label=0))
    assert m["fake_acc"] == pytest.approx(recall_score(y, pred, pos_label=1))
    assert m["balanced_acc"] == pytest.approx(balanced_accuracy_score(y, pred))
    assert m["ap"] == pytest.approx(average_precision_score(y, s))
    assert m["auc"] == pytest.approx(roc_auc_score(y, s))
    assert 0.5 < m["auc"] < 1 and 0 < m["eer"] < 0.5


def test_hand_computed_case() -> None:
    y = [0, 0, 0, 1, 1]
    s = [0.1, 0.6, 0.3, 0.7, 0.4]
    m = binary_metrics(y, s)
    assert m["real_acc"] == pytest.approx(2 / 3)
    assert m["fake_acc"] == pytest.approx(1 / 2)
    assert m["acc"] == pytest.approx(3 / 5)
    assert m["balanced_acc"] == pytest.approx((2 / 3 + 1 / 2) / 2)
    # descending: 0.7 F, 0.6 R, 0.4 F, 0.3 R, 0.1 R -> AP = 1/2 * 1 + 1/2 * 2/3
    assert m["ap"] == pytest.approx(0.5 + 1 / 3)
    # pairs (fake > real): 0.7 beats 3, 0.4 beats 2 -> 5 of 6
    assert m["auc"] == pytest.approx(5 / 6)
    # cut between 0.3 and 0.4: reals 0.1, 0.3 correct, fakes 0.4, 0.7 correct -> 4/5
    assert m["oracle_acc"] == pytest.approx(4 / 5)
    assert m["oracle_thr"] == pytest.approx(0.35)


def test_threshold_is_strict() -> None:
    m = binary_metrics([0, 1], [0.5, 0.5])
    assert m["real_acc"] == 1.0 and m["fake_acc"] == 0.0 and m["acc"] == 0.5
    m = binary_metrics([1], [0.5], threshold=0.4999)
    assert m["fake_acc"] == 1.0


def test_ties_and_constant_scores() -> None:
    m = binary_metrics([0, 0, 1, 1], [0.7, 0.7, 0.7, 0.7])
    assert m["auc"] == 0.5 and m["eer"] == 0.5 and m["ap"] == 0.5
    assert m["acc"] == 0.5 and m["oracle_acc"] == 0.5
    thr, acc = best_threshold([0, 1, 1], [0.7, 0.7, 0.7])
    assert acc == pytest.approx(2 / 3) and thr < 0.7  # all fake is best: threshold below the only score
    thr, acc = best_threshold([0, 0, 1], [0.7, 0.7, 0.7])
    assert acc == pytest.approx(2 / 3) and thr == 0.7  # all real: nothing is > 0.7
    # a tie straddling the classes cannot be split
    thr, acc = best_threshold([0, 0, 1, 1], [0.2, 0.5, 0.5, 0.9])
    assert acc == pytest.approx(3 / 4)


@pytest.mark.parametrize("cls", [0, 1])
def test_single_class_is_nan_never_zero(cls: int) -> None:
    m = binary_metrics([cls] * 4, [0.2, 0.4, 0.6, 0.8])
    own, other = ("real_acc", "fake_acc") if cls == 0 else ("fake_acc", "real_acc")
    assert m[own] == 0.5  # acc over one class would be this under another name: it is n/a
    for key in ("acc", other, "balanced_acc", "ap", "auc", "eer", "oracle_acc", "oracle_thr", "ap_real", "fpr95_real"):
        assert math.isnan(m[key]), key
    assert math.isnan(best_threshold([cls] * 3, [0.1, 0.2, 0.3])[1])


def test_empty_input() -> None:
    m = binary_metrics([], [])
    assert m["n_real"] == 0 and m["n_fake"] == 0
    assert all(math.isnan(v) for k, v in m.items() if k not in ("n_real", "n_fake"))


def test_invalid_input() -> None:
    with pytest.raises(ValueError):
        binary_metrics([0, 2], [0.1, 0.2])
    with pytest.raises(ValueError):
        binary_metrics([0, 1], [0.1, float("nan")])
    with pytest.raises(ValueError):
        binary_metrics([0, 1], [0.1])
    with pytest.raises(ValueError):
        best_threshold([0, 1], [0.1, 0.2], objective="f1")  # type: ignore[arg-type]


def _brute_force(y: np.ndarray, s: np.ndarray, objective: str) -> float:
    u = np.unique(s)
    candidates = np.concatenate(([u[0] - 1], (u[:-1] + u[1:]) / 2, [u[-1]]))
    best = -1.0
    for t in candidates:
        pred = s > t
        if objective == "acc":
            value = np.mean(pred == (y == 1))
        else:
            value = (np.mean(~pred[y == 0]) + np.mean(pred[y == 1])) / 2
        best = max(best, value)
    return best


@pytest.mark.parametrize("objective", ["acc", "balanced_acc"])
def test_best_threshold_equals_brute_force(objective: str) -> None:
    rng = np.random.default_rng(7)
    for trial in range(30):
        n = int(rng.integers(2, 60))
        y, s = _random_set(rng, n, shift=rng.uniform(-0.2, 0.5))
        if trial % 2:
            s = np.round(s, 1)
        if y.min() == y.max():
            continue
        thr, value = best_threshold(y, s, objective)
        assert value == pytest.approx(_brute_force(y, s, objective))
        # the returned threshold achieves the returned value under the "score > thr" rule
        pred = s > thr
        achieved = (np.mean(pred == (y == 1)) if objective == "acc"
                    else (np.mean(~pred[y == 0]) + np.mean(pred[y == 1])) / 2)
        assert achieved == pytest.approx(value)


def test_oracle_at_least_fixed_threshold() -> None:
    rng = np.random.default_rng(3)
    for _ in range(10):
        y, s = _random_set(rng, 200, shift=0.15)
        m = binary_metrics(y, s)
        assert m["oracle_acc"] >= m["acc"]
        assert np.mean((s > m["oracle_thr"]) == (y == 1)) == pytest.approx(m["oracle_acc"])


def test_best_threshold_adjacent_floats() -> None:
    for a in (0.5, np.nextafter(0.5, 1.0)):  # the float midpoint rounds to a for one, to b for the other
        b = np.nextafter(a, 1.0)
        thr, acc = best_threshold([0, 1], [a, b])
        assert acc == 1.0 and a <= thr < b


def test_eer_known_cases() -> None:
    assert binary_metrics([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9])["eer"] == 0.0
    assert binary_metrics([0, 1], [0.9, 0.1])["eer"] == 1.0
    # ROC (0,0) (0,.5) (.5,.5) (.5,1) (1,1): FPR = FNR = 0.5 at a vertex
    assert binary_metrics([0, 0, 1, 1], [0.2, 0.6, 0.4, 0.8])["eer"] == pytest.approx(0.5)
    # ROC (0,0) (0,.5) (1/3,.5) (1/3,1) ...: crossing on the vertical segment at FPR = 1/3
    assert binary_metrics([0, 0, 0, 1, 1], [0.1, 0.2, 0.3, 0.25, 0.9])["eer"] == pytest.approx(1 / 3)


def test_fast_ap_matches_sklearn_with_ties_and_weights() -> None:
    rng = np.random.default_rng(11)
    for trial in range(40):
        n = int(rng.integers(2, 300))
        y = rng.integers(0, 2, n)
        y[0], y[1] = 0, 1
        s = rng.integers(0, 1 + trial % 7, n) / 6 if trial % 3 else rng.random(n)
        assert average_precision(y, s) == pytest.approx(average_precision_score(y, s), abs=1e-12)
        w = rng.integers(0, 4, size=(3, n))
        w[:, 1] = 1  # at least one weighted fake
        batch = average_precision(y, s, sample_weight=w)
        expected = [average_precision_score(y, s, sample_weight=row) for row in w]
        np.testing.assert_allclose(batch, expected, rtol=0, atol=1e-12)
    assert math.isnan(average_precision([0, 0], [0.1, 0.2]))


def test_per_group_rows_and_aggregates() -> None:
    df = _group_df(np.random.default_rng(0), 100, groups=("c", "a", "b"))
    out = per_group_metrics(df)
    assert list(out["generator"]) == ["a", "b", "c", "mean", "worst"]
    assert list(out.columns) == ["generator", *KEYS, *CALIBRATION_KEYS]
    per = out.iloc[:3]
    for g in ("a", "b"):
        part = df[df["generator"] == g]
        expected = binary_metrics(part["label"], part["score"])
        got = out.set_index("generator").loc[g]
        for k in KEYS:
            assert got[k] == pytest.approx(expected[k]), k
    mean, worst = out.iloc[3], out.iloc[4]
    assert mean["n_real"] == worst["n_real"] == 300 and mean["n_fake"] == 300
    assert mean["acc"] == pytest.approx(per["acc"].mean())
    assert mean["ap"] == pytest.approx(per["ap"].mean())
    assert worst["acc"] == pytest.approx(per["acc"].min())
    assert worst["eer"] == pytest.approx(per["eer"].max())  # lower is better
    assert math.isnan(mean["oracle_thr"]) and math.isnan(worst["oracle_thr"])


def test_per_group_nan_propagates() -> None:
    """Regression: a group with only fakes scored had acc = its fake accuracy (up to 100) and the mean and worst
    averaged it as if complete; accuracy over one class is n/a, and so are the aggregates."""
    df = _group_df(np.random.default_rng(0), 50, groups=("a", "b"))
    only_fake = pd.DataFrame({"generator": "z", "label": [1, 1, 1], "score": [0.9, 0.8, 0.2]})
    out = per_group_metrics(pd.concat([df, only_fake]), n_boot=50).set_index("generator")
    for k in ("acc", "balanced_acc", "ap", "real_acc", "acc_lo", "acc_hi"):
        assert math.isnan(out.loc["z", k]), k
    assert out.loc["z", "fake_acc"] == pytest.approx(2 / 3)  # a per-class accuracy stays defined
    for row in ("mean", "worst"):
        for k in ("acc", "ap", "auc", "eer", "real_acc", "balanced_acc", "oracle_acc"):
            assert math.isnan(out.loc[row, k]), (row, k)
        assert out.loc[row, "fake_acc"] == out.loc[row, "fake_acc"]  # every group has fakes
    assert math.isnan(out.loc["mean", "ap_lo"]) and math.isnan(out.loc["mean", "acc_lo"])
    assert not out.loc[["a", "b"], ["acc", "acc_lo"]].isna().any().any()


def test_accuracy_over_one_class_is_undefined() -> None:
    for labels in ([1, 1, 1], [0, 0]):
        m = binary_metrics(labels, [0.9, 0.8, 0.2][: len(labels)])
        assert math.isnan(m["acc"]) and math.isnan(m["balanced_acc"]), labels
    m = binary_metrics([1, 1, 1], [0.9, 0.8, 0.2])
    assert m["fake_acc"] == pytest.approx(2 / 3) and math.isnan(m["real_acc"])


def test_expected_groups_without_a_scored_image_make_the_aggregates_undefined() -> None:
    """Regression: a 3-of-24 import averaged over the generators it scored; a group the protocol evaluates with no
    scored image is a row of n/a (counts 0), and the mean and worst are n/a."""
    df = _group_df(np.random.default_rng(2), 40, groups=("a", "b"))
    out = per_group_metrics(df, groups=["a", "b", "c"], n_boot=30).set_index("generator")
    assert list(out.index) == ["a", "b", "c", "mean", "worst"]
    assert out.loc["c", "n_real"] == out.loc["c", "n_fake"] == 0
    assert out.loc["c", list(METRIC_DIRECTIONS)[2:]].isna().all() and out.loc["c", "acc_lo":].isna().all()
    for row in ("mean", "worst"):
        assert math.isnan(out.loc[row, "acc"]) and math.isnan(out.loc[row, "ap"]), row
    assert math.isnan(out.loc["mean", "acc_lo"])
    assert out.loc["mean", "n_real"] == 80
    complete = per_group_metrics(df, groups=["a", "b"]).set_index("generator")
    pd.testing.assert_frame_equal(complete, per_group_metrics(df).set_index("generator"))
    with pytest.raises(ValueError, match="not in groups"):
        per_group_metrics(df, groups=["a"])


def test_per_group_dict_threshold() -> None:
    df = pd.DataFrame({"gen": ["a", "a", "b", "b"], "label": [0, 1, 0, 1], "score": [0.3, 0.6, 0.3, 0.6]})
    out = per_group_metrics(df, group="gen", threshold={"a": 0.5, "b": 0.7}).set_index("gen")
    assert out.loc["a", "acc"] == 1.0 and out.loc["b", "acc"] == 0.5
    assert out.loc["mean", "acc"] == 0.75
    with pytest.raises(ValueError, match="lacks groups"):
        per_group_metrics(df, group="gen", threshold={"a": 0.5})
    with pytest.raises(ValueError, match="lacks columns"):
        per_group_metrics(df)


def test_bootstrap_reproducible_and_contains_estimate() -> None:
    df = _group_df(np.random.default_rng(5), 200)
    a = per_group_metrics(df, n_boot=200, seed=1)
    b = per_group_metrics(df, n_boot=200, seed=1)
    c = per_group_metrics(df, n_boot=200, seed=2)
    pd.testing.assert_frame_equal(a, b)
    assert not np.allclose(a["acc_lo"].iloc[:3], c["acc_lo"].iloc[:3])
    assert list(a.columns[-10:-6]) == ["acc_lo", "acc_hi", "ap_lo", "ap_hi"]
    assert list(a.columns[-6:]) == CALIBRATION_KEYS
    body = a.iloc[:4]
    for m in ("acc", "ap"):
        assert (body[f"{m}_lo"] <= body[m]).all() and (body[m] <= body[f"{m}_hi"]).all()
        assert (body[f"{m}_lo"] < body[f"{m}_hi"]).all()
        assert a.iloc[4][[f"{m}_lo", f"{m}_hi"]].isna().all()
    # macro mean averages independent groups: its interval is narrower than each group's
    width = body["acc_hi"] - body["acc_lo"]
    assert width.iloc[3] < width.iloc[:3].min()
    # a group's interval does not depend on which other groups are present
    alone = per_group_metrics(df[df["generator"] == "b"], n_boot=200, seed=1)
    assert alone.iloc[0]["acc_lo"] == a.iloc[1]["acc_lo"] and alone.iloc[0]["ap_hi"] == a.iloc[1]["ap_hi"]


def test_bootstrap_intervals_shrink_with_n() -> None:
    rng = np.random.default_rng(9)
    small = per_group_metrics(_group_df(rng, 50, groups=("a",)), n_boot=300)
    large = per_group_metrics(_group_df(rng, 2000, groups=("a",)), n_boot=300)
    for m in ("acc", "ap"):
        w_small = small.iloc[0][f"{m}_hi"] - small.iloc[0][f"{m}_lo"]
        w_large = large.iloc[0][f"{m}_hi"] - large.iloc[0][f"{m}_lo"]
        assert w_large < w_small / 3  # ~ sqrt(40) narrower in theory


def test_bootstrap_is_class_stratified() -> None:
    """Reals are always all right here, so only the fake half varies: acc = (30 + Bin(30, 1/2)) / 60."""
    y = np.repeat([0, 1], 30)
    s = np.r_[np.full(30, 0.2), np.full(15, 0.8), np.full(15, 0.3)]  # reals all right, fakes half right
    out = per_group_metrics(pd.DataFrame({"generator": "g", "label": y, "score": s}), n_boot=500)
    row = out.iloc[0]
    assert row["acc"] == 0.75
    assert 0.5 < row["acc_lo"] < 0.75 < row["acc_hi"] < 1.0
    assert row["acc_hi"] - row["acc_lo"] < 0.2  # unstratified resampling would give about 0.22


# ---------------------------------------------------------------- operating points and calibration


def _tpr_at_fpr_by_hand(y: np.ndarray, s: np.ndarray, budget: float) -> float:
    """Every threshold t (each distinct score, and above the maximum), called fake when score >= t."""
    best = 0.0
    for t in [*np.unique(s), np.inf]:
        fpr = np.sum((s >= t) & (y == 0)) / np.sum(y == 0)
        if fpr <= budget:
            best = max(best, np.sum((s >= t) & (y == 1)) / np.sum(y == 1))
    return best


def _ece_by_hand(y: np.ndarray, s: np.ndarray) -> float:
    total = 0.0
    for k in range(15):
        lo, hi = k / 15, (k + 1) / 15
        inside = [i for i in range(len(s)) if (lo < s[i] <= hi) or (k == 0 and s[i] == 0)]
        if inside:
            total += len(inside) / len(s) * abs(np.mean(s[inside]) - np.mean(y[inside]))
    return total


@pytest.mark.parametrize("trial", range(6))
def test_calibration_metrics_match_direct_formulas_and_scikit_learn(trial: int) -> None:
    rng = np.random.default_rng(100 + trial)
    n = int(rng.integers(20, 300))
    y = rng.integers(0, 2, n)
    y[:2] = (0, 1)
    s = np.clip(rng.normal(0.4 + 0.25 * y, 0.25), 0, 1)
    if trial % 2:
        s = np.round(s, 1)  # ties, and scores exactly on bin edges (0, 0.2, 0.4, ... , 1)
    m = calibration_metrics(y, s)
    assert list(m) == CALIBRATION_KEYS == list(CALIBRATION_DIRECTIONS)
    fpr, tpr, _ = roc_curve(y, s, drop_intermediate=False)
    for key, budget in (("tpr_at_fpr_1", 0.01), ("tpr_at_fpr_5", 0.05), ("tpr_at_fpr_10", 0.10)):
        assert m[key] == tpr[fpr <= budget].max()  # the ROC over all thresholds, no interpolation
        assert m[key] == pytest.approx(_tpr_at_fpr_by_hand(y, s, budget), abs=1e-15)
    assert m["brier"] == pytest.approx(brier_score_loss(y, s), abs=1e-15)
    assert m["brier"] == pytest.approx(np.mean((s - y) ** 2), abs=1e-15)
    clipped = np.clip(s, 1e-7, 1 - 1e-7)
    assert m["nll"] == pytest.approx(log_loss(y, clipped), rel=1e-12)
    assert m["nll"] == pytest.approx(-np.mean(y * np.log(clipped) + (1 - y) * np.log(1 - clipped)), rel=1e-12)
    assert m["ece"] == pytest.approx(_ece_by_hand(y, s), abs=1e-12)
    bins = reliability_bins(y, s)
    frac, mean = calibration_curve(y, s, n_bins=15, strategy="uniform")
    np.testing.assert_allclose(bins["frac_fake"], frac, atol=1e-12)
    np.testing.assert_allclose(bins["mean_score"], mean, atol=1e-12)
    assert bins["n"].sum() == n
    share = bins["n"] / n
    assert m["ece"] == pytest.approx(float((share * (bins["mean_score"] - bins["frac_fake"]).abs()).sum()), abs=1e-12)


def test_calibration_hand_computed_case() -> None:
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    s = np.array([0.05, 0.1, 0.6, 0.95, 0.3, 0.7, 0.9, 0.97])
    m = calibration_metrics(y, s)
    # FPR 0 allows only thresholds above 0.95: the fake at 0.97 -> TPR 1/4; FPR 1/4 (10 % budget is below it)
    assert m["tpr_at_fpr_1"] == m["tpr_at_fpr_5"] == m["tpr_at_fpr_10"] == 0.25
    assert m["brier"] == pytest.approx(np.mean([0.0025, 0.01, 0.36, 0.9025, 0.49, 0.09, 0.01, 0.0009]))
    # bins of width 1/15: 0.05 | 0.1 | 0.3 | 0.6 | 0.7 | 0.9 | 0.95, 0.97 (both in (14/15, 1])
    gaps = [0.05, 0.1, 0.7, 0.6, 0.3, 0.1, abs((0.95 + 0.97) / 2 - 0.5) * 2]
    assert m["ece"] == pytest.approx(sum(gaps) / 8)


def test_calibration_metrics_are_nan_without_both_classes_and_clip_scores() -> None:
    assert all(math.isnan(v) for v in calibration_metrics([1, 1, 1], [0.2, 0.9, 0.4]).values())
    assert all(math.isnan(v) for v in calibration_metrics([0, 0], [0.2, 0.9]).values())
    assert all(math.isnan(v) for v in calibration_metrics([], []).values())
    # a score outside [0, 1] (RIGID's 1 - cos can reach 2) counts as 1 in ece and brier, 1 - 1e-7 in nll
    wide, clipped = calibration_metrics([0, 1, 1], [0.1, 1.7, 0.6]), calibration_metrics([0, 1, 1], [0.1, 1.0, 0.6])
    assert wide == clipped


def test_per_group_calibration_columns_and_summaries() -> None:
    df = _group_df(np.random.default_rng(3), 40, groups=("a", "b"))
    only_fake = pd.DataFrame({"generator": "z", "label": [1, 1], "score": [0.9, 0.2]})
    out = per_group_metrics(df).set_index("generator")
    for g in ("a", "b"):
        part = df[df["generator"] == g]
        assert out.loc[g, CALIBRATION_KEYS].to_dict() == calibration_metrics(part["label"], part["score"])
    for key, direction in CALIBRATION_DIRECTIONS.items():
        assert out.loc["mean", key] == pytest.approx(out.loc[["a", "b"], key].mean())
        worst = out.loc[["a", "b"], key].max() if direction == "lower" else out.loc[["a", "b"], key].min()
        assert out.loc["worst", key] == worst
    with_z = per_group_metrics(pd.concat([df, only_fake])).set_index("generator")
    assert with_z.loc[["z", "mean", "worst"], CALIBRATION_KEYS].isna().all().all()


def test_weighted_metrics_equal_the_metrics_of_the_repeated_samples() -> None:
    rng = np.random.default_rng(11)
    n = 60
    y = rng.integers(0, 2, n)
    y[:2] = (0, 1)
    s = np.round(rng.random(n), 1)
    counts = rng.integers(0, 4, size=(5, n)).astype(float)
    counts[:, :2] = 1
    names = ["acc", "auc", "ap", *CALIBRATION_KEYS]
    got = weighted_metrics(y, s, counts, names, threshold=0.45)
    for b, row in enumerate(counts):
        idx = np.repeat(np.arange(n), row.astype(int))
        yy, ss = y[idx], s[idx]
        assert got["acc"][b] == pytest.approx(np.mean((ss > 0.45) == (yy == 1)))
        assert got["auc"][b] == pytest.approx(roc_auc_score(yy, ss), abs=1e-12)
        assert got["ap"][b] == pytest.approx(average_precision_score(yy, ss), abs=1e-12)
        for key, value in calibration_metrics(yy, ss).items():
            assert got[key][b] == pytest.approx(value, abs=1e-12), key
    with pytest.raises(ValueError, match="no weighted form"):
        weighted_metrics(y, s, counts, ["eer"])


def test_stratified_counts_keep_each_class_size() -> None:
    y = np.array([0] * 7 + [1] * 3)
    chunks = list(stratified_counts(y, 50, np.random.default_rng(0)))
    counts = np.vstack([c for _, c in chunks])
    assert counts.shape == (50, 10) and [start for start, _ in chunks][0] == 0
    assert (counts[:, :7].sum(axis=1) == 7).all() and (counts[:, 7:].sum(axis=1) == 3).all()


# ------------------------------------------------------------------ real images positive (RIGID's notebook)


def _exact_fpr_at_tpr(y: np.ndarray, s: np.ndarray, tpr: float, positive: int) -> float:
    """The direct formula: the share of negatives at least as positive as the k-th most positive positive, k the
    fewest positives whose share reaches ``tpr``."""
    positiveness = -s if positive == 0 else s
    ranked = np.sort(positiveness[y == positive])[::-1]
    k = next(k for k in range(1, ranked.size + 1) if k / ranked.size >= tpr)
    return float(np.mean(positiveness[y != positive] >= ranked[k - 1]))


def test_real_positive_metrics_are_the_notebooks_ap_and_fpr95() -> None:
    """RIGID's notebook: AP and FPR at 95 % TPR with real images positive, scored by realness (its cosine
    similarity; detbench's score 1 - cos is P(fake)-like, so realness is its negative)."""
    assert METRIC_DIRECTIONS["ap_real"] == "higher" and METRIC_DIRECTIONS["fpr95_real"] == "lower"
    assert REAL_POSITIVE_METRICS == ("ap_real", "fpr95_real")
    rng = np.random.default_rng(7)
    for trial in range(300):
        y, s = _random_set(rng, int(rng.integers(4, 300)))
        if trial % 2:
            s = np.round(s, 1)  # ties across the classes
        if y.min() == y.max():
            continue
        m = binary_metrics(y, s)
        assert m["ap_real"] == average_precision_score(1 - y, -s)  # the notebook's call, reals positive
        fpr, tpr, _ = roc_curve(1 - y, -s)  # the notebook's FPR95 (scikit-learn's default drop_intermediate)
        assert m["fpr95_real"] == fpr[np.argmax(tpr >= 0.95)]
        for positive in (0, 1):
            assert fpr_at_tpr(y, s, 0.95, positive, drop_intermediate=False) == _exact_fpr_at_tpr(y, s, 0.95, positive)
        if trial % 2 == 0:  # without ties the notebook's curve gives the exact value
            assert m["fpr95_real"] == _exact_fpr_at_tpr(y, s, 0.95, 0)
    assert m["ap"] == average_precision_score(y, s)  # the default AP stays fake-positive


def test_fpr95_real_by_hand() -> None:
    # 20 reals with P(fake) 0.00 .. 0.19 and 4 fakes: 95 % of the reals (19) pass as real up to 0.18; the fakes at
    # 0.05 and 0.18 pass with them, those at 0.185 and 0.9 do not: FPR95 = 2 / 4
    y = np.array([0] * 20 + [1] * 4)
    s = np.array([i / 100 for i in range(20)] + [0.05, 0.18, 0.185, 0.9])
    assert binary_metrics(y, s)["fpr95_real"] == 0.5
    # fakes positive instead: all 4 fakes (TPR 1 >= 0.95) down to 0.05 take the reals from 0.05 up: 15 of 20
    assert fpr_at_tpr(y, s, 0.95, positive=1) == 15 / 20
    # ties on a diagonal: 18 reals at 0.1, a real and a fake at 0.5, a real and a fake at 0.7, 2 fakes at 0.9. The
    # exact curve reaches 19/20 reals with 1 fake (at 0.5); scikit-learn's default curve drops that point (it lies
    # on the straight line to the next), so the notebook, and detbench's fpr95_real, report 2 fakes of 4
    tied_y = np.array([0] * 18 + [0, 1, 0, 1, 1, 1])
    tied_s = np.array([0.1] * 18 + [0.5, 0.5, 0.7, 0.7, 0.9, 0.9])
    assert binary_metrics(tied_y, tied_s)["fpr95_real"] == 0.5
    assert fpr_at_tpr(tied_y, tied_s, drop_intermediate=False) == 0.25 == _exact_fpr_at_tpr(tied_y, tied_s, 0.95, 0)
    with pytest.raises(ValueError, match="0 < tpr <= 1"):
        fpr_at_tpr(y, s, 0.0)


def test_per_group_real_positive_aggregates() -> None:
    out = per_group_metrics(_group_df(np.random.default_rng(3), 60)).set_index("generator")
    groups = out.loc[["a", "b", "c"]]
    assert out.loc["mean", "ap_real"] == pytest.approx(groups["ap_real"].mean())
    assert out.loc["worst", "ap_real"] == pytest.approx(groups["ap_real"].min())
    assert out.loc["worst", "fpr95_real"] == pytest.approx(groups["fpr95_real"].max())  # lower is better
