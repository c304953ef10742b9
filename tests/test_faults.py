"""Faults: SIGKILL at each phase of a demo run and resume; SIGINT/SIGTERM; a full disk.

The faults are armed at exact points by tests/fault_points.py (a self-inflicted SIGKILL, or a park where the test
sends SIGINT/SIGTERM). Kills during the demo build and the index are in a ``slow`` test.
"""

from __future__ import annotations

import errno
import signal
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fault_points import DEMO, finish, interrupt, launch, leftovers
from replicas import build_folder
from typer.testing import CliRunner

from detbench.cli.commands import app


def the_run(home: Path) -> Path:
    runs = [
        p for p in (home / "runs" / "demo" / "linear-probe").iterdir() if p.name not in ("fits", "replaced")
    ]
    assert len(runs) == 1, runs
    return runs[0]


Step = tuple[str, signal.Signals | None, Callable[[Path], bool]]  # fault, signal (None: SIGKILL), check


def shard_tmp(home: Path) -> bool:
    return bool(list(home.glob("features/*/.shard-*.ids.npy.*.tmp")))


def runs_of(home: Path) -> Path:
    return home / "runs" / "demo" / "linear-probe"


def run_chain(home: Path, markers: Path, steps: list[Step]) -> None:
    """Launch the demo run once per step, each time faulted at the step's point (SIGKILL, or parked and sent
    the step's signal), check the state it left, then once more without a fault."""
    runs = runs_of(home)
    for fault, sig, reached in steps:
        if sig is None:
            code, output = finish(launch(home, fault))
            assert code == -signal.SIGKILL, (
                f"{fault}: the kill point was never reached (exit {code})\n{output}"
            )
        else:
            code, output = interrupt(launch(home, fault, marker=markers / fault), markers / fault, sig)
            text = " ".join(output.split())
            word, expected_code = (
                ("Interrupted", 130) if sig == signal.SIGINT else ("Terminated (SIGTERM)", 143)
            )
            assert code == expected_code, output
            assert f"{word} while" in text and str(runs) in "".join(text.split()), text  # rich may wrap it
            assert "run the same command again to resume" in text and "Traceback" not in output
        assert reached(home), f"{fault}: unexpected state after the fault"
        assert not list(runs.glob("*/run.json")), fault
    code, output = finish(launch(home))
    assert code == 0, output


def assert_same_run(home: Path, expected_home: Path) -> None:
    run_dir, expected_dir = the_run(home), the_run(expected_home)
    assert run_dir.name == expected_dir.name  # same run identity
    for name in ("scores.parquet", "heldout_scores.parquet", "metrics.parquet"):
        pd.testing.assert_frame_equal(pd.read_parquet(run_dir / name), pd.read_parquet(expected_dir / name))
    assert leftovers(home) == []
    assert not (run_dir / "scores").exists()


def test_killed_and_interrupted_while_extracting_training_and_scoring_then_resumed(
    tmp_path: Path, detbench_home: Path
) -> None:
    baseline = CliRunner().invoke(app, DEMO)  # in-process, default chunk sizes, in the fixture's home
    assert baseline.exit_code == 0, baseline.output
    steps: list[Step] = [
        # one feature shard stored, the next killed between its features file and its ids file
        ("shard-tmp:2", None, lambda h: len(list(h.glob("features/*/*.ids.npy"))) == 1 and shard_tmp(h)),
        ("fit", None, lambda h: bool(list(runs_of(h).glob("fits/*/fit.json")))),
        ("score:1", signal.SIGINT, lambda h: len(list(runs_of(h).glob("*/scores/part-*"))) == 1),
        ("score-tmp:1", None, lambda h: bool(list(runs_of(h).glob("*/scores/.part-*.tmp")))),
        ("record", signal.SIGTERM, lambda h: bool(list(runs_of(h).glob("*/metrics.parquet")))),
    ]
    run_chain(tmp_path / "faulted", tmp_path, steps)
    assert_same_run(tmp_path / "faulted", detbench_home)


@pytest.mark.slow
def test_killed_while_building_and_indexing_then_resumed(tmp_path: Path, detbench_home: Path) -> None:
    baseline = CliRunner().invoke(app, DEMO)
    assert baseline.exit_code == 0, baseline.output
    steps: list[Step] = [
        ("build:10", None, lambda h: not list(h.glob("demo/*/BUILD.json"))),
        ("index:20", None, lambda h: not list(h.glob("indexes/demo/*/index.parquet"))),
    ]
    run_chain(tmp_path / "faulted", tmp_path, steps)
    assert_same_run(tmp_path / "faulted", detbench_home)


# ------------------------------------------------------------------------------------------ disk full


def _enospc(detail: str = "No space left on device") -> OSError:
    return OSError(errno.ENOSPC, detail)


def _full_parquet(monkeypatch: pytest.MonkeyPatch) -> None:
    original = pd.DataFrame.to_parquet

    def to_parquet(self, path, *args, **kwargs):
        if Path(path).name.startswith(".part-"):
            Path(path).write_bytes(b"PAR1" + b"\0" * 100)  # half written, then the disk is full
            raise _enospc("Error writing bytes to file. Detail: [errno 28] No space left on device")
        return original(self, path, *args, **kwargs)

    monkeypatch.setattr(pd.DataFrame, "to_parquet", to_parquet)


def _full_shards(monkeypatch: pytest.MonkeyPatch) -> None:
    original = np.save

    def save(file, arr, *args, **kwargs):
        if ".shard-" in str(getattr(file, "name", file)):
            file.write(b"\x93NUMPY\x01\x00")
            raise _enospc()
        return original(file, arr, *args, **kwargs)

    monkeypatch.setattr(np, "save", save)


def _short_write_shards(monkeypatch: pytest.MonkeyPatch) -> None:
    """numpy's tofile() on a nearly full disk: a short write reported as an OSError without errno."""
    original = np.save

    def save(file, arr, *args, **kwargs):
        if ".shard-" in str(getattr(file, "name", file)):
            file.write(b"\x93NUMPY\x01\x00")
            raise OSError(f"{arr.nbytes} requested and 4096 written")
        return original(file, arr, *args, **kwargs)

    monkeypatch.setattr(np, "save", save)


@pytest.mark.parametrize(
    "fill", [_full_parquet, _full_shards, _short_write_shards], ids=["score-parquet", "feature-shard", "short-write"]
)
def test_disk_full_is_reported_as_such_and_leaves_no_partial_file(
    tmp_path: Path, detbench_home: Path, monkeypatch: pytest.MonkeyPatch, fill
) -> None:
    root = tmp_path / "tree"
    build_folder(root, generators=("a", "b"), splits=("train", "test"), n=4)
    args = ["run", "linear-probe", "--suite", "folder", "--root", str(root), "--protocol", "train-on-a"]
    args += ["--set", "backbone=timm:efficientnet_lite0@bundled", "--set", "crop=32", "-q"]
    with monkeypatch.context() as patch:
        fill(patch)
        result = CliRunner().invoke(app, args)
    assert result.exit_code != 0
    text = " ".join(result.output.split())
    assert "no space left on device" in text and "run the same command again" in text
    assert "Traceback" not in result.output
    assert leftovers(detbench_home) == []
    assert not list(detbench_home.glob("runs/folder/linear-probe/*/run.json"))
    for path in detbench_home.rglob("*.parquet"):
        pd.read_parquet(path)  # every file that exists is whole
    for path in detbench_home.rglob("*.npy"):
        np.load(path)

    again = CliRunner().invoke(app, args)  # space freed: the same command finishes the run
    assert again.exit_code == 0, again.output
