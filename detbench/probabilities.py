"""Turning detector outputs into P(fake): the one sigmoid and softmax of detbench."""

from __future__ import annotations

import numpy as np


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """P(fake) from logits, without overflow for large magnitudes.

    Args:
        logits: any float array.

    Returns:
        ``1 / (1 + exp(-logits))`` as float64, computed as ``(1 + tanh(z / 2)) / 2``.
    """
    z = np.asarray(logits, dtype=np.float64)
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def softmax_fake(logits: np.ndarray) -> np.ndarray:
    """P(fake) from two-class logits ordered (real, fake): ``softmax(logits)[:, 1]``.

    Args:
        logits: ``[N, 2]`` float array.

    Returns:
        ``[N]`` float64, computed as ``sigmoid(fake - real)`` (the same number, without overflow).
    """
    z = np.asarray(logits, dtype=np.float64)
    return sigmoid(z[:, 1] - z[:, 0])
