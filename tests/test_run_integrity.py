"""Finished runs are never lost or trusted when damaged: --force replaces a run only after success and only when
no live process holds it, damaged records, outputs, fits and feature shards are reported and recomputed, a run
finished meanwhile is reused after taking its lock, and predict finds the fit in a moved home."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from cli_helpers import invoke
from replicas import build_folder

import detbench.engine.runner
from detbench.store import exclusive_lock, seal_record, sha256_of_file

FAST = ["--set", "backbone=timm:efficientnet_lite0@bundled", "--set", "crop=32", "-q"]


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("integrity") / "tree"
    build_folder(root, generators=("a", "b"), splits=("train", "test"), n=4)
    return root


@pytest.fixture(scope="module")
def pristine(tree: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A home holding two finished runs (train-on-a, train-on-b), copied by each test that damages things."""
    home = tmp_path_factory.mktemp("pristine_home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DETBENCH_HOME", str(home))
        for protocol in ("train-on-a", "train-on-b"):
            assert run(tree, protocol=protocol).exit_code == 0
    return home


@pytest.fixture
def home(pristine: Path, detbench_home: Path) -> Path:
    """This test's own copy of the pristine home (the fixture's DETBENCH_HOME)."""
    shutil.rmtree(detbench_home)
    shutil.copytree(pristine, detbench_home)
    return detbench_home


def run(tree: Path, *extra: str, protocol: str = "train-on-a"):
    return invoke("run", "linear-probe", "--suite", "folder", "--root", str(tree), "--protocol", protocol,
                  *FAST, *extra)


def the_run(home: Path, protocol: str = "train-on-a") -> Path:
    (found,) = [d for d in finished(home) if json.loads((d / "run.json").read_text())["protocol"] == protocol]
    return found


def the_fit(home: Path, protocol: str = "train-on-a") -> Path:
    return runs_of(home) / "fits" / json.loads((the_run(home, protocol) / "run.json").read_text())["fit_id"][:16]


def runs_of(home: Path) -> Path:
    return home / "runs" / "folder" / "linear-probe"


def finished(home: Path) -> list[Path]:
    return sorted(p.parent for p in runs_of(home).glob("*/run.json"))


def snapshot(run_dir: Path) -> dict[str, str]:
    return {p.name: sha256_of_file(p) for p in sorted(run_dir.iterdir()) if p.is_file() and p.suffix != ".lock"}


def test_a_failed_force_keeps_the_finished_run_and_fit(tree: Path, home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Regression: --force moved the run and its fit to replaced/ before recomputing, so a failed recompute left
    nothing."""
    run_dir, fit_dir = the_run(home), the_fit(home)
    before, fit_before = snapshot(run_dir), sha256_of_file(fit_dir / "fit.json")

    def failing_score(*args: object, **kwargs: object) -> None:
        raise RuntimeError("simulated crash while scoring")

    with monkeypatch.context() as patch:
        patch.setattr(detbench.engine.runner.Runner, "_score", failing_score)
        failed = run(tree, "--force")
    assert failed.exit_code == 1 and "simulated crash" in failed.output
    assert snapshot(run_dir) == before and sha256_of_file(fit_dir / "fit.json") == fit_before
    assert not (runs_of(home) / "replaced").exists()
    assert "reused" in run(tree).output  # still the finished run

    forced = run(tree, "--force")  # a recompute that succeeds replaces it, keeping the old one aside
    assert forced.exit_code == 0, forced.output
    assert the_run(home) == run_dir and len(finished(home)) == 2
    kept = list((runs_of(home) / "replaced").iterdir())
    assert {p.name.split("-")[0] for p in kept} == {run_dir.name, "fit"}
    assert all((p / ("run.json" if p.name.startswith(run_dir.name) else "fit.json")).exists() for p in kept)
    assert not (run_dir / "replacement").exists() and not (fit_dir / "replacement").exists()


def test_force_refuses_a_run_that_a_live_process_holds(tree: Path, home: Path) -> None:
    """Regression: --force moved a run away while the process holding its lock was still writing it."""
    run_dir = the_run(home)
    before = snapshot(run_dir)
    with exclusive_lock(run_dir / "run.lock", "the test's hold"):
        result = run(tree, "--force")
    assert result.exit_code == 2 and "is in use by" in result.output, result.output
    assert snapshot(run_dir) == before and not (runs_of(home) / "replaced").exists()


def test_a_run_finished_meanwhile_is_reused_after_taking_the_lock(
    tree: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Regression: only the fit lock re-checked; a run finished by another process between our check and our
    taking the run lock was computed again."""
    run_dir = the_run(home)
    before = snapshot(run_dir)
    reuse = detbench.engine.runner.Runner._reuse

    def finished_meanwhile(self, run_dir: Path, run_id: str, base: Path, *, locked: bool):
        return reuse(self, run_dir, run_id, base, locked=locked) if locked else None  # the first look finds nothing

    monkeypatch.setattr(detbench.engine.runner.Runner, "_reuse", finished_meanwhile)
    again = run(tree)
    assert again.exit_code == 0 and "reused" in again.output
    assert snapshot(run_dir) == before


@pytest.mark.parametrize(
    "damage",
    ["truncate-metrics", "delete-metrics", "truncate-record", "record-is-a-list", "settings-is-a-list",
     "edit-record-summary", "edit-scores", "forge-run-id", "older-record"],
)  # fmt: skip
def test_damaged_runs_are_skipped_with_a_warning_and_recomputed(
    tree: Path, home: Path, tmp_path: Path, damage: str
) -> None:
    """Regression: a truncated metrics.parquet or run.json, or a run.json of the wrong shape, crashed leaderboard,
    report, ls runs and the rerun; a hand-edited run.json (ls runs showed the edited mean, the leaderboard another),
    an edited scores.parquet and a run id that is not the sha256 of its run key went unnoticed."""
    damaged, intact = the_run(home, "train-on-a"), the_run(home, "train-on-b")
    record = json.loads((damaged / "run.json").read_text())
    if damage == "truncate-metrics":
        (damaged / "metrics.parquet").write_bytes((damaged / "metrics.parquet").read_bytes()[:100])
    elif damage == "delete-metrics":
        (damaged / "metrics.parquet").unlink()
    elif damage == "truncate-record":
        (damaged / "run.json").write_text((damaged / "run.json").read_text()[:200])
    elif damage == "record-is-a-list":
        (damaged / "run.json").write_text("[1, 2]")
    elif damage == "settings-is-a-list":
        (damaged / "run.json").write_text(json.dumps({**record, "settings": ["x"]}))
    elif damage == "edit-record-summary":  # still valid JSON of the right shape, with a better mean
        record["summary"]["mean"]["acc"] = 0.999
        (damaged / "run.json").write_text(json.dumps(record, indent=2))
    elif damage == "edit-scores":  # a valid Parquet file with other scores
        scores = pd.read_parquet(damaged / "scores.parquet")
        scores.assign(score=1 - scores["score"]).to_parquet(damaged / "scores.parquet", index=False)
    elif damage == "forge-run-id":  # consistent with itself, but its id is not the sha256 of its run key
        (damaged / "run.json").write_text(json.dumps(seal_record({**record, "run_key": {**record["run_key"],
                                                                                        "threshold": "0.3"}})))
    else:  # written before records held their own sha256 and run key
        older = {k: v for k, v in record.items() if k not in ("record_sha256", "run_key")}
        (damaged / "run.json").write_text(json.dumps(older))

    protocol = record["protocol"]
    commands = [["leaderboard", "folder"], ["ls", "runs"], ["report", damaged.name]]
    if damage == "truncate-metrics":  # a report draws charts: once is enough
        commands.append(["report", "folder", "--out", str(tmp_path / "r")])
    for args in commands:
        result = invoke(*args)
        assert result.exit_code == (2 if args == ["report", damaged.name] else 0), (args, result.output)
        text = " ".join(result.output.split())
        assert f"warning: run {damaged.name} is damaged" in text and "Traceback" not in result.output, args
        if args == ["report", damaged.name]:  # never reported: not found, after the warning saying why
            assert result.exit_code == 2 and "no finished run" in text, result.output
            continue
        if args[0] != "report":  # the intact run is listed, the damaged one is not
            table = "\n".join(line for line in result.output.splitlines() if not line.startswith("warning:"))
            assert intact.name[:7] in table and damaged.name[:7] not in table, (args, result.output)

    rerun = run(tree, protocol=protocol)
    assert rerun.exit_code == 0, rerun.output
    assert f"run {damaged.name} is damaged" in " ".join(rerun.output.split()) and "recomputing" in rerun.output
    assert sorted(finished(home)) == sorted([damaged, intact])
    assert pd.read_parquet(damaged / "metrics.parquet")["generator"].tolist()[-2:] == ["mean", "worst"]
    assert len(list((runs_of(home) / "replaced").iterdir())) == 1  # the damaged files are kept
    assert "reused" in run(tree, protocol=protocol).output


def test_a_damaged_fit_is_retrained(tree: Path, home: Path) -> None:
    fit_dir = the_fit(home)
    (fit_dir / "state" / "probe.safetensors").write_bytes(b"\0" * 10)
    result = run(tree, "--threshold", "0.4")  # another run of the same fit
    assert result.exit_code == 0, result.output
    assert f"fit {fit_dir.name} is damaged" in " ".join(result.output.split())
    new = [d for d in finished(home) if json.loads((d / "run.json").read_text())["threshold"]["label"] == "0.4"]
    assert json.loads((new[0] / "run.json").read_text())["fit"]["reused"] is False


def test_a_truncated_feature_shard_is_rebuilt(tree: Path, home: Path) -> None:
    """Regression: a truncated shard broke every run on that backbone, and --force did not help."""
    shards = sorted(home.glob("features/*/*.feats.npy"))
    assert shards
    shards[0].write_bytes(shards[0].read_bytes()[:150])
    result = run(tree, "--set", "normalize=false")  # a new fit that needs the same features
    assert result.exit_code == 0, result.output
    assert "feature cache shard" in result.output and "computed again" in " ".join(result.output.split())
    for feats in home.glob("features/*/*.feats.npy"):  # every shard now whole
        ids = np.load(feats.with_name(feats.name.replace(".feats.npy", ".ids.npy")))
        assert len(np.load(feats)) == len(ids)


def test_predict_finds_the_fit_in_a_moved_home(
    tree: Path, home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Regression: predict loaded the fit from the absolute path in run.json, i.e. from the old home."""
    run_dir = the_run(home)
    moved = tmp_path / "moved_home"
    shutil.move(str(home), moved)
    monkeypatch.setenv("DETBENCH_HOME", str(moved))
    result = invoke("predict", run_dir.name, str(tree / "test" / "b"), "-q")
    assert result.exit_code == 0, result.output
    assert "could not be scored" in result.output and "0 could not be scored" in result.output
    assert not home.exists()  # nothing read or written at the old place
