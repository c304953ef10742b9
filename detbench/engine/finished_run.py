"""A finished run as Python sees it: its record, and its output tables read on first use and checked."""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

from detbench.engine.layout import RUN_OUTPUTS
from detbench.errors import DamagedRunError

if TYPE_CHECKING:
    import pandas as pd

    from detbench.kit.detector import Detector

PathLike = Union[str, "os.PathLike[str]"]
OUTPUT_FILES = {name.removesuffix(".parquet"): name for name in RUN_OUTPUTS}  # Run attribute -> file


class Run:
    """A finished run: its record and outputs under ``$DETBENCH_HOME/runs/<suite>/<detector>/<id>/``.

    Attributes:
        id: the full run id (sha256 of everything that changes a number; its first 16 characters name the folder).
        path: the run's folder.
        record: ``run.json`` as a dict (settings, counts, thresholds, timings, environment...).
        reused: whether :func:`run` found this run finished instead of computing it.
        detector: the run's detector, set up and its fit loaded, when the run was loaded to score new images
            (:func:`detbench.results.predict.load_trained`); None otherwise.

    ``metrics``, ``scores`` and ``heldout_scores`` are DataFrames read on first use and checked against the sha256
    the record holds (a damaged file raises :class:`~detbench.errors.DamagedRunError`).
    """

    def __init__(
        self,
        path: PathLike,
        record: dict[str, Any],
        metrics: pd.DataFrame | None = None,
        reused: bool = False,
        detector: Detector | None = None,
    ) -> None:
        self.path = Path(path)
        self.record = record
        self.reused = reused
        self.detector = detector
        self.id: str = record["run_id"]
        if metrics is not None:
            self.__dict__["metrics"] = metrics

    @property
    def label(self) -> str:
        """The detector as tables name it.

        Returns:
            The detector's name (``external:NAME`` for imported scores).
        """
        from detbench.engine.record import detector_label

        return detector_label(self.record)

    @property
    def name(self) -> str:
        """The run's folder name (the first characters of its id)."""
        return self.path.name

    @property
    def suite(self) -> str:
        """The suite the run evaluated on."""
        return str(self.record["suite"])

    @property
    def threshold(self) -> float:
        """The run's decision threshold on P(fake)."""
        return float(self.record["threshold"]["value"])

    @property
    def perturbation(self) -> str:
        """``clean`` or the perturbation spec (e.g. ``jpeg:75``)."""
        return str((self.record.get("perturbation") or {}).get("spec", "clean"))

    @functools.cached_property
    def metrics(self) -> pd.DataFrame:
        """The run's metrics table, under today's definitions.

        A run recorded by an older version is read under today's rules (:func:`~detbench.metrics.as_defined`: no
        accuracy over one class) and gains the operating-point, calibration and real-positive columns, computed from its
        stored scores (nothing is rescored, and the run's files are not changed).

        Returns:
            Per generator, then ``mean`` and ``worst``: n_real, n_fake, acc, ap, auc, ... with bootstrap bounds, then
            ``tpr_at_fpr_1``, ``tpr_at_fpr_5``, ``tpr_at_fpr_10``, ``ece``, ``brier``, ``nll``.
        """
        import numpy as np

        from detbench.engine.record import evaluated_generators
        from detbench.metrics import (
            CALIBRATION_DIRECTIONS,
            REAL_POSITIVE_METRICS,
            SUMMARY_ROWS,
            as_defined,
            per_group_metrics,
            with_calibration,
        )

        metrics = as_defined(self._read("metrics"), evaluated_generators(self.record))
        late = [c for c in REAL_POSITIVE_METRICS if c not in metrics.columns]
        if not late and all(column in metrics.columns for column in CALIBRATION_DIRECTIONS):
            return metrics
        scores = self.scores
        scored = scores[np.isfinite(scores["score"].to_numpy(dtype=float))]
        if late:
            evaluated = scored[scored["generator"].isin(set(metrics["generator"]) - set(SUMMARY_ROWS))]
            derived = per_group_metrics(evaluated, group="generator", n_boot=0)[["generator", *late]]
            metrics = metrics.merge(derived, on="generator", how="left")
        return with_calibration(metrics, scored)

    @functools.cached_property
    def scores(self) -> pd.DataFrame:
        """One row per evaluation image: image_id, path, generator, split, label, score = P(fake), status."""
        return self._read("scores")

    @functools.cached_property
    def heldout_scores(self) -> pd.DataFrame:
        """Scores of the training generator's held-out images (threshold calibration)."""
        return self._read("heldout_scores")

    def _read(self, what: str) -> pd.DataFrame:
        import pandas as pd

        from detbench.store import sha256_of_file

        name = OUTPUT_FILES[what]
        file = self.path / name
        try:
            actual = sha256_of_file(file)
        except OSError as exc:
            raise DamagedRunError(f"run {self.path.name} is damaged: {name} is unreadable ({exc})") from None
        if actual != self.record.get("outputs", {}).get(name):
            raise DamagedRunError(f"run {self.path.name} is damaged: {name} differs from the sha256 its run.json "
                                  "recorded (truncated or edited); run the same command again to recompute it")
        return pd.read_parquet(file)

    def __repr__(self) -> str:
        mean = (self.record.get("summary") or {}).get("mean", {}).get("acc")
        acc = f", mean acc {100 * mean:.1f}%" if mean is not None else ""
        return (f"<Run {self.id[:16]}: {self.label} on {self.suite}/{self.record.get('protocol')}, "
                f"{self.perturbation}{acc}{', reused' if self.reused else ''}>")
