"""Identity and durable files: canonical hashes, atomic writes, run directories and locks."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import socket
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from detbench.errors import LockedError


def canonical_json(obj: Any) -> str:
    """JSON with sorted keys and no whitespace: the only input to identity hashes.

    Args:
        obj: JSON data; paths become strings, sets sorted lists, numpy scalars Python numbers.

    Returns:
        The canonical text (non-ASCII characters kept as they are).

    Raises:
        TypeError: ``obj`` holds something else that JSON cannot represent.
    """
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_json_default)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    if hasattr(obj, "item"):  # numpy scalars
        return obj.item()
    raise TypeError(f"not JSON-serialisable: {type(obj).__name__}")


def content_hash(obj: Any) -> str:
    """sha256 hex digest of an object's canonical JSON (how run, fit and config ids are made).

    Args:
        obj: JSON data (see :func:`canonical_json`).

    Returns:
        64 lowercase hex characters.
    """
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()


def sha256_of_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """sha256 of a file's bytes, read in chunks (large weights files never sit in memory whole).

    Args:
        path: the file.
        chunk: bytes read at a time.

    Returns:
        64 lowercase hex characters.

    Raises:
        OSError: the file is missing or unreadable.
    """
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Write a file atomically: readers see the old file or the whole new one, never a part.

    The temporary file is named after the writer's pid and host, so :func:`sweep_stale_tmp` can remove what a
    killed writer left; it gets the permissions the umask allows (not ``mkstemp``'s 0600).

    Args:
        path: the file to write (its folder is created if missing; an existing file is replaced).

    Yields:
        A temporary path beside ``path`` to write to; when the block succeeds it is fsynced and renamed onto
        ``path``, when it raises it is deleted and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{_writer_tag()}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp_path, 0o666 & ~_UMASK)  # mkstemp creates 0600; results are meant to be shared
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


_TMP_NAME = re.compile(r"\.p(\d+)-([0-9a-f]{8})\.[^.]+\.tmp$")


def _host_tag() -> str:
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


def _writer_tag() -> str:
    """``p<pid>-<host hash>`` in temp names: tells a dead writer's leftovers from a live writer's file."""
    return f"p{os.getpid()}-{_host_tag()}"


def _alive(pid: int) -> bool:
    if pid <= 0:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def sweep_stale_tmp(directory: str | Path) -> int:
    """Delete the temp files of :func:`atomic_path` left in ``directory`` by killed writers on this host.

    A killed process never renames its temp file; a live one (this host, pid running) is left alone, as
    are files of other hosts on a shared filesystem.

    Args:
        directory: the folder to sweep (not its sub-folders).

    Returns:
        How many files were removed.
    """
    host, removed = _host_tag(), 0
    for tmp in Path(directory).glob(".*.tmp"):
        match = _TMP_NAME.search(tmp.name)
        if match and match.group(2) == host and not _alive(int(match.group(1))):
            with contextlib.suppress(OSError):
                tmp.unlink()
                removed += 1
    return removed


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write UTF-8 text to ``path`` atomically (see :func:`atomic_path`).

    Args:
        path: the file (replaced if it exists).
        text: the content.
    """
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json_atomic(path: str | Path, obj: Any) -> None:
    """Write ``obj`` as indented JSON with sorted keys and a final newline, atomically (see :func:`atomic_path`).

    Args:
        path: the file (replaced if it exists).
        obj: JSON data; paths, sets and numpy scalars are converted as in :func:`canonical_json`.
    """
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def write_parquet_atomic(path: str | Path, df: Any) -> None:
    """Write a data frame as Parquet (without its index), atomically (see :func:`atomic_path`).

    Args:
        path: the file (replaced if it exists).
        df: the :class:`pandas.DataFrame`.
    """
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, index=False)


def read_json(path: str | Path) -> Any:
    """Read a JSON file.

    Args:
        path: the file.

    Returns:
        The parsed data.

    Raises:
        OSError: the file is missing or unreadable.
        ValueError: it is not JSON (``json.JSONDecodeError``).
    """
    return json.loads(Path(path).read_text())




RECORD_HASH = "record_sha256"  # the field of run.json holding the sha256 of the rest of it


def record_digest(record: dict[str, Any]) -> str:
    """The sha256 a run record holds of itself: of its canonical JSON without :data:`RECORD_HASH`.

    Args:
        record: the record as read back from ``run.json`` (see :func:`seal_record`).

    Returns:
        64 lowercase hex characters.
    """
    return content_hash({k: v for k, v in record.items() if k != RECORD_HASH})


def seal_record(record: dict[str, Any]) -> dict[str, Any]:
    """The record as ``run.json`` will hold it, with :data:`RECORD_HASH` set: a hand edit of any field is then
    found by :func:`load_run_record`.

    Args:
        record: the run record (paths, sets and numpy scalars allowed, as in :func:`canonical_json`).

    Returns:
        A JSON round trip of ``record`` (so the hash is of exactly what is read back) with its hash added.
    """
    plain = json.loads(json.dumps(record, default=_json_default))
    plain.pop(RECORD_HASH, None)
    return {**plain, RECORD_HASH: record_digest(plain)}






@contextlib.contextmanager
def exclusive_lock(
    path: str | Path, what: str, *, wait: bool = False, on_wait: Callable[[str], None] | None = None
) -> Iterator[None]:
    """Hold an advisory ``flock`` on ``path`` for the ``with`` block; the file records the holder's pid.

    Args:
        path: the lock file (created, with its folder, if missing; never deleted here).
        what: what the lock guards, for messages (e.g. ``run 0123abcd...``).
        wait: block until another holder releases it instead of raising.
        on_wait: with ``wait``, called once with a message saying whom it waits for; None: wait silently.

    Yields:
        Nothing; the lock is held until the block ends.

    Raises:
        LockedError: another process holds it and ``wait`` is off.
    """
    import fcntl

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            if not wait:
                raise LockedError(f"{what} is in use by {holder} (lock file {path}); wait for it to finish") from None
            if on_wait is not None:
                on_wait(f"waiting for {what}, in use by {holder} (lock file {path})")
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()}")
        fh.flush()
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
