"""Helpers shared by the suite adapters: folder listing, name matching, seeded capping, label folders, the
ProGAN training set (CNNDetection) and its protocols, and label values of file lists.
"""

from __future__ import annotations

import difflib
import re
from collections import defaultdict
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from detbench.data.suites import Entry, Protocol, Suite, SuiteLayoutError, seeded_rank, top_levels, walk_files

SPLIT_NAMES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}
# split values written in a table (a file list's split column, a shard's split column or name): SPLIT_NAMES plus
# the synonyms lists use; folder names keep to SPLIT_NAMES (a folder named dev is a generator there)
SPLIT_VALUES = {**SPLIT_NAMES, "training": "train", "dev": "val", "testing": "test"}


def split_value(value: str) -> str:
    """A split as a table writes it, normalised: lower case, and the usual synonyms mapped to train/val/test
    (``Train``, ``training`` -> train; ``Val``, ``valid``, ``validation``, ``dev`` -> val; ``testing`` -> test).

    Args:
        value: the cell (or option) text.

    Returns:
        The split's name; any other value in lower case (empty stays empty).
    """
    text = value.strip().lower()
    return SPLIT_VALUES.get(text, text)


def norm(name: str) -> str:
    """A folder name reduced for alias matching: lower case, letters and digits (``SDv1.4`` -> ``sdv14``).

    Args:
        name: a folder or generator name.

    Returns:
        ``name`` lower-cased with everything but ``0-9a-z`` removed.
    """
    return re.sub(r"[^0-9a-z]", "", name.lower())


def slug(name: str) -> str:
    """A model or folder name as a generator key: lower case, letters and digits kept, every other run as one
    hyphen (``FLUX.1-dev`` -> ``flux-1-dev``, ``Kandinsky_2_2`` -> ``kandinsky-2-2``).

    Args:
        name: the name as the data writes it.

    Returns:
        The key; :func:`norm` of ``name`` when nothing alphanumeric is left to join.
    """
    text = "".join(c if c.isalnum() else "-" for c in name.strip().lower())
    return "-".join(part for part in text.split("-") if part) or norm(name)


def subdirs(directory: Path) -> list[Path]:
    """The non-hidden sub-folders of ``directory`` (symlinks to folders included), sorted by name.

    Args:
        directory: the folder to list.

    Returns:
        The sub-folders; empty when ``directory`` cannot be listed.
    """
    try:
        children = sorted(directory.iterdir())
    except OSError:
        return []
    return [c for c in children if not c.name.startswith(".") and c.is_dir()]


def rel(root: Path, path: Path) -> str:
    """``path`` relative to ``root`` as a POSIX string (``path`` is built by joining names onto ``root``).

    Args:
        root: the suite root.
        path: a path under ``root``.

    Returns:
        The relative POSIX path (``.`` for ``root`` itself).
    """
    return path.relative_to(root).as_posix()


def image_paths(root: Path, directory: Path) -> Iterator[str]:
    """Relative (to ``root``) POSIX paths of every image file under ``directory``, sorted.

    Args:
        root: the suite root the paths are relative to.
        directory: the folder to walk (``root`` itself or a folder under it).

    Yields:
        One relative path per image-like file (see :func:`detbench.data.suites.walk_files`).
    """
    prefix = rel(root, directory)
    for sub, _abs in walk_files(directory):
        yield f"{prefix}/{sub}" if prefix != "." else sub


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """A "did you mean" hint naming up to two choices close to ``name``.

    Args:
        name: the name the user gave.
        choices: the accepted names.

    Returns:
        The hint with a leading space (" Did you mean 'a' or 'b'?"), or an empty string when nothing is close.
    """
    close = difflib.get_close_matches(name, sorted(choices), n=2, cutoff=0.5)
    return f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""


def cap_per_group(entries: list[Entry], max_per_group: int, seed: int) -> list[Entry]:
    """At most ``max_per_group`` entries per (generator, split, label), chosen by a seeded hash of the path.

    The choice depends only on each path and the seed (not on listing order or on other files), so a file
    shared by several generators (a common real pool) is kept or dropped in all of them alike.

    Args:
        entries: the scanned entries.
        max_per_group: entries kept per (generator, split, label); ``<= 0`` keeps everything.
        seed: seeds the hash that chooses the kept entries.

    Returns:
        The kept entries, in their original order.
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



# ------------------------------------------------------------------------ label folders and ProGAN training

LABEL_FOLDERS = {"0_real": 0, "1_fake": 1}  # CNNDetection's convention, used by most test collections
TRAIN_FOLDERS = ("train", "val", "progan_train", "progan_val")
CLASSES_4 = ("car", "cat", "chair", "horse")
CLASSES_20 = (
    "airplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable",
    "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip


def label_folders(folder: Path) -> dict[int, Path]:
    """The ``0_real``/``1_fake`` sub-folders (any case) of ``folder``.

    Args:
        folder: the folder to look in.

    Returns:
        Label (0 real, 1 fake) -> its sub-folder; only the labels found.
    """
    return {LABEL_FOLDERS[d.name.lower()]: d for d in subdirs(folder) if d.name.lower() in LABEL_FOLDERS}


def labelled_images(root: Path, folder: Path, ignored: list[str]) -> Iterator[tuple[str, int]]:
    """``(path, label)`` of every image in ``folder/{0_real,1_fake}``, or in ``folder/<class>/{0_real,1_fake}``.

    The class form is used when ``folder`` has no label folder of its own (the CNNDetection convention: a
    multi-class test set is the union of its classes).

    Args:
        root: the suite root the paths are relative to.
        folder: the test set's folder.
        ignored: collects (appends to) the relative paths of folders that fit neither form.

    Yields:
        ``(relative POSIX path, label)`` with label 0 real, 1 fake.
    """
    own = label_folders(folder)
    if own:
        ignored.extend(rel(root, d) for d in subdirs(folder) if d not in own.values())
        for label, label_dir in sorted(own.items()):
            for path in image_paths(root, label_dir):
                yield path, label
        return
    for class_dir in subdirs(folder):
        inner = label_folders(class_dir)
        if not inner:
            ignored.append(rel(root, class_dir))
            continue
        ignored.extend(rel(root, d) for d in subdirs(class_dir) if d not in inner.values())
        for label, label_dir in sorted(inner.items()):
            for path in image_paths(root, label_dir):
                yield path, label


def progan_training_folders(root: Path, top: Path, ignored: list[str]) -> list[tuple[str, Path]]:
    """``(split, folder of ProGAN class folders)`` for the training folders directly under ``top``.

    Accepted: ``train/progan/<class>`` (UniversalFakeDetect), ``train/<class>`` (CNNDetection) and
    ``progan_train/<class>``; ``val`` and ``progan_val`` give split val.

    Args:
        root: the suite root the ignored paths are relative to.
        top: the folder holding ``train``/``val``/``progan_train``/``progan_val``.
        ignored: collects (appends to) the other folders found inside a training folder.

    Returns:
        ``(split, folder)`` pairs, split ``train`` or ``val``.
    """
    found: list[tuple[str, Path]] = []
    for child in subdirs(top):
        name = child.name.lower()
        if name not in TRAIN_FOLDERS:
            continue
        split = "val" if name.endswith("val") else "train"
        progan = [d for d in subdirs(child) if d.name.lower() == "progan"]
        if progan:
            ignored.extend(rel(root, d) for d in subdirs(child) if d not in progan)
            found.extend((split, d) for d in progan)
        elif any(d.name.lower() in CLASSES_20 for d in subdirs(child)):
            found.append((split, child))  # CNNDetection: the split folder holds the classes
        else:
            ignored.append(rel(root, child))
    return found


def progan_training_entries(root: Path, split: str, progan: Path, ignored: list[str]) -> Iterator[Entry]:
    """Rows of a ProGAN training folder: generator ``progan-<class>`` so protocols can pick classes.

    Args:
        root: the suite root the paths are relative to.
        split: the split of every row (``train`` or ``val``).
        progan: the folder of class folders (each with ``0_real``/``1_fake``).
        ignored: collects (appends to) the other folders found inside a class folder.

    Yields:
        One :class:`~detbench.data.suites.Entry` per image (family ``real`` or ``gan``).
    """
    for class_dir in subdirs(progan):
        inner = label_folders(class_dir)
        ignored.extend(rel(root, d) for d in subdirs(class_dir) if d not in inner.values())
        for label, label_dir in sorted(inner.items()):
            for path in image_paths(root, label_dir):
                yield Entry(
                    path=path,
                    generator=f"progan-{class_dir.name.lower()}",
                    split=split,
                    label=label,
                    family="real" if label == 0 else "gan",
                )


def progan_protocols(generators: list[str], evaluated: tuple[str, ...], eval_split: str) -> dict[str, Protocol]:
    """``progan-4class`` and ``progan-20class``: train on those ProGAN classes, evaluate ``evaluated``.

    Args:
        generators: the generators scanned (a missing ProGAN class is named in the description).
        evaluated: the generators evaluated.
        eval_split: the split evaluated.

    Returns:
        Protocol name -> :class:`~detbench.data.suites.Protocol`.
    """
    out = {}
    for name, classes in (("progan-4class", CLASSES_4), ("progan-20class", CLASSES_20)):
        missing = [c for c in classes if f"progan-{c}" not in generators]
        note = f" (missing from this root: {', '.join(missing)})" if missing else ""
        out[name] = Protocol(
            name=name,
            train_generators=tuple(f"progan-{c}" for c in classes),
            eval_generators=evaluated,
            eval_split=eval_split,
            description=f"train on ProGAN {len(classes)} classes{note}, evaluate on the "
            f"{len(evaluated)} test sets",
        )
    return out






# ------------------------------------------------------------------------ cross-suite shortcuts


def cross_suite_protocols(eval_generators: tuple[str, ...] | None, eval_split: str) -> dict[str, Protocol]:
    """The training setups of the published tables on test-only collections, trained on another suite.

    ProGAN 4 or 20 classes of the CNNDetection set (NPR, FreqNet, CNNSpot, AIDE) and GenImage SD v1.4 (AIDE's
    Chameleon table); each needs ``--train-root``. ``--train-suite`` reaches any other suite's protocol.

    Args:
        eval_generators: the generators evaluated (None: every generator).
        eval_split: the split evaluated.

    Returns:
        Protocol name (``train-progan-4class`` ...) -> :class:`~detbench.data.suites.Protocol`.
    """
    setups = (
        ("train-progan-4class", "universalfakedetect", "progan-4class", "ProGAN 4 classes (CNNDetection train set)"),
        ("train-progan-20class", "universalfakedetect", "progan-20class", "ProGAN 20 classes (CNNDetection train set)"),
        ("train-genimage-sdv14", "genimage", "sdv14", "GenImage SD v1.4 train"),
    )
    return {
        name: Protocol(
            name=name,
            train_generators=(),
            eval_generators=eval_generators,
            eval_split=eval_split,
            train_suite=suite,
            train_protocol=protocol,
            description=f"train on {what} (suite {suite}, protocol {protocol}; pass its root as --train-root), "
            f"evaluate here",
        )
        for name, suite, protocol, what in setups
    }


class SplitsFromDataSuite(Suite):
    """A suite whose splits come from the data itself (folder names, a split column, shard names), recorded per
    generator in ``self.splits`` while scanning; its options carry ``split_default``, the split of unmarked images.

    Protocols: ``train-on-<generator>`` for each generator with a train split, evaluated on every generator's
    :attr:`default_eval_split`.
    """

    def __init__(self, options: Any | None = None) -> None:
        super().__init__(options)
        self.splits: dict[str, set[str]] = {}  # generator -> splits found by the last scan

    def keep_splits(self, entries: list[Entry]) -> None:
        """Remember the splits each generator has in this scan (for :attr:`default_eval_split` and protocols).

        Args:
            entries: the scan's entries.
        """
        self.splits = {}
        for entry in entries:
            self.splits.setdefault(entry.generator, set()).add(entry.split)

    @property
    def default_eval_split(self) -> str:
        """The evaluation split: test if the data has a test split, else val, else ``split_default``.

        Returns:
            The split name.
        """
        found = set().union(*self.splits.values()) if self.splits else set()
        return next((s for s in ("test", "val") if s in found), self.options.split_default)

    def protocols(self, generators: list[str]) -> dict[str, Protocol]:
        """``train-on-<generator>`` for each generator with a train split, evaluated on every generator.

        Args:
            generators: the generators in the index (every generator gets a protocol when nothing was scanned in
                this process).

        Returns:
            Protocol name -> :class:`~detbench.data.suites.Protocol`.
        """
        eval_split = self.default_eval_split
        trainable = [g for g in generators if not self.splits or "train" in self.splits.get(g, ())]
        return {
            f"train-on-{g}": Protocol(
                name=f"train-on-{g}",
                train_generators=(g,),
                eval_split=eval_split,
                description=f"train on {g} train, evaluate on every generator's {eval_split}",
            )
            for g in trainable
        }


def unrecognised_root(
    root: Path, dataset: str, accepted: str, *, several: bool = False, depth: int = 2, missing: str = ""
) -> SuiteLayoutError:
    """The error for a root that holds none of a dataset's accepted layouts: what is accepted, and what was found.

    Args:
        root: the suite root.
        dataset: the dataset's name as its authors write it.
        accepted: the accepted layout(s), drawn as trees.
        several: ``accepted`` shows more than one layout.
        depth: how many folder levels of ``root`` to show.
        missing: what the root lacks, named in the message's first line (empty: not named).

    Returns:
        A :class:`~detbench.data.suites.SuiteLayoutError` to raise.
    """
    layouts = "layouts" if several else "layout"
    lacking = f": no {missing}" if missing else ""
    return SuiteLayoutError(
        f"{root} does not look like {dataset}{lacking}. Accepted {layouts}:\n{accepted}\n"
        f"Found:\n{top_levels(root, depth=depth)}"
    )
