"""One-class detection by a Gaussian mixture of real images' features (SDAIE's and BLADES' one-class variants).

The originals fit scikit-learn's ``GaussianMixture`` on the features of real training images, take as threshold
the log-likelihood of the real training image at index ``int(q * N)`` of their sorted log-likelihoods (``q`` the
false-alarm share), and call an image generated when its log-likelihood falls below it. detbench scores
``0.5 * (1 + z / (1 + |z|))`` with ``z = (threshold - log p) / scale``: above 0.5 exactly where the original says
generated (its accuracy), and strictly decreasing in ``log p`` (its ranking, so its AUC and AP). A softsign, not a
sigmoid: generated images often sit hundreds of scales below the threshold, where a float64 sigmoid is exactly 1.0
for all of them and would tie their ranks; the softsign keeps them apart up to about 1e15 scales.

The mixture is stored as arrays (safetensors) and its threshold and scale as JSON, never pickled.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from detbench.errors import DataError, WeightsError

ARRAYS = ("weights", "means", "covariances", "precisions_cholesky")  # the fitted ``GaussianMixture`` attributes (+ _)
ARRAYS_FILE = "gmm.safetensors"
FACTS_FILE = "gmm.json"


def one_class_probability(loglik: np.ndarray, threshold: float, scale: float) -> np.ndarray:
    """P(fake) of log-likelihoods under the real images' mixture (see the module docstring).

    Args:
        loglik: per-image log-likelihoods.
        threshold: the decision threshold (generated below it).
        scale: the log-likelihood difference that moves the score from 0.5 to 0.75.

    Returns:
        float64 scores in (0, 1).
    """
    z = (threshold - np.asarray(loglik, dtype=np.float64)) / scale
    return 0.5 * (1.0 + z / (1.0 + np.abs(z)))


@dataclass
class RealMixture:
    """A fitted mixture of real training features, with the original's threshold and detbench's score scale."""

    gmm: Any  # sklearn.mixture.GaussianMixture
    threshold: float
    scale: float
    n_real: int

    @classmethod
    def fit(cls, features: np.ndarray, *, components: int, covariance: str, seed: int, false_alarm: float,
            who: str, init: str = "k-means++", max_iter: int = 100, reg_covar: float = 1e-6,
            scale: float = 0.0) -> RealMixture:
        """Fit on ``[N, D]`` float32 features of real training images (as the originals: the features as they are).

        Args:
            features: the real training images' features.
            components: ``n_components``.
            covariance: ``covariance_type``.
            seed: ``random_state`` (the original's fixed one).
            false_alarm: the share ``q`` of real training images below the threshold.
            who: the detector and variant, for messages.
            init: ``init_params``.
            max_iter: ``max_iter``.
            reg_covar: ``reg_covar``.
            scale: the score scale; 0 takes the standard deviation of the training log-likelihoods (1 if they are
                all equal).

        Returns:
            The fitted mixture.

        Raises:
            DataError: too few images for the components, or a mixture scikit-learn cannot fit.
        """
        from sklearn.mixture import GaussianMixture

        features = np.asarray(features, dtype=np.float32)
        if len(features) < max(2, components):
            raise DataError(f"{who}: {len(features)} real training images gave features; a mixture of {components} "
                            f"components needs at least {max(2, components)}: add real training images or lower "
                            "--set gmm_components")
        gmm = GaussianMixture(n_components=components, covariance_type=covariance, init_params=init,
                              random_state=seed, max_iter=max_iter, reg_covar=reg_covar)
        try:
            gmm.fit(features)
        except ValueError as exc:
            raise DataError(f"{who}: the {components}-component {covariance}-covariance mixture cannot be fitted on "
                            f"{len(features)} real training images ({str(exc).split('.')[0]}); add real training "
                            "images, lower --set gmm_components or pass --set gmm_covariance=diag") from None
        loglik = np.sort(gmm.score_samples(features).astype(np.float64))
        threshold = float(loglik[int(len(loglik) * false_alarm)])
        return cls(gmm, threshold, float(scale or (np.std(loglik) or 1.0)), len(features))

    def probability(self, features: np.ndarray) -> np.ndarray:
        """P(fake) of ``[N, D]`` features (:func:`one_class_probability` of their float32 log-likelihoods).

        Args:
            features: the images' features.

        Returns:
            ``[N]`` float64 scores.
        """
        return one_class_probability(self.gmm.score_samples(np.asarray(features, dtype=np.float32)), self.threshold,
                                     self.scale)

    def facts(self) -> dict[str, Any]:
        """What the run record keeps: images fitted, threshold, scale, convergence."""
        return {"n_real": self.n_real, "threshold": self.threshold, "scale": self.scale,
                "converged": bool(getattr(self.gmm, "converged_", True)),
                "n_iter": int(getattr(self.gmm, "n_iter_", 0))}

    def save(self, directory: Path) -> None:
        """Write the arrays and the facts into ``directory``."""
        from safetensors.numpy import save_file

        directory.mkdir(parents=True, exist_ok=True)
        save_file({name: np.ascontiguousarray(getattr(self.gmm, f"{name}_")) for name in ARRAYS},
                  str(directory / ARRAYS_FILE))
        (directory / FACTS_FILE).write_text(json.dumps(self.facts(), sort_keys=True))

    @classmethod
    def load(cls, directory: Path, *, components: int, covariance: str, who: str, dim: int | None = None
             ) -> RealMixture:
        """Read :meth:`save`'s files, checked against the configuration.

        Args:
            directory: the state folder.
            components: the configured ``n_components``.
            covariance: the configured ``covariance_type``.
            who: the detector and variant, for messages.
            dim: the feature dimension the detector produces, when fixed.

        Returns:
            A mixture that scores as the saved one.

        Raises:
            WeightsError: unreadable files, or arrays this configuration's mixture cannot have.
        """
        from safetensors import SafetensorError
        from safetensors.numpy import load_file
        from sklearn.mixture import GaussianMixture

        try:
            arrays = load_file(str(directory / ARRAYS_FILE))
        except (OSError, SafetensorError) as exc:
            raise WeightsError(f"{directory / ARRAYS_FILE} holds no readable {who} mixture ({exc})") from None
        try:
            facts = json.loads((directory / FACTS_FILE).read_text())
            threshold, scale, n_real = float(facts["threshold"]), float(facts["scale"]), int(facts["n_real"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise WeightsError(f"{directory / FACTS_FILE} holds no readable {who} threshold ({exc})") from None
        means = arrays.get("means")
        if (set(arrays) != set(ARRAYS) or arrays["weights"].shape != (components,) or means is None
                or means.ndim != 2 or means.shape[0] != components or (dim is not None and means.shape[1] != dim)):
            found = ", ".join(f"{name} {list(v.shape)}" for name, v in sorted(arrays.items()))
            raise WeightsError(f"{directory / ARRAYS_FILE} is not the {components}-component {who} mixture "
                               f"{'of ' + str(dim) + '-d features ' if dim else ''}these settings need: {found}")
        gmm = GaussianMixture(n_components=components, covariance_type=covariance)
        for name in ARRAYS:
            setattr(gmm, f"{name}_", arrays[name])
        gmm.n_features_in_ = means.shape[1]
        gmm.converged_, gmm.n_iter_ = bool(facts.get("converged", True)), int(facts.get("n_iter", 0))
        return cls(gmm, threshold, scale, n_real)
