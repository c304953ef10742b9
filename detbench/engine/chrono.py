"""Chronological series: one run per window of a ``chrono:`` series (``chrono:growing:12m``, ``chrono:A,B``).

A series is expanded into its windows (``chrono:YYYY-MM`` or ``chrono:YYYY-MM..YYYY-MM``, each an ordinary protocol
of :mod:`detbench.data.protocol_builder`) on the indexed data, and every window is checked, before any run starts;
each window is then an ordinary run with its own id, shared with any other series or single run of that window.
"""

from __future__ import annotations

from detbench.data.protocol_builder import parse_chrono, series_preview
from detbench.data.release_dates import format_month
from detbench.data.suites import check_root
from detbench.engine.plan import shared_index
from detbench.engine.protocol_checks import select_protocol
from detbench.engine.resolve import RunRequest, resolve
from detbench.errors import ProtocolError
from detbench.progress import Phases


def is_series(protocol: str | None) -> bool:
    """Whether a protocol name stands for a series of runs.

    Args:
        protocol: a protocol name (None: the suite's default).

    Returns:
        True for a ``chrono:`` series.

    Raises:
        ProtocolError: a malformed ``chrono:`` name.
    """
    chrono = parse_chrono(protocol)
    return chrono is not None and chrono.is_series


def series_protocols(req: RunRequest, phases: Phases) -> list[str]:
    """The window protocols of ``req``'s series, each checked on the data; ``[req.protocol]`` for any other protocol.

    Args:
        req: the run request.
        phases: progress (indexing) and the line naming the windows.

    Returns:
        The protocol names to run, in time order.

    Raises:
        DetbenchError: bad options, a missing root, a series with no window, or a window the data cannot run.
    """
    chrono = parse_chrono(req.protocol)
    if chrono is None or not chrono.is_series:
        return [req.protocol]  # type: ignore[list-item]
    if req.train_suite:
        raise ProtocolError(f"protocol {req.protocol!r} trains on this suite's generators, window by window; drop "
                            "--train-suite (or name one window as --train-protocol)")
    resolved = resolve(req)
    check_root(resolved.suite, req.root)
    index = shared_index(resolved.suite, req.root, req.index_mode, phases)
    options = resolved.protocol_options
    windows = series_preview(resolved.suite, index.usable, chrono, options)
    if not windows:
        raise ProtocolError(f"protocol {req.protocol!r} has no window on this data: every dated generator was "
                            "released in the same month, so none is later than another")
    for window in windows:  # every window is checked before the first run
        select_protocol(resolved.suite, index, window, needs_training=False, options=options)
    step = f" every {chrono.step} months" if chrono.step else ""
    first = format_month(min(chrono.cuts)) if chrono.cuts else None
    phases.log(f"chrono series {req.protocol}{step}: {len(windows)} runs, {', '.join(windows)}"
               + (f" (from {first})" if first and len(windows) < len(chrono.cuts) else ""))
    return windows
