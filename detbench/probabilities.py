"""Turning detector outputs into P(fake): the one sigmoid and softmax of detbench, and the rows they apply to."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

SIGMOID_DTYPES = ("float64", "float32")


def sigmoid(logits: np.ndarray, dtype: str = "float64") -> np.ndarray:
    """P(fake) from logits, without overflow for large magnitudes.

    Args:
        logits: any float array.
        dtype: ``float64`` (every logit up to about ±36.7 keeps its rank), or ``float32``: torch's sigmoid of the
            float32 logits, as the originals' ``model(x).sigmoid()`` computes it. In float32 every logit above
            about 16.6 becomes exactly 1.0 (and nearby logits share a value), so such images tie in AP as
            they do in the originals' ``average_precision_score``.

    Returns:
        ``1 / (1 + exp(-logits))`` as float64 (float64: computed as ``(1 + tanh(z / 2)) / 2``).

    Raises:
        ValueError: an unknown ``dtype``.
    """
    if dtype == "float32":
        import torch

        return torch.sigmoid(torch.as_tensor(np.asarray(logits, dtype=np.float32))).double().numpy()
    if dtype != "float64":
        raise ValueError(f"sigmoid dtype must be one of {SIGMOID_DTYPES}, got {dtype!r}")
    z = np.asarray(logits, dtype=np.float64)
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def softmax_fake(logits: np.ndarray, dtype: str = "float64") -> np.ndarray:
    """P(fake) from two-class logits ordered (real, fake): ``softmax(logits)[:, 1]``.

    Args:
        logits: ``[N, 2]`` float array.
        dtype: ``float64``: computed as ``sigmoid(fake - real)`` (the same number, without overflow; every margin
            up to about 36.7 keeps its rank), or ``float32``: ``scipy.special.softmax`` of the float32 logits, as
            the originals' ``softmax(output.numpy(), axis=1)[:, 1]`` computes it. In float32 every margin above
            about 17.3 gives exactly 1.0 (and nearby margins share a value), so such images tie in AP as they
            do in the originals' ``average_precision_score``.

    Returns:
        ``[N]`` float64.

    Raises:
        ValueError: an unknown ``dtype``.
    """
    if dtype == "float32":
        from scipy.special import softmax

        return softmax(np.asarray(logits, dtype=np.float32), axis=1)[:, 1].astype(np.float64)
    if dtype != "float64":
        raise ValueError(f"softmax dtype must be one of {SIGMOID_DTYPES}, got {dtype!r}")
    z = np.asarray(logits, dtype=np.float64)
    return sigmoid(z[:, 1] - z[:, 0])


LOGIT_EPS = 2.0**-53  # probabilities are clipped to [eps, 1 - eps]: |logit| <= 36.7, always finite


def logit(probabilities: np.ndarray) -> np.ndarray:
    """Log-odds of P(fake): the inverse of :func:`sigmoid`, finite everywhere.

    Args:
        probabilities: values in [0, 1] (NaN stays NaN).

    Returns:
        ``log(p / (1 - p))`` as float64, with ``p`` clipped to ``[2**-53, 1 - 2**-53]`` first: a saturated 0 or 1
        (a sigmoid of a logit beyond about ±36.7 in float64) maps to ∓36.7 instead of infinity.
    """
    p = np.clip(np.asarray(probabilities, dtype=np.float64), LOGIT_EPS, 1.0 - LOGIT_EPS)
    return np.log(p) - np.log1p(-p)


def finite_rows(values: np.ndarray) -> np.ndarray:
    """Which rows of ``values`` (``[N, ...]``) are finite everywhere: the images a detector could use.

    Args:
        values: per-image features or logits, NaN where an image failed.

    Returns:
        A boolean mask ``[N]``.
    """
    return np.isfinite(values).reshape(len(values), -1).all(axis=1)


def score_finite_rows(values: np.ndarray, decide: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """``decide`` on the finite rows of ``values`` (:func:`finite_rows`), NaN for the others.

    Args:
        values: per-image features ``[N, ...]``, NaN where an image failed.
        decide: maps the finite rows to one score each.

    Returns:
        Scores ``[N]`` (float64).
    """
    scores = np.full(len(values), np.nan)
    keep = finite_rows(values)
    if keep.any():
        scores[keep] = decide(values[keep])
    return scores
