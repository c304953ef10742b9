"""Which images of the training generator select the model: the ``train.holdout`` setting.

Detectors that train keep some images of their training generator apart to choose an epoch, a learning-rate drop
or a regularisation strength, and ``--threshold calibrated`` calibrates on the same images. How they are chosen
follows each detector's original (:attr:`detbench.kit.detector.Detector.default_holdout`), and ``--set
train.holdout=VALUE`` overrides it:

- a fraction in (0, 1), e.g. ``0.1``: that share of each class of the training split is held out (seeded) and the
  rest trains (the suites' protocols default to ``0.1``);
- ``0``: every training image trains and nothing is held out (NPR's ``train.py``: the last epoch is kept);
- ``val-split``: every training image trains, and the training generators' separate ``val`` split selects
  (CNNDetection's ``train.py`` validates on ``<dataroot>/val``; so do AIDE's ``--eval_data_path`` and UnivFD's
  validation set).

``val-split`` needs a val split that is not evaluation data: usable real and fake images of the training
generators in split ``val``, the protocol training on another split and not evaluating the training generators'
``val`` split. Where the data has none (GenImage and the demo evaluate their ``val`` split; DiffusionForensics,
file lists and Parquet sets may lack one), the protocol's own fraction is held out instead (0.1 for every built-in
suite): a fallback that the run records (``run.json`` ``holdout``) and warns about.

What is used enters the fit identity through the protocol (``heldout_fraction``, and ``heldout_split`` when set),
so a fit is shared by every request that trains on the same images and selects on the same ones.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import pandas as pd

from detbench.data.suites import Protocol
from detbench.errors import ConfigError

HOLDOUT_KEY = "train.holdout"  # the --set key
VAL_SPLIT = "val-split"  # the setting's value that selects on the separate val split
SELECTION_SPLIT = "val"  # the split it uses
_NONE_WORDS = ("none", "off", "no")


@dataclasses.dataclass(frozen=True)
class Holdout:
    """A parsed ``train.holdout``: a fraction held out of the training split, or the separate ``split``."""

    fraction: float = 0.1
    split: str | None = None

    @property
    def label(self) -> str:
        """The setting as users write it: ``0.1``, ``0`` or ``val-split``."""
        return VAL_SPLIT if self.split else f"{self.fraction:g}"


def parse_holdout(value: Any) -> Holdout:
    """Read a ``train.holdout`` value.

    Args:
        value: a fraction in [0, 1) (``0``, ``none`` or ``off``: hold nothing out), or ``val-split`` (also ``val``).

    Returns:
        The :class:`Holdout`.

    Raises:
        ConfigError: anything else.
    """
    text = str(value).strip().lower()
    if text in (VAL_SPLIT, SELECTION_SPLIT, "val_split"):
        return Holdout(0.0, SELECTION_SPLIT)
    if text in _NONE_WORDS:
        return Holdout(0.0)
    try:
        fraction = float(text)
    except ValueError:
        fraction = float("nan")
    if not (math.isfinite(fraction) and 0 <= fraction < 1):
        raise ConfigError(
            f"{HOLDOUT_KEY} must be a fraction in [0, 1) of each class of the training split (0: hold nothing out) "
            f"or {VAL_SPLIT} (select on the training generators' separate val split); got {value!r}"
        )
    return Holdout(fraction)


def val_split_problem(protocol: Protocol, rows: pd.DataFrame) -> str | None:
    """Why the training generators' ``val`` split cannot select the model under ``protocol`` (None: it can).

    Args:
        protocol: a protocol that trains on this index.
        rows: every row of the index.

    Returns:
        A sentence for the record and the warning, or None.
    """
    if protocol.train_split == SELECTION_SPLIT:
        return f"protocol {protocol.name} trains on the {SELECTION_SPLIT} split"
    evaluated = protocol.eval_generators
    if protocol.eval_split == SELECTION_SPLIT and (
        evaluated is None or set(protocol.train_generators) & set(evaluated)
    ):
        return f"the {SELECTION_SPLIT} split is the evaluation split of protocol {protocol.name}"
    mine = rows[rows["generator"].isin(protocol.train_generators) & (rows["split"] == SELECTION_SPLIT)]
    usable = mine[mine["status"] == "ok"]
    if usable.empty:
        return f"the training generators have no usable {SELECTION_SPLIT} images"
    counts = usable["label"].value_counts()
    if counts.get(0, 0) == 0 or counts.get(1, 0) == 0:
        return (
            f"the training generators' {SELECTION_SPLIT} split has {int(counts.get(0, 0))} usable real and "
            f"{int(counts.get(1, 0))} usable fake images (it needs both)"
        )
    return None


def apply_holdout(
    protocol: Protocol, rows: pd.DataFrame, setting: str | None, chosen_by: str
) -> tuple[Protocol, dict[str, Any] | None]:
    """``protocol`` with its held-out images chosen by ``setting``, and what the run records about it.

    Args:
        protocol: the protocol that trains (a protocol that trains nothing on this index is returned unchanged).
        rows: every row of the index it trains on.
        setting: a ``train.holdout`` value; None: the protocol's own ``heldout_fraction``.
        chosen_by: who chose ``setting`` (``--set``, or the detector's default), for the record.

    Returns:
        ``(protocol, facts)``: the protocol with ``heldout_fraction`` and ``heldout_split`` set to what is used, and
        ``{"setting", "chosen_by", "used"}`` plus ``fallback`` (why the val split could not be used) when
        ``val-split`` fell back to the protocol's fraction; None for a protocol that trains nothing here.
    """
    if not protocol.train_generators:
        return protocol, None
    own = Holdout(protocol.heldout_fraction, protocol.heldout_split)
    holdout = parse_holdout(setting) if setting is not None else own
    facts: dict[str, Any] = {"setting": holdout.label, "chosen_by": chosen_by if setting is not None else "suite"}
    if holdout.split is not None:
        problem = val_split_problem(protocol, rows)
        if problem is not None:
            holdout = Holdout(protocol.heldout_fraction if protocol.heldout_fraction > 0 else 0.1)
            facts["fallback"] = f"{problem}: {holdout.label} of the training split is held out instead"
    facts["used"] = holdout.label
    return dataclasses.replace(protocol, heldout_fraction=holdout.fraction, heldout_split=holdout.split), facts
