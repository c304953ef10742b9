"""Frozen-backbone linear probe: logistic regression on cached image embeddings.

The regularisation strength C is chosen on the held-out part of the training generator only (never on
evaluation generators); the final model is the one fitted on the training part with that C, so the
held-out rows stay clean for threshold calibration.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd

from detbench import distributed as dist
from detbench.errors import WeightsError
from detbench.kit.detector import RunContext
from detbench.kit.frozen_features import FrozenFeatureDetector
from detbench.probabilities import finite_rows, sigmoid


@dataclass(frozen=True)
class LinearProbeConfig:
    """Linear probe options: backbone, embedding, input preprocessing and the regularisation search."""

    backbone: str = ""  # empty: the suite's default backbone
    embedding: str = ""  # empty: the backbone's default embedding
    crop: int = 0  # 0: the backbone's default input size
    resize: Literal["", "none", "shorter", "stretch"] = ""  # "": the backbone's default policy
    pad: Literal["", "mean", "black"] = ""  # fill of images smaller than the crop; "": mean colour
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"  # forward pass: see detbench.models.precision
    normalize: bool = True  # L2-normalise embeddings before the probe
    c_grid: tuple[float, ...] = (0.01, 0.1, 1.0, 10.0, 100.0)
    selection_metric: Literal["balanced_acc", "ap", "auc"] = "balanced_acc"
    max_iter: int = 2000
    batch_size: int = 64

    def validate(self) -> None:
        """Check the option ranges (called after every ``--set``).

        Raises:
            ConfigError: a non-positive C in ``c_grid``, ``max_iter`` or ``batch_size`` below 1, or a negative crop.
        """
        from detbench.config import ConfigError

        if not self.c_grid or any(not c > 0 for c in self.c_grid):
            raise ConfigError(f"c_grid must hold positive values; got {','.join(f'{c:g}' for c in self.c_grid)}")
        for name, value, low in (("max_iter", self.max_iter, 1), ("batch_size", self.batch_size, 1),
                                 ("crop", self.crop, 0)):
            if value < low:
                raise ConfigError(f"{name} must be >= {low}" + (" (0: the backbone's size)" if low == 0 else "")
                                  + f"; got {value}")


REGISTRATION = {  # read by detbench.registry without importing this module: literals only
    "name": "linear-probe",
    "class": "LinearProbe",
    "summary": "Logistic regression on frozen backbone features (regularisation chosen on the training generator).",
    "paper": "baseline: a linear probe on frozen features",
}


class LinearProbe(FrozenFeatureDetector):
    """Logistic regression on frozen backbone features, regularisation chosen on the training generator."""

    name = REGISTRATION["name"]
    version = 1
    Config = LinearProbeConfig
    summary = REGISTRATION["summary"]
    tiny_settings: ClassVar[dict[str, Any]] = {"backbone": "timm:efficientnet_lite0@bundled", "crop": 32}
    profile_defaults = {"small": {"crop": 128}}
    requires_heldout = True  # C is chosen on the held-out images

    def fit(self, train: pd.DataFrame, heldout: pd.DataFrame, ctx: RunContext) -> dict[str, Any]:
        """Standardise the clean features, fit one logistic regression per C and keep the best on the held-out rows.

        Under torchrun every rank extracts features; only rank 0 fits (the others return no facts).

        Args:
            train: the training rows.
            heldout: the held-out rows (model selection by ``selection_metric``; ties go to the smaller C).
            ctx: the run context.

        Returns:
            The chosen C, every trial's score and the counts of usable training and held-out images.

        Raises:
            DataError: the usable training images lack a class, or there is no usable held-out image.
        """
        from sklearn.linear_model import LogisticRegression
        from sklearn.preprocessing import StandardScaler

        from detbench.metrics import binary_metrics

        x_train, y_train = self._usable(*self.features(train, ctx, "features (train)", perturb=False), train)
        x_held, y_held = self._usable(*self.features(heldout, ctx, "features (held-out)", perturb=False), heldout)
        if not dist.is_main():  # under torchrun the features are extracted by all ranks, the probe fit by rank 0
            return {}
        if len(np.unique(y_train)) < 2 or len(np.unique(y_held)) < 1:
            from detbench.errors import DataError

            raise DataError(
                f"linear-probe needs usable real and fake training images; {len(y_train)} training images loaded "
                f"({int((y_train == 0).sum())} real, {int((y_train == 1).sum())} fake) and {len(y_held)} held-out"
            )
        scaler = StandardScaler().fit(x_train)
        xs_train, xs_held = scaler.transform(x_train), scaler.transform(x_held)
        trials = []
        for c in self.config.c_grid:
            clf = LogisticRegression(C=c, max_iter=self.config.max_iter, random_state=ctx.seed)
            clf.fit(xs_train, y_train)
            score = binary_metrics(y_held, clf.predict_proba(xs_held)[:, 1])[self.config.selection_metric]
            trials.append({"C": c, self.config.selection_metric: float(score), "model": clf})
        best = max(trials, key=lambda t: (np.nan_to_num(t[self.config.selection_metric], nan=-1.0), -t["C"]))
        clf = best["model"]
        self.mean_, self.scale_ = scaler.mean_.astype(np.float64), scaler.scale_.astype(np.float64)
        self.coef_, self.intercept_ = clf.coef_[0].astype(np.float64), float(clf.intercept_[0])
        self.chosen_c = best["C"]
        return {
            "chosen_C": best["C"],
            "selection": [{k: v for k, v in t.items() if k != "model"} for t in trials],
            "n_train_used": int(len(y_train)),
            "n_heldout_used": int(len(y_held)),
        }

    @staticmethod
    def _usable(feats: np.ndarray, failures: dict[int, str], rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        keep = finite_rows(feats)
        if keep.all():  # the usual case: no copy
            return feats, rows["label"].to_numpy()
        return feats[keep], rows["label"].to_numpy()[keep]

    def decision(self, feats: np.ndarray) -> np.ndarray:
        """P(fake) of features under the fitted probe (standardise, linear map, sigmoid).

        Args:
            feats: ``[N, D]`` finite features.

        Returns:
            ``[N]`` probabilities.
        """
        z = ((feats - self.mean_) / self.scale_) @ self.coef_ + self.intercept_
        return sigmoid(z)

    def head_parameter_count(self) -> int:
        """The probe's parameters: a coefficient per feature and the intercept (the standardisation is fitted, not
        learnt).

        Returns:
            ``D + 1``.
        """
        return int(np.size(self.coef_)) + 1

    def save(self, directory: Path) -> None:
        """Write the probe: standardisation and coefficients (safetensors), intercept and C (JSON).

        Args:
            directory: the state folder (created if missing).
        """
        from safetensors.numpy import save_file

        directory.mkdir(parents=True, exist_ok=True)
        save_file({"mean": self.mean_, "scale": self.scale_, "coef": self.coef_}, str(directory / "probe.safetensors"))
        (directory / "probe.json").write_text(json.dumps({"intercept": self.intercept_, "C": self.chosen_c}))

    def load(self, directory: Path) -> None:
        """Restore the probe written by :meth:`save`.

        Args:
            directory: the state folder.

        Raises:
            WeightsError: the files are unreadable or hold other tensors than a probe's.
        """
        from safetensors import SafetensorError
        from safetensors.numpy import load_file

        try:
            tensors = load_file(str(directory / "probe.safetensors"))
            meta = json.loads((directory / "probe.json").read_text())
            intercept, chosen_c = float(meta["intercept"]), meta["C"]
        except (OSError, ValueError, KeyError, TypeError, SafetensorError) as exc:
            raise WeightsError(f"{directory} holds no readable linear-probe state ({exc})") from None
        if set(tensors) != {"mean", "scale", "coef"}:
            found = ", ".join(sorted(tensors))
            raise WeightsError(f"{directory}: the linear-probe state holds {found}; expected coef, mean and scale")
        self.mean_, self.scale_, self.coef_ = tensors["mean"], tensors["scale"], tensors["coef"]
        self.intercept_, self.chosen_c = intercept, chosen_c
