"""`detbench compare` / `detbench.compare`: paired comparison of runs on the same images. The statistics against
independent computations (a plain bootstrap loop with the same seed, scipy's binomial test, Holm's definition),
then end to end on imported score files of the small demo: the table, the CSV, the refusals."""

from __future__ import annotations

import json
import re
import warnings
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from cli_helpers import SMALL_SETTINGS, invoke, with_small_demo
from scipy.stats import binomtest
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score, roc_curve

import detbench
from detbench.datasets.demo_build import FAMILIES
from detbench.errors import DetbenchWarning
from detbench.metrics import binary_metrics, calibration_metrics
from detbench.results.paired import COMPARE_COLUMNS, Aligned, compare_aligned
from detbench.stats import delong

N_FAMILIES = len(FAMILIES)  # the demo's generators, each evaluated on its val split
N_EVAL = N_FAMILIES * 2 * SMALL_SETTINGS["n_val"]  # evaluation images of the small demo (real and fake)
SMALL = ["--set", "n_train=12", "--set", "n_val=6", "--set", "size=64", "-q"]


def _aligned(rng: np.random.Generator, sizes: dict[str, tuple[int, int]], k: int = 2) -> Aligned:
    """Images of several generators scored by ``k`` runs, in :func:`detbench.results.paired.align`'s order."""
    parts = []
    for gen, (n_real, n_fake) in sizes.items():
        y = np.r_[np.zeros(n_real, int), np.ones(n_fake, int)]
        rows = {"generator": gen, "image_id": [f"{gen}{i:04d}" for i in range(y.size)], "path": "p", "label": y}
        for i in range(k):
            rows[f"score_{i}"] = np.round(np.clip(rng.normal(0.35 + (0.15 + 0.1 * i) * y, 0.22), 0, 1), 2)
        parts.append(pd.DataFrame(rows))
    images = pd.concat(parts, ignore_index=True).sort_values(["generator", "image_id", "path"], ignore_index=True)
    return Aligned(images)


def _plain_bootstrap(y: np.ndarray, seed: int, generator: str, n_boot: int) -> list[np.ndarray]:
    """The class-stratified resamples, one by one: the generator seeded with (seed, crc32 of the generator's
    repr), reals drawn from the reals then fakes from the fakes, with replacement, as many as there are."""
    rng = np.random.default_rng([seed, zlib.crc32(repr(generator).encode())])
    reals, fakes = np.flatnonzero(y == 0), np.flatnonzero(y == 1)
    draw_reals = rng.integers(0, reals.size, size=(n_boot, reals.size))
    draw_fakes = rng.integers(0, fakes.size, size=(n_boot, fakes.size))
    return [np.r_[reals[draw_reals[b]], fakes[draw_fakes[b]]] for b in range(n_boot)]


def _by_hand(metric: str, y: np.ndarray, s: np.ndarray, threshold: float) -> float:
    """Each metric straight from its definition or scikit-learn."""
    if metric == "acc":
        return float(np.mean((s > threshold) == (y == 1)))
    if metric == "ap":
        return float(average_precision_score(y, s))
    if metric == "auc":
        return float(roc_auc_score(y, s))
    if metric == "tpr_at_fpr_5":
        fpr, tpr, _ = roc_curve(y, s, drop_intermediate=False)
        return float(tpr[fpr <= 0.05].max())
    if metric == "brier":
        return float(brier_score_loss(y, s))
    raise AssertionError(metric)


def _bootstrap_p(deltas: np.ndarray) -> float:
    return min(1.0, 2 * (1 + min((deltas <= 0).sum(), (deltas >= 0).sum())) / (deltas.size + 1))


def test_paired_bootstrap_equals_a_plain_loop_with_the_same_seed() -> None:
    rng = np.random.default_rng(4)
    aligned = _aligned(rng, {"gan": (30, 25), "sd": (20, 35)})
    thresholds, n_boot, seed = [0.5, 0.45], 50, 7  # the equality holds replicate by replicate: 50 show it
    metrics = ["acc", "ap", "auc", "tpr_at_fpr_5", "brier"]
    table = compare_aligned(aligned, thresholds, metrics, n_boot=n_boot, seed=seed).set_index(["metric", "generator"])
    images = aligned.images
    per_generator: dict[str, dict[str, np.ndarray]] = {m: {} for m in metrics}
    for gen in ("gan", "sd"):
        part = images[images["generator"] == gen]
        y, sa, sb = (part[c].to_numpy() for c in ("label", "score_0", "score_1"))
        resamples = _plain_bootstrap(y, seed, gen, n_boot)
        for m in metrics:
            deltas = np.array([_by_hand(m, y[i], sb[i], thresholds[1]) - _by_hand(m, y[i], sa[i], thresholds[0])
                               for i in resamples])
            per_generator[m][gen] = deltas
            row = table.loc[(m, gen)]
            lo, hi = np.quantile(deltas, [0.025, 0.975])
            assert (row["delta_lo"], row["delta_hi"]) == (pytest.approx(lo, abs=1e-12), pytest.approx(hi, abs=1e-12))
            if m not in ("acc", "auc"):
                assert row["test"] == "paired-bootstrap" and row["p_value"] == pytest.approx(_bootstrap_p(deltas))
    for m in metrics:  # the mean row: the macro mean of each replicate's per-generator differences
        deltas = (per_generator[m]["gan"] + per_generator[m]["sd"]) / 2
        row = table.loc[(m, "mean")]
        lo, hi = np.quantile(deltas, [0.025, 0.975])
        assert (row["delta_lo"], row["delta_hi"]) == (pytest.approx(lo, abs=1e-12), pytest.approx(hi, abs=1e-12))
        assert row["p_value"] == pytest.approx(_bootstrap_p(deltas))


def test_values_tests_and_holm_of_each_generator() -> None:
    rng = np.random.default_rng(8)
    sizes = {"a": (25, 25), "b": (30, 20), "c": (15, 40), "d": (22, 22)}
    aligned = _aligned(rng, sizes)
    thresholds = [0.5, 0.4]
    table = compare_aligned(aligned, thresholds, ["acc", "auc", "ece"], n_boot=50)
    assert list(table.columns) == ["pair", *COMPARE_COLUMNS]
    images = aligned.images
    for metric, rows in table.groupby("metric", sort=False):
        body = rows[~rows["generator"].isin(["mean", "worst"])].set_index("generator")
        assert list(body.index) == list(sizes) and list(rows["generator"])[-2:] == ["mean", "worst"]
        for gen, part in images.groupby("generator"):
            y, sa, sb = (part[c].to_numpy() for c in ("label", "score_0", "score_1"))
            row = body.loc[gen]
            if metric == "ece":
                a, b = calibration_metrics(y, sa)["ece"], calibration_metrics(y, sb)["ece"]
            else:
                a, b = binary_metrics(y, sa, thresholds[0])[metric], binary_metrics(y, sb, thresholds[1])[metric]
            assert (row["a"], row["b"], row["delta"]) == (a, b, b - a)
            assert (row["n_real"], row["n_fake"]) == sizes[gen]
            if metric == "acc":  # exact McNemar: a binomial test on the images exactly one run gets right
                right_a, right_b = (sa > 0.5) == (y == 1), (sb > 0.4) == (y == 1)
                only_a, only_b = int((right_a & ~right_b).sum()), int((right_b & ~right_a).sum())
                expected = binomtest(only_b, only_a + only_b, 0.5).pvalue if only_a + only_b else 1.0
                assert row["test"] == "mcnemar-exact" and row["p_value"] == pytest.approx(expected, rel=1e-12)
            if metric == "auc":
                assert row["test"] == "delong" and row["p_value"] == delong(y, sa, sb).p_value
        # Holm from its definition: the k-th smallest of m times (m - k + 1), then the running maximum, capped at 1
        p = body["p_value"].to_numpy()
        order = np.argsort(p, kind="stable")
        holm = np.maximum.accumulate(np.minimum(1, (len(p) - np.arange(len(p))) * p[order]))
        np.testing.assert_allclose(body["p_holm"].to_numpy()[order], holm, rtol=0, atol=1e-15)
        mean, worst = rows.set_index("generator").loc["mean"], rows.set_index("generator").loc["worst"]
        assert mean["a"] == pytest.approx(body["a"].mean()) and mean["b"] == pytest.approx(body["b"].mean())
        pick = body["a"].max() if metric == "ece" else body["a"].min()  # ECE: lower is better, the worst is the max
        assert worst["a"] == pick and mean["n_real"] == sum(r for r, _ in sizes.values())
        assert mean["p_holm"] == mean["p_value"] and mean["test"] == "paired-bootstrap"


def test_swapping_the_runs_mirrors_every_difference() -> None:
    aligned = _aligned(np.random.default_rng(2), {"g": (40, 40), "h": (30, 50)})
    swapped = Aligned(aligned.images.rename(columns={"score_0": "score_1", "score_1": "score_0"}))
    metrics = ["acc", "auc", "ap", "nll"]
    ab = compare_aligned(aligned, [0.5, 0.5], metrics, n_boot=100)
    ba = compare_aligned(swapped, [0.5, 0.5], metrics, n_boot=100)
    np.testing.assert_allclose(ab["delta"], -ba["delta"], atol=1e-15)
    np.testing.assert_allclose(ab["delta_lo"], -ba["delta_hi"], atol=1e-12)
    np.testing.assert_allclose(ab["p_value"], ba["p_value"], rtol=1e-12)
    without = compare_aligned(aligned, [0.5, 0.5], metrics, n_boot=0)
    assert without[["delta_lo", "delta_hi"]].isna().all().all()
    assert without.loc[without["metric"] == "ap", "p_value"].isna().all()  # AP's test is the bootstrap
    assert without.loc[(without["metric"] == "acc") & ~without["generator"].isin(["mean", "worst"]), "p_value"].notna(
    ).all()


# ------------------------------------------------------------------------------------- end to end, on the demo


@pytest.fixture(scope="module")
def demo_home(tmp_path_factory: pytest.TempPathFactory, small_demo_tree: Path) -> Path:
    return with_small_demo(tmp_path_factory.mktemp("compare_home"), small_demo_tree)


@pytest.fixture
def imported(demo_home: Path, monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Three imported score files of the small demo's evaluation images: ``weak`` and ``strong`` score every image,
    ``partial`` leaves three out."""
    monkeypatch.setenv("DETBENCH_HOME", str(demo_home))
    files = tmp_path_factory.mktemp("files")
    index = detbench.index("demo", settings=SMALL_SETTINGS)
    rows = index[index["split"] == "val"].sort_values("path").reset_index(drop=True)
    rng = np.random.default_rng(0)
    runs = {}
    for name, signal, drop in (("weak", 0.25, 0), ("strong", 0.6, 0), ("partial", 0.4, 3)):
        scores = np.clip(signal * rows["label"] + (1 - signal) * rng.random(len(rows)), 0, 1).round(6)
        table = pd.DataFrame({"path": rows["path"], "score": scores}).iloc[drop:]
        table.to_csv(files / f"{name}.csv", index=False)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", f"3 of the {N_EVAL} evaluation images", DetbenchWarning)  # by design
            runs[name] = detbench.import_scores("demo", files / f"{name}.csv", name=name, settings=SMALL_SETTINGS)
    return runs


def test_compare_command_table_and_csv(imported: dict, tmp_path: Path) -> None:
    weak, strong = imported["weak"], imported["strong"]
    out = tmp_path / "compare.csv"
    result = invoke("compare", weak.id[:10], strong.id[:12], "--metric", "acc,auc,ap,ece", "--csv", str(out))
    assert result.exit_code == 0, result.output
    assert f"A = {weak.id[:16]} external:weak" in result.output
    assert f"B = {strong.id[:16]} external:strong" in result.output
    for title in ("acc: B − A (Δ percentage points)", "auc: B − A", "ap: B − A", "ece: B − A"):
        assert title in result.output
    assert re.search(r"│ mean .*│ \* │", result.output)  # a significant row is marked
    csv = pd.read_csv(out)
    assert list(csv.columns) == COMPARE_COLUMNS
    assert len(csv) == 4 * (N_FAMILIES + 2) and set(csv["test"]) == {"mcnemar-exact", "delong", "paired-bootstrap"}
    # the values are the runs' own metrics (the leaderboard's), in its units (fractions)
    for run, column in ((weak, "a"), (strong, "b")):
        metrics = run.metrics.set_index("generator")
        for metric in ("acc", "auc", "ap", "ece"):
            shown = csv[csv["metric"] == metric].set_index("generator")[column]
            np.testing.assert_allclose(shown, metrics.loc[shown.index, metric], rtol=1e-5)
    api = detbench.compare([weak, strong.id[:8]], metric=["acc"], bootstrap=200)
    assert list(api.columns) == ["run_a", "run_b", *COMPARE_COLUMNS]
    assert set(api["run_a"]) == {weak.id} and set(api["run_b"]) == {strong.id} and api.attrs["n_images"] == N_EVAL


def test_runs_on_different_images_are_refused_unless_common(imported: dict, tmp_path: Path) -> None:
    weak, partial, strong = imported["weak"], imported["partial"], imported["strong"]
    refused = invoke("compare", weak.id[:16], partial.id[:16])
    assert refused.exit_code == 2, refused.output
    lines = refused.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    message = " ".join(refused.output.split())
    assert "did not score the same evaluation images" in message and f"3 scored only by {weak.id[:16]}" in message
    assert "--common" in message and f"{N_EVAL - 3} images both scored" in message

    out = tmp_path / "three.csv"
    common = invoke("compare", weak.id[:16], partial.id[:16], strong.id[:16], "--common", "--metric", "auc",
                    "--csv", str(out))
    assert common.exit_code == 0, common.output
    said = " ".join(common.output.split())
    assert f"the {N_EVAL - 3} images every run scored are compared" in said
    assert f"dropped 3 of the images {weak.id[:16]} scored, 3 of the images {strong.id[:16]} scored" in said
    csv = pd.read_csv(out)
    assert list(csv.columns) == ["run_b", *COMPARE_COLUMNS]  # with more than two runs: which run each row compares
    assert sorted(csv["run_b"].unique()) == sorted([partial.id, strong.id])
    mean = csv[csv["generator"] == "mean"]
    assert (mean["n_real"] + mean["n_fake"] == N_EVAL - 3).all()


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["compare", "RUN0"], ["compare needs two or more runs; got 1"]),
        (["compare", "RUN0", "RUN1", "--metric", "eer"], ["cannot compare metric 'eer'", "acc, auc, ap"]),
        (["compare", "RUN0", "RUN0"], ["named more than once"]),
        (["compare", "RUN0", "0123456789abcdef"], ["no finished run with id '0123456789abcdef'"]),
        (["compare", "RUN0", "RUN1", "--csv", "TMP"], ["is a folder"]),
    ],
    ids=["one-run", "unknown-metric", "twice", "unknown-run", "csv-folder"],
)
def test_bad_input_is_one_error_line(imported: dict, tmp_path: Path, args: list[str], words: list[str]) -> None:
    ids = {"RUN0": imported["weak"].id[:16], "RUN1": imported["strong"].id[:16], "TMP": str(tmp_path)}
    result = invoke(*[ids.get(a, a) for a in args])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    for word in words:
        assert word in " ".join(result.output.split()), (word, result.output)


def test_a_run_recorded_before_the_calibration_columns_gains_them(imported: dict) -> None:
    """A run written before tpr_at_fpr_*, ece, brier and nll existed: every reader computes them from its stored
    scores (nothing rescored, its files untouched), so the leaderboard and compare offer them."""
    from detbench.store import seal_record, sha256_of_file

    run = imported["weak"]
    stored = pd.read_parquet(run.path / "metrics.parquet")
    new = ["tpr_at_fpr_1", "tpr_at_fpr_5", "tpr_at_fpr_10", "ece", "brier", "nll"]
    old = stored.drop(columns=new)
    old.to_parquet(run.path / "metrics.parquet", index=False)
    record = json.loads((run.path / "run.json").read_text())
    record["outputs"]["metrics.parquet"] = sha256_of_file(run.path / "metrics.parquet")
    (run.path / "run.json").write_text(json.dumps(seal_record(record)))
    try:
        before = sha256_of_file(run.path / "metrics.parquet")
        reread = detbench.load_run(run.id)
        pd.testing.assert_frame_equal(reread.metrics, stored)
        board = detbench.leaderboard("demo", metric="ece").set_index("run_id")
        assert board.loc[run.id[:16], "mean"] == pytest.approx(stored.set_index("generator").loc["mean", "ece"])
        shown = invoke("leaderboard", "demo", "--metric", "brier", "--detector", "external:weak")
        assert shown.exit_code == 0 and "brier (value)" in shown.output, shown.output
        brier = stored.set_index("generator").loc["mean", "brier"]
        assert f"{brier:.3g}" in shown.output  # as it is, not in %
        assert sha256_of_file(run.path / "metrics.parquet") == before  # the run's files are not changed
    finally:
        stored.to_parquet(run.path / "metrics.parquet", index=False)
        record["outputs"]["metrics.parquet"] = sha256_of_file(run.path / "metrics.parquet")
        (run.path / "run.json").write_text(json.dumps(seal_record(record)))


# ------------------------------------------------------------------------------------- ranking many runs


def _wide(values: dict[str, list[float]], generators: tuple[str, ...] = ("g1", "g2", "g3")) -> pd.DataFrame:
    """A wide leaderboard with one run per key (its run id) and the given value per generator."""
    from detbench.results.leaderboard import ID_COLUMNS

    rows = []
    for run_id, vals in values.items():
        row = dict.fromkeys(ID_COLUMNS, "x") | {"run_id": run_id, "perturbation": "clean"}
        rows.append(row | dict(zip(generators, vals, strict=True)) | {"mean": np.mean(vals), "worst": min(vals)})
    return pd.DataFrame(rows)


def test_ranked_view_average_ranks_and_friedman() -> None:
    from detbench.results.leaderboard import ranked_view
    from detbench.stats import friedman

    wide = _wide({"r1": [0.9, 0.7, 0.8], "r2": [0.8, 0.9, 0.6], "r3": [0.5, 0.6, 0.9], "r4": [0.7, np.nan, 0.7]})
    ranked = ranked_view(wide, "acc")
    # per generator, 1 = highest: g1 r1 1, r2 2, r3 3; g2 r2 1, r1 2, r3 3; g3 r3 1, r1 2, r2 3 (r4 has a gap)
    expected = {"r1": (1 + 2 + 2) / 3, "r2": (2 + 1 + 3) / 3, "r3": (3 + 3 + 1) / 3}
    assert list(ranked["run_id"]) == ["r1", "r2", "r3", "r4"]  # by average rank, the unranked last
    assert ranked.set_index("run_id")["avg_rank"].iloc[:3].to_dict() == pytest.approx(expected)
    assert np.isnan(ranked.set_index("run_id").loc["r4", "avg_rank"])
    test = ranked.attrs["friedman"]
    direct = friedman(wide.loc[:2, ["g1", "g2", "g3"]].to_numpy().T)
    assert (test["chi2"], test["cd"], test["n"], test["k"]) == (direct.chi2, direct.cd, 3, 3)
    assert test["run_ids"] == ["r1", "r2", "r3"]
    lower = ranked_view(wide, "ece").set_index("run_id")["avg_rank"]  # lower is better: the order turns round
    assert lower["r3"] == pytest.approx((1 + 1 + 3) / 3) and lower["r1"] == pytest.approx((3 + 2 + 2) / 3)


def test_ranking_needs_two_generators_two_runs_and_a_direction() -> None:
    from detbench.errors import ConfigError, DataError
    from detbench.results.leaderboard import ranked_view

    with pytest.raises(ConfigError, match="higher or lower is better"):
        ranked_view(_wide({"r1": [1, 2, 3], "r2": [3, 2, 1]}), "n_real")
    with pytest.raises(DataError, match="two or more runs"):
        ranked_view(_wide({"r1": [0.9, 0.7, 0.8], "r2": [0.8, np.nan, 0.6]}), "acc")
    with pytest.raises(DataError, match="two or more generators"):
        ranked_view(_wide({"r1": [0.9], "r2": [0.8]}, generators=("g1",)), "acc")


def test_leaderboard_rank_command_and_report_diagram(imported: dict, tmp_path: Path) -> None:
    result = invoke("leaderboard", "demo", "--rank", "--metric", "auc", "--markdown", str(tmp_path / "board.md"))
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "avg rank" in text and "Friedman χ² =" in text and "Nemenyi critical difference at α = 0.05" in text
    assert "Friedman χ²" in (tmp_path / "board.md").read_text()
    board = detbench.leaderboard("demo", metric="auc", rank=True)
    assert board["avg_rank"].is_monotonic_increasing and board.attrs["friedman"]["k"] == 3
    assert board.iloc[0]["detector"] == "external:strong"  # the most separating scores rank first everywhere
    by_brier = detbench.leaderboard("demo", metric="brier")  # lower is better: the best (lowest) mean first
    assert by_brier["mean"].is_monotonic_increasing and not by_brier["mean"].is_monotonic_decreasing
    refused = invoke("leaderboard", "demo", "--rank", "--delta")
    assert refused.exit_code == 2 and refused.output.strip().startswith("error: ") and "--rank" in refused.output

    report = invoke("report", "demo", "--out", str(tmp_path / "report"))
    assert report.exit_code == 0, report.output
    page = (tmp_path / "report" / "report.html").read_text()
    assert "<b>Critical-difference diagram.</b>" in page and (tmp_path / "report" / "demo_critical_difference.png"
                                                              ).is_file()
