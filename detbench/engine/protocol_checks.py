"""A protocol's rows: choosing the protocol, splitting the index into training, held-out and evaluation rows, and the
checks made after the split and before any work on them.

A protocol must train on real and fake images and keep some of each for model selection (when its detector holds
any out: ``train.holdout``, :mod:`detbench.engine.holdout`), must never evaluate an image it trains on, and
must say which generators it leaves out of the table and the mean.
:func:`protocol_problems` is the one check shared by the runner and the presets' pre-flight.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from detbench.data.protocol_builder import (
    GRAMMAR,
    ProtocolOptions,
    balance_rows,
    build_protocol,
    per_class_count,
    with_balance,
)
from detbench.data.suites import Protocol, Suite
from detbench.errors import ProtocolError

if TYPE_CHECKING:
    from detbench.data.index import Index

LABEL_NAMES = {0: "real", 1: "fake"}


def _class_counts(rows: pd.DataFrame) -> str:
    counts = rows["label"].value_counts()
    return ", ".join(f"{int(counts.get(label, 0))} {name}" for label, name in LABEL_NAMES.items())


def check_training_rows(protocol: Protocol, train: pd.DataFrame, heldout: pd.DataFrame, root: Path) -> None:
    """Both classes among the training rows and, when the protocol holds some out, among the held-out rows.

    Args:
        protocol: the protocol.
        train: the training rows.
        heldout: the held-out rows.
        root: the suite root (for the message).

    Raises:
        ProtocolError: naming the usable images of each class that were found.
    """
    needs_heldout = protocol.heldout_fraction > 0 or bool(protocol.heldout_split)
    missing = [name for label, name in LABEL_NAMES.items() if not (train["label"] == label).any()]
    missing += [f"held-out {name}" for label, name in LABEL_NAMES.items()
                if needs_heldout and not (heldout["label"] == label).any()]
    if missing:
        both = pd.concat([train, heldout])
        per_class = "2 usable real and 2 usable fake images (one of each is held out for model selection)"
        if protocol.heldout_split:
            per_class = (f"a usable real and a usable fake image in its {protocol.train_split} split and in its "
                         f"{protocol.heldout_split} split (which selects the model)")
        raise ProtocolError(
            f"protocol {protocol.name!r} trains on {'+'.join(protocol.train_generators)}/{protocol.train_split} and "
            f"needs at least {per_class if needs_heldout else 'one usable real and one usable fake image'}; "
            f"under {root} it has {_class_counts(both)}"
        )


def check_no_training_images_evaluated(
    protocol: Protocol,
    train: pd.DataFrame,
    heldout: pd.DataFrame,
    evaluation: pd.DataFrame,
    *,
    train_root: Path | str | None = None,
    eval_root: Path | str | None = None,
    cross_suite: bool = False,
) -> int:
    """Refuse a run that would evaluate files it trains on; count the evaluation images that copy training images.

    Files are the same when their absolute paths are, after resolving symbolic links: within one suite, a
    cross-suite run whose roots are one folder or nested, or a link from one root to the other's file. Copies are
    other files (or Parquet rows) with the bytes of a training image (equal content ids).

    Args:
        protocol: the (training) protocol.
        train: the training rows.
        heldout: the held-out rows.
        evaluation: the evaluation rows.
        train_root: the root the training rows' paths are relative to; None: the same as ``eval_root``.
        eval_root: the root the evaluation rows' paths are relative to; None (with ``train_root`` None): one suite,
            compared by path only.
        cross_suite: the training rows are another suite's (for the message).

    Returns:
        How many evaluation images are copies of training images under other names (equal content ids).

    Raises:
        ProtocolError: when evaluation files are training files.
    """
    trained = pd.concat([train, heldout])
    same = _same_files(trained, evaluation, train_root, eval_root)
    if same.any():
        shown = evaluation.loc[same, "path"]
        examples = ", ".join(shown.head(3))
        if not cross_suite:
            where = f"{protocol.eval_split} split = {protocol.train_split} split; e.g. {examples}"
            fix = ("Give the evaluation images their own split folder (test/ or val/), or change the suite's split "
                   "options")
        else:
            where = f"the same files under the training root {train_root} and the evaluation root {eval_root}; e.g. "
            where += examples
            fix = "Point --root and --train-root at different data"
        raise ProtocolError(
            f"protocol {protocol.name!r} would evaluate {len(shown)} of the images it trains on ({where}): its "
            f"numbers would measure memory, not detection. {fix}"
        )
    copies = evaluation["image_id"].notna() & evaluation["image_id"].isin(set(trained["image_id"].dropna()))
    return int(copies.sum())


def _resolved(root: Path | str) -> Path:
    return Path(root).expanduser().resolve()


def _same_files(
    trained: pd.DataFrame, evaluation: pd.DataFrame, train_root: Path | str | None, eval_root: Path | str | None
) -> pd.Series:
    """Which evaluation rows name a file (or Parquet row) that a training row names too."""
    if train_root is None or eval_root is None:
        return evaluation["path"].isin(set(trained["path"]))
    train_base, eval_base = _resolved(train_root), _resolved(eval_root)
    # The paths as strings relative to one root, when one root holds the other (or they are one folder).
    if train_base == eval_base or train_base.is_relative_to(eval_base):
        offset = train_base.relative_to(eval_base).as_posix()
        prefix = "" if offset == "." else offset + "/"
        same = evaluation["path"].isin(set(prefix + trained["path"]))
    elif eval_base.is_relative_to(train_base):
        prefix = eval_base.relative_to(train_base).as_posix() + "/"
        same = (prefix + evaluation["path"]).isin(set(trained["path"]))
    else:
        same = pd.Series(False, index=evaluation.index)
    # Links: a copy by content whose resolved path is a training file's. Only rows with a training image's bytes
    # can be one (in fast id mode ids are per path, so the links the string test misses are not found).
    ids = set(trained["image_id"].dropna())
    candidates = evaluation[~same & evaluation["image_id"].isin(ids)]
    if len(candidates):
        shared = trained[trained["image_id"].isin(set(candidates["image_id"]))]
        targets = set(_real_paths(train_base, shared["path"]))
        linked = [real in targets for real in _real_paths(eval_base, candidates["path"])]
        same = same | pd.Series(linked, index=candidates.index, dtype=bool).reindex(evaluation.index, fill_value=False)
    return same


def _real_paths(root: Path, paths: pd.Series) -> list[str]:
    """``root / path`` with symbolic links resolved; a Parquet row keeps its ``#column:row`` locator."""
    from detbench.data.shards import parse_locator

    out = []
    for path in paths:
        locator = parse_locator(path)
        file, suffix = (locator.shard, path[len(locator.shard):]) if locator else (path, "")
        out.append(os.path.realpath(root / file) + suffix)
    return out


def generators_without_evaluation(
    protocol: Protocol, rows: pd.DataFrame, evaluation: pd.DataFrame
) -> dict[str, list[str]]:
    """Generators the protocol should evaluate but that have no ``eval_split`` images, with the splits they have.

    Without an explicit list every generator of the index counts, except the training generators when they have
    nothing but training images.

    Args:
        protocol: the protocol.
        rows: every index row.
        evaluation: the evaluation rows.

    Returns:
        Generator -> the splits it has (sorted).
    """
    splits = rows.groupby("generator")["split"].unique()
    expected = list(protocol.eval_generators) if protocol.eval_generators is not None else list(splits.index)
    evaluated = set(evaluation["generator"])
    missing = {}
    for generator in expected:
        found = sorted(splits.get(generator, []))
        if generator in evaluated:
            continue
        if protocol.eval_generators is None and generator in protocol.train_generators:
            if set(found) <= {protocol.train_split}:
                continue
        missing[str(generator)] = found
    return missing


def select_protocol(
    suite: Suite,
    index: Index,
    name: str | None,
    *,
    needs_training: bool = True,
    probes: bool = False,
    options: ProtocolOptions | None = None,
) -> Protocol:
    """The protocol ``name`` (default: the suite's), checked against the data by :func:`protocol_problems`.

    A name the suite does not define may be a built protocol (``train-on-A,B``, ``chrono:2022-06``:
    :mod:`detbench.data.protocol_builder`), which every suite offers.

    Args:
        suite: the suite.
        index: its index.
        name: the protocol's name, or None for the suite's default.
        needs_training: whether the detector trains (False also serves cross-suite runs, whose training rows are
            checked on their own suite).
        probes: the detector runs as a bias probe under a protocol that trains nothing (Detector.bias_probe).
        options: ``suite.balance`` and ``chrono.dates``; None: the defaults.

    Returns:
        The :class:`~detbench.data.suites.Protocol`.

    Raises:
        ProtocolError: an unknown protocol (with did-you-mean), a built protocol the data cannot give, or the first
            problem found.
    """
    options = options or ProtocolOptions()
    protocols = suite.all_protocols(index.generators)
    name = name or suite.default_protocol
    if name in protocols:
        protocol = with_balance(protocols[name], options)
    else:
        built = build_protocol(suite, index.usable, name, options)
        if built is None:
            close = difflib.get_close_matches(name, list(protocols), n=2)
            hint = f" Did you mean {' or '.join(map(repr, close))}?" if close else ""
            raise ProtocolError(
                f"unknown protocol {name!r} for suite {suite.name}.{hint} Available: {', '.join(protocols)}; and on "
                f"any suite {GRAMMAR}"
            )
        protocol = built
    needs_training = needs_training and not (probes and not protocol.trains)
    problems = protocol_problems(protocol, index.usable, needs_training=needs_training, root=index.root)
    if problems:
        raise ProtocolError(problems[0])
    return protocol


def protocol_problems(
    protocol: Protocol, usable: pd.DataFrame, *, needs_training: bool, root: Path | str
) -> list[str]:
    """What stops ``protocol`` on the usable index rows: the one check shared by the runner and preset pre-flight.

    A detector that needs training needs real and fake rows of the training generators' train split, and a
    protocol that trains (``eval`` does not); a detector that needs none (released weights, training-free) runs
    under any protocol and ignores the training rows.

    Args:
        protocol: the protocol.
        usable: the usable index rows.
        needs_training: whether the detector trains.
        root: the suite root (for messages).

    Returns:
        One message per problem; empty when the protocol can run.
    """
    if not needs_training or protocol.train_suite:  # a cross-suite protocol's rows are in its training suite
        return []
    if not protocol.trains:
        return [
            f"protocol {protocol.name!r} trains nothing, but this detector needs training: give it released "
            "weights (see `detbench ls detectors`) or choose a training protocol"
        ]
    train = usable[usable["generator"].isin(protocol.train_generators) & (usable["split"] == protocol.train_split)]
    if train.empty or train["label"].nunique() < 2:
        found = usable.groupby(["generator", "split"]).size()
        listing = ", ".join(f"{g}/{s} ({n})" for (g, s), n in found.items()) or "no usable images"
        return [
            f"protocol {protocol.name!r} trains on {'+'.join(protocol.train_generators)}/{protocol.train_split} "
            f"with both real and fake images, but the index under {root} has: {listing}. Detectors with "
            "released weights or none to train run under --protocol eval"
        ]
    return []


def split_rows(index: Index, protocol: Protocol, seed: int) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Training rows, the held-out selection rows carved from them (seeded, per label), and eval rows.

    Args:
        index: the suite's index.
        protocol: the protocol.
        seed: seeds the held-out choice.

    Returns:
        ``(train, heldout, evaluation)``: usable training rows less the held-out ones, the held-out rows (a
        ``heldout_fraction`` of each label, at least one and not all when the fraction is positive; or, with
        ``heldout_split``, every usable row of the training generators in that split, and no training row held
        out; balanced per generator, :func:`~detbench.data.protocol_builder.balance_rows` first and the held-out
        share taken per generator and label), and every evaluation row of ``eval_split`` (unusable ones included),
        sorted by generator and path.
    """
    rows = index.rows.sort_values("path", kind="stable")
    train_all = rows[rows["generator"].isin(protocol.train_generators) & (rows["split"] == protocol.train_split)]
    train_ok = train_all[train_all["status"] == "ok"]
    if protocol.balance == "generator":
        train_ok = balance_rows(train_ok, protocol.train_generators, seed)
    if protocol.heldout_split:
        mine = rows["generator"].isin(protocol.train_generators) & (rows["split"] == protocol.heldout_split)
        heldout, train = rows[mine & (rows["status"] == "ok")], train_ok
    else:
        rng = np.random.default_rng(seed)
        held_idx: list[Any] = []
        strata: Any = ["generator", "label"] if protocol.balance == "generator" else "label"
        for _, group in train_ok.groupby(strata, sort=True):
            n = int(round(protocol.heldout_fraction * len(group)))
            if protocol.heldout_fraction > 0:
                n = max(1, min(n, len(group) - 1))
            held_idx.extend(group.index[rng.permutation(len(group))[:n]])
        heldout = train_ok.loc[sorted(held_idx, key=lambda i: train_ok.index.get_loc(i))]
        train = train_ok.drop(index=held_idx)
    eval_mask = rows["split"] == protocol.eval_split
    if protocol.eval_generators is not None:
        eval_mask &= rows["generator"].isin(protocol.eval_generators)
    evaluation = rows[eval_mask].sort_values(["generator", "path"], kind="stable")
    return train, heldout, evaluation


def training_generators_record(
    protocol: Protocol, train: pd.DataFrame, heldout: pd.DataFrame, rows: pd.DataFrame
) -> dict[str, Any] | None:
    """What the run records of its training generators: per generator and class, the images that trained, were held
    out and were available, and how the generators were combined.

    Args:
        protocol: the training protocol.
        train: the training rows.
        heldout: the held-out rows.
        rows: every row of the index trained on.

    Returns:
        ``split``, ``balance`` (``generator`` or ``pooled``), ``per_class`` (balanced only) and ``generators``;
        None for a protocol without training generators.
    """
    if not protocol.train_generators:
        return None
    mine = rows[(rows["status"] == "ok") & (rows["split"] == protocol.train_split)]

    def count(frame: pd.DataFrame, generator: str, label: int) -> int:
        return int(((frame["generator"] == generator) & (frame["label"] == label)).sum())

    per: dict[str, dict[str, int]] = {}
    available: dict[str, dict[int, int]] = {}
    for g in protocol.train_generators:
        available[g] = {label: count(mine, g, label) for label in LABEL_NAMES}
        per[g] = {name: count(train, g, label) for label, name in LABEL_NAMES.items()}
        per[g].update({f"heldout_{name}": count(heldout, g, label) for label, name in LABEL_NAMES.items()})
        per[g].update({f"available_{name}": available[g][label] for label, name in LABEL_NAMES.items()})
    out: dict[str, Any] = {"split": protocol.train_split, "balance": protocol.balance or "pooled", "generators": per}
    if protocol.balance == "generator":
        out["per_class"] = per_class_count(available)
        out["rule"] = ("each generator gives per_class real and per_class fake images (the smallest usable count of "
                       "any training generator and class), chosen by a hash of the run seed and each path; the "
                       "held-out share is then taken per generator and class")
    return out
