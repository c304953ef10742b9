"""Near-duplicates between training and evaluation images: the ``check.near_duplicates`` settings and the check.

Aggregated data sets overlap: the same picture reaches training and evaluation through another folder or suite,
resized or re-encoded, so its bytes (and content id) differ. Before a run that trains, every evaluation image is
compared with every training and held-out image by the perceptual hash the index took of it
(:mod:`detbench.data.perceptual_hash`): pairs within ``check.near_duplicates_distance`` bits (default
:data:`DEFAULT_DISTANCE` of 64) are near-duplicates. Byte-identical copies keep their own count
(``copies_of_training``, :func:`detbench.engine.protocol_checks.check_no_training_images_evaluated`) and are not
counted again here.

``check.near_duplicates``: ``warn`` (default) warns, records the counts and a few example pairs in ``run.json``
(``counts.near_duplicates_of_training``) and leaderboards flag the run; ``refuse`` refuses the run in one line before
any training (byte-identical copies included, and images without a hash: a ``--fast`` index); ``off`` skips the
check (``copies_of_training`` is still counted).

None of these settings changes a number, so none enters the fit or run id: a finished run is reused whatever they
are, and keeps the record of the check made when it was computed, distance included (the check itself is made again,
and warns or refuses, on every request).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from detbench.data.perceptual_hash import HASH_BITS, hash_values, near_pairs
from detbench.errors import ConfigError, ProtocolError

CHECK_PREFIX = "check."  # run-level checks made before any work (--set check.KEY=VALUE)
MODE_KEY = "check.near_duplicates"
DISTANCE_KEY = "check.near_duplicates_distance"
KEYS = (MODE_KEY, DISTANCE_KEY)
MODES = ("warn", "refuse", "off")
DEFAULT_DISTANCE = 4
MAX_DISTANCE = 16  # beyond it unrelated photographs start to match, and the band search compares most pairs
N_EXAMPLES = 5  # example pairs recorded and shown
HASH_NAME = "phash"  # the index column compared


@dataclass(frozen=True)
class NearDuplicateCheck:
    """The ``check.near_duplicates`` settings: what to do (``warn``, ``refuse``, ``off``) and the Hamming distance."""

    mode: str = "warn"
    distance: int = DEFAULT_DISTANCE


def parse_check_settings(values: dict[str, Any]) -> NearDuplicateCheck:
    """Read the ``--set check.*`` values of a request.

    Args:
        values: ``check.*`` keys and their values as given.

    Returns:
        The settings (defaults where a key is not given).

    Raises:
        ConfigError: an unknown ``check.*`` key, a mode other than warn, refuse or off, or a distance that is not an
            integer in 0..16.
    """
    unknown = sorted(set(values) - set(KEYS))
    if unknown:
        raise ConfigError(f"unknown check setting {unknown[0]!r}; the ones there are: {', '.join(KEYS)}")
    mode = str(values.get(MODE_KEY, NearDuplicateCheck.mode)).strip().lower()
    if mode not in MODES:
        raise ConfigError(f"--set {MODE_KEY} takes {', '.join(MODES)}; got {values[MODE_KEY]!r}")
    distance = values.get(DISTANCE_KEY, DEFAULT_DISTANCE)
    try:
        number = int(str(distance).strip())
    except ValueError:
        number = -1
    if isinstance(distance, bool) or not 0 <= number <= MAX_DISTANCE:
        raise ConfigError(
            f"--set {DISTANCE_KEY} takes a number of differing bits from 0 to {MAX_DISTANCE} (of {HASH_BITS}); "
            f"got {distance!r}"
        )
    return NearDuplicateCheck(mode, number)


def find_near_duplicates(trained: pd.DataFrame, evaluation: pd.DataFrame, distance: int) -> dict[str, Any]:
    """Compare the perceptual hashes of the evaluation images with those of the training and held-out images.

    Identical hashes are compared once (:func:`~detbench.data.perceptual_hash.near_pairs` on the distinct values),
    so a folder of blank images costs one comparison, not one per pair.

    Args:
        trained: the training and held-out rows (``path``, ``image_id``, ``phash``).
        evaluation: the evaluation rows (``path``, ``image_id``, ``status``, ``phash``); unusable rows are ignored.
        distance: the largest Hamming distance, in bits.

    Returns:
        ``eval`` (usable evaluation images within ``distance`` of a training image that are not byte-identical copies
        of one), ``copies`` (byte-identical copies among the evaluation images within ``distance``: counted apart),
        ``train`` (training and held-out images within ``distance`` of one of the ``eval`` images), ``examples`` (up
        to :data:`N_EXAMPLES` pairs, closest first: ``eval`` and ``train`` paths and ``distance``) and ``unhashed``
        (usable images without a hash, not compared: ``train`` and ``eval``).
    """
    trained_hashed = _hashed(trained)
    usable = evaluation[evaluation["status"] == "ok"] if "status" in evaluation else evaluation
    eval_hashed = _hashed(usable)
    t, e = trained[trained_hashed], usable[eval_hashed]
    out: dict[str, Any] = {"eval": 0, "copies": 0, "train": 0, "examples": [],
                           "unhashed": {"train": int((~trained_hashed).sum()), "eval": int((~eval_hashed).sum())}}
    if t.empty or e.empty:
        return out
    t_values, t_of = np.unique(hash_values(t[HASH_NAME]), return_inverse=True)
    e_values, e_of = np.unique(hash_values(e[HASH_NAME]), return_inverse=True)
    ti, ej, d = near_pairs(t_values, e_values, distance)
    near_eval = np.zeros(len(e_values), dtype=bool)
    near_eval[ej] = True
    copy = e["image_id"].notna().to_numpy() & e["image_id"].isin(set(trained["image_id"].dropna())).to_numpy()
    hit = near_eval[e_of]
    out["eval"], out["copies"] = int((hit & ~copy).sum()), int((hit & copy).sum())
    fresh = np.bincount(e_of[~copy], minlength=len(e_values)) > 0  # hash values held by an image that is no copy
    keep = fresh[ej]
    ti, ej, d = ti[keep], ej[keep], d[keep]
    out["train"] = int(np.isin(t_of, np.unique(ti)).sum())
    if len(ti):
        t_path = pd.Series(t["path"].to_numpy()).groupby(t_of).min()
        e_path = pd.Series(e["path"].to_numpy()[~copy]).groupby(e_of[~copy]).min()
        pairs = pd.DataFrame({"eval": e_path.reindex(ej).to_numpy(), "train": t_path.reindex(ti).to_numpy(),
                              "distance": d})
        pairs = pairs.sort_values(["distance", "eval", "train"], kind="stable").head(N_EXAMPLES)
        out["examples"] = [{"eval": str(r.eval), "train": str(r.train), "distance": int(r.distance)}
                           for r in pairs.itertuples(index=False)]
    return out


def _hashed(rows: pd.DataFrame) -> pd.Series:
    if HASH_NAME not in rows:
        return pd.Series(False, index=rows.index)
    return rows[HASH_NAME].notna()


def check_near_duplicates(
    check: NearDuplicateCheck,
    train: pd.DataFrame,
    heldout: pd.DataFrame,
    evaluation: pd.DataFrame,
    warn: Any,
    *,
    cross_suite: bool = False,
) -> dict[str, Any]:
    """Warn of, or refuse, evaluation images that are near-duplicates of training or held-out images.

    Args:
        check: the settings.
        train: the training rows.
        heldout: the held-out rows.
        evaluation: the evaluation rows (as sampled).
        warn: called with each warning line.
        cross_suite: the training rows are another suite's (for the messages).

    Returns:
        What ``run.json`` records under ``counts.near_duplicates_of_training``: ``mode`` and ``distance``, then (unless
        ``off``) the counts and examples of :func:`find_near_duplicates`.

    Raises:
        ProtocolError: ``refuse`` and some evaluation image is within the distance of a training image (byte-identical
            copies included), or some usable image has no hash (a ``--fast`` index), so the check cannot be made.
    """
    record: dict[str, Any] = {"mode": check.mode, "distance": check.distance}
    if check.mode == "off":
        return record
    found = find_near_duplicates(pd.concat([train, heldout]), evaluation, check.distance)
    record.update(found)
    training = "training images (of the training suite)" if cross_suite else "training images"
    within = f"perceptual hash within {check.distance} of {HASH_BITS} bits"
    example = _example(found)
    if check.mode == "refuse" and found["eval"] + found["copies"]:
        copies = f", {found['copies']} of them byte-identical copies" if found["copies"] else ""
        raise ProtocolError(
            f"{MODE_KEY}=refuse: {found['eval'] + found['copies']} of the {len(evaluation)} evaluation images are "
            f"near-duplicates of {training} ({within}{copies}){example}; remove them from one side, or pass "
            f"--set {MODE_KEY}=warn to run and flag it"
        )
    if found["eval"]:
        warn(f"{found['eval']} of the {len(evaluation)} evaluation images are near-duplicates of {training} "
             f"({within}; byte-identical copies apart){example}: their scores measure memory as much as detection; "
             f"the run records them and leaderboards and reports flag it (--set {MODE_KEY}=refuse refuses such runs)")
    unhashed = found["unhashed"]
    if unhashed["train"] or unhashed["eval"]:
        unchecked = (f"{unhashed['eval']} evaluation and {unhashed['train']} training images have no perceptual hash "
                     "(an index made with --fast decodes nothing) and were not checked for near-duplicates")
        if check.mode == "refuse":
            raise ProtocolError(f"{MODE_KEY}=refuse: {unchecked}; index without --fast, or pass --set {MODE_KEY}=warn")
        warn(f"{unchecked}; index without --fast")
    return record


def _example(found: dict[str, Any]) -> str:
    if not found["examples"]:
        return ""
    first = found["examples"][0]
    return f", e.g. {first['eval']} ~ {first['train']} ({first['distance']} bits)"


def flag(record: dict[str, Any] | None) -> str:
    """A run's near-duplicate flag for tables, e.g. ``2 near-dups (d<=4)``; empty when none was found or checked.

    Args:
        record: ``counts.near_duplicates_of_training`` of a run record (None: not checked).

    Returns:
        The flag.
    """
    if not record or not record.get("eval"):
        return ""
    return f"{record['eval']} near-dups (d<={record['distance']})"
