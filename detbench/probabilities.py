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
