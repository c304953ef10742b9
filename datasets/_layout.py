"""Helpers shared by the on-disk suite adapters: folder listing, name matching, seeded capping."""

from __future__ import annotations

import difflib
import re
from collections import defaultdict
from collections.abc import Iterable, Iterator
from pathlib import Path

from detbench.suites import Entry, seeded_rank, walk_files

SPLIT_NAMES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}


def norm(name: str) -> str:
    """A folder name reduced for alias matching: lower case, letters and digits (``SDv1.4`` -> ``sdv14``)."""
    return re.sub(r"[^0-9a-z]", "", name.lower())


def subdirs(directory: Path) -> list[Path]:
    """The non-hidden sub-folders of ``directory`` (symlinks to folders included), sorted by name."""
    try:
        children = sorted(directory.iterdir())
    except OSError:
        return []
    return [c for c in children if not c.name.startswith(".") and c.is_dir()]


def rel(root: Path, path: Path) -> str:
    """``path`` relative to ``root`` as a POSIX string (``path`` is built by joining names onto ``root``)."""
    return path.relative_to(root).as_posix()


def image_paths(root: Path, directory: Path) -> Iterator[str]:
    """Relative (to ``root``) POSIX paths of every image file under ``directory``, sorted."""
    prefix = rel(root, directory)
    for sub, _abs in walk_files(directory):
        yield f"{prefix}/{sub}" if prefix != "." else sub


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, sorted(choices), n=2, cutoff=0.5)
    return f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""


def cap_per_group(entries: list[Entry], max_per_group: int, seed: int) -> list[Entry]:
    """At most ``max_per_group`` entries per (generator, split, label), chosen by a seeded hash of the path.

    The choice depends only on each path and the seed (not on listing order or on other files), so a file
    shared by several generators (a common real pool) is kept or dropped in all of them alike. The order of
    the kept entries is preserved. ``max_per_group <= 0`` keeps everything.
    """
    if max_per_group <= 0:
        return entries
    groups: dict[tuple[str, str, int], list[int]] = defaultdict(list)
    for i, e in enumerate(entries):
        groups[(e.generator, e.split, e.label)].append(i)
    keep: set[int] = set()
    for members in groups.values():
        ranked = sorted(members, key=lambda i: (seeded_rank(seed, entries[i].path), entries[i].path))
        keep.update(ranked[:max_per_group])
    return [e for i, e in enumerate(entries) if i in keep]

