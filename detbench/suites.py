"""The suite contract: how a dataset adapter describes its images and its evaluation protocols."""

from __future__ import annotations

import dataclasses
import os
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, ClassVar

from detbench.errors import SuiteLayoutError as SuiteLayoutError  # re-exported: adapters import it from here
from detbench.images import IMAGE_EXTENSIONS

FAMILIES = ("gan", "diffusion", "autoregressive", "commercial", "synthetic", "real", "unknown")


@dataclass(frozen=True)
class Protocol:
    """Train on some generators' ``train_split``, evaluate on every (or the listed) generators' ``eval_split``.

    Model selection uses ``heldout_fraction`` of the training rows (seeded, stratified by label), never
    the evaluation generators.
    """

    name: str
    train_generators: tuple[str, ...]
    eval_generators: tuple[str, ...] | None = None
    train_split: str = "train"
    eval_split: str = "val"
    heldout_fraction: float = 0.1
    description: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Entry:
    """One image found by a suite scan (``path`` is relative to the suite root, POSIX style)."""

    path: str
    generator: str
    split: str
    label: int
    family: str = "unknown"


@dataclass(frozen=True)
class NoOptions:
    """A suite without ``--set`` options."""


class Suite(ABC):
    """Base class of suite adapters (register them in ``detbench.registry.SUITES``)."""

    name: ClassVar[str]
    version: ClassVar[int]  # bump whenever scan() would return different rows for the same tree
    default_backbone: ClassVar[str]
    default_protocol: ClassVar[str]
    Options: ClassVar[type] = NoOptions

    def __init__(self, options: Any | None = None) -> None:
        self.options = options if options is not None else self.Options()
        self.ignored: list[str] = []  # folders under the root that the last scan skipped (relative paths)

    def default_root(self, phases: Any | None = None) -> Path | None:
        """The root used when the user gives none (the demo builds itself); None means --root is required."""
        return None

    def builds_own_root(self) -> bool:
        """Whether :meth:`default_root` supplies the data when no ``--root`` is given (checked before any work)."""
        return type(self).default_root is not Suite.default_root

    @abstractmethod
    def scan(self, root: Path) -> Iterable[Entry]:
        """Every image under ``root`` with its generator, split and label (raise SuiteLayoutError if none)."""

    @abstractmethod
    def protocols(self, generators: list[str]) -> dict[str, Protocol]:
        """Protocols available for the generators found in the index."""

    def identity(self) -> dict[str, Any]:
        return {"suite": self.name, "adapter_version": self.version, "options": dataclasses.asdict(self.options)}


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


def display_name(path: str | os.PathLike[str]) -> str:
    """``path`` as text any file, table or terminal can hold: the bytes of a name that is not valid UTF-8 (which
    Python keeps as surrogates) are shown escaped, e.g. ``bad\\xff.png``."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


BAD_NAME_REASON = "the file or folder name is not valid UTF-8; rename it to use the file"  # status bad_name


def is_valid_utf8(name: str) -> bool:
    """Whether ``name`` (a path or folder name read from disk) is valid UTF-8, i.e. holds no surrogates."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


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
