"""Scores computed outside detbench, imported as a detector so that every part of a run applies to them unchanged:
metrics, bootstrap intervals, thresholds, leaderboard rows, reports and robustness views.

``detbench import-scores SUITE --root R --name NAME FILE`` (or :func:`detbench.import_scores`) runs this detector
with ``file`` and ``name`` set; the file's format and checks are :mod:`detbench.data.score_files`. Runs are named
``external:NAME`` and marked external. Nothing is trained: the "fit" is the name, so imports of the same NAME on
perturbed images (``--perturb`` labels what the scores were computed on; nothing is applied) share it with the clean
import, which is how robustness views pair them; the file (its sha256 and how it is read) is keyed with each run.
An image of the protocol the file gives no score for stays unscored (status ``no_score: ...``), never real.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from detbench.data.images import NO_SCORE
from detbench.data.score_files import ScoreFile, not_in_file, read_score_file
from detbench.errors import ConfigError, WeightsError
from detbench.kit.detector import Detector, RunContext

STATE_FILE = "external.json"


@dataclass(frozen=True)
class ExternalConfig:
    """Which score file to import and how to read it: name, logits, columns and what relative paths start from."""

    file: str = ""  # the score file (CSV, TSV, JSON or Parquet); see detbench.data.score_files
    name: str = ""  # what computed the scores; runs show as external:NAME
    logits: bool = False  # the scores are raw logits: P(fake) = sigmoid(score)
    score_column: str = "score"
    key_column: str = ""  # empty: the first of path, filename, image_id the file has
    paths_relative_to: str = "root"  # relative paths in the file: relative to the suite root, or "file": its folder

    def validate(self) -> None:
        """Check ``name`` and ``paths_relative_to`` (called after every ``--set``); ``file`` is checked by
        :meth:`External.setup`.

        Raises:
            ConfigError: the name has surrounding spaces, unprintable characters or over 80 characters, or
                ``paths_relative_to`` is neither ``root`` nor ``file``.
        """
        if self.paths_relative_to not in ("root", "file"):
            raise ConfigError(f"paths_relative_to must be 'root' (the suite root) or 'file' (the score file's "
                              f"folder); got {self.paths_relative_to!r}")
        if self.name != self.name.strip() or any(not c.isprintable() for c in self.name) or len(self.name) > 80:
            raise ConfigError(f"name must be printable text of at most 80 characters, without surrounding spaces; "
                              f"got {self.name!r}")


REGISTRATION = {  # read by detbench.registry without importing this module: literals only
    "name": "external",
    "class": "External",
    "summary": (
        "Scores computed outside detbench (closed APIs, other frameworks), imported from a file: detbench "
        "import-scores."
    ),
    "paper": "none: per-image scores computed elsewhere, imported",
    "training": "training-free",
}


class External(Detector):
    """Scores computed outside detbench, read from a file and evaluated as the run of ``external:NAME``."""

    name = REGISTRATION["name"]
    version = 1
    Config = ExternalConfig
    summary = REGISTRATION["summary"]
    training_free = True
    external = True
    scores_pixels = False  # scores read from a file: no tiles
    score_only_keys = ("file", "logits", "score_column", "key_column", "paths_relative_to")

    def setup(self, ctx: RunContext) -> None:
        """Read and check the score file (its problems are shown as warnings) and note the run's perturbation.

        Args:
            ctx: the run context (its phases show the warnings; its perturbation labels the scores).

        Raises:
            ConfigError: ``file`` or ``name`` is not set.
            InputError: the file is missing, unreadable, empty or lacks the key or score column.
            DataError: a score outside [0, 1] without ``logits``.
        """
        missing = [f"--set {k}=..." for k in ("file", "name") if not getattr(self.config, k)]
        if missing:
            raise ConfigError(
                f"external needs {' and '.join(missing)}: import a score file with `detbench import-scores SUITE "
                "--root ROOT --name NAME FILE` (or detbench.import_scores)"
            )
        self.scores: ScoreFile = read_score_file(
            self.config.file,
            score_column=self.config.score_column,
            key_column=self.config.key_column,
            logits=self.config.logits,
            relative_to_file=self.config.paths_relative_to == "file",
        )
        self.perturbation = ctx.perturbation
        for problem in self.scores.problems:
            ctx.phases.warn(problem)

    def score_identity(self, ctx: RunContext) -> dict[str, Any]:
        """The score file's identity: part of the run id, so another file (or reading) is another run.

        Args:
            ctx: the run's context (its suite root places a file read relative to its folder).

        Returns:
            :meth:`ScoreFile.identity`: its sha256 and how it is read (with ``paths_relative_to=file``, where its
            folder is relative to the suite root).
        """
        return self.scores.identity(ctx.suite_root)

    def label(self) -> str:
        """The runs' label.

        Returns:
            ``external:NAME``.
        """
        return f"external:{self.config.name}"

    def fit(self, train: pd.DataFrame, heldout: pd.DataFrame, ctx: RunContext) -> dict[str, Any]:
        """Nothing to train: the scores were computed elsewhere.

        Args:
            train: ignored.
            heldout: ignored.
            ctx: ignored.

        Returns:
            ``{"trained": False, "note": ...}`` for the record.
        """
        return {"trained": False, "note": "scores imported from a file: nothing to train"}

    def predict(self, rows: pd.DataFrame, ctx: RunContext) -> tuple[np.ndarray, dict[int, str]]:
        """The file's P(fake) per row, looked up by path (relative to ``ctx.suite_root``) or by image id.

        Held-out rows of a run whose scores were computed on perturbed images all stay unscored: held-out rows are
        scored clean, and the file holds no clean scores.

        Args:
            rows: index rows to score.
            ctx: the run context (``suite_root`` and ``stage``).

        Returns:
            ``(scores, failures)``: P(fake) per row (NaN where the file gives no usable score) and, for each such row
            by position, a ``no_score: ...`` reason.
        """
        out = np.full(len(rows), np.nan)
        failures: dict[int, str] = {}
        if ctx.stage != "eval" and self.perturbation is not None:
            spec = self.perturbation.identity()["spec"]
            reason = f"{NO_SCORE}: the file's scores are of {spec} images; {ctx.stage} images are scored clean"
            return out, dict.fromkeys(range(len(rows)), reason)
        scores, unusable, _ = self.scores.under(ctx.suite_root)
        column = "image_id" if self.scores.by_id else "path"
        missing = not_in_file(self.scores.path)
        for i, key in enumerate(rows[column].astype(str)):
            score = scores.get(key)
            if score is None:
                failures[i] = unusable.get(key, missing)
            else:
                out[i] = score
        return out, failures

    def cost_forward(self, ctx: RunContext, generator: str) -> str:
        """Nothing runs in detbench: the scores were computed elsewhere.

        Args:
            ctx: unused.
            generator: unused.

        Returns:
            Why the cost is n/a.
        """
        return "scores imported from a file: no network ran in detbench, so nothing is counted"

    def save(self, directory: Path) -> None:
        """Write the "fit": the import's name, in ``external.json``.

        Args:
            directory: the state folder (created if missing).
        """
        directory.mkdir(parents=True, exist_ok=True)
        (directory / STATE_FILE).write_text(json.dumps({"name": self.config.name}) + "\n")

    def load(self, directory: Path) -> None:
        """Check that the saved "fit" is this import's.

        Args:
            directory: the folder :meth:`save` wrote.

        Raises:
            WeightsError: ``external.json`` is unreadable or names another import.
        """
        try:
            saved = json.loads((directory / STATE_FILE).read_text())
        except (OSError, ValueError) as exc:
            raise WeightsError(f"{directory / STATE_FILE} is unreadable ({exc})") from None
        if saved.get("name") != self.config.name:
            raise WeightsError(f"{directory / STATE_FILE} belongs to external:{saved.get('name')}, "
                               f"not external:{self.config.name}")
