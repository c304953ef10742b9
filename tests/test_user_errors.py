"""The CLI's one guard: a user's mistake ends as one line and exit 2 in every command, a bug shows as a bug,
Ctrl-C and SIGTERM say the same thing everywhere, a full or read-only disk gets its message, and data warnings
survive ``-q``."""

from __future__ import annotations

import errno
import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cli_helpers import invoke
from replicas import build_folder

import detbench.engine.layout
import detbench.paths
import detbench.results.html
from detbench import errors
from detbench.cli.guard import Terminated

LEADERBOARD = importlib.import_module("detbench.results.leaderboard")
FAST = ["--set", "backbone=timm:efficientnet_lite0@bundled", "--set", "crop=32", "-q"]


def assert_one_line_error(result, *words: str) -> None:
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    for word in words:
        assert word in lines[0], (word, result.output)


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["run", "linear-probe", "--suite", "demo", "--seed", "-1"], ["--seed"]),
        (["run", "linear-probe", "--suite", "folder"], ["needs its data", "--root"]),
        (["index", "folder", "--root", "/nonexistent/data"], ["/nonexistent/data", "not a directory"]),
        (["sweep", "linear-probe", "--perturb", "jpeg:101"], ["1..100"]),
        (["report", "0123456789abcdef"], ["no finished run"]),
        (["predict", "0123456789abcdef", "/nonexistent/photo.png"], ["no finished run"]),
        (["leaderboard", "demo"], ["no finished runs for suite 'demo'"]),
        (["leaderboard", "dmeo"], ["unknown suite 'dmeo'", "Did you mean 'demo'"]),
        (["bench", "--backbone", "resnet50"], ["bad backbone spec"]),
        (["ls", "widgets"], ["cannot list 'widgets'"]),
    ],
    ids=["run", "run-root", "index", "sweep", "report", "predict", "leaderboard", "leaderboard-suite", "bench", "ls"],
)
def test_every_command_ends_a_user_error_in_one_line(args: list[str], words: list[str]) -> None:
    """Regression: bench had no guard at all, and plain ValueErrors (backbones, demo builder, fit checks) escaped
    the others as 60-90-line tracebacks."""
    assert_one_line_error(invoke(*args), *words)


def test_every_error_class_is_one_family() -> None:
    from detbench.config import ConfigError
    from detbench.data.suites import SuiteLayoutError
    from detbench.errors import ProtocolError
    from detbench.models.backbones import BackboneError
    from detbench.models.weights import WeightsError
    from detbench.registry import RegistryError
    from detbench.results.leaderboard import RunLookupError
    from detbench.results.presets import PresetError
    from detbench.store import LockedError

    for cls, builtin in ((ConfigError, ValueError), (SuiteLayoutError, ValueError), (ProtocolError, ValueError),
                         (WeightsError, RuntimeError), (BackboneError, ValueError), (RegistryError, LookupError),
                         (LockedError, RuntimeError), (PresetError, ValueError), (RunLookupError, LookupError)):
        assert issubclass(cls, errors.DetbenchError) and issubclass(cls, builtin), cls
        assert errors.user_message(cls("x")) == "x"
    assert errors.user_message(ValueError("x")) is None and errors.user_message(FileNotFoundError("x")) is None


def test_an_internal_error_is_shown_as_a_bug(monkeypatch: pytest.MonkeyPatch) -> None:
    """Regression: a FileNotFoundError from inside detbench (e.g. a missing metrics.parquet) was printed as a
    one-line user error, hiding the bug."""

    def broken(suite: str, runs_root: Path | None = None):
        raise FileNotFoundError(2, "No such file or directory", "/home/x/runs/demo/mpft/abc/metrics.parquet")

    monkeypatch.setattr(LEADERBOARD, "long_table", broken)
    result = invoke("leaderboard", "demo")
    assert result.exit_code == 1
    assert "Traceback" in result.output and "This is a bug in detbench" in result.output
    assert "metrics.parquet" in result.output


@pytest.mark.parametrize(
    ("raised", "code", "words"),
    [
        (KeyboardInterrupt(), 130, "Interrupted."),
        (Terminated(), 143, "Terminated (SIGTERM)."),
    ],
)
def test_interrupts_say_the_same_in_every_command(
    monkeypatch: pytest.MonkeyPatch, raised: BaseException, code: int, words: str
) -> None:
    def interrupted(*args: object, **kwargs: object) -> None:
        raise raised

    monkeypatch.setattr(detbench.results.html, "build_report", interrupted)
    result = invoke("report", "demo")
    assert result.exit_code == code, result.output
    assert words in result.output and "run the same command again to resume" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("raised", "words"),
    [
        # numpy's tofile() on a full disk: a short write with no errno
        (OSError("4096 requested and 0 written"), ["no space left on device", "DETBENCH_HOME"]),
        (OSError(errno.ENOSPC, "No space left on device", "/data/home/runs"), ["no space left on device",
                                                                              "/data/home/runs"]),
        (PermissionError(errno.EACCES, "Permission denied", "/data/home/runs"), ["cannot write /data/home/runs",
                                                                                "permission denied"]),
        (OSError(errno.EROFS, "Read-only file system", "/data/home/runs"), ["read-only file system",
                                                                           "DETBENCH_HOME"]),
    ],
    ids=["short-write", "enospc", "permission", "read-only"],
)
def test_full_or_read_only_home_gets_its_message(
    monkeypatch: pytest.MonkeyPatch, raised: OSError, words: list[str]
) -> None:
    """Regression: numpy's short-write OSError (no errno) and a read-only home escaped as tracebacks."""

    def fail() -> Path:
        raise raised

    monkeypatch.setattr(detbench.engine.layout, "runs_root", fail)
    assert_one_line_error(invoke("ls", "runs"), *words)


def test_python_dash_m_detbench(tmp_path: Path) -> None:
    """Regression: `python -m detbench` (and so `torchrun -m detbench`) failed: no detbench.__main__."""
    env = {**os.environ, "DETBENCH_HOME": str(tmp_path)}
    ok = subprocess.run([sys.executable, "-m", "detbench", "ls", "detectors"], env=env, capture_output=True,
                        text=True, timeout=120)
    assert ok.returncode == 0 and "linear-probe" in ok.stdout, ok.stderr
    bad = subprocess.run([sys.executable, "-m", "detbench", "ls", "widgets"], env=env, capture_output=True,
                         text=True, timeout=120)
    assert bad.returncode == 2 and bad.stderr.strip().startswith("error: cannot list") and not bad.stdout


def test_quiet_silences_progress_but_not_data_warnings(tmp_path: Path) -> None:
    """Regression: -q also hid that folders were skipped and that a generator had no evaluation images."""
    root = tmp_path / "tree"
    build_folder(root, generators=("a", "b"), splits=("train", "test"), n=3)
    build_folder(root, generators=("c",), splits=("val",), n=2)  # c has val only: the others use test
    (root / "notes").mkdir()
    (root / "notes" / "readme.png").write_bytes(b"")  # not under a label folder: skipped
    result = invoke("run", "linear-probe", "--suite", "folder", "--root", str(root), "--protocol", "train-on-a",
                    *FAST)
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "warning: 1 folders are not part of the folder layout and were skipped: notes" in text
    assert "c (has val)" in text and "left out of the table and the mean" in text
    assert "usable of" not in text  # progress and status lines stay silent


@pytest.mark.parametrize(
    ("device", "cuda_count", "mps", "words"),
    [
        ("cuda", 0, False, ["--device cuda", "use --device cpu"]),
        ("cuda:1", 0, False, ["--device cuda:1"]),
        ("cuda:5", 2, False, ["--device cuda:5", "2 CUDA GPUs (cuda:0 to cuda:1)"]),
        ("mps", 0, False, ["--device mps", "MPS", "not available here"]),
        ("5", 1, False, ["'5' is not a device", "did you mean cuda:5?"]),
        ("xpu", 0, False, ["'xpu'", "cpu, cuda, cuda:N or mps"]),
        ("gpu", 0, False, ["'gpu' is not a device"]),
    ],
    ids=["cuda-absent", "cuda-1-absent", "cuda-index", "mps", "bare-number", "xpu", "unknown-name"],
)
def test_a_device_this_machine_lacks_fails_before_any_work(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, device: str, cuda_count: int, mps: bool, words: list[str]
) -> None:
    """`--device cuda` without CUDA once failed with a traceback after indexing; `mps` on Linux and a bare
    `5` were accepted unchecked."""
    import torch

    import detbench.engine.plan

    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda_count > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: cuda_count)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)

    def no_work(*args: object, **kwargs: object) -> None:
        raise AssertionError("indexed before the device was checked")

    monkeypatch.setattr(detbench.engine.plan, "shared_index", no_work)
    root = tmp_path / "tree"
    build_folder(root, generators=("a",), splits=("train", "test"), n=2)
    run = ["run", "linear-probe", "--suite", "folder", "--root", str(root), "--protocol", "train-on-a"]
    assert_one_line_error(invoke(*run, *FAST, "--device", device), *words)
    assert_one_line_error(invoke("predict", "0123456789abcdef", str(root), "--device", device), *words)
    assert_one_line_error(invoke("bench", "--device", device, "--only", "metrics"), *words)


def test_devices_this_machine_has_pass_the_check(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from detbench.engine.resolve import check_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert [check_device(d) for d in (None, "cpu", " cuda ", "cuda:1")] == [None, "cpu", "cuda", "cuda:1"]
    with pytest.raises(errors.ConfigError, match="device must be text"):
        check_device(5)
