"""Colour statistics: a logistic regression on the mean and spread of each colour channel (a template detector).

A complete, working detector in one file, small enough to read in five minutes: copy it to
``detectors/<your_detector>.py``, rename, and replace the features and the classifier with your method. It is real
(it learns, and on data whose fakes shift colours it detects them) but weak: do not report its numbers as a method.

What each part is for:

- ``REGISTRATION``: the facts ``detbench ls detectors`` shows, read without importing this module (literals only).
- ``ColourStatsConfig``: every setting, with its default; each field is a ``--set`` key and part of the run id.
- ``fit`` / ``predict`` / ``save`` / ``load``: the contract of :class:`detbench.kit.detector.Detector`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from detbench.config import ConfigError
from detbench.errors import TrainingError, WeightsError
from detbench.kit.detector import Detector, RunContext
from detbench.kit.scoring import score_logits
from detbench.probabilities import sigmoid

REGISTRATION = {  # read by detbench.registry without importing this module: literals only
    "name": "colour-stats",
    "class": "ColourStats",
    "summary": "Template: logistic regression on per-channel colour mean and spread (not a published method).",
    "paper": "template: the detector of the plugin guide",
}


@dataclass(frozen=True)
class ColourStatsConfig:
    """The detector's settings (``--set key=value``)."""

    size: int = 64  # images are resized to size x size before the statistics
    c: float = 1.0  # inverse L2 strength of the logistic regression
    batch_size: int = 32

    def validate(self) -> None:
        """Refuse values no run could use, before any work.

        Raises:
            ConfigError: naming the key and the accepted range.
        """
        if self.size < 1 or self.batch_size < 1 or not self.c > 0:
            raise ConfigError("colour-stats needs size >= 1, batch_size >= 1 and c > 0")


class _Statistics(nn.Module):
    """``[B, 3, H, W]`` -> ``[B, 6]``: the mean and standard deviation of each channel."""

    def forward(self, x: Tensor) -> Tensor:
        flat = x.flatten(2)
        return torch.cat([flat.mean(-1), flat.std(-1)], dim=1)


class ColourStats(Detector):
    name = REGISTRATION["name"]
    version = 1  # bump whenever the same config would give other scores
    Config = ColourStatsConfig
    summary = REGISTRATION["summary"]

    def __init__(self, config: ColourStatsConfig) -> None:
        super().__init__(config)
        self.weights: np.ndarray | None = None  # 6 coefficients, then the intercept

    def _features(self, rows: pd.DataFrame, ctx: RunContext, perturb: Any | None) -> tuple[np.ndarray, dict[int, str]]:
        from torchvision import transforms

        transform = transforms.Compose([transforms.Resize((self.config.size, self.config.size)), transforms.ToTensor()])
        return score_logits(_Statistics(), rows, ctx, transform, device="cpu", precision="fp32",
                            batch_size=ctx.batch_size or self.config.batch_size, perturb=perturb)

    def fit(self, train: pd.DataFrame, heldout: pd.DataFrame, ctx: RunContext) -> dict[str, Any]:
        """Fit the logistic regression on the training rows' statistics (nothing to select on ``heldout``).

        Args:
            train: the training rows.
            heldout: unused: the model has no hyper-parameter chosen on data.
            ctx: the run context.

        Returns:
            How many training images were used and skipped.

        Raises:
            TrainingError: no training image of one of the classes could be read.
        """
        from sklearn.linear_model import LogisticRegression

        features, failures = self._features(train, ctx, perturb=None)
        usable = np.isfinite(features).all(axis=1)
        labels = train["label"].to_numpy()[usable]
        if len(set(labels.tolist())) < 2:
            raise TrainingError("colour-stats needs readable real and fake training images")
        model = LogisticRegression(C=self.config.c, max_iter=1000).fit(features[usable], labels)
        self.weights = np.concatenate([model.coef_[0], model.intercept_]).astype(np.float64)
        return {"train_used": int(usable.sum()), "train_skipped": len(failures)}

    def predict(self, rows: pd.DataFrame, ctx: RunContext) -> tuple[np.ndarray, dict[int, str]]:
        """P(fake) of each row: the sigmoid of the fitted linear function of its statistics.

        Args:
            rows: the rows to score.
            ctx: the run context (its perturbation applies).

        Returns:
            ``(scores, failures)``, NaN where an image could not be read.
        """
        assert self.weights is not None, "fit() or load() first"
        features, failures = self._features(rows, ctx, perturb=ctx.perturbation)
        return sigmoid(features @ self.weights[:-1] + self.weights[-1]), failures

    def save(self, directory: Path) -> None:
        """Write the coefficients as JSON.

        Args:
            directory: the fit's state folder.
        """
        assert self.weights is not None
        (directory / "weights.json").write_text(json.dumps(self.weights.tolist()))

    def load(self, directory: Path) -> None:
        """Read the coefficients :meth:`save` wrote.

        Args:
            directory: the fit's state folder.

        Raises:
            WeightsError: the file is missing, unreadable, or not 7 finite numbers.
        """
        path = directory / "weights.json"
        try:
            weights = np.asarray(json.loads(path.read_text()), dtype=np.float64)
        except (OSError, ValueError, TypeError) as exc:
            raise WeightsError(f"{path}: not colour-stats weights ({exc})") from None
        if weights.shape != (7,) or not np.isfinite(weights).all():
            raise WeightsError(f"{path}: expected 7 finite numbers, found shape {weights.shape}")
        self.weights = weights
