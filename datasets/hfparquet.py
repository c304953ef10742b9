"""Datasets distributed as Parquet shards with the images inside (most datasets on the Hugging Face hub).

``huggingface-cli download ORG/NAME --repo-type dataset --local-dir DATA`` gives ``DATA/data/<split>-00000-of-
000NN.parquet`` (or ``DATA/<config>/<split>/0000.parquet``): each row holds an encoded image (the ``Image``
feature, a struct of bytes and path, or plain binary) and its label. Every shard under ``--root`` matching
``files`` is read; columns are named by options::

    detbench index parquet --root DATA --set label_column=label --set generator_column=model
    detbench run DET --suite parquet --root DATA --protocol train-on-sdxl

Images are addressed by shard and row (``data/test-00000-of-00002.parquet#image:000000042``) and flow
through the same index (content ids, statuses, formats, JPEG quality; broken bytes flagged, never dropped),
feature cache, runs, predict and report as files do. Shards are read in record batches: memory is bounded by
a batch, not by the shard. Labels map through ``real_values``/``fake_values``; an integer label whose
``ClassLabel`` names are stored in the shard's Hugging Face metadata is mapped through its name first (so a
dataset whose class 0 is ``fake`` is read right). The split is the ``split_column`` if named, else the
shard's file or folder name (``train-00000-of-00004.parquet``, ``default/test/0000.parquet``), else
``split_default``; a split column's values are normalised as a file list's are (lower case; ``training``,
``validation``, ``dev``, ``testing``... mapped to train/val/test).

Shards that are symlinks leading outside the root (or found through one) are skipped with a note, unless
``allow_links_outside_root=true`` (part of the index's identity). A ``.parquet`` file without any image column
(``metadata.parquet`` beside the shards) is skipped with a note; a damaged shard too.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from detbench.config import ConfigError
from detbench.data.images import scrub
from detbench.data.labels import FAKE_VALUES, REAL_VALUES, LabelValues
from detbench.data.shards import (
    Locator,
    ShardError,
    check_image_column,
    hf_features,
    image_columns,
    iter_rows,
    open_shard,
)
from detbench.data.suites import Entry, EvalProfileOption, SuiteLayoutError, top_levels
from detbench.datasets._layout import SPLIT_NAMES, SplitsFromDataSuite, did_you_mean, split_value

SHOWN = 10  # rows listed per problem in notes


@dataclass(frozen=True)
class ParquetOptions(EvalProfileOption):
    """How to read Parquet shards: which files, the image/label/generator/split columns and label values."""

    files: str = "**/*.parquet"  # glob of the shards, relative to --root
    image_column: str = "image"
    label_column: str = "label"
    generator_column: str = ""  # empty: every image belongs to generator_default
    split_column: str = ""  # empty: the split in the shard's name, else split_default
    generator_default: str = ""  # empty: the root folder's name
    split_default: str = "test"
    real_values: tuple[str, ...] = REAL_VALUES
    fake_values: tuple[str, ...] = FAKE_VALUES
    keep_columns: tuple[str, ...] = ()  # other (small) columns to keep in the index as meta_<name>
    allow_links_outside_root: bool = False  # read shards that are symlinks leading outside --root (default: skip)

    def __post_init__(self) -> None:
        super().__post_init__()
        LabelValues(self.real_values, self.fake_values)
        if not self.split_default.strip():
            raise ConfigError("split_default must be a split name such as test")
        object.__setattr__(self, "split_default", split_value(self.split_default))
        if PurePosixPath(self.files).is_absolute() or ".." in PurePosixPath(self.files).parts:
            raise ConfigError(f"files must be a glob inside the suite root, e.g. data/*.parquet; got {self.files!r}")


class _NoImages(ShardError):
    """A ``.parquet`` file beside the shards that holds no image column at all (``metadata.parquet``)."""


REGISTRATION = {  # read by detbench.registry without importing this module: literals only
    "name": "parquet",
    "class": "ParquetSuite",
    "summary": "Parquet shards with the images inside (Hugging Face datasets): image/label/generator/split columns.",
}


class ParquetSuite(SplitsFromDataSuite):
    """Images stored inside Parquet shards (Hugging Face datasets), one row per image."""

    name = REGISTRATION["name"]
    version = 2  # 2: split values normalised; shards leading outside the root and non-image files skipped
    default_backbone = "open_clip:ViT-L-14@openai"
    default_protocol = "eval"
    Options = ParquetOptions

    def scan(self, root: Path) -> Iterator[Entry]:
        """The usable rows of every Parquet shard under ``root`` matching the ``files`` option.

        A damaged shard and rows whose label is neither real nor fake are skipped and reported in ``self.notes``.
        The splits found per generator are kept for :meth:`protocols`.

        Args:
            root: the dataset's folder (hidden files and folders are skipped).

        Yields:
            One entry per usable row, its path a shard locator (``<shard>#<image column>:<row>``).

        Raises:
            SuiteLayoutError: no matching shard, a missing column, a ClassLabel name that is neither real nor fake,
                or no usable row.
        """
        root = Path(root)
        self.ignored, self.notes = [], []
        # hidden files and folders are skipped (e.g. the .cache/ that huggingface-cli download leaves)
        shards = sorted(
            p
            for p in root.glob(self.options.files)
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts)
        )
        if not shards:
            raise SuiteLayoutError(
                f"no Parquet shards matching {self.options.files!r} under {root}. Found:\n{top_levels(root, depth=3)}"
            )
        entries: list[Entry] = []
        skipped: dict[str, list[str]] = {}  # why -> rows
        real_root = os.path.realpath(root)
        outside: list[str] = []
        for shard in shards:
            rel = shard.relative_to(root).as_posix()
            if not _inside(os.path.realpath(shard), real_root):
                outside.append(rel)
                if not self.options.allow_links_outside_root:
                    continue
            try:
                entries.extend(self._scan_shard(root, shard, skipped))
            except _NoImages as exc:
                self.notes.append(f"{rel} skipped: {exc}")
            except (ShardError, OSError) as exc:  # a damaged shard is reported and skipped, not fatal
                self.notes.append(f"shard {rel} skipped: {scrub(str(exc))}")
        if outside:
            what = (
                "read (allow_links_outside_root)"
                if self.options.allow_links_outside_root
                else "skipped (read them with --set allow_links_outside_root=true)"
            )
            self.notes.append(
                f"{len(outside)} shards are symlinks leading outside the root (or lie in a linked folder), {what}: "
                + ", ".join(outside[:SHOWN])
                + (f" and {len(outside) - SHOWN} more" if len(outside) > SHOWN else "")
            )
        for why, rows in skipped.items():
            self.notes.append(
                f"{len(rows)} rows skipped: {why}: "
                + ", ".join(rows[:SHOWN])
                + (f" and {len(rows) - SHOWN} more" if len(rows) > SHOWN else "")
            )
        if not entries:
            raise SuiteLayoutError(f"no usable rows in the {len(shards)} shards under {root}. {' '.join(self.notes)}")
        self.keep_splits(entries)
        yield from entries

    def _scan_shard(self, root: Path, shard: Path, skipped: dict[str, list[str]]) -> list[Entry]:
        o = self.options
        rel = shard.relative_to(root).as_posix()
        parquet_file = open_shard(shard)  # ShardError for a file that is not Parquet: the caller skips it
        names = parquet_file.schema_arrow.names
        if o.image_column not in names and not image_columns(parquet_file):
            raise _NoImages(f"it holds no image column (columns: {', '.join(names) or 'none'}), so it is not a shard")
        try:
            check_image_column(parquet_file, o.image_column, rel)
        except ShardError as exc:
            raise SuiteLayoutError(f"{exc}. Name the image column with --set image_column=NAME") from None
        wanted = [o.label_column, o.generator_column, o.split_column, *o.keep_columns]
        absent = [c for c in wanted if c and c not in names]
        if absent:
            raise SuiteLayoutError(
                f"{rel}: no column {', '.join(map(repr, absent))} (columns: {', '.join(names)})."
                f"{did_you_mean(absent[0], names)} Name columns with --set label_column=... (or generator_column, "
                "split_column, keep_columns)"
            )
        labels, why_skipped = label_map(parquet_file, o, rel)
        split_of_shard = _split_from_name(PurePosixPath(rel)) or o.split_default
        generator_default = o.generator_default or root.resolve().name
        columns = list(dict.fromkeys(c for c in wanted if c))
        try:
            batches = list(iter_rows(shard, columns))  # the small columns only; a damaged page fails here
        except (OSError, ValueError) as exc:
            raise ShardError(f"{type(exc).__name__}: {exc}") from exc
        entries = []
        for start, values in batches:
            for i in range(len(values[o.label_column])):
                row = start + i
                label = labels(values[o.label_column][i])
                if label is None:
                    skipped.setdefault(why_skipped, []).append(f"{rel} row {row} ({_shown(values[o.label_column][i])})")
                    continue
                generator = cell_text(values[o.generator_column][i]) if o.generator_column else ""
                split = split_value(cell_text(values[o.split_column][i])) if o.split_column else ""
                entries.append(
                    Entry(
                        path=str(Locator(rel, o.image_column, row)),
                        generator=generator or generator_default,
                        split=split or split_of_shard,
                        label=label,
                        family="real" if label == 0 else "unknown",
                        extra={c: values[c][i] for c in o.keep_columns},
                    )
                )
        return entries


def label_map(parquet_file: object, options: Any, shard: str) -> tuple[Callable[[object], int | None], str]:
    """(cell -> 0/1/None, why a None cell is skipped): through the ClassLabel names of the shard's Hugging Face
    metadata when it has them. A ClassLabel column holding the names themselves (strings) is read by name.

    Args:
        parquet_file: the open shard (Parquet or Arrow).
        options: suite options with ``label_column``, ``real_values`` and ``fake_values``.
        shard: the shard's path (for messages).

    Returns:
        The label reader and the reason a cell it reads as None is skipped.

    Raises:
        SuiteLayoutError: a ClassLabel name is neither real nor fake.
    """
    values = LabelValues(options.real_values, options.fake_values)
    feature = hf_features(parquet_file).get(options.label_column, {})
    names = feature.get("names") if isinstance(feature, dict) and feature.get("_type") == "ClassLabel" else None
    if not names:
        return values, f"their label is not one of ({values.describe()})"
    unmapped = [n for n in names if values(n) is None]
    if unmapped:
        raise SuiteLayoutError(
            f"{shard}: column {options.label_column!r} is a ClassLabel with names {names}; "
            f"{', '.join(map(repr, unmapped))} is neither real nor fake ({values.describe()}). "
            "Say which with --set real_values=... / fake_values=..."
        )

    lowered = {str(n).strip().lower() for n in names}

    def by_name(cell: object) -> int | None:
        if isinstance(cell, bytes):
            cell = cell.decode("utf-8", "replace")
        if isinstance(cell, int) and not isinstance(cell, bool) and 0 <= cell < len(names):
            return values(names[cell])
        if isinstance(cell, str) and cell.strip().lower() in lowered:
            return values(cell)
        return None

    why = (
        f"their {options.label_column!r} is a ClassLabel with names {names}, and the cell is neither a class "
        f"number (0 to {len(names) - 1}) nor one of those names"
    )
    return by_name, why


def _split_from_name(path: PurePosixPath) -> str | None:
    """The split named by a shard's file name (``train-00000-of-00004``) or its nearest folder (``test/``)."""
    stem = path.name.rsplit(".", 1)[0].lower()
    for candidate in (stem.split("-")[0], stem.split("_")[0], *(p.lower() for p in reversed(path.parts[:-1]))):
        if candidate in SPLIT_NAMES:
            return SPLIT_NAMES[candidate]
    return None


def cell_text(value: object) -> str:
    """A text cell, stripped: bytes decoded, None empty.

    Args:
        value: the cell.

    Returns:
        The text.
    """
    if isinstance(value, bytes):
        value = value.decode("utf-8", "backslashreplace")
    return "" if value is None else str(value).strip()


def _shown(cell: object) -> str:
    """A label cell as a note shows it: its repr, cut to 40 characters."""
    text = repr(cell)
    return text if len(text) <= 40 else text[:37] + "..."


def _inside(real: str, real_root: str) -> bool:
    return real == real_root or real.startswith(real_root.rstrip(os.sep) + os.sep)
