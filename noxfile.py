"""CI and developer sessions. Installs use pip (uv would fetch a torch newer than this project pins)."""

from __future__ import annotations

import nox

nox.options.default_venv_backend = "virtualenv"
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["tests", "lint"]

TORCH = ["torch==2.14.1", "torchvision==0.29.1"]


def _install(session: nox.Session, extras: str = "dev") -> None:
    session.install(*TORCH)
    session.install("-e", f".[{extras}]")


@nox.session
def tests(session: nox.Session) -> None:
    """Unit and end-to-end tests on CPU (gpu-marked tests skip without CUDA)."""
    _install(session)
    session.run("pytest", "-q", "-m", "not slow", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff on the whole tree."""
    session.install("ruff>=0.5")
    session.run("ruff", "check", ".")


@nox.session
def demo(session: nox.Session) -> None:
    """The README's first command: run the demo benchmark end to end."""
    _install(session)
    session.run("detbench", "run", "linear-probe", "--suite", "demo", *session.posargs)
