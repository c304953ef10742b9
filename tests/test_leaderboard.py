"""Leaderboard rows that are not comparable are told apart: the data and files each run used, its coverage, a mark on a
mean over fewer generators, and never an accuracy over one class, whichever detbench version wrote the run."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from cli_helpers import invoke
from test_import_scores import list_data

import detbench
from detbench.metrics import as_defined, per_group_metrics
from detbench.results.leaderboard import complete, coverage_label, data_label, files_label, wide_table
from detbench.store import seal_record, sha256_of_file

HASH = {c: c * 64 for c in "abcdef"}


def test_files_name_every_sha256_the_detector_read() -> None:
    record = {"key": {
        "detector_identity": {"backbone": {"spec": "timm:x", "weights_sha256": HASH["a"]}, "head_sha256": HASH["b"],
                              "weights_sha256": HASH["c"], "init": "file", "init_sha256": HASH["d"],
                              "semantic_backbone": {"weights_sha256": None}},
        "scores": {"sha256": HASH["e"], "logits": False},
    }}
    assert files_label(record) == "backbone aaaaaaaa, head bbbbbbbb, weights cccccccc, init dddddddd, scores eeeeeeee"
    assert files_label({"key": {"detector_identity": {"precision": "fp32"}}}) == ""


def test_data_names_the_index_evaluated_and_the_one_trained_on() -> None:
    assert data_label({"data": {"index_hash": HASH["a"]}, "key": {"index_hash": HASH["a"]}}) == "aaaaaaaa"
    assert data_label({"key": {"index_hash": HASH["b"]}}) == "bbbbbbbb"  # a record written before "data"
    cross = {"data": {"index_hash": HASH["a"]}, "training": {"index_hash": HASH["c"]}, "key": {"index_hash": HASH["c"]}}
    assert data_label(cross) == "aaaaaaaa (train cccccccc)"
    assert data_label({"training": {"index_hash": HASH["c"]}, "key": {"index_hash": HASH["c"]}}) == "(train cccccccc)"


def test_coverage_counts_scored_of_expected_images() -> None:
    counts = {"a": {"real": 5, "fake": 5, "skipped": 0}, "b": {"real": 0, "fake": 4, "skipped": 6}}
    record = {"counts": {"eval": counts}}
    assert coverage_label(record) == "14/20" and not complete(record)
    assert complete({"counts": {"eval": {"a": {"real": 1, "fake": 1, "skipped": 3}}}})


def test_stored_metrics_of_an_older_version_are_read_under_todays_definitions() -> None:
    """A metrics table written before accuracy over one class was n/a (and before unscored generators got a row)."""
    rng = np.random.default_rng(0)
    both = pd.DataFrame({"generator": "a", "label": np.repeat([0, 1], 20), "score": rng.random(40)})
    fakes = pd.DataFrame({"generator": "b", "label": 1, "score": np.full(10, 0.9)})
    new = per_group_metrics(pd.concat([both, fakes]), n_boot=20, groups=["a", "b", "c"])
    assert as_defined(new, ["a", "b", "c"]) is new  # written today: unchanged

    old = new[new["generator"] != "c"].copy()
    old.loc[old["generator"] == "b", ["acc", "acc_lo", "acc_hi"]] = 1.0  # the fakes' accuracy, shown as acc
    old.loc[old["generator"].isin(["mean", "worst"]), "acc"] = 0.7
    fixed = as_defined(old, ["a", "b", "c"]).set_index("generator")
    assert list(fixed.index) == ["a", "b", "c", "mean", "worst"]
    assert fixed.loc[["b", "c", "mean", "worst"], "acc"].isna().all() and math.isnan(fixed.loc["b", "acc_lo"])
    assert fixed.loc["a", "acc"] == new.set_index("generator").loc["a", "acc"]
    assert fixed.loc["c", "n_real"] == 0 and fixed.loc["b", "fake_acc"] == 1.0


def test_a_run_written_before_the_rule_shows_no_accuracy_over_one_class(tmp_path: Path) -> None:
    """``detbench leaderboard`` and ``ls runs`` never show an accuracy over one class, even of a run whose stored
    metrics (written by an older version, reused as they are) hold one."""
    root, intended, scores = list_data(tmp_path, generators=("g1", "g2"))
    table = pd.read_csv(scores)
    table[table["path"].str.contains("/fake/")].to_csv(scores, index=False)  # the fakes only
    with pytest.warns(detbench.DetbenchWarning) as warned:
        run = detbench.import_scores("list", scores, name="fakes", root=root, settings={"file": str(intended)},
                                     bootstrap=0)
    assert sum("no real image could be scored" in str(w.message) for w in warned) == 2  # one per generator
    metrics_file = run.path / "metrics.parquet"
    old = pd.read_parquet(metrics_file)
    old["acc"] = old["fake_acc"]  # as the older version stored it: acc over the fakes alone
    old.to_parquet(metrics_file, index=False)
    record = json.loads((run.path / "run.json").read_text())
    record["outputs"]["metrics.parquet"] = sha256_of_file(metrics_file)
    record["summary"]["mean"]["acc"] = 1.0
    (run.path / "run.json").write_text(json.dumps(seal_record(record)))

    board = detbench.leaderboard("list")
    assert board[["g1", "g2", "mean", "worst"]].isna().all().all() and board["coverage"].item() == "6/12"
    assert math.isnan(detbench.runs("list")["mean_acc"].item())
    assert detbench.load_run(run.id).metrics["acc"].isna().all()
    shown = invoke("leaderboard", "list")
    assert shown.exit_code == 0 and "100.0" not in shown.output and "6/12" in shown.output
    listed = invoke("ls", "runs")
    assert listed.exit_code == 0 and "100.0" not in listed.output and "6/12" in listed.output


def _long(run: str, protocol: str, values: dict[str, float]) -> pd.DataFrame:
    ids = {"detector": run, "backbone": "", "settings": "defaults", "protocol": protocol, "perturbation": "clean",
           "threshold": "0.5", "data": "", "files": "", "coverage": "", "config_hash": "", "fit_id": run,
           "run_id": run, "flags": ""}
    return pd.DataFrame([{**ids, "generator": g, "metric": "acc", "value": v} for g, v in values.items()])


def test_partial_rows_are_judged_against_their_protocols_generators() -> None:
    long = pd.concat([
        _long("full", "p", {"g1": 0.6, "g2": 0.6, "mean": 0.6, "worst": 0.6}),
        _long("part", "p", {"g1": 0.9, "mean": 0.9, "worst": 0.9}),
        _long("other", "q", {"g1": 0.8, "mean": 0.8, "worst": 0.8}),  # protocol q evaluates g1 alone
    ])
    wide = wide_table(long)
    assert wide["run_id"].tolist() == ["full", "part", "other"]
    assert wide["coverage"].tolist() == ["", "1/2 generators", ""]


@pytest.mark.parametrize("width", [None, 60])
def test_a_mean_over_fewer_generators_says_so_in_every_view(width: int | None) -> None:
    from detbench.results.display import leaderboard_cells, leaderboard_tables
    from detbench.results.leaderboard import ID_COLUMNS

    long = pd.concat([_long("full", "p", {"g1": 0.6, "g2": 0.6, "mean": 0.6, "worst": 0.6}),
                      _long("part", "p", {"g1": 0.9, "mean": 0.9, "worst": 0.9})])
    cells = leaderboard_cells(wide_table(long), ID_COLUMNS)
    assert cells["mean"].tolist() == ["60.0", "90.0 (1 of 2)"] and cells["g2"].tolist() == ["60.0", "n/a"]
    tables = leaderboard_tables(cells, sum(c in ID_COLUMNS or c == "run" for c in cells.columns), "t", width=width)
    assert len(tables) == (1 if width is None else 2)  # too wide for the terminal: a legend and the values
    assert "every row: settings defaults; protocol p; perturbation clean; threshold 0.5" in str(tables[0].title)
    headers = [c.header for c in tables[0].columns]
    values = ["g1", "g2", "mean", "worst", "Δ mean"]
    assert headers == (["detector", "coverage", "run", *values] if width is None
                       else ["key", "detector", "coverage", "run"])  # the columns alike in every row: in the title
