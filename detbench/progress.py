"""Rich progress bars for each phase (index, features, training, scoring); silent when disabled."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


class Tracker:
    """Calling it advances the bar by ``n``; ``update`` sets absolute progress."""

    def __init__(self, progress: Progress | None = None, task: int | None = None) -> None:
        self._progress, self._task = progress, task

    def __call__(self, n: int = 1) -> None:
        """Advance the bar by ``n`` (nothing without a bar)."""
        if self._progress is not None:
            self._progress.advance(self._task, n)

    def update(self, completed: int, total: int | None = None) -> None:
        """Set the bar's absolute progress.

        Args:
            completed: units done.
            total: the new total, or None for an unknown total.
        """
        if self._progress is not None:
            self._progress.update(self._task, completed=completed, total=total)


class Phases:
    """Opens one progress bar per phase and prints status lines (both only when ``enabled``: ``-q`` turns them
    off) and warnings about the data (unless ``warnings`` is off, as on the non-reporting ranks of torchrun).
    """

    def __init__(self, console: Console | None = None, enabled: bool = True, warnings: bool = True) -> None:
        self.console = console or Console(stderr=True)
        self.enabled = enabled
        self.warnings = warnings

    @contextlib.contextmanager
    def phase(self, description: str, total: int | None) -> Iterator[Tracker]:
        """A progress bar for one phase (a silent tracker when disabled).

        Args:
            description: the phase's name, shown beside the bar.
            total: the units of work, or None when unknown.

        Yields:
            The phase's :class:`Tracker`.
        """
        if not self.enabled:
            yield Tracker()
            return
        columns = [
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
        ]
        with Progress(*columns, console=self.console, transient=False) as progress:
            yield Tracker(progress, progress.add_task(description, total=total))

    def log(self, message: str) -> None:
        """A progress or status line (rich markup allowed); silenced by ``-q``.

        Args:
            message: the line.
        """
        if self.enabled:
            self.console.print(message)

    def warn(self, message: str) -> None:
        """A warning about the data or the results, issued as a DetbenchWarning: the CLI prints it even with ``-q``.

        Args:
            message: the warning (plain text).
        """
        if self.warnings:
            from detbench.errors import warn

            warn(message)


def quiet() -> Phases:
    """Phases that show nothing but still issue warnings (for library use and tests).

    Returns:
        A disabled :class:`Phases`.
    """
    return Phases(enabled=False)
