"""End to end through the CLI on a small demo build (the real bundled backbone, CPU)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from cli_helpers import SMALL, invoke, with_small_demo

from detbench.datasets.demo_build import FAMILIES


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory, small_demo_tree: Path) -> Path:
    return with_small_demo(tmp_path_factory.mktemp("e2e_home"), small_demo_tree)


@pytest.fixture
def in_home(home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The module's home (its demo build and feature cache are shared by the tests here, which pass alone
    and in any order: none counts runs that another test may have added)."""
    monkeypatch.setenv("DETBENCH_HOME", str(home))
    return home


def records(home: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in (home / "runs" / "demo" / "linear-probe").glob("*/run.json")]


def test_run_writes_records_and_reuses_them(in_home: Path) -> None:
    result = invoke("run", "linear-probe", "--suite", "demo", *SMALL)
    assert result.exit_code == 0, result.output
    assert "composite" in result.output and "mean" in result.output and "worst" in result.output
    (record,) = [r for r in records(in_home) if r["protocol"] == "composite" and r["settings"] == {}]
    run_dir = Path(record["paths"]["run"])
    scores = pd.read_parquet(run_dir / "scores.parquet")
    metrics = pd.read_parquet(run_dir / "metrics.parquet")
    assert len(scores) == len(FAMILIES) * 2 * 6 and scores["score"].between(0, 1).all()
    assert list(metrics["generator"])[-2:] == ["mean", "worst"]
    assert record["key"]["detector"]["config"]["backbone"] == "timm:efficientnet_lite0@bundled"
    assert record["key"]["detector_identity"]["backbone"]["weights_sha256"]
    assert record["counts"]["eval"]["composite"] == {"real": 6, "fake": 6, "skipped": 0}
    assert set(record["outputs"]) == {"scores.parquet", "heldout_scores.parquet", "metrics.parquet"}
    assert record["fit"]["chosen_C"] in (0.01, 0.1, 1.0, 10.0, 100.0)

    n_runs = len(records(in_home))
    again = invoke("run", "linear-probe", "--suite", "demo", *SMALL)
    assert again.exit_code == 0 and "reused" in again.output
    assert len(records(in_home)) == n_runs


def test_a_config_change_is_a_new_run_that_reuses_cached_features(in_home: Path) -> None:
    assert invoke("run", "linear-probe", "--suite", "demo", *SMALL).exit_code == 0
    cached = sorted((in_home / "features").rglob("*.npy"))
    result = invoke("run", "linear-probe", "--suite", "demo", *SMALL, "--set", "normalize=false")
    assert result.exit_code == 0, result.output
    default = [r for r in records(in_home) if r["protocol"] == "composite"]
    assert len(default) == 2 and len({r["run_id"] for r in default}) == 2
    new = next(r for r in default if not r["key"]["detector"]["config"]["normalize"])
    assert new["counts"]["eval_skipped"] == 0
    assert sorted((in_home / "features").rglob("*.npy")) == cached  # nothing re-extracted


def test_other_protocol_force_and_leaderboard(in_home: Path, tmp_path: Path) -> None:
    result = invoke("run", "linear-probe", "--suite", "demo", "--protocol", "nearest", *SMALL)
    assert result.exit_code == 0, result.output
    forced = invoke("run", "linear-probe", "--suite", "demo", "--protocol", "nearest", "--force", *SMALL[:-1])
    assert forced.exit_code == 0, forced.output
    assert list((in_home / "runs" / "demo" / "linear-probe" / "replaced").iterdir())

    board = invoke("leaderboard", "demo", "--csv", str(tmp_path))
    assert board.exit_code == 0, board.output
    wide = pd.read_csv(tmp_path / "demo_leaderboard.csv")
    long = pd.read_csv(tmp_path / "demo_leaderboard_long.csv")
    n_runs = len(list((in_home / "runs" / "demo" / "linear-probe").glob("*/run.json")))
    assert n_runs >= 1 and len(wide) == n_runs
    assert {"mean", "worst", "upconv", "nearest"} <= set(wide.columns)
    assert {"acc", "ap", "auc", "oracle_acc"} <= set(long["metric"])
    listing = invoke("ls", "runs")
    assert listing.exit_code == 0 and listing.output.count("linear-probe") == n_runs


@pytest.mark.parametrize(
    "args, message",
    [
        (["run", "linear-prob", "--suite", "demo"], "Did you mean 'linear-probe'"),
        (["run", "linear-probe", "--suite", "dem"], "Did you mean 'demo'"),
        (["run", "linear-probe", "--suite", "demo", "--set", "normalise=false"], "Did you mean 'normalize'"),
        (["run", "linear-probe", "--suite", "demo", "--set", "n_train=many"], "n_train must be int"),
        (["run", "linear-probe", "--suite", "demo", "--protocol", "upconf", *SMALL], "Did you mean 'upconv'"),
        (["ls", "widgets"], "cannot list"),
    ],
)
def test_user_errors_are_clear_with_no_traceback(in_home: Path, args: list[str], message: str) -> None:
    result = invoke(*args)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output


def test_leaderboard_offers_rigids_real_positive_metrics_also_for_older_runs(in_home: Path, tmp_path: Path) -> None:
    """``--metric ap_real`` / ``fpr95_real`` (RIGID's notebook: reals positive) from every run's records; a run
    recorded before they existed gets them computed from its scores.parquet, and the default AP is unchanged."""
    import shutil

    import numpy as np
    from sklearn.metrics import average_precision_score, roc_curve

    from detbench.results.leaderboard import long_table
    from detbench.store import seal_record, sha256_of_file

    assert invoke("run", "linear-probe", "--suite", "demo", *SMALL).exit_code == 0
    (record,) = [r for r in records(in_home) if r["protocol"] == "composite" and r["settings"] == {}]
    run_dir = Path(record["paths"]["run"])
    scores = pd.read_parquet(run_dir / "scores.parquet")
    part = scores[scores["generator"] == "nearest"]
    y, s = part["label"].to_numpy(), part["score"].to_numpy()
    fpr, tpr, _ = roc_curve(1 - y, -s)
    expected = {"ap_real": average_precision_score(1 - y, -s), "fpr95_real": fpr[np.argmax(tpr >= 0.95)],
                "ap": average_precision_score(y, s)}

    for metric, value in expected.items():
        board = invoke("leaderboard", "demo", "--metric", metric, "--csv", str(tmp_path / metric))
        assert board.exit_code == 0, board.output
        wide = pd.read_csv(tmp_path / metric / "demo_leaderboard.csv")
        row = wide[wide["run_id"] == record["run_id"][:16]]
        assert row["nearest"].iloc[0] == pytest.approx(value, abs=1e-6)  # the CSV keeps 6 significant digits

    old_root = tmp_path / "old" / "runs"
    old_dir = old_root / "demo" / "linear-probe" / run_dir.name
    shutil.copytree(run_dir, old_dir)
    metrics = pd.read_parquet(old_dir / "metrics.parquet").drop(columns=["ap_real", "fpr95_real"])
    metrics.to_parquet(old_dir / "metrics.parquet")
    old_record = json.loads((old_dir / "run.json").read_text())
    old_record["outputs"]["metrics.parquet"] = sha256_of_file(old_dir / "metrics.parquet")
    (old_dir / "run.json").write_text(json.dumps(seal_record(old_record)))
    long = long_table("demo", runs_root=old_root).set_index(["generator", "metric"])["value"]
    assert long[("nearest", "ap_real")] == pytest.approx(expected["ap_real"], rel=1e-12)
    assert long[("nearest", "fpr95_real")] == pytest.approx(expected["fpr95_real"], rel=1e-12)
    assert long[("worst", "fpr95_real")] == max(long[(g, "fpr95_real")] for g in FAMILIES)
