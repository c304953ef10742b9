"""Fault points for tests: run ``detbench`` in a subprocess that SIGKILLs itself, or parks, at an exact point.

A small entry script arms one fault (``DETBENCH_FAULT=point[:n]``): the n-th demo image written, index file
probed, feature shard or score part renamed, fit.json or run.json written, MPFT checkpoint saved, training
checkpoint about to be written. There the process SIGKILLs itself (an OOM killer or a pulled plug: no handler, no
cleanup), landing exactly where intended instead of racing a poller; or, given a marker file, it touches the marker
and parks until a release file exists, so that a test can signal it from outside or let it go on. Feature shards
and score parts are 8 rows long so that kills land between chunks.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

DEMO = ["run", "linear-probe", "--suite", "demo", "--batch-size", "8", "--workers", "0", "-q"]
DEMO += [f"--set={kv}" for kv in ("n_train=8", "n_val=4", "size=32", "crop=32")]

FAULT_ENTRY = r"""
import importlib, os, signal, sys, time
from pathlib import Path

import detbench.datasets.demo_build as demo_build
import detbench.models.features as features
import detbench.engine.runner as runner

index = importlib.import_module("detbench.data.index")  # the module: detbench.data.index is the API function

runner.SCORE_CHUNK_ROWS = features.SHARD_ROWS = 8
point, _, nth = os.environ.get("DETBENCH_FAULT", "").partition(":")
hits = 0


def fire():
    marker, release = os.environ.get("DETBENCH_FAULT_MARKER"), os.environ.get("DETBENCH_FAULT_RELEASE")
    if marker:  # park: the test signals us, or lets us go on by creating the release file
        Path(marker).touch()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if release and Path(release).exists():
                return
            time.sleep(0.05)
    os.kill(os.getpid(), signal.SIGKILL)


def hook(owner, name, match, before):
    original = getattr(owner, name)

    def wrapper(*args, **kwargs):
        global hits
        hit = match(*args)
        if hit and before and hits + 1 == int(nth or 1):
            fire()
        result = original(*args, **kwargs)
        hits += hit
        if hit and not before and hits == int(nth or 1):
            fire()
        return result

    setattr(owner, name, wrapper)


name_of = lambda p: Path(p).name
points = {
    "build": (demo_build, "_save_png", lambda arr, path: True, False),
    "index": (index, "_probe_one", lambda args: True, False),
    "shard-tmp": (os, "replace", lambda src, dst: name_of(dst).endswith(".ids.npy"), True),
    "fit": (runner, "write_json_atomic", lambda path, obj: name_of(path) == "fit.json", False),
    "fitting": (runner, "write_json_atomic", lambda path, obj: name_of(path) == "fit.json", True),
    "score-tmp": (os, "replace", lambda src, dst: name_of(dst).startswith("part-"), True),
    "score": (runner, "write_parquet_atomic", lambda path, df: name_of(path).startswith("part-"), False),
    "record": (runner, "write_json_atomic", lambda path, obj: name_of(path) == "run.json", True),
}
if point == "mpft-checkpoint":  # after the n-th resumable MPFT checkpoint is saved
    from detbench.detectors import mpft_train

    hook(mpft_train, "_save_checkpoint", lambda *args: True, False)
elif point == "train-checkpoint":  # before the n-th resumable training checkpoint (kit.training) is written
    from detbench.kit import training

    hook(training, "_save", lambda *args: True, True)
elif point:
    hook(*points[point])

from detbench.cli.commands import main

main()
"""


def launch(
    home: Path,
    fault: str = "",
    marker: Path | None = None,
    release: Path | None = None,
    args: list[str] = DEMO,
    stderr: Path | None = None,
) -> subprocess.Popen[str]:
    """``detbench`` + ``args`` in a subprocess, with ``fault`` (``point[:n]``) armed. Without ``marker`` the
    process SIGKILLs itself there; with it, it touches ``marker`` and parks until ``release`` exists.
    ``stderr``: a file to write the process's stderr to (readable while it runs) instead of a pipe."""
    env = {**os.environ, "DETBENCH_HOME": str(home), "DETBENCH_FAULT": fault, "HF_HUB_OFFLINE": "1"}
    for name, path in (("DETBENCH_FAULT_MARKER", marker), ("DETBENCH_FAULT_RELEASE", release)):
        env.pop(name, None)
        if path is not None:
            env[name] = str(path)
    with open(stderr, "w") if stderr is not None else contextlib.nullcontext(subprocess.PIPE) as err:
        return subprocess.Popen(
            [sys.executable, "-c", FAULT_ENTRY, *args], env=env, stdout=subprocess.PIPE, stderr=err, text=True
        )


def finish(proc: subprocess.Popen[str]) -> tuple[int, str]:
    out, err = proc.communicate(timeout=120)
    return proc.returncode, out + (err or "")


def wait_parked(proc: subprocess.Popen[str], marker: Path, timeout: float = 90) -> None:
    """Return once ``proc`` has parked at its fault point (fail the test if it exits or times out first)."""
    deadline = time.monotonic() + timeout
    while not marker.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"never reached the fault point: {finish(proc)}")
        time.sleep(0.05)


def interrupt(proc: subprocess.Popen[str], marker: Path, sig: int) -> tuple[int, str]:
    """Wait until ``proc`` parks at its fault point, then send it ``sig``."""
    wait_parked(proc, marker)
    proc.send_signal(sig)
    return finish(proc)


def leftovers(home: Path) -> list[Path]:
    """Temporary files and directories anywhere under ``home``."""
    return [p for p in home.rglob("*") if p.name.endswith(".tmp")]
