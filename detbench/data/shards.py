"""Images stored inside shards: Parquet (as the Hugging Face hub distributes most datasets) or Arrow IPC (as
Hugging Face ``datasets``' ``save_to_disk`` writes them): addressing, streaming and row access. Bytes only: decoding
stays in :mod:`detbench.data.images`.

An image in a shard is addressed by a *locator*, used wherever a file path would be (index ``path`` column,
scores, predictions): ``<shard path>#<column>:<row>``, e.g. ``data/test-00000-of-00002.parquet#image:000000042``
or ``train/data-00000-of-00004.arrow#image:000000042``. The row is the 0-based row of the shard, zero-padded to
:data:`ROW_DIGITS` digits so that sorted locators read each shard front to back.

An image column holds either encoded bytes (``binary``) or the Hugging Face ``Image`` feature, a struct of
``bytes`` and ``path``. Parquet is read through pyarrow record batches of ``batch_rows`` rows with pre-buffering
off and a bounded read buffer, so memory is bounded by a batch (and one data page), never by the shard or
its row group. An Arrow shard (the IPC stream format ``save_to_disk`` writes, or the IPC file format) is
memory-mapped: its record batches play the row groups' part, and only the rows of a ``batch_rows`` slice are
copied out of the mapping at a time.
"""

from __future__ import annotations

import json
import os
import re
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from detbench.errors import DataError

PARQUET_SUFFIX = ".parquet"
ARROW_SUFFIX = ".arrow"
SHARD_SUFFIXES = (PARQUET_SUFFIX, ARROW_SUFFIX)
ROW_DIGITS = 9
DEFAULT_BATCH_ROWS = 64
READ_BUFFER = 1 << 20  # bytes pyarrow reads at a time from a column chunk
_LOCATOR = re.compile(r"^(?P<shard>.+\.(?:parquet|arrow))#(?P<column>[^#]+):(?P<row>\d+)$", re.IGNORECASE)


class ShardError(DataError):
    """A shard or column that cannot hold images as detbench reads them; the message names the file."""


@dataclass(frozen=True)
class Locator:
    """One image of a shard: the shard's path (relative to the suite root), its image column and row."""

    shard: str
    column: str
    row: int

    def __str__(self) -> str:
        return f"{self.shard}#{self.column}:{self.row:0{ROW_DIGITS}d}"


def parse_locator(path: str) -> Locator | None:
    """The locator encoded in an index path, or None for a plain file path.

    Args:
        path: an index path.

    Returns:
        The :class:`Locator`, or None when ``path`` is not ``<shard>.parquet#<column>:<row>`` (or ``.arrow``).
    """
    match = _LOCATOR.match(path)
    if match is None:
        return None
    return Locator(match["shard"], match["column"], int(match["row"]))


def is_shard(path: str | Path) -> bool:
    """Whether ``path`` names a shard (by its suffix, any case).

    Args:
        path: a path.

    Returns:
        True for ``*.parquet`` and ``*.arrow``.
    """
    return str(path).lower().endswith(SHARD_SUFFIXES)


def is_arrow(path: str | Path) -> bool:
    """Whether ``path`` names an Arrow IPC shard (by its suffix, any case).

    Args:
        path: a path.

    Returns:
        True for ``*.arrow``.
    """
    return str(path).lower().endswith(ARROW_SUFFIX)


ARROW_FILE_MAGIC = b"ARROW1"  # first (and last) bytes of the IPC file format; a stream starts with its schema


class ArrowShard:
    """An Arrow IPC shard, stream or file format, read through the part of ``pyarrow.parquet.ParquetFile``'s
    interface this module uses (``schema_arrow``, ``iter_batches``); its record batches stand for row groups.

    The file is memory-mapped and its record batches are zero-copy views of the mapping: opening one reads the
    messages' headers, not the image bytes.
    """

    def __init__(self, path: str | Path) -> None:
        import pyarrow as pa

        try:
            source = pa.memory_map(str(path))
            if source.read(len(ARROW_FILE_MAGIC)) == ARROW_FILE_MAGIC:
                source.seek(0)
                reader = pa.ipc.open_file(source)
                batches = [reader.get_batch(i) for i in range(reader.num_record_batches)]
            else:
                source.seek(0)
                reader = pa.ipc.open_stream(source)
                batches = list(reader)
        except (OSError, ValueError) as exc:  # ArrowInvalid (a ValueError) for bytes that are not Arrow IPC
            raise ShardError(f"{path}: not a readable Arrow IPC file ({exc})") from exc
        self.schema_arrow = reader.schema
        self._batches = batches
        self.group_rows = [batch.num_rows for batch in batches]

    def iter_batches(
        self,
        *,
        batch_size: int,
        columns: list[str] | None = None,
        row_groups: list[int] | None = None,
        use_threads: bool = False,
    ) -> Iterator[Any]:
        """Slices of at most ``batch_size`` rows of the record batches ``row_groups`` (all: None), in order.

        Args:
            batch_size: rows per slice.
            columns: the columns to keep (all: None); a missing one raises KeyError.
            row_groups: the record batches to read.
            use_threads: unused (the Parquet reader's option).

        Yields:
            ``pyarrow.RecordBatch`` slices.
        """
        for group in row_groups if row_groups is not None else range(len(self._batches)):
            batch = self._batches[group]
            if columns is not None:
                batch = batch.select(columns)
            for start in range(0, batch.num_rows, batch_size):
                yield batch.slice(start, batch_size)


def open_shard(path: str | Path) -> Any:
    """An open shard that streams: a ``pyarrow.parquet.ParquetFile`` without pre-buffering of whole column chunks,
    or an :class:`ArrowShard` for ``*.arrow``.

    Args:
        path: the shard.

    Returns:
        The open file.

    Raises:
        ShardError: the file is not readable as Parquet (or as Arrow IPC).
    """
    import pyarrow.parquet as pq

    if is_arrow(path):
        return ArrowShard(path)
    try:
        return pq.ParquetFile(str(path), pre_buffer=False, buffer_size=READ_BUFFER)
    except (OSError, ValueError) as exc:  # pyarrow raises ArrowInvalid (a ValueError) for non-Parquet bytes
        raise ShardError(f"{path}: not a readable Parquet file ({exc})") from exc


def row_group_sizes(shard_file: Any) -> list[int]:
    """The rows of each row group of an open shard (an Arrow shard's record batches).

    Args:
        shard_file: an open shard (:func:`open_shard`).

    Returns:
        Row counts, in order.
    """
    if isinstance(shard_file, ArrowShard):
        return list(shard_file.group_rows)
    metadata = shard_file.metadata
    return [metadata.row_group(g).num_rows for g in range(metadata.num_row_groups)]


FOOTER_MAGIC = b"PAR1"


def fingerprint(path: str | Path) -> dict[str, Any] | None:
    """What identifies a shard's version without reading its data: size, mtime and a hash of its structure. For
    Parquet the footer (the schema, row groups, column chunk offsets and sizes), for an Arrow IPC file its footer,
    for an Arrow IPC stream the headers of its messages (the schema, each record batch's length, buffer offsets and
    sizes): a shard rewritten with other rows has another one.

    Args:
        path: the shard.

    Returns:
        ``{"bytes", "mtime_ns", "footer"}`` (``footer``: blake2b hex of that structure, None when the file does not
        end like Parquet or an Arrow IPC file, or is a damaged stream); None when the file cannot be read.
    """
    import hashlib

    magic, trailer = (ARROW_FILE_MAGIC, 10) if is_arrow(path) else (FOOTER_MAGIC, 8)
    try:
        with open(path, "rb") as handle:
            st = os.fstat(handle.fileno())
            footer = None
            if st.st_size >= 12:
                handle.seek(-trailer, os.SEEK_END)
                tail = handle.read(trailer)
                length = int.from_bytes(tail[:4], "little")
                if tail[4:] == magic and length + 4 + trailer <= st.st_size:
                    handle.seek(-trailer - length, os.SEEK_END)
                    footer = hashlib.blake2b(handle.read(length) + tail, digest_size=16).hexdigest()
        if footer is None and is_arrow(path):
            footer = _stream_headers_digest(path)
    except OSError:
        return None
    return {"bytes": st.st_size, "mtime_ns": st.st_mtime_ns, "footer": footer}


def _stream_headers_digest(path: str | Path) -> str | None:
    """blake2b hex of the message headers (and body sizes) of an Arrow IPC stream, read through a memory map
    (the bodies are not read); None for a file that is no complete stream.
    """
    import hashlib

    import pyarrow as pa

    digest = hashlib.blake2b(digest_size=16)
    try:
        with pa.memory_map(str(path)) as source:
            reader = pa.ipc.MessageReader.open_stream(source)
            while True:
                try:
                    message = reader.read_next_message()
                except StopIteration:
                    break
                body = message.body
                digest.update(message.metadata.to_pybytes())
                digest.update((body.size if body is not None else 0).to_bytes(8, "little"))
    except (OSError, ValueError):
        return None
    return digest.hexdigest()


def hf_features(parquet_file: Any) -> dict[str, Any]:
    """The Hugging Face ``datasets`` feature descriptions stored in the shard's metadata (empty if none).

    Args:
        parquet_file: an open shard.

    Returns:
        Column -> feature description (e.g. ``{"_type": "ClassLabel", "names": [...]}``).
    """
    metadata = parquet_file.schema_arrow.metadata or {}
    raw = metadata.get(b"huggingface")
    if not raw:
        return {}
    try:
        info = json.loads(raw)
    except ValueError:
        return {}
    features = info.get("info", {}).get("features", {})
    return features if isinstance(features, dict) else {}


def image_columns(parquet_file: Any) -> list[str]:
    """Columns that can hold encoded images: binary, or a struct with a binary ``bytes`` field.

    Args:
        parquet_file: an open shard.

    Returns:
        The column names, in schema order.
    """
    return [f.name for f in parquet_file.schema_arrow if _image_type(f.type) is not None]


def _image_type(arrow_type: Any) -> str | None:
    import pyarrow as pa

    if pa.types.is_binary(arrow_type) or pa.types.is_large_binary(arrow_type):
        return "binary"
    if pa.types.is_struct(arrow_type):
        index = arrow_type.get_field_index("bytes")
        if index >= 0 and _image_type(arrow_type.field(index).type) == "binary":
            return "struct"
    return None


def check_image_column(parquet_file: Any, column: str, shard: str | Path) -> None:
    """Check that ``column`` exists and holds encoded images.

    Args:
        parquet_file: an open shard.
        column: the image column's name.
        shard: the shard's path (for messages).

    Raises:
        ShardError: the column is missing (the message names the image-like columns) or holds no images.
    """
    names = parquet_file.schema_arrow.names
    if column not in names:
        found = image_columns(parquet_file)
        hint = f"; its image column is {found[0]!r}" if len(found) == 1 else f"; image-like columns: {found}"
        raise ShardError(f"{shard}: no column {column!r} (columns: {', '.join(names)}){hint if found else ''}")
    if _image_type(parquet_file.schema_arrow.field(column).type) is None:
        raise ShardError(
            f"{shard}: column {column!r} is {parquet_file.schema_arrow.field(column).type}, not encoded images "
            "(binary, or the Hugging Face Image struct of bytes and path)"
        )


def default_image_column(parquet_file: Any, shard: str | Path) -> str:
    """The column named ``image`` if it holds images, else the shard's only image-like column.

    Args:
        parquet_file: an open shard.
        shard: the shard's path (for messages).

    Returns:
        The column's name.

    Raises:
        ShardError: no image-like column, or several and none named ``image``.
    """
    found = image_columns(parquet_file)
    if "image" in found:
        return "image"
    if len(found) == 1:
        return found[0]
    raise ShardError(
        f"{shard}: {'no column holds' if not found else 'several columns hold'} encoded images "
        f"({', '.join(found) or ', '.join(parquet_file.schema_arrow.names)})"
    )


def _bytes_of(array: Any) -> list[bytes | None]:
    """Python bytes (None for nulls) of an image column chunk (binary or Image struct)."""
    import pyarrow as pa

    if pa.types.is_struct(array.type):
        valid = array.is_valid().to_pylist()
        values = array.field("bytes").to_pylist()
        return [v if ok else None for v, ok in zip(values, valid, strict=True)]
    return array.to_pylist()


def iter_rows(
    shard: str | Path, columns: list[str], *, batch_rows: int = DEFAULT_BATCH_ROWS
) -> Iterator[tuple[int, dict[str, list[Any]]]]:
    """The values of ``columns`` per record batch; image columns as bytes or None.

    Args:
        shard: the shard.
        columns: the columns to read.
        batch_rows: rows per record batch.

    Yields:
        ``(first row of the batch, {column: values})``.

    Raises:
        ShardError: the file is not readable as Parquet (a damaged page raises pyarrow's own error).
    """
    parquet_file = open_shard(shard)
    row = 0
    image_like = set(image_columns(parquet_file))
    for batch in parquet_file.iter_batches(batch_size=batch_rows, columns=columns, use_threads=False):
        values = {
            name: _bytes_of(batch.column(name)) if name in image_like else batch.column(name).to_pylist()
            for name in columns
        }
        yield row, values
        row += batch.num_rows


class ShardReader:
    """Image bytes by locator, reading whole record batches and keeping the last ``cache_batches`` of them.

    Rows read in order cost one batch read per ``batch_rows`` rows; a jump backwards or to another row group
    restarts the stream at that row group (row groups written by Hugging Face ``datasets`` hold 100 images).
    Safe to pickle into DataLoader workers: open files and caches are not carried over.
    """

    def __init__(self, root: Path, *, batch_rows: int = DEFAULT_BATCH_ROWS, cache_batches: int = 4) -> None:
        self.root = Path(root)
        self.batch_rows = batch_rows
        self.cache_batches = cache_batches
        self._reset()

    def _reset(self) -> None:
        self._files: OrderedDict[str, tuple[Any, list[int]]] = OrderedDict()  # shard -> (file, row group starts)
        self._batches: OrderedDict[tuple[str, str, int, int], list[bytes | None]] = OrderedDict()
        self._streams: dict[tuple[str, str], tuple[int, int, Iterator[Any]]] = {}  # -> (group, next start, it)

    def __getstate__(self) -> dict[str, Any]:
        return {"root": self.root, "batch_rows": self.batch_rows, "cache_batches": self.cache_batches}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._reset()

    def read(self, locator: Locator) -> bytes | None:
        """The encoded image at ``locator``.

        Args:
            locator: the image's shard (relative to the root), column and row.

        Returns:
            The encoded bytes, or None for a null cell.

        Raises:
            ShardError: a bad shard, column or row.
        """
        parquet_file, starts = self._file(locator)
        group = _group_of(starts, locator.row)
        offset = locator.row - starts[group]
        for (shard, column, g, start), values in self._batches.items():
            if (shard, column, g) == (locator.shard, locator.column, group) and start <= offset < start + len(values):
                self._batches.move_to_end((shard, column, g, start))
                return values[offset - start]
        start, values = self._stream_to(parquet_file, locator, group, offset)
        self._batches[(locator.shard, locator.column, group, start)] = values
        while len(self._batches) > self.cache_batches:
            self._batches.popitem(last=False)
        return values[offset - start]

    def _file(self, locator: Locator) -> tuple[Any, list[int]]:
        from detbench.data.suites import safe_join

        if locator.shard not in self._files:
            parquet_file = open_shard(safe_join(self.root, locator.shard))
            check_image_column(parquet_file, locator.column, locator.shard)
            starts = [0]
            for rows in row_group_sizes(parquet_file):
                starts.append(starts[-1] + rows)
            self._files[locator.shard] = (parquet_file, starts)
            while len(self._files) > self.cache_batches:
                self._files.popitem(last=False)
        self._files.move_to_end(locator.shard)
        parquet_file, starts = self._files[locator.shard]
        if locator.row >= starts[-1]:
            raise ShardError(f"{locator}: the shard has {starts[-1]} rows")
        if locator.column not in parquet_file.schema_arrow.names:
            check_image_column(parquet_file, locator.column, locator.shard)
        return parquet_file, starts

    def _stream_to(self, parquet_file: Any, locator: Locator, group: int, offset: int) -> tuple[int, list[Any]]:
        """(start within the row group, values) of the batch holding ``offset`` of row group ``group``."""
        key = (locator.shard, locator.column)
        stream_group, position, stream = self._streams.get(key, (-1, 0, iter(())))
        if stream_group != group or position > offset:
            stream = parquet_file.iter_batches(
                batch_size=self.batch_rows, row_groups=[group], columns=[locator.column], use_threads=False
            )
            position = 0
        while True:
            batch = next(stream)
            start, position = position, position + batch.num_rows
            if offset < position:
                self._streams[key] = (group, position, stream)
                return start, _bytes_of(batch.column(0))


def _group_of(starts: list[int], row: int) -> int:
    """The row group holding ``row``, given the first row of each group (and the total) in ``starts``."""
    import bisect

    return bisect.bisect_right(starts, row) - 1
