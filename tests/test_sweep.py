"""Robustness sweeps, bootstrap intervals, threshold policies and leaderboard views on a small demo build."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from cli_helpers import SMALL, invoke, with_small_demo

from detbench.metrics import per_group_metrics

PERTURBED = {"jpeg:95", "jpeg:50", "blur:2", "downscale:0.5"}



def records(home: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in (home / "runs" / "demo" / "linear-probe").glob("*/run.json")]


def sweep_records(home: Path) -> list[dict]:
    """The sweep's own runs (other tests of this module add runs with other thresholds or bootstrap counts)."""
    return [r for r in records(home) if r["bootstrap"]["n_boot"] == 1000 and r["threshold"]["label"] == "0.5"]


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory, small_demo_tree: Path) -> Path:
    return with_small_demo(tmp_path_factory.mktemp("sweep_home"), small_demo_tree)


@pytest.fixture
def in_home(home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DETBENCH_HOME", str(home))
    return home


@pytest.fixture(scope="module")
def swept(home: Path) -> object:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DETBENCH_HOME", str(home))
        return invoke(
            "sweep", "linear-probe", *SMALL, "-p", "jpeg:95,50", "-p", "blur:2", "-p", "downscale:0.5"
        )


def test_a_sweep_of_four_perturbations_trains_once(swept, in_home: Path) -> None:
    assert swept.exit_code == 0, swept.output
    recs = sweep_records(in_home)
    assert len(recs) == 5
    clean = [r for r in recs if r["perturbation"] is None]
    perturbed = [r for r in recs if r["perturbation"] is not None]
    assert len(clean) == 1 and {r["perturbation"]["spec"] for r in perturbed} == PERTURBED
    assert clean[0]["fit"]["reused"] is False
    assert all(r["fit"]["reused"] is True and r["fit_id"] == clean[0]["fit_id"] for r in perturbed)
    assert len(list((in_home / "runs" / "demo" / "linear-probe" / "fits").glob("*/fit.json"))) == 1
    for spec in ("clean", *PERTURBED):
        assert spec in swept.output
    assert "Δ acc" in swept.output and swept.output.count("reused") >= 4

    again = invoke("sweep", "linear-probe", *SMALL, "-p", "jpeg:95,50", "-p", "blur:2", "-p", "downscale:0.5")
    assert again.exit_code == 0 and again.output.count("(reused)") == 5
    assert len(sweep_records(in_home)) == 5


def test_bad_sweep_specs_fail_before_any_work(in_home: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("DETBENCH_HOME", str(tmp_path))
    result = invoke("sweep", "linear-probe", *SMALL, "-p", "jpeg:95,150")
    assert result.exit_code == 2 and "1..100" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "runs").exists()


def test_bootstrap_intervals_are_seeded_shown_and_keyed(swept, in_home: Path) -> None:
    clean = next(r for r in sweep_records(in_home) if r["perturbation"] is None)
    run_dir = Path(clean["paths"]["run"])
    metrics = pd.read_parquet(run_dir / "metrics.parquet")
    scores = pd.read_parquet(run_dir / "scores.parquet")
    again = per_group_metrics(
        scores, group="generator", threshold=0.5, n_boot=1000, seed=clean["key"]["seed"]
    )
    assert clean["bootstrap"]["n_boot"] == 1000
    for col in ("acc_lo", "acc_hi", "ap_lo", "ap_hi"):
        np.testing.assert_allclose(metrics[col].to_numpy(float), again[col].to_numpy(float), equal_nan=True)
    rows = metrics[metrics["generator"] != "worst"]  # the worst row has no interval
    assert (rows["acc_lo"] <= rows["acc"]).all() and (rows["acc"] <= rows["acc_hi"]).all()

    shown = invoke("run", "linear-probe", "--suite", "demo", *SMALL)  # the same run, reused
    assert shown.exit_code == 0 and "reused" in shown.output and "±" in shown.output
    none = invoke("run", "linear-probe", "--suite", "demo", *SMALL, "--bootstrap", "0")
    assert none.exit_code == 0 and "±" not in none.output and "reused" not in none.output.split("run ")[-1]
    fewer = next(r for r in records(in_home) if r["perturbation"] is None and r["bootstrap"]["n_boot"] == 0)
    assert (
        fewer["run_id"] != clean["run_id"] and fewer["fit_id"] == clean["fit_id"] and fewer["fit"]["reused"]
    )
    assert "acc_lo" not in pd.read_parquet(Path(fewer["paths"]["run"]) / "metrics.parquet").columns


def test_calibrated_threshold_is_recorded_used_and_keyed(swept, in_home: Path) -> None:
    result = invoke("run", "linear-probe", "--suite", "demo", *SMALL, "--threshold", "calibrated")
    assert result.exit_code == 0, result.output
    assert "calibrated threshold" in result.output
    rec = next(r for r in records(in_home) if r["threshold"]["policy"] == "calibrated")
    assert rec["threshold"]["value"] == rec["threshold"]["calibrated_on_heldout"]
    fixed = next(
        r for r in records(in_home) if r["perturbation"] is None and r["threshold"]["policy"] == "fixed"
    )
    assert rec["run_id"] != fixed["run_id"] and rec["fit_id"] == fixed["fit_id"]
    run_dir = Path(rec["paths"]["run"])
    scores = pd.read_parquet(run_dir / "scores.parquet")
    metrics = pd.read_parquet(run_dir / "metrics.parquet").set_index("generator")
    for gen, part in scores.groupby("generator"):
        expected = np.mean((part["score"] > rec["threshold"]["value"]) == (part["label"] == 1))
        assert metrics.loc[gen, "acc"] == pytest.approx(expected)

    manual = invoke(
        "run", "linear-probe", "--suite", "demo", *SMALL, "--threshold", "0.3", "--bootstrap", "0"
    )
    assert manual.exit_code == 0 and "threshold 0.3" in manual.output
    bad = invoke("run", "linear-probe", "--suite", "demo", *SMALL, "--threshold", "1.5")
    assert bad.exit_code == 2 and "'calibrated' or a number in [0, 1]" in bad.output


def test_leaderboard_filters_deltas_csv_and_markdown(swept, in_home: Path, tmp_path: Path) -> None:
    md = tmp_path / "board.md"
    result = invoke(
        "leaderboard", "demo", "--perturbation", "jpeg", "--csv", str(tmp_path), "--markdown", str(md)
    )
    assert result.exit_code == 0, result.output
    wide = pd.read_csv(tmp_path / "demo_leaderboard.csv")
    assert set(wide["perturbation"]) == {"jpeg:95", "jpeg:50"}
    long = pd.read_csv(tmp_path / "demo_leaderboard_long.csv")
    assert set(long["perturbation"]) == {"jpeg:95", "jpeg:50"}
    clean = next(
        r for r in records(in_home) if r["perturbation"] is None and r["threshold"]["label"] == "0.5"
    )
    np.testing.assert_allclose(wide["mean_delta"], wide["mean"] - clean["summary"]["mean"]["acc"], atol=1e-6)

    text = md.read_text()
    assert text.count("\n| linear-probe |") == 2 and "---:" in text and "Δ mean" in text

    exact = invoke("leaderboard", "demo", "--perturbation", "jpeg:5", "--csv", str(tmp_path))
    assert exact.exit_code == 0 and set(pd.read_csv(tmp_path / "demo_leaderboard.csv")["perturbation"]) == {
        "jpeg:50"
    }  # no run is exactly jpeg:5, so it matches as a substring

    delta = invoke("leaderboard", "demo", "--delta", "--perturbation", "blur:2", "--markdown", str(md))
    assert delta.exit_code == 0, delta.output
    row = md.read_text().splitlines()[-1].split(" | ")
    blur = next(r for r in records(in_home) if (r["perturbation"] or {}).get("spec") == "blur:2")
    mean_delta = 100 * (blur["summary"]["mean"]["acc"] - clean["summary"]["mean"]["acc"])
    assert f"{mean_delta:+.1f}" in row

    none = invoke("leaderboard", "demo", "--detector", "nope")
    assert none.exit_code == 2 and "matches the filters" in none.output
