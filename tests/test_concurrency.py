"""Concurrency: the same run twice at once, runs sharing a fit, the demo build and the feature cache.

Processes are parked at exact points with the fault entry of test_faults.py (touch a marker, wait for a
release file), so every interleaving below is forced, not hoped for.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd
from fault_points import DEMO, Forked, finish, launch, leftovers, wait_parked
from typer.testing import CliRunner

from detbench.cli.commands import app
from detbench.store import atomic_path, sweep_stale_tmp

LOUD = [a for a in DEMO if a != "-q"]  # progress and waiting messages on stderr


def wait_for_text(proc: Forked, log: Path, text: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while text not in " ".join(log.read_text().split()):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"never printed {text!r}: {finish(proc)} {log.read_text()}")
        time.sleep(0.05)


def records(home: Path) -> dict[str, dict]:
    found = (json.loads(p.read_text()) for p in home.glob("runs/demo/linear-probe/*/run.json"))
    return {r["run_id"]: r for r in found}


def cached_features(home: Path) -> dict[str, list[np.ndarray]]:
    """Every cached feature row by image id (an id stored by two writers appears twice)."""
    out: dict[str, list[np.ndarray]] = {}
    for ids_file in home.glob("features/*/*.ids.npy"):
        feats = np.load(ids_file.with_name(ids_file.name.replace(".ids.npy", ".feats.npy")))
        for row, image_id in enumerate(np.load(ids_file).tolist()):
            out.setdefault(image_id, []).append(feats[row])
    return out


def test_same_run_fails_fast_and_a_run_sharing_its_fit_waits_for_it(
    tmp_path: Path, detbench_home: Path
) -> None:
    marker, release = tmp_path / "parked", tmp_path / "release"
    first = launch(detbench_home, "fitting", marker=marker, release=release)  # parks holding run + fit locks
    log = tmp_path / "perturbed.err"
    perturbed = None
    try:
        wait_parked(first, marker)
        same = CliRunner().invoke(app, DEMO)
        assert same.exit_code == 2, same.output
        text = " ".join(same.output.split())
        assert f"is in use by pid {first.pid}" in text and "wait for it to finish" in text
        assert "Traceback" not in same.output  # refused at once: it returned while the first run is still parked

        # another perturbation of the same fit: waits for the training instead of failing or retraining
        perturbed = launch(detbench_home, args=[*LOUD, "--perturb", "jpeg:75"], stderr=log)
        wait_for_text(perturbed, log, "waiting for training")
        release.touch()
        code_first, out_first = finish(first)
        code_perturbed, out_perturbed = finish(perturbed)
    finally:
        for proc in (first, perturbed):
            if proc is not None and proc.poll() is None:
                proc.kill()
    assert code_first == 0, out_first
    assert code_perturbed == 0, out_perturbed + log.read_text()
    found = records(detbench_home)
    assert len(found) == 2
    clean = next(r for r in found.values() if r["perturbation"] is None)
    jpeg = next(r for r in found.values() if r["perturbation"] is not None)
    assert clean["fit_id"] == jpeg["fit_id"]
    assert clean["fit"]["reused"] is False and jpeg["fit"]["reused"] is True
    assert len(list(detbench_home.glob("runs/demo/linear-probe/fits/*/fit.json"))) == 1
    assert leftovers(detbench_home) == []


def test_two_runs_started_together_share_the_demo_build_and_the_feature_cache(
    tmp_path: Path, detbench_home: Path
) -> None:
    home = tmp_path / "together"
    marker, release, log = tmp_path / "parked", tmp_path / "release", tmp_path / "second.err"
    first = launch(home, "build:5", marker=marker, release=release)  # parks mid-build holding the build lock
    second = None
    try:
        wait_parked(first, marker)
        second = launch(home, args=[*LOUD, "--set=normalize=false"], stderr=log)
        wait_for_text(second, log, "waiting for the demo build")
        release.touch()
        code_first, out_first = finish(first)
        code_second, out_second = finish(second)
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.kill()
    assert code_first == 0, out_first
    assert code_second == 0, out_second + log.read_text()
    assert len(list(home.glob("demo/*/BUILD.json"))) == 1

    together = records(home)
    assert len(together) == 2
    single = CliRunner().invoke(app, DEMO)  # the first run alone, in the fixture's fresh home
    assert single.exit_code == 0, single.output
    ((run_id, alone),) = records(detbench_home).items()
    got = pd.read_parquet(Path(together[run_id]["paths"]["run"]) / "scores.parquet")
    pd.testing.assert_frame_equal(got, pd.read_parquet(Path(alone["paths"]["run"]) / "scores.parquet"))

    shared, reference = cached_features(home), cached_features(detbench_home)
    assert len(list(home.glob("features/*/key.json"))) == 1  # one backbone: one cache key for both runs
    assert set(shared) == set(reference)
    for image_id, copies in shared.items():  # rows stored twice by racing writers are identical
        for copy in copies:
            np.testing.assert_array_equal(copy, reference[image_id][0])
    assert leftovers(home) == []


def test_a_temp_file_is_swept_only_when_its_writer_is_dead(tmp_path: Path) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    with atomic_path(tmp_path / "live.parquet") as live:
        live.write_bytes(b"being written")
        dead_tmp = tmp_path / live.name.replace(f".p{os.getpid()}-", f".p{dead.pid}-").replace("live", "dead")
        other_host = tmp_path / f".x.parquet.p{dead.pid}-00000000.abc.tmp"
        foreign = tmp_path / ".notes.txt.tmp"  # not written by atomic_path: never touched
        for path in (dead_tmp, other_host, foreign):
            path.write_bytes(b"left behind")
        assert sweep_stale_tmp(tmp_path) == 1
        assert live.exists() and other_host.exists() and foreign.exists() and not dead_tmp.exists()
    assert (tmp_path / "live.parquet").read_bytes() == b"being written"
