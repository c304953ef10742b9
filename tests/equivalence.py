"""Comparing detbench's float32 scores with a reference forward pass written in a test, with a tolerance derived
from the computation instead of a fixed one (which depends on the CPU's float32 summation order).

The test runs its reference twice on the same weights and the same (float32) input: in float32, the original's
precision, and in float64 (weights and input cast to double), which is exact to ~1e-15 here. The float32
rounding error actually present in this computation is ``err32 = max |ref32 - ref64|``. detbench's float32
scores round the same operations in another summation order (batching, threads, another CPU), so they lie
within a small multiple of that error of the exact value: ``|score - ref64| <= 4 * err32 + 4 * eps32``, where
``eps32 = 2**-23`` covers the last-bit rounding of a float32 sigmoid/softmax near 1 and the float32 score itself.
The bound must stay far below the error of a wrong layer, crop or normalisation (>> 1e-4): ``limit`` checks it,
so a large err32 cannot hide a wrong architecture.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

EPS32 = 2.0**-23


def double_state(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The same weights cast to float64 (integer buffers such as ``num_batches_tracked`` kept)."""
    return {k: v.double() if v.is_floating_point() else v for k, v in sd.items()}


def assert_matches_reference(scores, ref32, ref64, *, limit: float = 1e-4) -> float:
    """Assert ``|scores - ref64| <= 4 * err32 + 4 * eps32`` image by image, with ``err32 = max |ref32 - ref64|``.

    Args:
        scores: detbench's scores, in the order of the references.
        ref32: the reference forward pass in float32.
        ref64: the same forward pass in float64.
        limit: the bound must stay below this (a wrong computation differs by more).

    Returns:
        err32, the measured float32 rounding error of the reference.
    """
    scores, ref32, ref64 = (np.asarray(a, dtype=np.float64).ravel() for a in (scores, ref32, ref64))
    assert scores.shape == ref32.shape == ref64.shape
    assert np.isfinite(scores).all() and np.isfinite(ref64).all()
    err32 = float(np.max(np.abs(ref32 - ref64)))
    bound = 4 * err32 + 4 * EPS32
    print(f"err32={err32:.3g} bound={bound:.3g} max|score-ref64|={np.max(np.abs(scores - ref64)):.3g}")
    assert bound < limit, f"float32 rounding error {err32:.3g} too large for a strict check (bound {bound:.3g})"
    diff = np.abs(scores - ref64)
    assert (diff <= bound).all(), (
        f"scores differ from the float64 reference by up to {diff.max():.3g} (image {int(diff.argmax())}), "
        f"beyond 4 * err32 + 4 * eps32 = {bound:.3g} (err32 = {err32:.3g})\n"
        f"scores={scores}\nref64={ref64}"
    )
    return err32
