from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    balanced_accuracy_score,
    recall_score,
    roc_auc_score,
    roc_curve,
)

from detbench.metrics import (
    METRIC_DIRECTIONS,
    ORACLE_COLUMNS,
    REAL_POSITIVE_METRICS,
    average_precision,
    best_threshold,
    binary_metrics,
    fpr_at_tpr,
    per_group_metrics,
)

KEYS = ["n_real", "n_fake", "acc", "real_acc", "fake_acc", "balanced_acc", "ap", "auc", "eer",
        "oracle_acc", "oracle_thr", "ap_real", "fpr95_real"]


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
    assert m["acc"] == 0.5 and m[own] == 0.5
    for key in (other, "balanced_acc", "ap", "auc", "eer", "oracle_acc", "oracle_thr", "ap_real", "fpr95_real"):
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
    assert list(out.columns) == ["generator", *KEYS]
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
    df = _group_df(np.random.default_rng(0), 50, groups=("a", "b"))
    only_fake = pd.DataFrame({"generator": "z", "label": [1, 1, 1], "score": [0.9, 0.8, 0.2]})
    out = per_group_metrics(pd.concat([df, only_fake]), n_boot=50).set_index("generator")
    assert math.isnan(out.loc["z", "ap"]) and math.isnan(out.loc["z", "real_acc"])
    for row in ("mean", "worst"):
        for k in ("ap", "auc", "eer", "real_acc", "balanced_acc", "oracle_acc"):
            assert math.isnan(out.loc[row, k]), (row, k)
        assert out.loc[row, "acc"] == out.loc[row, "acc"]  # acc stays defined
    assert math.isnan(out.loc["mean", "ap_lo"]) and not math.isnan(out.loc["mean", "acc_lo"])
    assert out.loc["worst", "acc"] == pytest.approx(out.loc[["a", "b", "z"], "acc"].min())


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
    assert list(a.columns[-4:]) == ["acc_lo", "acc_hi", "ap_lo", "ap_hi"]
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
