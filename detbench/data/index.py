"""Index a suite on disk into Parquet: one row per image, with its content id, labels and health.

Indexes live in ``$DETBENCH_HOME/indexes/<suite>/<key>/`` (``index.parquet`` + ``manifest.json``), where
``key`` hashes the absolute root, the adapter identity and the id mode. Re-indexing is incremental: a file
whose path, size and mtime are unchanged keeps its row without being read again. A ``full`` index of files an
adapter has just written itself (the demo's build, :meth:`~detbench.data.suites.Suite.written_rows`) takes the rows
made while writing them (:func:`written_row`) under the same condition, instead of reading every file back.

Images inside Parquet or Arrow shards (``detbench.data.shards`` locators as paths) are probed by streaming each
shard's image column once, in record batches; their ``bytes`` is the image's encoded size, ``mtime_ns`` the shard's,
and ``image_id`` always the content hash (the bytes are read anyway). The manifest keeps each shard's
fingerprint (size, mtime and a hash of its Parquet footer or Arrow message headers,
:func:`detbench.data.shards.fingerprint`): a shard whose
fingerprint is unchanged keeps its rows; one rewritten with the same mtime (a copy that keeps times) is read
again.

``phash`` is each decoded image's 64-bit perceptual hash (16 hex digits, :mod:`detbench.data.perceptual_hash`),
taken while the file is probed in ``full`` mode (files and Parquet rows alike); None in ``fast`` mode, which
decodes nothing, and for unusable files. Like the other descriptive columns it is not part of :func:`index_hash`,
so adding it changed no index hash; an index written before it existed is probed again once.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from detbench.data.shards import fingerprint, parse_locator
from detbench.data.suites import BAD_NAME_REASON, Entry, Suite, display_name, is_valid_utf8, top_levels
from detbench.errors import DataError, InputError, SuiteLayoutError
from detbench.metrics import SUMMARY_ROWS
from detbench.paths import home_subdir
from detbench.store import content_hash, read_json, sweep_stale_tmp, write_json_atomic, write_parquet_atomic
from detbench.version import __version__

IdMode = Literal["full", "fast"]
COLUMNS = [
    "image_id",
    "path",
    "suite",
    "generator",
    "family",
    "split",
    "label",
    "format",
    "jpeg_quality",
    "width",
    "height",
    "bytes",
    "exif",
    "exif_tags",
    "phash",
    "status",
    "reason",
    "mtime_ns",
]
# What an index row says about the file itself (no label, no place): detectors that read it declare so
# (Detector.metadata_columns), and `detbench predict` probes the files it scores for it.
METADATA_COLUMNS = ("format", "jpeg_quality", "width", "height", "bytes", "exif")
META_PREFIX = "meta_"  # index columns holding a file list's own columns (Entry.extra)
_PARALLEL_THRESHOLD = 4000


@dataclass
class Index:
    """A loaded index: its rows, its manifest and where it is stored."""

    rows: pd.DataFrame
    manifest: dict[str, Any]
    directory: Path

    @property
    def root(self) -> Path:
        """The suite root the index was built from."""
        return Path(self.manifest["root"])

    @property
    def usable(self) -> pd.DataFrame:
        """The rows whose images decoded (status ``ok``)."""
        return self.rows[self.rows["status"] == "ok"]

    @property
    def generators(self) -> list[str]:
        """The generators of the indexed rows, sorted."""
        return sorted(self.rows["generator"].unique())


def _probe_one(args: tuple[str, str, str]) -> dict[str, Any]:
    from detbench.data import images

    rel, abs_path, mode = args
    info = images.probe(abs_path, decode=(mode == "full"))
    try:
        st = os.stat(abs_path)
        mtime_ns, size = st.st_mtime_ns, st.st_size
    except OSError:
        mtime_ns, size = None, None
    image_id = None
    if info.status in ("ok", "truncated", "undecodable", "too_large", "empty"):
        try:
            image_id = images.file_digest(abs_path) if mode == "full" else images.fast_id(abs_path)
        except (OSError, images.ImageError):
            image_id = None
    return _row(rel, image_id, info, size, mtime_ns)


def _row(rel: str, image_id: str | None, info: Any, size: int | None, mtime_ns: int | None) -> dict[str, Any]:
    """An index row (without the entry's labels) from a probe's :class:`~detbench.data.images.ImageInfo`."""
    return {
        "path": rel,
        "image_id": image_id,
        "format": info.format,
        "jpeg_quality": info.jpeg_quality,
        "width": info.width,
        "height": info.height,
        "bytes": info.bytes if info.bytes is not None else size,
        "exif": info.exif,
        "exif_tags": info.exif_tags,
        "phash": info.phash,
        "status": info.status,
        "reason": info.reason,
        "mtime_ns": mtime_ns,
    }


def written_row(rel: str, abs_path: Path, data: bytes, rgb: Any) -> dict[str, Any]:
    """The row a ``full`` index gives a file that the caller has just written, without reading it back.

    For suites that write their own images (:meth:`~detbench.data.suites.Suite.written_rows`): the header is read
    from the bytes in memory, the decode replaced by the image they encode
    (:func:`~detbench.data.images.probe_encoded`), the id is their content hash and the size and mtime are the file's
    now, so that :func:`build_index` takes the row only while the file is unchanged.

    Args:
        rel: the file's path relative to the suite root.
        abs_path: the file, as written.
        data: the bytes written to it.
        rgb: the RGB image (``PIL.Image.Image``) the bytes losslessly encode.

    Returns:
        The row, as :func:`build_index` would probe it.

    Raises:
        ValueError: the file does not hold as many bytes as ``data`` (see also
            :func:`~detbench.data.images.probe_encoded`).
    """
    from detbench.data import images

    st = os.stat(abs_path)
    if st.st_size != len(data):
        raise ValueError(f"{abs_path} holds {st.st_size} bytes, not the {len(data)} written")
    return _row(rel, images.bytes_digest(data), images.probe_encoded(data, rgb), st.st_size, st.st_mtime_ns)


def _probe_shard(args: tuple[str, str, str, list[int], str]) -> list[dict[str, Any]]:
    """Index rows of ``rows`` of one shard's image column, streaming it in record batches. Every row asked for
    gets a row: a shard that cannot be read (fully) marks the rest unreadable or undecodable, with the reason.
    """
    from detbench.data import images, shards

    rel_shard, abs_path, column, rows, mode = args
    wanted = set(rows)
    mtime_ns = _mtime_ns(Path(abs_path))
    out: list[dict[str, Any]] = []
    try:
        for start, values in shards.iter_rows(abs_path, [column]):
            for row, data in enumerate(values[column], start):
                if row not in wanted:
                    continue
                wanted.discard(row)
                info = images.probe_bytes(data, decode=(mode == "full"))
                out.append(
                    {
                        "path": str(shards.Locator(rel_shard, column, row)),
                        "image_id": images.bytes_digest(data) if data is not None else None,
                        "format": info.format,
                        "jpeg_quality": info.jpeg_quality,
                        "width": info.width,
                        "height": info.height,
                        "bytes": info.bytes,
                        "exif": info.exif,
                        "exif_tags": info.exif_tags,
                        "phash": info.phash,
                        "status": info.status,
                        "reason": info.reason,
                        "mtime_ns": mtime_ns,
                    }
                )
    except (OSError, ValueError, KeyError) as exc:  # pyarrow's ArrowIOError / ArrowInvalid / missing column
        status = "unreadable" if isinstance(exc, OSError) else "undecodable"
        reason = images.scrub(f"shard {rel_shard}: {type(exc).__name__}: {exc}")
        out.extend(_missing_row(str(shards.Locator(rel_shard, column, row)), status, reason) for row in wanted)
        wanted = set()
    out.extend(_missing_row(str(shards.Locator(rel_shard, column, row)), "not_a_file", "no such row") for row in wanted)
    return out


def probe_metadata(root: Path, paths: list[str]) -> pd.DataFrame:
    """The :data:`METADATA_COLUMNS` of files outside any index, probed as an index probes them (headers only).

    Args:
        root: the folder the paths are relative to.
        paths: file paths or shard locators (``<shard>#<column>:<row>``), relative to ``root``.

    Returns:
        One row per path, in order: ``path`` and the metadata columns (None where a file could not be read).
    """
    found: dict[str, dict[str, Any]] = {}
    by_shard: dict[tuple[str, str], list[int]] = {}
    for rel in paths:
        locator = parse_locator(rel)
        if locator is None:
            found[rel] = _probe_one((rel, str(root / rel), "fast"))
        else:
            by_shard.setdefault((locator.shard, locator.column), []).append(locator.row)
    for (shard, column), rows in by_shard.items():
        found.update((r["path"], r) for r in _probe_shard((shard, str(root / shard), column, rows, "fast")))
    return pd.DataFrame([{"path": p, **{c: found.get(p, {}).get(c) for c in METADATA_COLUMNS}} for p in paths])


def _missing_row(path: str, status: str, reason: str) -> dict[str, Any]:
    return {c: None for c in COLUMNS} | {"path": path, "status": status, "reason": reason}


def _mtime_ns(path: Path) -> int | None:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return None


def index_dir(suite: Suite, root: Path, mode: IdMode) -> Path:
    """Where the index of ``suite`` on ``root`` in ``mode`` is stored (not created here).

    Args:
        suite: the suite adapter (its identity, options included, is part of the key).
        root: the suite root, absolute and resolved (another spelling of the same folder is another key).
        mode: the id mode.

    Returns:
        ``$DETBENCH_HOME/indexes/<suite>/<16 hex characters of the key>``.
    """
    key = content_hash({"root": str(root), "suite": suite.identity(), "mode": mode})[:16]
    return home_subdir("indexes") / suite.name / key


def build_index(
    suite: Suite,
    root: Path,
    *,
    mode: IdMode = "full",
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Index:
    """Scan ``root`` with ``suite``'s adapter and write (or incrementally refresh) its index.

    Args:
        suite: the suite adapter, with its options.
        root: the suite root (``~`` expanded, resolved).
        mode: ``full`` (ids are content hashes) or ``fast`` (ids from size, mtime and path; checked unique).
        workers: processes probing files when there are at least 4000 to probe; None: one per CPU core.
        progress: called with ``(done, total)`` files probed now and then; None: silent.

    Returns:
        The written :class:`Index` (rows :data:`COLUMNS` plus a ``meta_*`` column per file-list column).

    Raises:
        InputError: ``root`` is not a folder.
        SuiteLayoutError: no image found, or a generator is named like a summary row.
        DataError: in ``fast`` mode, two different files share an id.
    """
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise InputError(f"suite root {root} is not a directory")
    started = time.perf_counter()
    entries: list[Entry] = list(suite.scan(root))
    if not entries:
        raise SuiteLayoutError(
            f"no images found for suite {suite.name!r} under {root}. It contains:\n{top_levels(root)}"
        )
    check_generator_names(entries, root)
    directory = index_dir(suite, root, mode)
    previous = _load_previous(directory)
    previous_shards = _previous_shards(directory) if previous else {}
    written = suite.written_rows(root) if mode == "full" else {}  # their ids are content hashes
    from_writer = 0

    probed: dict[str, dict[str, Any]] = {}
    todo: list[tuple[str, str, str]] = []
    shard_rows: dict[tuple[str, str], list[int]] = {}  # (shard, image column) -> rows to probe
    shard_prints: dict[str, dict[str, Any] | None] = {}  # shard -> its fingerprint now (None: unreadable)
    seen: set[str] = set()
    for e in entries:  # a file can belong to several generators (shared real pools): probe it once
        if e.path in seen:
            continue
        seen.add(e.path)
        if not all(map(is_valid_utf8, (e.path, e.generator, e.split))):
            probed[e.path] = _bad_name_row(e.path)
            continue
        old = previous.get(e.path)
        locator = parse_locator(e.path)
        if locator is None:
            if old is not None and _unchanged(old, root / e.path):
                probed[e.path] = old
            elif (mine := written.get(e.path)) is not None and _unchanged(mine, root / e.path):
                probed[e.path] = mine
                from_writer += 1
            else:
                todo.append((e.path, str(root / e.path), mode))
            continue
        if locator.shard not in shard_prints:  # taken before the shard is read: a change while reading shows later
            shard_prints[locator.shard] = fingerprint(root / locator.shard)
        now = shard_prints[locator.shard]
        unchanged = now is not None and now["footer"] is not None and previous_shards.get(locator.shard) == now
        if old is not None and unchanged and old.get("mtime_ns") == now["mtime_ns"]:
            probed[e.path] = old  # the shard is unchanged since it was indexed: size, mtime and footer
        else:
            shard_rows.setdefault((locator.shard, locator.column), []).append(locator.row)

    shard_tasks = [(shard, str(root / shard), column, rows, mode) for (shard, column), rows in shard_rows.items()]
    total = len(todo) + sum(len(rows) for rows in shard_rows.values())
    n_workers = workers if workers is not None else (os.cpu_count() or 1)
    done = 0

    def record(rows: list[dict[str, Any]], every: int) -> None:
        nonlocal done
        for row in rows:
            probed[row["path"]] = row
        before, done = done, done + len(rows)
        if progress and (done // every > before // every or done == total):
            progress(done, total)

    if total >= _PARALLEL_THRESHOLD and n_workers > 1:
        with ProcessPoolExecutor(max_workers=n_workers) as pool:
            for row in pool.map(_probe_one, todo, chunksize=256):
                record([row], 500)
            for rows in pool.map(_probe_shard, shard_tasks):
                record(rows, 500)
    else:
        for args in todo:
            record([_probe_one(args)], 200)
        for task in shard_tasks:
            record(_probe_shard(task), 200)

    if progress and not total:
        progress(len(probed), len(probed))  # everything reused: show a full bar, not an empty one
    records = []
    extra_columns: dict[str, None] = {}
    for e in entries:
        row = dict(probed[e.path])
        row.update(suite=suite.name, generator=display_name(e.generator), family=e.family,
                   split=display_name(e.split), label=int(e.label))
        for key, value in e.extra.items():
            row[f"{META_PREFIX}{key}"] = value
            extra_columns[f"{META_PREFIX}{key}"] = None
        records.append(row)
    df = pd.DataFrame.from_records(records, columns=[*COLUMNS, *extra_columns])
    df = df.astype(
        {
            "label": "int8",
            "jpeg_quality": "Int16",
            "width": "Int32",
            "height": "Int32",
            "exif": "boolean",
        }
    )
    for col in ("bytes", "mtime_ns"):  # exact: a column holding None is inferred as float64 (ns lost)
        df[col] = pd.array([r[col] for r in records], dtype="Int64")
    if mode == "fast":
        check_unique_ids(df)
    manifest = _manifest(suite, root, mode, df, reused=len(entries) - total - from_writer,
                         seconds=time.perf_counter() - started)
    if shard_prints:
        manifest["shards"] = {shard: shard_prints[shard] for shard in sorted(shard_prints)}
    directory.mkdir(parents=True, exist_ok=True)
    sweep_stale_tmp(directory)
    write_parquet_atomic(directory / "index.parquet", df)
    write_json_atomic(directory / "manifest.json", manifest)
    return Index(df, manifest, directory)


def index_suite(
    suite: Suite, root: Path | None, mode: IdMode = "full", *, workers: int | None = None, phases: Any | None = None
) -> Index:
    """Index ``suite`` on ``root``, or on the data it supplies itself (the demo builds its own), with a progress bar:
    what ``detbench index`` and the Python API do.

    Args:
        suite: the suite adapter, with its options.
        root: the suite root; None for a suite that supplies its data.
        mode: ``full`` (content ids) or ``fast`` (size, mtime and path).
        workers: worker processes probing files.
        phases: progress display (default: none).

    Returns:
        The written :class:`Index`.

    Raises:
        InputError: ``root`` is not a folder, or the suite needs one and none was given.
    """
    from detbench.data.suites import check_root
    from detbench.progress import Phases

    phases = phases or Phases(enabled=False)
    check_root(suite, root)
    path = Path(root).expanduser() if root is not None else suite.default_root(phases)
    if path is None:
        raise InputError(f"suite {suite.name!r} needs its data: pass --root PATH (see README, section {suite.name})")
    with phases.phase(f"index {suite.name}", None) as tracker:
        return build_index(suite, path, mode=mode, workers=workers, progress=tracker.update)


def check_generator_names(entries: list[Entry], root: Path) -> None:
    """Refuse generator names that the metrics tables reserve for their summary rows (in any case).

    Args:
        entries: the suite adapter's scan.
        root: the suite root, for the message.

    Raises:
        SuiteLayoutError: naming the folders to rename.
    """
    reserved = sorted({e.generator for e in entries if e.generator.lower() in SUMMARY_ROWS})
    if reserved:
        raise SuiteLayoutError(
            f"generator name(s) {', '.join(map(repr, reserved))} under {root} are reserved for the summary rows "
            f"({' and '.join(SUMMARY_ROWS)}, in any case) of every results table: rename those folders"
        )


def check_unique_ids(df: pd.DataFrame) -> None:
    """Fast-mode ids come from metadata, not bytes: two different files must never share one (they would share
    cached features).

    Args:
        df: index rows (``image_id`` and ``path``; rows without an id are ignored).

    Raises:
        DataError: naming two files that share an id.
    """
    ids = df.dropna(subset=["image_id"]).drop_duplicates("path")
    shared = ids[ids.duplicated("image_id", keep=False)]
    if len(shared):
        first = shared[shared["image_id"] == shared["image_id"].iloc[0]]["path"].tolist()
        raise DataError(f"fast index ids collide for different files ({', '.join(first[:2])}); index without --fast")


def _bad_name_row(rel: str) -> dict[str, Any]:
    return {"path": display_name(rel), "image_id": None, "format": None, "jpeg_quality": None, "width": None,
            "height": None, "bytes": None, "exif": None, "exif_tags": None, "phash": None, "status": "bad_name",
            "reason": BAD_NAME_REASON, "mtime_ns": None}


def _load_previous(directory: Path) -> dict[str, dict[str, Any]]:
    path = directory / "index.parquet"
    if not path.exists():
        return {}
    try:
        df = pd.read_parquet(path)
    except Exception:  # a damaged index is rebuilt, not trusted
        return {}
    cols = [c for c in COLUMNS if c not in ("suite", "generator", "family", "split", "label")]
    if set(cols) - set(df.columns):  # written before a column existed (exif_tags): every file is probed again
        return {}
    return {r["path"]: r for r in df[cols].to_dict("records")}


def _previous_shards(directory: Path) -> dict[str, Any]:
    """The shard fingerprints the previous index of ``directory`` recorded (empty when none or unreadable)."""
    try:
        shards = read_json(directory / "manifest.json").get("shards", {})
    except (OSError, ValueError, AttributeError):
        return {}
    return shards if isinstance(shards, dict) else {}


def _unchanged(old: dict[str, Any], abs_path: Path) -> bool:
    try:
        st = os.stat(abs_path)
    except OSError:
        return False
    return old.get("bytes") == st.st_size and old.get("mtime_ns") == st.st_mtime_ns


def index_hash(df: pd.DataFrame) -> str:
    """A content hash of what a run depends on: ids, paths, labels, generators, splits and statuses.

    Row order does not matter (rows are sorted first); other columns (sizes, mtimes, formats) do not count.

    Args:
        df: index rows.

    Returns:
        64 hex characters (:func:`~detbench.store.content_hash`).
    """
    cols = ["image_id", "path", "generator", "split", "label", "status"]
    rows = df[cols].astype(str).sort_values(["path", "generator", "split", "label"], kind="stable").to_numpy().tolist()
    return content_hash(rows)


def _manifest(suite: Suite, root: Path, mode: str, df: pd.DataFrame, reused: int, seconds: float) -> dict[str, Any]:
    counts: dict[str, Any] = {}
    for (gen, split, label), n in df[df["status"] == "ok"].groupby(["generator", "split", "label"]).size().items():
        counts.setdefault(gen, {}).setdefault(split, {})["fake" if label == 1 else "real"] = int(n)
    problems = df[df["status"] != "ok"]
    return {
        "suite": suite.identity(),
        "root": str(root),
        "id_mode": mode,
        "detbench_version": __version__,
        "n_images": int(len(df)),
        "n_usable": int((df["status"] == "ok").sum()),
        "counts": counts,
        "problems": {str(k): int(v) for k, v in problems["status"].value_counts().items()},
        "formats": {str(k): int(v) for k, v in df["format"].fillna("unknown").value_counts().items()},
        "index_hash": index_hash(df),
        "reused_rows": reused,
        "seconds": round(seconds, 3),
    }


def load_index(directory: Path) -> Index:
    """Read a stored index as written by :func:`build_index`.

    Args:
        directory: the index folder (see :func:`index_dir`).

    Returns:
        The :class:`Index`.

    Raises:
        OSError: ``index.parquet`` or ``manifest.json`` is missing or unreadable.
        ValueError: one of them is damaged (not Parquet, not JSON).
    """
    return Index(pd.read_parquet(directory / "index.parquet"), read_json(directory / "manifest.json"), directory)
