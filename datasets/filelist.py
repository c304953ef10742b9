"""Any dataset given as a file list: CSV/TSV, JSON (an array of objects, or JSON lines) or Parquet.

Columns (names are options): ``path`` (relative to ``--root``), ``label`` (0/1 or real/fake by default; the
values are options, never guessed), optional ``generator`` and ``split``. Every other column is kept in the
index as ``meta_<name>``. The suite for DRCT-2M and Co-Spy-Bench exports, grip-unina / ForensicHub lists and
in-house sets::

    detbench index list --root DATA --set file=labels.csv
    detbench run DET --suite list --root DATA --set file=labels.csv --protocol train-on-sdxl

Rows that cannot be used are never dropped silently: a row with a bad label, an empty path, a path leaving
the root (``..``, absolute, or through a symlink whose target lies outside the root; ``--set
allow_links_outside_root=true`` follows such links, and is part of the index's identity) or a NUL byte is
skipped and reported with its line number; a path listed as real and as fake (in any rows, under any
generator) is reported and none of its rows is used; a listed file that does not exist stays in the index
(status ``not_a_file``) and is reported with its line number too; a repeated (path, generator, split) row is
reported and kept once.

Splits are normalised: lower case, and ``training`` -> ``train``, ``val``/``valid``/``validation``/``dev``
-> ``val``, ``testing`` -> ``test`` (``Train`` and ``validation`` are the splits detbench calls train and val).
A binary (bytes) cell is read as UTF-8. The list's own columns are kept as ``meta_<name>``; ``meta_line`` is
the row's line in the list (a list column named ``line`` is kept as ``meta_line_column``).
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from detbench.config import ConfigError
from detbench.data import tables
from detbench.data.labels import FAKE_VALUES, REAL_VALUES, LabelValues
from detbench.data.suites import Entry, EvalProfileOption, SuiteLayoutError, check_content_option, top_levels
from detbench.datasets._layout import SplitsFromDataSuite, did_you_mean, split_value

LIST_SUFFIXES = tables.TABLE_SUFFIXES
SHOWN = 10  # line numbers listed per problem in notes and errors
RESERVED_EXTRAS = ("line",)  # Entry.extra keys detbench writes itself (meta_line: the row's line in the list)


@dataclass(frozen=True)
class FileListOptions(EvalProfileOption):
    """How to read a file list: where it is, its column names, label values and split defaults."""

    file: str = ""  # the list, relative to --root (or absolute); empty: the only CSV/TSV/JSON file in --root
    path_column: str = "path"
    label_column: str = "label"
    generator_column: str = "generator"  # used when the list has it
    split_column: str = "split"  # used when the list has it
    generator_default: str = ""  # generator of rows without one; empty: the list file's name without suffix
    split_default: str = "test"
    real_values: tuple[str, ...] = REAL_VALUES
    fake_values: tuple[str, ...] = FAKE_VALUES
    allow_links_outside_root: bool = False  # follow symlinks whose target lies outside --root (default: skip)
    content: str = ""  # what every image shows (a key of detbench.data.suites.CONTENTS, e.g. faces); "": anything

    def __post_init__(self) -> None:
        super().__post_init__()
        check_content_option(self.content)
        LabelValues(self.real_values, self.fake_values)  # raises ConfigError for overlapping or empty values
        if not self.split_default.strip():
            raise ConfigError("split_default must be a split name such as test")
        object.__setattr__(self, "split_default", split_value(self.split_default))


REGISTRATION = {  # read by detbench.registry without importing this module: literals only
    "name": "list",
    "class": "FileListSuite",
    "summary": "Any dataset given as a CSV/TSV/JSON/Parquet file list: path, label, optional generator and split.",
}


class FileListSuite(SplitsFromDataSuite):
    """A dataset given as a CSV/TSV/JSON/Parquet list of paths with labels (and optionally generators, splits)."""

    name = REGISTRATION["name"]
    version = 2  # 2: splits normalised, conflicting labels and symlinks leaving the root skipped
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
        table.columns = [str(c) for c in table.columns]
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
        extra_columns = _extra_names([c for c in table.columns if c not in known])
        default_generator = o.generator_default or path.name.split(".")[0]
        problems: dict[str, list[int]] = {}
        paths = _PathCheck(root, o.allow_links_outside_root)
        rows: list[tuple[int, str, int, dict]] = []
        labels_of: dict[str, set[int]] = {}
        for position, record in enumerate(table.to_dict("records")):
            line = where(position)
            rel = _relative(record.get(o.path_column))
            label = labels(record.get(o.label_column))
            if rel is None:
                problems.setdefault("an empty path, an absolute path or one leaving the root", []).append(line)
                continue
            if "\0" in rel:
                problems.setdefault("a path holding a NUL byte (no file name can)", []).append(line)
                continue
            if label is None:
                problems.setdefault(f"a label that is not one of ({labels.describe()})", []).append(line)
                continue
            rows.append((line, rel, label, record))
            labels_of.setdefault(rel, set()).add(label)
        conflicting = {rel for rel, found in labels_of.items() if len(found) > 1}
        seen: set[tuple[str, str, str]] = set()
        conflicts: dict[str, list[int]] = {}
        missing_files: list[int] = []
        followed: list[int] = []
        entries: list[Entry] = []
        for line, rel, label, record in rows:
            if rel in conflicting:
                conflicts.setdefault(rel, []).append(line)
                continue
            generator = _text(record.get(o.generator_column)) or default_generator
            split = split_value(_text(record.get(o.split_column))) or o.split_default
            if (rel, generator, split) in seen:
                problems.setdefault("a repeated (path, generator, split): kept once", []).append(line)
                continue
            where_to = paths(rel)
            if where_to == "outside":
                problems.setdefault(
                    "a path whose symlinks lead outside the root (follow them with --set "
                    "allow_links_outside_root=true)",
                    [],
                ).append(line)
                continue
            seen.add((rel, generator, split))
            if where_to == "missing":
                missing_files.append(line)
            elif where_to == "followed":
                followed.append(line)
            extra = {name: _extra(record[c]) for c, name in extra_columns.items()}
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
        if conflicts:
            examples = [f"{rel} (lines {', '.join(map(str, lines))})" for rel, lines in conflicts.items()]
            self.notes.append(
                f"{path.name}: {sum(map(len, conflicts.values()))} rows skipped: {len(conflicts)} paths are listed "
                f"as both real and fake (under one generator or several), so none of their rows is used: "
                f"{tables.listing(examples, SHOWN)}"
            )
        if missing_files:
            self.notes.append(
                f"{path.name}: {len(missing_files)} rows name files that do not exist (indexed as not_a_file): "
                f"{_lines(missing_files)}"
            )
        if followed:
            self.notes.append(
                f"{path.name}: {len(followed)} rows name symlinks leading outside the root, followed "
                f"(allow_links_outside_root): {_lines(followed)}"
            )
        renamed = [f"{c!r} as meta_{name}" for c, name in extra_columns.items() if name != c]
        if renamed:
            self.notes.append(
                f"{path.name}: column {', '.join(renamed)} is kept under another name (meta_line is the row's "
                "line in the list)"
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
    """The list as a DataFrame of strings and where each row is in the file (see
    :func:`detbench.data.tables.read_table`).

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
    if isinstance(value, bytes):  # a binary column of a Parquet list: the name's bytes (non-UTF-8 kept as is)
        value = os.fsdecode(value)
    text = _text(value).replace("\\", "/")
    pure = PurePosixPath(text)
    if not text or pure.is_absolute() or ".." in pure.parts or re.match(r"^[A-Za-z]:/", text):
        return None
    return pure.as_posix()


def _text(value: object) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return ""
    if isinstance(value, bytes):  # a binary Parquet column
        value = value.decode("utf-8", "backslashreplace")
    return str(value).strip()


def _extra(value: object) -> str | None:
    """A list column's cell as kept in the index: text, None when empty."""
    if _text(value) == "":
        return None
    return value.decode("utf-8", "backslashreplace") if isinstance(value, bytes) else str(value)


def _extra_names(columns: list[str]) -> dict[str, str]:
    """Column -> the ``extra`` key it is kept under: its name, unless detbench writes that key itself."""
    names: dict[str, str] = {}
    for column in columns:
        name = column
        while name in RESERVED_EXTRAS or name in names.values() or (name != column and name in columns):
            name = f"{name}_column"
        names[column] = name
    return names


class _PathCheck:
    """Where a listed path leads: ``inside`` the root, ``missing``, ``outside`` (a symlink on the way leads out of
    the root), or ``followed`` (outside, allowed). Resolved folders are cached, so a list of a million files in a
    few thousand folders costs one ``lstat`` per row.
    """

    def __init__(self, root: Path, allow_outside: bool) -> None:
        self.root = os.path.realpath(root)
        self.prefix = self.root.rstrip(os.sep) + os.sep
        self.allow_outside = allow_outside
        self.folders: dict[str, str] = {}

    def inside(self, real: str) -> bool:
        return real == self.root or real.startswith(self.prefix)

    def __call__(self, rel: str) -> str:
        folder, _, name = rel.rpartition("/")
        real_folder = self.folders.get(folder)
        if real_folder is None:
            real_folder = self.folders[folder] = os.path.realpath(os.path.join(self.root, folder))
        where = os.path.join(real_folder, name)
        try:
            is_link = stat.S_ISLNK(os.lstat(where).st_mode)
        except OSError:  # nothing there: outside if its folder is
            return "missing" if self.inside(real_folder) else self._outside()
        if is_link:
            where = os.path.realpath(where)
        if not self.inside(where):
            return self._outside()
        return "missing" if is_link and not os.path.exists(where) else "inside"

    def _outside(self) -> str:
        return "followed" if self.allow_outside else "outside"


def _lines(lines: list[int]) -> str:
    return tables.listing(lines, SHOWN)
