"""Release dates of generators, for the chronological (past-to-future) protocols.

The shipped table, ``detbench/data/release_dates.csv``, has one row per generator key of the built-in suites:
``generator`` (the key the index uses), ``released`` (``YYYY-MM``), ``source`` (the paper's arXiv date or the
official release announcement the date is taken from) and an optional ``suite`` (the row applies to that suite
only; empty: to every suite). A generator without a row is undated: chronological protocols leave it out and say
so, never guessing a date. The demo's families carry synthetic dates, their ``source`` starting with
``synthetic:``. ``--set chrono.dates=FILE`` replaces the table with a CSV of the same columns.
"""

from __future__ import annotations

import csv
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from detbench.errors import InputError

SHIPPED = Path(__file__).with_name("release_dates.csv")
COLUMNS = ("generator", "released", "source")  # required; ``suite`` is optional
SYNTHETIC = "synthetic:"  # a source starting so marks a made-up date (the demo's families)
_MONTH = re.compile(r"^(\d{4})-(\d{2})$")


def parse_month(text: str) -> int:
    """A ``YYYY-MM`` month as a month count (``year * 12 + month - 1``), so months compare and add as integers.

    Args:
        text: the month.

    Returns:
        The month count.

    Raises:
        ValueError: not ``YYYY-MM`` with a month in 01..12.
    """
    match = _MONTH.match(text.strip())
    if not match or not 1 <= int(match.group(2)) <= 12:
        raise ValueError(f"{text!r} is not a month written YYYY-MM")
    return int(match.group(1)) * 12 + int(match.group(2)) - 1


def format_month(month: int) -> str:
    """The ``YYYY-MM`` text of a month count (the inverse of :func:`parse_month`).

    Args:
        month: a month count.

    Returns:
        ``YYYY-MM``.
    """
    return f"{month // 12:04d}-{month % 12 + 1:02d}"


@dataclass(frozen=True)
class Release:
    """One generator's release month and where it comes from."""

    month: int
    source: str

    @property
    def synthetic(self) -> bool:
        """Whether the date is made up (a demo family), as its source says."""
        return self.source.lower().startswith(SYNTHETIC)


@dataclass(frozen=True)
class ReleaseDates:
    """A table of release dates: rows for every suite and rows for one suite."""

    rows: tuple[tuple[str, str, Release], ...]  # (generator, suite or "", release)
    origin: str  # "shipped" or the file given
    sha256: str

    def for_suite(self, suite: str) -> dict[str, Release]:
        """Generator -> release for ``suite``: its own rows first, then the rows for every suite.

        Args:
            suite: the suite's name.

        Returns:
            The dates that apply to the suite.
        """
        out = {g: r for g, s, r in self.rows if not s}
        out.update({g: r for g, s, r in self.rows if s == suite})
        return out


def load_release_dates(path: Path | str | None = None) -> ReleaseDates:
    """Read a release-date table (the shipped one when ``path`` is None).

    Args:
        path: a CSV with columns ``generator, released, source`` and optionally ``suite``.

    Returns:
        The table.

    Raises:
        InputError: the file is missing or unreadable, lacks a column, has a bad month, an empty source, or
            gives one generator two dates for the same suite.
    """
    file = Path(path).expanduser() if path is not None else SHIPPED
    where = "the shipped release-date table" if path is None else f"release-date file {file}"
    try:
        data = file.read_bytes()
        text = data.decode("utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read {where}: {exc}") from None
    reader = csv.DictReader(text.splitlines())
    missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise InputError(f"{where} lacks the column(s) {', '.join(missing)}; it needs {', '.join(COLUMNS)}[, suite]")
    rows: list[tuple[str, str, Release]] = []
    seen: dict[tuple[str, str], str] = {}
    for line, row in enumerate(reader, start=2):
        generator = (row.get("generator") or "").strip()
        released = (row.get("released") or "").strip()
        source = (row.get("source") or "").strip()
        suite = (row.get("suite") or "").strip()
        if not generator:
            continue
        try:
            month = parse_month(released)
        except ValueError as exc:
            raise InputError(f"{where}, line {line}: {exc}") from None
        if not source:
            raise InputError(f"{where}, line {line}: {generator} has no source (a paper or release announcement)")
        if (generator, suite) in seen and seen[(generator, suite)] != released:
            raise InputError(f"{where}, line {line}: {generator} is dated twice ({seen[(generator, suite)]}, "
                             f"{released})")
        seen[(generator, suite)] = released
        rows.append((generator, suite, Release(month, source)))
    origin = "shipped" if path is None else str(file)
    return ReleaseDates(tuple(rows), origin, hashlib.sha256(data).hexdigest())
