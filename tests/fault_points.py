"""Fault points for tests: run ``detbench`` in a subprocess that SIGKILLs itself, or parks, at an exact point.

A small entry script arms one fault (``DETBENCH_FAULT=point[:n]``): the n-th demo image written, index file
probed, feature shard or score part renamed, fit.json or run.json written, MPFT checkpoint saved, training
checkpoint about to be written. There the process SIGKILLs itself (an OOM killer or a pulled plug: no handler, no
cleanup), landing exactly where intended instead of racing a poller; or, given a marker file, it touches the marker
and parks until a release file exists, so that a test can signal it from outside or let it go on. Feature shards
and score parts are 8 rows long so that kills land between chunks.

Each process is forked from a zygote: one interpreter per test session that has imported torch, torchvision,
timm, pandas, scikit-learn and detbench once (about 5 CPU seconds that every fresh interpreter would pay again).
A forked process is a process of its own (its own pid, signals, locks, exit status, a clean exit with atexit
handlers) that runs the entry script with its own arguments, environment and working directory, as
``python -c`` would. Variables read only while importing (torch's ``OMP_NUM_THREADS``, ``ATEN_CPU_CAPABILITY``)
are the zygote's: a test that needs them otherwise starts an interpreter of its own.
"""

from __future__ import annotations

import atexit
import itertools
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
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
    "index": (index, "_unchanged", lambda old, path: True, False),  # per file, probed or reused (demo: built here)
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


# What the entry imports anyway (the demo run, its detectors and the hooked modules), imported once.
PRELOAD = ["torch", "torchvision", "timm", "open_clip", "pandas", "pyarrow.parquet", "sklearn.linear_model",
           "PIL.Image", "detbench.cli.commands", "detbench.engine.runner", "detbench.models.features",
           "detbench.datasets.demo_build", "detbench.data.index", "detbench.kit.training"]

ZYGOTE = r"""
import builtins, importlib, json, os, select, signal, sys, types

for name in sys.argv[1:]:
    importlib.import_module(name)


def child(request):
    # Become the process `python -c CODE ARGS` would be: stdin from /dev/null, stdout and stderr to the files the
    # test reads, its environment, working directory, argv and a fresh __main__. Exceptions and SystemExit end it
    # as they end an interpreter (traceback and exit status 1, the code, or death by SIGINT).
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    for fd, path in ((1, request["stdout"]), (2, request["stderr"])):
        target = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
        os.dup2(target, fd)
        os.close(target)
    os.environ.clear()
    os.environ.update(request["env"])
    os.chdir(request["cwd"])
    sys.argv = ["-c", *request["args"]]
    main = types.ModuleType("__main__")
    main.__builtins__ = builtins
    sys.modules["__main__"] = main
    exec(compile(request["code"], "<string>", "exec"), main.__dict__)
    sys.exit(0)


def tell(message):
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


children, pending = set(), b""
while True:
    if select.select([0], [], [], 0.02)[0]:
        chunk = os.read(0, 1 << 16)
        if not chunk:  # the test session ended: nothing it started may outlive it
            for pid in children:
                os.kill(pid, signal.SIGKILL)
            break
        pending += chunk
        while b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            request = json.loads(line)
            pid = os.fork()
            if pid == 0:
                child(request)
            children.add(pid)
            tell({"id": request["id"], "pid": pid})
    for pid in list(children):
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            children.discard(pid)
            tell({"pid": pid, "returncode": os.waitstatus_to_exitcode(status)})
"""


class _Zygote:
    """The session's zygote process: forks a child per request and reports each child's exit status."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", ZYGOTE, *PRELOAD], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, env={**os.environ, "HF_HUB_OFFLINE": "1"})
        self.ids = itertools.count()
        self.started: dict[int, int] = {}
        self.returncodes: dict[int, int] = {}
        self.buffer = b""
        self.folder = Path(tempfile.mkdtemp(prefix="detbench-forked-"))
        atexit.register(self.close)

    def fork(self, code: str, args: list[str], env: dict[str, str], stdout: Path, stderr: Path) -> int:
        request_id = next(self.ids)
        request = {"id": request_id, "code": code, "args": args, "env": env, "cwd": os.getcwd(),
                   "stdout": str(stdout), "stderr": str(stderr)}
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(request) + "\n").encode())
        self.proc.stdin.flush()
        deadline = time.monotonic() + 600  # the first request waits for the imports
        while request_id not in self.started:
            if time.monotonic() > deadline or not self.collect(timeout=0.5) and self.proc.poll() is not None:
                raise RuntimeError(f"the zygote process did not fork (exit status {self.proc.poll()})")
        return self.started.pop(request_id)

    def collect(self, timeout: float = 0.0) -> bool:
        """Read the zygote's messages that have arrived (waiting up to ``timeout``); False when there were none."""
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        if not select.select([fd], [], [], timeout)[0]:
            return False
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            return False
        self.buffer += chunk
        while b"\n" in self.buffer:
            line, self.buffer = self.buffer.split(b"\n", 1)
            message = json.loads(line)
            if "returncode" in message:
                self.returncodes[message["pid"]] = message["returncode"]
            else:
                self.started[message["id"]] = message["pid"]
        return True

    def close(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()


_zygote: _Zygote | None = None


class Forked:
    """A process forked by the zygote, with the parts of ``subprocess.Popen`` the tests use (text output)."""

    def __init__(self, zygote: _Zygote, pid: int, stdout: Path, stderr: Path, stderr_to_test: bool) -> None:
        self.zygote, self.pid, self.stdout, self.stderr = zygote, pid, stdout, stderr
        self.stderr_to_test = stderr_to_test  # False: stderr went to a file the test named (Popen's stderr=file)
        self.returncode: int | None = None

    def poll(self) -> int | None:
        while self.returncode is None and self.zygote.collect():
            pass
        if self.returncode is None:
            self.returncode = self.zygote.returncodes.pop(self.pid, None)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(f"forked pid {self.pid}", timeout or 0)
            self.zygote.collect(timeout=0.05)
        return self.returncode  # type: ignore[return-value]

    def communicate(self, timeout: float | None = None) -> tuple[str, str | None]:
        self.wait(timeout)
        err = self.stderr.read_text() if self.stderr_to_test else None
        return self.stdout.read_text(), err

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


def launch(
    home: Path,
    fault: str = "",
    marker: Path | None = None,
    release: Path | None = None,
    args: list[str] = DEMO,
    stderr: Path | None = None,
) -> Forked:
    """``detbench`` + ``args`` in a process of its own, with ``fault`` (``point[:n]``) armed. Without ``marker`` the
    process SIGKILLs itself there; with it, it touches ``marker`` and parks until ``release`` exists.
    ``stderr``: a file to write the process's stderr to (readable while it runs) instead of returning it."""
    global _zygote
    env = {**os.environ, "DETBENCH_HOME": str(home), "DETBENCH_FAULT": fault, "HF_HUB_OFFLINE": "1"}
    for name, path in (("DETBENCH_FAULT_MARKER", marker), ("DETBENCH_FAULT_RELEASE", release)):
        env.pop(name, None)
        if path is not None:
            env[name] = str(path)
    if _zygote is None or _zygote.proc.poll() is not None:
        _zygote = _Zygote()
    folder = Path(tempfile.mkdtemp(dir=_zygote.folder))
    out, err = folder / "stdout", stderr if stderr is not None else folder / "stderr"
    for path in (out, err):
        path.write_text("")  # there (and empty) once this returns, as Popen's output files are
    pid = _zygote.fork(FAULT_ENTRY, list(args), env, out, err)
    return Forked(_zygote, pid, out, err, stderr_to_test=stderr is None)


def finish(proc: Forked) -> tuple[int, str]:
    out, err = proc.communicate(timeout=120)
    return proc.returncode, out + (err or "")


def wait_parked(proc: Forked, marker: Path, timeout: float = 90) -> None:
    """Return once ``proc`` has parked at its fault point (fail the test if it exits or times out first)."""
    deadline = time.monotonic() + timeout
    while not marker.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"never reached the fault point: {finish(proc)}")
        time.sleep(0.05)


def interrupt(proc: Forked, marker: Path, sig: int) -> tuple[int, str]:
    """Wait until ``proc`` parks at its fault point, then send it ``sig``."""
    wait_parked(proc, marker)
    proc.send_signal(sig)
    return finish(proc)


def leftovers(home: Path) -> list[Path]:
    """Temporary files and directories anywhere under ``home``."""
    return [p for p in home.rglob("*") if p.name.endswith(".tmp")]
