"""Any dataset given as a file list: CSV/TSV, JSON (an array of objects, or JSON lines) or Parquet.

Columns (names are options): ``path`` (relative to ``--root``), ``label`` (0/1 or real/fake by default; the
values are options, never guessed), optional ``generator`` and ``split``. Every other column is kept in the
index as ``meta_<name>``. The suite for DRCT-2M and Co-Spy-Bench exports, grip-unina / ForensicHub lists and
in-house sets::

    detbench index list --root DATA --set file=labels.csv
    detbench run DET --suite list --root DATA --set file=labels.csv --protocol train-on-sdxl

Rows that cannot be used are never dropped silently: a row with a bad label, an empty path or a path leaving
the root is skipped and reported with its line number; a listed file that does not exist stays in the index
(status ``not_a_file``) and is reported with its line number too; a repeated (path, generator, split) row is
reported and kept once.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from detbench import tables
from detbench.config import ConfigError
from detbench.datasets._layout import LabelValues, SplitsFromDataSuite, did_you_mean
from detbench.suites import Entry, EvalProfileOption, SuiteLayoutError, top_levels

LIST_SUFFIXES = tables.TABLE_SUFFIXES
SHOWN = 10  # line numbers listed per problem in notes and errors


@dataclass(frozen=True)
class FileListOptions(EvalProfileOption):
    file: str = ""  # the list, relative to --root (or absolute); empty: the only CSV/TSV/JSON file in --root
    path_column: str = "path"
    label_column: str = "label"
    generator_column: str = "generator"  # used when the list has it
    split_column: str = "split"  # used when the list has it
    generator_default: str = ""  # generator of rows without one; empty: the list file's name without suffix
    split_default: str = "test"
    real_values: tuple[str, ...] = ("0", "real")
    fake_values: tuple[str, ...] = ("1", "fake")

    def __post_init__(self) -> None:
        super().__post_init__()
        LabelValues(self.real_values, self.fake_values)  # raises ConfigError for overlapping or empty values
        if not self.split_default.strip():
            raise ConfigError("split_default must be a split name such as test")


class FileListSuite(SplitsFromDataSuite):
    name = "list"
    version = 1
    default_backbone = "open_clip:ViT-L-14@openai"
    default_protocol = "eval"
    Options = FileListOptions

    def scan(self, root: Path) -> Iterator[Entry]:
        """The usable rows of the list file (``--set file=`` or the only list in ``root``).

        Unusable rows are skipped and reported in ``self.notes`` with their line numbers; listed files that do not
        exist stay (the index marks them ``not_a_file``). The splits found per generator are kept for
        :meth:`protocols`.

        Args:
            root: the folder the listed paths are relative to.

        Yields:
            One entry per usable row; the row's line and its uninterpreted columns go to ``extra``.

        Raises:
            SuiteLayoutError: no list file (or several), an unreadable list, a missing path/label column, or no
                usable row.
        """
        root = Path(root)
        self.ignored, self.notes = [], []
        path = self._list_file(root)
        table, where = read_table(path)
        o = self.options
        missing_columns = [c for c in (o.path_column, o.label_column) if c not in table.columns]
        if missing_columns:
            names = ", ".join(map(str, table.columns))
            hint = "".join(did_you_mean(c, map(str, table.columns)) for c in missing_columns)
            raise SuiteLayoutError(
                f"{path}: no column {' or '.join(map(repr, missing_columns))} (columns: {names}).{hint} "
                "Name them with --set path_column=... / label_column=..."
            )
        labels = LabelValues(o.real_values, o.fake_values)
        known = {o.path_column, o.label_column, o.generator_column, o.split_column}
        extra_columns = [c for c in table.columns if c not in known]
        default_generator = o.generator_default or path.name.split(".")[0]
        problems: dict[str, list[int]] = {}
        missing_files: list[int] = []
        seen: set[tuple[str, str, str]] = set()
        entries: list[Entry] = []
        for position, record in enumerate(table.to_dict("records")):
            line = where(position)
            rel = _relative(record.get(o.path_column))
            label = labels(record.get(o.label_column))
            if rel is None:
                problems.setdefault("an empty path, an absolute path or one leaving the root", []).append(line)
                continue
            if label is None:
                problems.setdefault(f"a label that is not one of ({labels.describe()})", []).append(line)
                continue
            generator = _text(record.get(o.generator_column)) or default_generator
            split = _text(record.get(o.split_column)) or o.split_default
            if (rel, generator, split) in seen:
                problems.setdefault("a repeated (path, generator, split): kept once", []).append(line)
                continue
            seen.add((rel, generator, split))
            if not os.path.lexists(root / rel):
                missing_files.append(line)
            extra = {str(c): None if _text(record[c]) == "" else str(record[c]) for c in extra_columns}
            entries.append(
                Entry(
                    path=rel,
                    generator=generator,
                    split=split,
                    label=label,
                    family="real" if label == 0 else "unknown",
                    extra={"line": line, **extra},
                )
            )
        for what, lines in problems.items():
            self.notes.append(f"{path.name}: {len(lines)} rows skipped for {what}: {_lines(lines)}")
        if missing_files:
            self.notes.append(
                f"{path.name}: {len(missing_files)} rows name files that do not exist (indexed as not_a_file): "
                f"{_lines(missing_files)}"
            )
        if not entries:
            raise SuiteLayoutError(f"{path}: no usable rows among its {len(table)}. {' '.join(self.notes)}".strip())
        self.keep_splits(entries)
        yield from entries

    def _list_file(self, root: Path) -> Path:
        if self.options.file:
            path = Path(self.options.file).expanduser()
            path = path if path.is_absolute() else root / path
            if not path.is_file():
                raise SuiteLayoutError(f"file={self.options.file}: no such file (relative paths start at {root})")
            return path
        candidates = sorted(
            p for p in root.iterdir() if p.is_file() and p.suffix.lower() in LIST_SUFFIXES and p.suffix != ".parquet"
        )
        if len(candidates) == 1:
            return candidates[0]
        found = ", ".join(p.name for p in candidates) or f"none; {root} holds:\n{top_levels(root, depth=1)}"
        raise SuiteLayoutError(
            f"suite list needs its list: pass --set file=PATH (a CSV, TSV, JSON or Parquet file with columns "
            f"path and label). CSV/TSV/JSON files in the root: {found}"
        )


def read_table(path: Path):
    """The list as a DataFrame of strings and where each row is in the file (see :func:`detbench.tables.read_table`).

    Args:
        path: a ``.csv``, ``.tsv``, ``.json``/``.jsonl`` or ``.parquet`` file list.

    Returns:
        The table and a function from row position to where the row is in the file.

    Raises:
        SuiteLayoutError: the file cannot be read as that format.
    """
    return tables.read_table(path, "file list", SuiteLayoutError)


def _relative(value: object) -> str | None:
    """A cell as a relative POSIX path inside the root, or None (empty, absolute, or leaving the root)."""
    text = _text(value).replace("\\", "/")
    pure = PurePosixPath(text)
    if not text or pure.is_absolute() or ".." in pure.parts or re.match(r"^[A-Za-z]:/", text):
        return None
    return pure.as_posix()


def _text(value: object) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return ""
    return str(value).strip()


def _lines(lines: list[int]) -> str:
    return tables.listing(lines, SHOWN)
