"""Checks of a protocol's rows, made after the train/held-out split and before any work on them.

A protocol must train on real and fake images and keep some of each for model selection, must never
evaluate an image it trains on, and must say which generators it leaves out of the table and the mean.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from detbench.errors import ProtocolError
from detbench.suites import Protocol

LABEL_NAMES = {0: "real", 1: "fake"}


def _class_counts(rows: pd.DataFrame) -> str:
    counts = rows["label"].value_counts()
    return ", ".join(f"{int(counts.get(label, 0))} {name}" for label, name in LABEL_NAMES.items())


def check_training_rows(protocol: Protocol, train: pd.DataFrame, heldout: pd.DataFrame, root: Path) -> None:
    """Both classes among the training rows and, when the protocol holds some out, among the held-out rows.

    Raises:
        ProtocolError: naming the usable images of each class that were found.
    """
    needs_heldout = protocol.heldout_fraction > 0
    missing = [name for label, name in LABEL_NAMES.items() if not (train["label"] == label).any()]
    missing += [f"held-out {name}" for label, name in LABEL_NAMES.items()
                if needs_heldout and not (heldout["label"] == label).any()]
    if missing:
        both = pd.concat([train, heldout])
        per_class = "2 usable real and 2 usable fake images (one of each is held out for model selection)"
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
    same_root: bool = True,
) -> int:
    """Refuse a protocol that would evaluate images it trains on (same files); return how many evaluation images
    are byte-identical copies of training images under other names (content ids are equal), for a warning.
    ``same_root=False`` (a cross-suite run: paths are relative to different roots) compares content ids only.

    Raises:
        ProtocolError: when evaluation files are training files.
    """
    trained = pd.concat([train, heldout])
    same_file = evaluation[evaluation["path"].isin(set(trained["path"]))] if same_root else evaluation.iloc[:0]
    if len(same_file):
        examples = ", ".join(same_file["path"].head(3))
        raise ProtocolError(
            f"protocol {protocol.name!r} would evaluate {len(same_file)} of the images it trains on "
            f"({protocol.eval_split} split = {protocol.train_split} split; e.g. {examples}): its numbers would "
            "measure memory, not detection. Give the evaluation images their own split folder (test/ or val/), "
            "or change the suite's split options"
        )
    copies = evaluation["image_id"].notna() & evaluation["image_id"].isin(set(trained["image_id"].dropna()))
    return int(copies.sum())


def generators_without_evaluation(
    protocol: Protocol, rows: pd.DataFrame, evaluation: pd.DataFrame
) -> dict[str, list[str]]:
    """Generators the protocol should evaluate but that have no ``eval_split`` images, with the splits they have.

    Without an explicit list every generator of the index counts, except the training generators when they have
    nothing but training images.
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
