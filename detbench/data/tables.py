"""Reading tables users hand to detbench (file lists, imported score files): CSV, TSV, JSON, JSON lines, Parquet."""

from __future__ import annotations

import contextlib
import csv
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

TABLE_SUFFIXES = (".csv", ".tsv", ".json", ".jsonl", ".parquet")
_PANDAS_INDEX = re.compile(r"^__index_level_\d+__$")  # a stored DataFrame index: read back as the index


def read_table(
    path: Path, what: str, error: type[Exception], columns: Callable[[list[str]], list[str]] | None = None
) -> tuple[Any, Callable[[int], int]]:
    """A table file as a DataFrame and a function from row position to where the row is in the file.

    CSV/TSV cells are read as strings (nothing parsed as NaN or as a number: ``0012`` stays ``0012``), whatever
    their size (a prompt or an embedded workflow JSON of megabytes is one cell); JSON and Parquet keep their types.

    Args:
        path: a ``.csv``, ``.tsv``, ``.parquet`` file, or JSON (an array of objects, or JSON lines).
        what: what the file is, for the message (``"file list"``, ``"score file"``).
        error: the :class:`~detbench.errors.DetbenchError` subclass raised when it cannot be read.
        columns: given the file's column names, those to read (the others are never loaded; less memory for
            large files); None: every column.

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
        with _no_csv_field_limit():
            if suffix in (".csv", ".tsv"):
                sep = "\t" if suffix == ".tsv" else ","
                header = _refuse_repeated_columns(path, sep, what, error)
                usecols = columns(header) if columns is not None else None
                table = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, usecols=usecols)
                lines = _record_lines(path, sep)
                if len(lines) == len(table) + 1:  # the header, then one line per row (blank lines skipped)
                    return table, lambda i: lines[i + 1]
                return table, lambda i: i + 2
            if suffix == ".parquet":
                import pyarrow.parquet as pq

                names = [n for n in pq.read_schema(path).names if not _PANDAS_INDEX.match(n)]  # pandas' own index
                wanted = columns(names) if columns is not None else None
                return pd.read_parquet(path, columns=wanted), lambda i: i
            text = path.read_text(encoding="utf-8")
            if text.lstrip().startswith("["):
                table = pd.read_json(path, orient="records", dtype=False)
            else:
                table = pd.read_json(path, lines=True, dtype=False)
            if columns is not None:
                table = table[columns([str(c) for c in table.columns])]
            return table, lambda i: i + 1
    except error:
        raise
    except (ValueError, OSError, UnicodeDecodeError, pd.errors.ParserError, csv.Error) as exc:
        raise error(f"{path}: cannot read it as a {suffix.lstrip('.')} {what} ({exc})") from exc


@contextlib.contextmanager
def _no_csv_field_limit() -> Iterator[None]:
    """Lift the csv module's 128 KiB cell limit (a prompt or workflow JSON is larger) while a table is read."""
    previous = csv.field_size_limit()
    limit = sys.maxsize
    while True:  # sys.maxsize overflows a C long on some platforms (Windows)
        try:
            csv.field_size_limit(limit)
            break
        except OverflowError:
            limit //= 2
    try:
        yield
    finally:
        csv.field_size_limit(previous)


def _record_lines(path: Path, sep: str) -> list[int]:
    """The line on which each non-blank record of a CSV/TSV file starts (a quoted cell may span lines)."""
    starts, previous = [], 0
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle, delimiter=sep)
        for record in reader:
            if record:
                starts.append(previous + 1)
            previous = reader.line_num
    return starts


def _refuse_repeated_columns(path: Path, sep: str, what: str, error: type[Exception]) -> list[str]:
    """The CSV/TSV header's names; refused when it names a column twice (which would hold the data is a guess)."""
    with path.open(newline="", encoding="utf-8-sig") as handle:
        header = next(csv.reader(handle, delimiter=sep), [])
    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated:
        raise error(f"{path}: its header names {', '.join(map(repr, repeated))} more than once; keep one column "
                    f"of each name in the {what}")
    return header


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
