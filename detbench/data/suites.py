"""The suite contract: how a dataset adapter describes its images and its evaluation protocols."""

from __future__ import annotations

import dataclasses
import hashlib
import os
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, ClassVar

from detbench.data.images import IMAGE_EXTENSIONS
from detbench.data.preprocess import NO_PROFILE, EvalProfile, eval_profile
from detbench.errors import InputError
from detbench.errors import SuiteLayoutError as SuiteLayoutError  # re-exported: adapters import it from here

FAMILIES = ("gan", "diffusion", "autoregressive", "commercial", "synthetic", "real", "unknown")
EVAL_PROTOCOL = "eval"  # every suite's protocol that trains nothing (released weights, training-free detectors)

# Compute profiles: how much work a suite's images call for. Detectors read the profile (never the suite's name)
# and scale their defaults to it (Detector.profile_defaults).
COMPUTE_PROFILES: dict[str, str] = {
    "full": "real benchmark data: the detectors' paper settings",
    "small": "a CPU-sized stand-in (the embedded demo): small crops, short training, within minutes on 2 cores",
}

# Test-set conventions: which family of published evaluation set a suite is, so that a detector can apply the
# preprocessing its original used on that family (e.g. NPR's per-test-set table: square Resize((256, 256)) on
# ForenSynths-style sets, native size on GANGen). Suites publish a tag; detectors map tags to preprocessing;
# neither names the other. None: no published convention (the detector's own default applies).
EVAL_CONVENTIONS: dict[str, str] = {
    "forensynths": "CNNDetection (ForenSynths) test sets: ProGAN-style GAN images of about 256 px",
    "universalfakedetect": "UniversalFakeDetect: the ForenSynths domains plus its diffusion/autoregressive sets",
    "gangen": "GANGen-Detection: GAN images at their native sizes",
    "diffusionforensics": "DIRE's DiffusionForensics test sets",
    "aigcdetect": "AIGCDetectBenchmark: 16 GAN and diffusion test sets of mixed sizes",
    "genimage": "GenImage: ImageNet-conditioned generators, PNG fakes of fixed sizes vs ImageNet JPEG reals",
    "chameleon": "Chameleon (AIDE): human-fooling fakes vs reals of mixed sizes",
    "synthbuster": "Synthbuster: RAISE-1k photographs (the real_RAISE_1k PNGs) vs commercial/open generators",
}

# What every image of a suite shows, when the suite is of one kind: a fact detectors may require
# (Detector.requires_content, e.g. a face detector), checked by the runner. A suite publishes it (Suite.content), or
# its options take it from the user (a ``content`` option, Suite.declared_content); "" means anything.
CONTENTS: dict[str, str] = {
    "faces": "every image is a face crop (real photographs and generated faces)",
}


def check_content_option(value: str) -> None:
    """Refuse a ``content`` option that is no :data:`CONTENTS` fact.

    Args:
        value: the option ("" or a key of :data:`CONTENTS`).

    Raises:
        ConfigError: naming the known facts.
    """
    if value and value not in CONTENTS:
        from detbench.config import ConfigError

        raise ConfigError(f"content must be one of {', '.join(CONTENTS)} (or empty: anything); got {value!r}")


@dataclass(frozen=True)
class Protocol:
    """Train on some generators' ``train_split``, evaluate on every (or the listed) generators' ``eval_split``.

    Model selection uses ``heldout_fraction`` of the training rows (seeded, stratified by label), or, with
    ``heldout_split`` set, every usable row of the training generators in that split (then every training row
    trains); never the evaluation rows. Detectors choose between them (``train.holdout``,
    :mod:`detbench.engine.holdout`).
    A cross-suite protocol names ``train_suite`` (and its ``train_protocol``,
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
    heldout_split: str | None = None  # select on this split of the training generators (e.g. "val"), not a fraction
    balance: str | None = None  # "generator": equal real and fake counts from each training generator; None: pooled
    facts: dict[str, Any] | None = field(default=None, compare=False)  # what the run records; never in the identity

    @property
    def trains(self) -> bool:
        """Whether the protocol trains: on its training generators, or on another suite (the ``eval`` protocol
        does neither).
        """
        return bool(self.train_generators) or self.train_suite is not None

    def to_dict(self) -> dict[str, Any]:
        """The protocol as a plain dict, as it enters the run identity.

        Returns:
            The dataclass fields; ``train_suite``, ``train_protocol``, ``heldout_split`` and ``balance`` only when
            set (so run ids of protocols without them stay as they were before these fields existed); never ``facts``.
        """
        out = dataclasses.asdict(self)
        del out["facts"]
        for key in ("train_suite", "train_protocol", "heldout_split", "balance"):  # absent unless set: earlier ids kept
            if out[key] is None:
                del out[key]
        return out


@dataclass(frozen=True)
class Entry:
    """One image found by a suite scan.

    ``path`` is relative to the suite root, POSIX style: a file, or an image stored in a Parquet or Arrow shard
    (``detbench.data.shards`` locator ``<shard>.parquet#<column>:<row>``, or ``.arrow``). ``extra`` holds columns
    of a file list that detbench does not interpret; the index keeps them as ``meta_<name>`` columns.
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
    """Base of suite options with ``eval_profile``: an explicit evaluation preprocessing for the suite's test
    sets, a name from ``detbench.data.preprocess.EVAL_PROFILES`` (the originals' transforms in neutral terms), or
    ``detector`` (the default): each detector's own choice, e.g. from the suite's ``eval_convention`` tag.
    Detectors with ``follows_eval_profiles`` apply it; it is then part of the run identity.
    """

    eval_profile: str = NO_PROFILE

    def __post_init__(self) -> None:
        eval_profile(self.eval_profile)  # raises ConfigError for an unknown name


class Suite(ABC):
    """Base class of suite adapters (register them in ``detbench.registry.SUITES``)."""

    name: ClassVar[str]
    version: ClassVar[int]  # bump whenever scan() would return different rows for the same tree
    default_backbone: ClassVar[str]
    default_protocol: ClassVar[str]
    compute_profile: ClassVar[str] = "full"  # a key of COMPUTE_PROFILES; detectors scale their defaults to it
    eval_convention: ClassVar[str | None] = None  # a key of EVAL_CONVENTIONS, read by detectors (RunContext)
    content: ClassVar[str] = ""  # a key of CONTENTS when every image shows that (detectors may require it); "": any
    Options: ClassVar[type] = NoOptions
    headline_metrics: ClassVar[tuple[str, ...]] = ("acc",)  # what `detbench leaderboard` shows by default

    def __init__(self, options: Any | None = None) -> None:
        self.options = options if options is not None else self.Options()
        self.ignored: list[str] = []  # folders under the root that the last scan skipped (relative paths)
        self.notes: list[str] = []  # what else the last scan reports (rows skipped, missing files), one line each

    def default_root(self, phases: Any | None = None) -> Path | None:
        """The root used when the user gives none (the demo builds itself); None means --root is required.

        Args:
            phases: a :class:`detbench.progress.Phases` to report a build on, or None for no progress.

        Returns:
            The root folder, or None.
        """
        return None

    def written_rows(self, root: Path) -> Mapping[str, dict[str, Any]]:
        """Index rows of the files this adapter wrote under ``root`` in this process (:meth:`default_root`'s build),
        as :func:`detbench.data.index.written_row` made them while writing: a ``full`` index takes each row instead
        of reading the file back, as long as the file's size and mtime are still those recorded.

        Args:
            root: the suite root, resolved.

        Returns:
            Path relative to ``root`` -> row; empty (the default) when the adapter wrote nothing there.
        """
        return {}

    def builds_own_root(self) -> bool:
        """Whether :meth:`default_root` supplies the data when no ``--root`` is given (checked before any work).

        Returns:
            True when the subclass overrides :meth:`default_root`.
        """
        return type(self).default_root is not Suite.default_root

    @abstractmethod
    def scan(self, root: Path) -> Iterable[Entry]:
        """Every image under ``root`` with its generator, split and label.

        Args:
            root: the suite root the user gave (or :meth:`default_root`).

        Returns:
            The entries, paths relative to ``root``; adapters also fill ``self.ignored`` and ``self.notes``.

        Raises:
            SuiteLayoutError: ``root`` does not look like the suite or holds no image.
        """

    @abstractmethod
    def protocols(self, generators: list[str]) -> dict[str, Protocol]:
        """The suite's training protocols for the generators found in the index (``eval`` is added by the base).

        Args:
            generators: the generators in the index.

        Returns:
            Protocol name -> :class:`Protocol`.
        """

    @property
    def default_eval_split(self) -> str:
        """The split the ``eval`` protocol scores when the suite has no training protocol to copy it from."""
        return "test"

    def all_protocols(self, generators: list[str]) -> dict[str, Protocol]:
        """:meth:`protocols` plus ``eval``: evaluate what the default protocol evaluates, train nothing.

        Args:
            generators: the generators in the index.

        Returns:
            Protocol name -> :class:`Protocol`, ``eval`` included.
        """
        protocols = dict(self.protocols(generators))
        if EVAL_PROTOCOL in protocols:
            raise ValueError(f"suite {self.name} defines a protocol named {EVAL_PROTOCOL!r}, which the base reserves")
        reference = protocols.get(self.default_protocol) or next(iter(protocols.values()), None)
        split = reference.eval_split if reference else self.default_eval_split
        protocols[EVAL_PROTOCOL] = Protocol(
            name=EVAL_PROTOCOL,
            train_generators=(),
            eval_generators=reference.eval_generators if reference else None,
            eval_split=split,
            heldout_fraction=0.0,
            description=f"train nothing, evaluate every generator's {split} split (released weights or a "
            "training-free detector)",
        )
        return protocols

    def declared_content(self) -> str:
        """What every image shows: the ``content`` option where the suite has one and the user set it (a folder of
        face crops), else the class's :attr:`content` fact.

        Returns:
            A key of :data:`CONTENTS`, or "" (anything).
        """
        return getattr(self.options, "content", "") or self.content

    def identity(self) -> dict[str, Any]:
        """What the index and the training depend on: the adapter and its options, except ``eval_profile`` and
        ``content``.

        ``eval_profile`` is an evaluation choice: part of a run's identity when its detector applies it (see
        :meth:`eval_profiles`). ``content`` declares what the images show; it changes no row, only which detectors
        may run.

        Returns:
            ``{"suite", "adapter_version", "options"}``.
        """
        options = {k: v for k, v in dataclasses.asdict(self.options).items() if k not in ("eval_profile", "content")}
        return {"suite": self.name, "adapter_version": self.version, "options": options}

    def eval_profiles(self, generators: list[str]) -> dict[str, EvalProfile]:
        """Generator -> the evaluation convention its test set uses (from the ``eval_profile`` option).

        Args:
            generators: the generators evaluated.

        Returns:
            One :class:`~detbench.data.preprocess.EvalProfile` per generator; empty when the suite imposes none.
        """
        profile = eval_profile(getattr(self.options, "eval_profile", NO_PROFILE))
        return {} if profile is None else {g: profile for g in generators}

    def sample_eval(self, evaluation: Any) -> tuple[Any, dict[str, Any] | None]:
        """The evaluation rows a run scores, and what was sampled (None: every row).

        Suites whose ``Options`` have ``eval_per_class`` (and ``eval_per_class_fallback``, ``cap_seed``)
        sample with :func:`balanced_eval_sample`; the options are part of the suite identity, so of the run id.

        Args:
            evaluation: the evaluation rows (a DataFrame of the index).

        Returns:
            The rows to score and the sampling facts of :func:`balanced_eval_sample`, or ``(evaluation, None)``.
        """
        per_class = int(getattr(self.options, "eval_per_class", 0) or 0)
        if per_class <= 0:
            return evaluation, None
        fallback = int(getattr(self.options, "eval_per_class_fallback", 0) or 0)
        return balanced_eval_sample(evaluation, per_class, fallback, int(getattr(self.options, "cap_seed", 0)))


def seeded_rank(seed: int, path: str) -> bytes:
    """A sort key that orders paths pseudo-randomly by ``seed``, independent of listing order and other files.

    Args:
        seed: the ordering's seed.
        path: the path to rank.

    Returns:
        An 8-byte BLAKE2b digest of ``seed`` and ``path``.
    """
    return hashlib.blake2b(f"{seed}:{path}".encode(), digest_size=8).digest()


def balanced_eval_sample(rows: Any, per_class: int, fallback: int, seed: int) -> tuple[Any, dict[str, Any]]:
    """Equal real and fake counts per generator, as UniversalFakeDetect's ``validate.py`` samples.

    Args:
        rows: evaluation rows (``generator``, ``label``, ``path``, ``status`` columns).
        per_class: images per class and generator (the original: 1000).
        fallback: per-class count used instead when either class has fewer than ``per_class`` usable images
            (the original: 100); 0 means no fallback (take as many as the smaller class has).
        seed: chooses the images (a seeded hash of each path: independent of listing order).

    Returns:
        The sampled rows (unusable rows are never sampled) and, per generator, the usable images available
        and the count per class used. Where a class has fewer than the count, both classes are cut to the
        smaller class (the original asserts equal counts and stops).
    """
    import pandas as pd

    usable = rows[rows["status"] == "ok"]
    keep: list[Any] = []
    facts: dict[str, Any] = {}
    for generator, group in usable.groupby("generator", sort=True):
        by_label = {label: group[group["label"] == label] for label in (0, 1)}
        available = {label: len(part) for label, part in by_label.items()}
        n = per_class
        if fallback and min(available.values()) < per_class:
            n = fallback
        n = min(n, *available.values())
        for part in by_label.values():
            ranked = sorted(part.index, key=lambda i: (seeded_rank(seed, str(part.at[i, "path"])), part.at[i, "path"]))
            keep.extend(ranked[:n])
        facts[str(generator)] = {"available_real": available[0], "available_fake": available[1], "per_class": n}
    chosen = set(keep)
    sampled = rows.loc[[i for i in rows.index if i in chosen]]
    info = {"per_class": per_class, "fallback": fallback, "seed": seed, "generators": facts}
    return pd.DataFrame(sampled), info


def walk_files(root: Path) -> Iterator[tuple[str, Path]]:
    """``(relative posix path, absolute path)`` for every image-like file under ``root``, sorted.

    Follows directory symlinks once (a loop is visited once), ignores hidden entries, and never raises on
    unreadable directories (they are simply not listed; files inside them cannot be indexed anyway).

    Args:
        root: the folder to walk.

    Yields:
        ``(path relative to root, absolute path)`` for files with an extension in ``IMAGE_EXTENSIONS``.
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
    r"""``path`` as text any file, table or terminal can hold.

    Args:
        path: a path or name as read from disk.

    Returns:
        The text; the bytes of a name that is not valid UTF-8 (which Python keeps as surrogates) are shown
        escaped, e.g. ``bad\xff.png``.
    """
    return os.fsencode(path).decode("utf-8", "backslashreplace")


BAD_NAME_REASON = "the file or folder name is not valid UTF-8; rename it to use the file"  # status bad_name


def is_valid_utf8(name: str) -> bool:
    """Whether ``name`` (a path or folder name read from disk) is valid UTF-8, i.e. holds no surrogates.

    Args:
        name: the name to check.

    Returns:
        True when it encodes to UTF-8.
    """
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def safe_join(root: Path, rel: str) -> Path:
    """``root / rel`` for a relative path from an index, refusing absolute paths and ``..`` escapes.

    Args:
        root: the suite root.
        rel: a relative POSIX path from the index.

    Returns:
        The joined path.

    Raises:
        ValueError: ``rel`` is empty, absolute or climbs out of ``root``.
    """
    pure = PurePosixPath(rel)
    if pure.is_absolute() or ".." in pure.parts or not pure.parts:
        raise ValueError(f"path {rel!r} in the index escapes the suite root {root}")
    return Path(root) / pure


def top_levels(root: Path, depth: int = 2, limit: int = 12) -> str:
    """A short listing of the first folder levels under ``root``, for layout error messages.

    Args:
        root: the folder to list.
        depth: folder levels shown.
        limit: entries shown per folder (the rest are counted).

    Returns:
        One indented line per entry (folders end in ``/``), or ``  (empty)``.
    """
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


def check_root(suite: Suite, root: Path | None) -> None:
    """A given ``--root`` must be a folder; a suite that does not build its own data needs one.

    Args:
        suite: the suite.
        root: the ``--root`` given, or None.

    Raises:
        InputError: the root is not a folder, or is missing for a suite that needs one.
    """
    if root is not None:
        if not Path(root).expanduser().is_dir():
            raise InputError(f"--root {root} is not a directory")
    elif not suite.builds_own_root():
        raise InputError(f"suite {suite.name!r} needs its data: pass --root PATH (see README, section {suite.name})")
