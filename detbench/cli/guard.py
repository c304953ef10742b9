"""The guard every ``detbench`` command runs in, and the consoles it prints to.

A :class:`~detbench.errors.DetbenchError` (or a full or read-only disk) ends as one red line and exit 2; Ctrl-C or
SIGTERM says where it stopped and that finished work is kept (exit 130 / 143); anything else is a bug and is shown
as one (traceback, exit 1). Data warnings (:class:`~detbench.errors.DetbenchWarning`) print as ``warning:`` lines,
also under ``-q``.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
import traceback
import warnings
from collections.abc import Iterator
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperGroup

from detbench.errors import DetbenchWarning, user_message

console = Console(width=None if sys.stdout.isatty() else 120)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 120)
ACTIVITY = "detbench.activity"  # context meta key: the Runner whose phase an interrupt message names
# Raised to end a command on purpose (usage errors, exits): the command-line library reports them itself.
PASS_THROUGH = (typer.Exit, typer.Abort, *(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException"))


class Terminated(KeyboardInterrupt):
    """SIGTERM (a scheduler's stop or preemption), handled like Ctrl-C."""


class GuardedGroup(TyperGroup):
    """The command group whose every command runs inside :func:`_guard`."""

    def invoke(self, ctx: typer.Context) -> Any:
        """Run the chosen command inside the guard.

        Args:
            ctx: the command line's context.

        Returns:
            What the command returns.
        """
        with _guard(ctx):
            return super().invoke(ctx)


@contextlib.contextmanager
def _guard(ctx: typer.Context) -> Iterator[None]:
    """User errors as one red line (exit 2); Ctrl-C or SIGTERM says where it stopped (exit 130 / 143); bugs as
    bugs (traceback, exit 1); DetbenchWarnings as ``warning:`` lines.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("default", DetbenchWarning)  # each message once
        shown = warnings.showwarning

        def show(message: Any, category: type[Warning], *args: Any, **kwargs: Any) -> None:
            if issubclass(category, DetbenchWarning):
                err.print("[yellow]warning:[/] ", end="")
                err.print(str(message), markup=False, highlight=False, soft_wrap=True)
            else:
                shown(message, category, *args, **kwargs)

        warnings.showwarning = show
        try:
            with _sigterm_as_interrupt():
                yield
        except PASS_THROUGH:
            raise
        except KeyboardInterrupt as exc:
            _stopped(exc, ctx.meta.get(ACTIVITY))
        except Exception as exc:
            message = user_message(exc)
            if message is None:
                _bug(exc)
            err.print("[bold red]error:[/] ", end="")
            err.print(message, markup=False, highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None


def _stopped(exc: KeyboardInterrupt, activity: Any) -> None:
    terminated = isinstance(exc, Terminated)
    how = "Terminated (SIGTERM)" if terminated else "Interrupted"
    where = ""
    if activity is not None:
        where = f" while {activity.phase}" + (f" in {activity.run_dir}" if activity.run_dir else "")
    err.print(f"\n[yellow]{how}{escape(where)}.[/] Finished work is kept; run the same command again to resume.")
    raise typer.Exit(143 if terminated else 130) from None


def _bug(exc: BaseException) -> None:
    from detbench.version import __version__

    err.print("".join(traceback.format_exception(exc)), markup=False, highlight=False, end="")
    err.print(
        f"[bold red]This is a bug in detbench {__version__}[/], not a problem with your input: please report it "
        "with the command you ran and the traceback above.",
        highlight=False,
    )
    raise typer.Exit(1) from None


def watch(ctx: typer.Context, runner: Any) -> None:
    """Let an interrupt message name ``runner``'s phase and run directory.

    Args:
        ctx: the command line's context.
        runner: the :class:`~detbench.engine.runner.Runner` whose ``phase`` and ``run_dir`` the message names.
    """
    ctx.meta[ACTIVITY] = runner


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM into :class:`Terminated` while the body runs, so it stops as cleanly as Ctrl-C."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        raise Terminated

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
