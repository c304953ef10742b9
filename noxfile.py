"""CI and developer sessions. Installs use pip (uv would fetch a torch newer than this project pins)."""

from __future__ import annotations

from pathlib import Path

import nox

nox.options.default_venv_backend = "virtualenv"
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["tests", "lint"]

TORCH = ["torch==2.14.1", "torchvision==0.29.1"]
# The CPU tests in one process per core (pytest-xdist; at most 4: each may hold a few GiB of models); each test has
# its own DETBENCH_HOME and runs on one torch thread, so the processes share nothing. A worker that runs out of tests
# takes queued ones from the others (worksteal), so a few long tests do not leave one core idle at the end.
PARALLEL = ["-n", "auto", "--maxprocesses", "4", "--dist", "worksteal"]
# pytest caches each test module's rewritten bytecode only where Python may write bytecode: with
# PYTHONDONTWRITEBYTECODE set, every worker recompiles every test module (seconds of CPU each).
WRITE_BYTECODE = {"PYTHONDONTWRITEBYTECODE": ""}


def _install(session: nox.Session, extras: str = "dev") -> None:
    session.install(*TORCH)
    session.install("-e", f".[{extras}]")


@nox.session
def tests(session: nox.Session) -> None:
    """Unit and end-to-end tests on CPU (gpu-marked tests skip without CUDA)."""
    _install(session)
    session.run("pytest", "-q", "-m", "not slow", *PARALLEL, *session.posargs, env=WRITE_BYTECODE)


@nox.session
def orders(session: nox.Session) -> None:
    """The CPU tests twice more, each in another random order (pytest-randomly seeds 1 and 2): tests that pass only
    in one order, or only after another test, fail here."""
    _install(session)
    for seed in ("1", "2"):
        session.run("pytest", "-q", "-m", "not slow", "-p", "no:cacheprovider", *PARALLEL,
                    f"--randomly-seed={seed}", *session.posargs, env=WRITE_BYTECODE)


@nox.session
def slow(session: nox.Session) -> None:
    """The slow tests (long end-to-end runs and kill points), on CPU."""
    _install(session)
    session.run("pytest", "-q", "-m", "slow", *PARALLEL, *session.posargs, env=WRITE_BYTECODE)


@nox.session
def notebooks(session: nox.Session) -> None:
    """Execute the example notebooks headless (nbclient + ipykernel from the dev extras) and check they are stripped."""
    _install(session)
    session.run("pytest", "-q", "tests/test_notebook.py", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff on the whole tree."""
    session.install("ruff>=0.5")
    session.run("ruff", "check", ".")


@nox.session
def bench(session: nox.Session) -> None:
    """Kernel benchmarks (pytest-benchmark) and `detbench bench` (posargs go to it), into results/bench/."""
    _install(session)
    Path("results/bench").mkdir(parents=True, exist_ok=True)
    session.run(
        "pytest", "-q", "benchmarks/test_bench_kernels.py", "--benchmark-enable",
        "--benchmark-json=results/bench/kernels.json",
    )
    session.run("detbench", "bench", "--out", "results/bench", *session.posargs)


@nox.session(venv_backend="none")
def gpu(session: nox.Session) -> None:
    """CUDA machine, no network: gpu tests + ViT throughput in this environment (scripts/gpu_check.sh)."""
    session.run("bash", "scripts/gpu_check.sh", *session.posargs, external=True)


@nox.session
def demo(session: nox.Session) -> None:
    """The README's first command: run the demo benchmark end to end."""
    _install(session)
    session.run("detbench", "run", "mpft", "--suite", "demo", *session.posargs)
