"""Reading tables users hand to detbench (file lists, imported score files): CSV, TSV, JSON, JSON lines, Parquet."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

TABLE_SUFFIXES = (".csv", ".tsv", ".json", ".jsonl", ".parquet")


def read_table(path: Path, what: str, error: type[Exception]) -> tuple[Any, Callable[[int], int]]:
    """A table file as a DataFrame and a function from row position to where the row is in the file.

    CSV/TSV cells are read as strings (nothing parsed as NaN or as a number: ``0012`` stays ``0012``); JSON and
    Parquet keep their types.

    Args:
        path: a ``.csv``, ``.tsv``, ``.parquet`` file, or JSON (an array of objects, or JSON lines).
        what: what the file is, for the message (``"file list"``, ``"score file"``).
        error: the :class:`~detbench.errors.DetbenchError` subclass raised when it cannot be read.

    Returns:
        ``(table, where)``: ``where(i)`` is ``line N`` for CSV/TSV (the line row i starts on, blank lines
        counted) and JSON lines (the header is line 1), ``item N``
        for a JSON array, ``row N`` (from 0) for Parquet.

    Raises:
        error: the file cannot be read as that format, or a CSV/TSV header names a column twice (pandas would
            rename the second one silently).
    """
    import pandas as pd

    suffix = path.suffix.lower()
    try:
        if suffix in (".csv", ".tsv"):
            sep = "\t" if suffix == ".tsv" else ","
            _refuse_repeated_columns(path, sep, what, error)
            table = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False)
            lines = _record_lines(path, sep)
            if len(lines) == len(table) + 1:  # the header, then one line per row (blank lines skipped)
                return table, lambda i: lines[i + 1]
            return table, lambda i: i + 2
        if suffix == ".parquet":
            return pd.read_parquet(path), lambda i: i
        text = path.read_text(encoding="utf-8")
        if text.lstrip().startswith("["):
            return pd.read_json(path, orient="records", dtype=False), lambda i: i + 1
        return pd.read_json(path, lines=True, dtype=False), lambda i: i + 1
    except error:
        raise
    except (ValueError, OSError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise error(f"{path}: cannot read it as a {suffix.lstrip('.')} {what} ({exc})") from exc


def _record_lines(path: Path, sep: str) -> list[int]:
    """The line on which each non-blank record of a CSV/TSV file starts (a quoted cell may span lines)."""
    import csv

    starts, previous = [], 0
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle, delimiter=sep)
        for record in reader:
            if record:
                starts.append(previous + 1)
            previous = reader.line_num
    return starts


def _refuse_repeated_columns(path: Path, sep: str, what: str, error: type[Exception]) -> None:
    """Refuse a CSV/TSV header that names a column twice (which column would hold the data is a guess)."""
    import csv

    with path.open(newline="", encoding="utf-8-sig") as handle:
        header = next(csv.reader(handle, delimiter=sep), [])
    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated:
        raise error(f"{path}: its header names {', '.join(map(repr, repeated))} more than once; keep one column "
                    f"of each name in the {what}")


def listing(items: list[Any], shown: int = 10, total: int | None = None) -> str:
    """``a, b, c and 7 more``: the first ``shown`` items of a problem report.

    Args:
        items: what to list (line numbers, paths...), in order; may hold only the first ones when ``total`` is given.
        shown: how many to name.
        total: how many there are in all (default: ``len(items)``).

    Returns:
        The items joined by commas, with how many more were left out.
    """
    total = len(items) if total is None else total
    text = ", ".join(map(str, items[:shown]))
    return text + (f" and {total - shown} more" if total > shown else "")
