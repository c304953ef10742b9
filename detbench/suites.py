"""The suite contract: how a dataset adapter describes its images and its evaluation protocols."""

from __future__ import annotations

import dataclasses
import os
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, ClassVar

from detbench.images import IMAGE_EXTENSIONS
from detbench.preprocess import NO_PROFILE, EvalProfile, eval_profile

FAMILIES = ("gan", "diffusion", "autoregressive", "commercial", "synthetic", "real", "unknown")


@dataclass(frozen=True)
class Protocol:
    """Train on some generators' ``train_split``, evaluate on every (or the listed) generators' ``eval_split``.

    Model selection uses ``heldout_fraction`` of the training rows (seeded, stratified by label), never
    the evaluation generators. A cross-suite protocol names ``train_suite`` (and its ``train_protocol``,
    default: that suite's default): its training rows come from that suite's protocol, on the root given by
    ``--train-root``, and ``train_generators`` is empty.
    """

    name: str
    train_generators: tuple[str, ...]
    eval_generators: tuple[str, ...] | None = None
    train_split: str = "train"
    eval_split: str = "val"
    heldout_fraction: float = 0.1
    description: str = ""
    train_suite: str | None = None
    train_protocol: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        for key in ("train_suite", "train_protocol"):  # absent unless set: run ids of in-suite protocols unchanged
            if out[key] is None:
                del out[key]
        return out


@dataclass(frozen=True)
class Entry:
    """One image found by a suite scan.

    ``path`` is relative to the suite root, POSIX style: a file, or an image stored in a Parquet shard
    (``detbench.shards`` locator ``<shard>.parquet#<column>:<row>``). ``extra`` holds columns of a file list
    that detbench does not interpret; the index keeps them as ``meta_<name>`` columns.
    """

    path: str
    generator: str
    split: str
    label: int
    family: str = "unknown"
    extra: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class NoOptions:
    """A suite without ``--set`` options."""


@dataclass(frozen=True)
class EvalProfileOption:
    """Base of suite options with an ``eval_profile``: the test sets' evaluation convention (a name from
    ``detbench.preprocess.EVAL_PROFILES``, or ``detector``: none). Subclasses override the default."""

    eval_profile: str = NO_PROFILE

    def __post_init__(self) -> None:
        eval_profile(self.eval_profile)  # raises ConfigError for an unknown name


class SuiteLayoutError(ValueError):
    """The root does not look like this suite; the message says what was found and what is accepted."""


class Suite(ABC):
    """Base class of suite adapters (register them in ``detbench.registry.SUITES``)."""

    name: ClassVar[str]
    version: ClassVar[int]  # bump whenever scan() would return different rows for the same tree
    default_backbone: ClassVar[str]
    default_protocol: ClassVar[str]
    Options: ClassVar[type] = NoOptions
    headline_metrics: ClassVar[tuple[str, ...]] = ("acc",)  # what `detbench leaderboard` shows by default

    def __init__(self, options: Any | None = None) -> None:
        self.options = options if options is not None else self.Options()
        self.ignored: list[str] = []  # folders under the root that the last scan skipped (relative paths)
        self.notes: list[str] = []  # what else the last scan reports (rows skipped, missing files), one line each

    def default_root(self, phases: Any | None = None) -> Path | None:
        """The root used when the user gives none (the demo builds itself); None means --root is required."""
        return None

    @abstractmethod
    def scan(self, root: Path) -> Iterable[Entry]:
        """Every image under ``root`` with its generator, split and label (raise SuiteLayoutError if none)."""

    @abstractmethod
    def protocols(self, generators: list[str]) -> dict[str, Protocol]:
        """Protocols available for the generators found in the index."""

    def identity(self) -> dict[str, Any]:
        """What the index and the training depend on: the adapter and its options, except ``eval_profile``
        (an evaluation choice: part of a run's identity when its detector applies it, see ``eval_profiles``)."""
        options = {k: v for k, v in dataclasses.asdict(self.options).items() if k != "eval_profile"}
        return {"suite": self.name, "adapter_version": self.version, "options": options}

    def eval_profiles(self, generators: list[str]) -> dict[str, EvalProfile]:
        """Generator -> the evaluation convention its test set uses (from the ``eval_profile`` option);
        empty when the suite imposes none."""
        profile = eval_profile(getattr(self.options, "eval_profile", NO_PROFILE))
        return {} if profile is None else {g: profile for g in generators}


def walk_files(root: Path) -> Iterator[tuple[str, Path]]:
    """Yield ``(relative posix path, absolute path)`` for every image-like file under ``root``, sorted.

    Follows directory symlinks once (a loop is visited once), ignores hidden entries, and never raises on
    unreadable directories (they are simply not listed; files inside them cannot be indexed anyway).
    """
    root = Path(root)
    seen: set[tuple[int, int]] = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True, onerror=lambda _exc: None):
        try:
            st = os.stat(dirpath)
        except OSError:
            dirnames[:] = []
            continue
        if (st.st_dev, st.st_ino) in seen:
            dirnames[:] = []
            continue
        seen.add((st.st_dev, st.st_ino))
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        rel_dir = PurePosixPath(Path(dirpath).relative_to(root).as_posix())
        for name in sorted(filenames):
            if name.startswith(".") or PurePosixPath(name).suffix.lower() not in IMAGE_EXTENSIONS:
                continue
            rel = (rel_dir / name).as_posix() if str(rel_dir) != "." else name
            yield rel, Path(dirpath) / name


def safe_join(root: Path, rel: str) -> Path:
    """``root / rel`` for a relative path from an index, refusing absolute paths and ``..`` escapes."""
    pure = PurePosixPath(rel)
    if pure.is_absolute() or ".." in pure.parts or not pure.parts:
        raise ValueError(f"path {rel!r} in the index escapes the suite root {root}")
    return Path(root) / pure


def top_levels(root: Path, depth: int = 2, limit: int = 12) -> str:
    """A short listing of the first folder levels under ``root``, for layout error messages."""
    lines: list[str] = []

    def visit(path: Path, level: int) -> None:
        try:
            children = sorted(p for p in path.iterdir() if not p.name.startswith("."))
        except OSError:
            return
        for child in children[:limit]:
            lines.append("  " * level + child.name + ("/" if child.is_dir() else ""))
            if child.is_dir() and level + 1 < depth:
                visit(child, level + 1)
        if len(children) > limit:
            lines.append("  " * level + f"... ({len(children) - limit} more)")

    visit(Path(root), 0)
    return "\n".join(lines) or "  (empty)"
