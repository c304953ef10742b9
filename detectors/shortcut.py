"""The shortcut floor: a logistic regression on file metadata alone, never on pixels.

Features, read from the index rows (:data:`detbench.data.index.METADATA_COLUMNS`): the format (one-hot over the
formats of the rows it learns from; another format sets none), the estimated JPEG quality (0 where there is none)
with a "no JPEG quality" indicator, the width, the height, the file size in bytes and whether the file carries an
EXIF block. They are standardised (mean and spread of the rows it learns from; a constant feature is left centred)
and fed to scikit-learn's ``LogisticRegression`` (L2, ``c``, lbfgs, ``random_state`` = the run's seed).

What it beats is data a detector could classify without looking at an image: a detector that does not beat it on
the same evaluation rows may have learned the file format, size or compression rather than the generator.

Under a training protocol it learns from the training split like any detector. Under a protocol that trains nothing
(``--protocol eval``) it runs as a labelled **bias probe**: within each evaluation generator (its fakes with the
reals it is evaluated against) the images are split into ``probe_folds`` class-stratified folds (seeded), a model is
fitted on all folds but one and scores the images of that one, so each image is scored by the fold model that did
not see it. A generator with fewer images of a class than folds uses as many folds as that class has images; one
with fewer than 2 real or 2 fake images gets no score.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from detbench.data.images import NO_SCORE
from detbench.data.index import METADATA_COLUMNS
from detbench.errors import ConfigError, DataError, TrainingError, WeightsError
from detbench.kit.detector import Detector, RunContext

REGISTRATION = {  # read by detbench.registry without importing this module: literals only
    "name": "shortcut",
    "class": "Shortcut",
    "summary": "Shortcut floor: logistic regression on file metadata only (format, JPEG quality, size, EXIF).",
    "paper": "baseline: metadata-only shortcut floor",
    "training": "trains",
}

STATE_FILE = "shortcut.json"
STATE_KEYS = ("formats", "mean", "scale", "coef", "intercept")


@dataclass(frozen=True)
class ShortcutConfig:
    """The floor's settings (``--set key=value``)."""

    c: float = 1.0  # inverse L2 strength of the logistic regression
    max_iter: int = 1000
    probe_folds: int = 5  # folds of the bias probe (protocols that train nothing)

    def validate(self) -> None:
        """Refuse values no run could use.

        Raises:
            ConfigError: naming the key and the accepted range.
        """
        if not (self.c > 0 and np.isfinite(self.c)):
            raise ConfigError(f"shortcut needs a finite c > 0; got {self.c}")
        if self.max_iter < 1:
            raise ConfigError(f"max_iter must be >= 1; got {self.max_iter}")
        if self.probe_folds < 2:
            raise ConfigError(f"probe_folds must be >= 2 (the bias probe's cross-validation); got {self.probe_folds}")


def metadata_features(rows: pd.DataFrame, formats: list[str]) -> np.ndarray:
    """The unscaled feature matrix of ``rows``.

    Args:
        rows: index rows with the :data:`~detbench.data.index.METADATA_COLUMNS`.
        formats: the one-hot formats, in order.

    Returns:
        ``[len(rows), len(formats) + 6]``: one-hot format, JPEG quality, no-quality indicator, width, height,
        bytes, EXIF present.

    Raises:
        DataError: a metadata column is missing from ``rows``.
    """
    missing = [c for c in METADATA_COLUMNS if c not in rows.columns]
    if missing:
        raise DataError(f"shortcut reads the index's metadata, and these rows lack {', '.join(missing)}")
    fmt = rows["format"].astype("string").fillna("").to_numpy()
    onehot = np.stack([fmt == f for f in formats], axis=1) if formats else np.zeros((len(rows), 0))
    quality = pd.to_numeric(rows["jpeg_quality"], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    numbers = [pd.to_numeric(rows[c], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
               for c in ("width", "height", "bytes")]
    exif = rows["exif"].astype("boolean").fillna(False).to_numpy(dtype=np.float64)
    columns = [onehot.astype(np.float64), np.nan_to_num(quality)[:, None], np.isnan(quality)[:, None],
               *(np.nan_to_num(v)[:, None] for v in numbers), exif[:, None]]
    return np.concatenate(columns, axis=1).astype(np.float64)


@dataclass
class MetadataModel:
    """A fitted floor: its formats, the standardisation and the logistic regression's weights."""

    formats: list[str]
    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: float

    @classmethod
    def fit(cls, rows: pd.DataFrame, labels: np.ndarray, c: float, max_iter: int, seed: int) -> MetadataModel:
        """Fit on ``rows`` (both classes needed).

        Args:
            rows: index rows.
            labels: 0 (real) / 1 (fake) per row.
            c: inverse L2 strength.
            max_iter: lbfgs iterations.
            seed: the logistic regression's ``random_state``.

        Returns:
            The fitted model.
        """
        from sklearn.linear_model import LogisticRegression
        from sklearn.preprocessing import StandardScaler

        formats = sorted(set(rows["format"].astype("string").dropna().tolist()))
        x = metadata_features(rows, formats)
        scaler = StandardScaler().fit(x)
        model = LogisticRegression(C=c, max_iter=max_iter, random_state=seed).fit(scaler.transform(x), labels)
        return cls(formats, scaler.mean_.astype(np.float64), scaler.scale_.astype(np.float64),
                   model.coef_[0].astype(np.float64), float(model.intercept_[0]))

    def score(self, rows: pd.DataFrame) -> np.ndarray:
        """P(fake) of each row.

        Args:
            rows: index rows.

        Returns:
            The probabilities.
        """
        from detbench.probabilities import sigmoid

        x = (metadata_features(rows, self.formats) - self.mean) / self.scale
        return np.asarray(sigmoid(x @ self.coef + self.intercept), dtype=np.float64)


def cross_validated_scores(
    labels: np.ndarray, folds: int, seed: int, fit_score: Callable[[np.ndarray, np.ndarray], np.ndarray]
) -> tuple[np.ndarray, int]:
    """Score every item by a model fitted on the other folds (class-stratified, seeded).

    Args:
        labels: 0/1 per item.
        folds: the folds wanted; fewer when a class has fewer items (at least 2).
        seed: shuffles the folds.
        fit_score: ``(train positions, test positions) -> scores of the test positions``.

    Returns:
        ``(scores, folds used)``; all NaN with 0 folds when a class has fewer than 2 items.
    """
    from sklearn.model_selection import StratifiedKFold

    n_min = min(int((labels == 0).sum()), int((labels == 1).sum()))
    scores = np.full(len(labels), np.nan)
    k = min(folds, n_min)
    if k < 2:
        return scores, 0
    splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    for train_pos, test_pos in splitter.split(np.zeros(len(labels)), labels):
        scores[test_pos] = fit_score(train_pos, test_pos)
    return scores, k


class Shortcut(Detector):
    """The metadata-only floor (see the module docstring)."""

    name = REGISTRATION["name"]
    version = 1
    Config = ShortcutConfig
    summary = REGISTRATION["summary"]
    metadata_columns: ClassVar[tuple[str, ...]] = METADATA_COLUMNS
    scores_pixels = False  # file metadata only: no tiles
    bias_probe = True
    floor = True

    def __init__(self, config: ShortcutConfig) -> None:
        super().__init__(config)
        self.model: MetadataModel | None = None
        self.probing = False
        self._probed: dict[str, pd.Series] = {}  # generator -> score per path (bias probe)

    def fit(self, train: pd.DataFrame, heldout: pd.DataFrame, ctx: RunContext) -> dict[str, Any]:
        """Fit on the training rows' metadata; under a bias probe nothing is fitted here (see :meth:`predict`).

        Args:
            train: the training rows.
            heldout: unused: nothing is selected.
            ctx: the run context (its seed; ``probe_rows`` under a bias probe).

        Returns:
            The images used and the formats seen, or the probe's fold count.

        Raises:
            TrainingError: the training rows lack a class.
        """
        if ctx.probe_rows is not None:
            self.probing = True
            return {"bias_probe": True, "probe_folds": self.config.probe_folds}
        labels = train["label"].to_numpy(dtype=np.int64)
        if len(set(labels.tolist())) < 2:
            raise TrainingError("shortcut needs real and fake training images")
        self.model = MetadataModel.fit(train, labels, self.config.c, self.config.max_iter, ctx.seed)
        return {"n_train_used": len(train), "formats": self.model.formats}

    def predict(self, rows: pd.DataFrame, ctx: RunContext) -> tuple[np.ndarray, dict[int, str]]:
        """P(fake) of each row from its metadata (under a bias probe: by the fold model that did not see it).

        Args:
            rows: the rows to score.
            ctx: the run context.

        Returns:
            ``(scores, failures)``.
        """
        if not self.probing:
            assert self.model is not None, "fit() or load() first"
            return self.model.score(rows), {}
        if ctx.probe_rows is None:
            raise DataError("this shortcut fit is a bias probe: it scores only the evaluation rows of its own run")
        scores = np.full(len(rows), np.nan)
        failures: dict[int, str] = {}
        for pos, (generator, path) in enumerate(zip(rows["generator"], rows["path"], strict=True)):
            probed = self._probe_generator(str(generator), ctx)
            value = probed.get(path, np.nan)
            if np.isfinite(value):
                scores[pos] = value
            else:
                failures[pos] = f"{NO_SCORE}: the bias probe needs at least 2 real and 2 fake images of {generator}"
        return scores, failures

    def _probe_generator(self, generator: str, ctx: RunContext) -> pd.Series:
        if generator not in self._probed:
            assert ctx.probe_rows is not None
            rows = ctx.probe_rows[ctx.probe_rows["generator"] == generator].reset_index(drop=True)
            labels = rows["label"].to_numpy(dtype=np.int64)
            config = self.config

            def fit_score(train_pos: np.ndarray, test_pos: np.ndarray) -> np.ndarray:
                model = MetadataModel.fit(rows.iloc[train_pos], labels[train_pos], config.c, config.max_iter,
                                          ctx.seed)
                return model.score(rows.iloc[test_pos])

            scores, _ = cross_validated_scores(labels, config.probe_folds, ctx.seed, fit_score)
            self._probed[generator] = pd.Series(scores, index=rows["path"].to_numpy())
        return self._probed[generator]

    def save(self, directory: Path) -> None:
        """Write the model (or the bias-probe marker) as JSON.

        Args:
            directory: the fit's state folder.
        """
        if self.probing:
            state: dict[str, Any] = {"bias_probe": True}
        else:
            assert self.model is not None
            m = self.model
            state = {"formats": m.formats, "mean": m.mean.tolist(), "scale": m.scale.tolist(),
                     "coef": m.coef.tolist(), "intercept": m.intercept}
        (directory / STATE_FILE).write_text(json.dumps(state))

    def load(self, directory: Path) -> None:
        """Read what :meth:`save` wrote, strictly.

        Args:
            directory: the fit's state folder.

        Raises:
            WeightsError: the file is missing, unreadable or not a shortcut state.
        """
        path = directory / STATE_FILE
        try:
            state = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise WeightsError(f"{path}: not a shortcut state ({exc})") from None
        if state == {"bias_probe": True}:
            self.probing, self.model = True, None
            return
        if not isinstance(state, dict) or sorted(state) != sorted(STATE_KEYS):
            raise WeightsError(f"{path}: expected the keys {', '.join(STATE_KEYS)}")
        try:
            formats = [str(f) for f in state["formats"]]
            arrays = [np.asarray(state[k], dtype=np.float64) for k in ("mean", "scale", "coef")]
            intercept = float(state["intercept"])
        except (TypeError, ValueError) as exc:
            raise WeightsError(f"{path}: not a shortcut state ({exc})") from None
        width = len(formats) + 6
        if any(a.shape != (width,) or not np.isfinite(a).all() for a in arrays) or not np.isfinite(intercept):
            raise WeightsError(f"{path}: expected {width} finite values per vector for {len(formats)} formats")
        self.probing = False
        self.model = MetadataModel(formats, arrays[0], arrays[1], arrays[2], intercept)
