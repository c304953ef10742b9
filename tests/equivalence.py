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

Also the checks every released-checkpoint test makes of its command-line run (:func:`assert_released_run_matches`)
and of a refused checkpoint (:func:`assert_refused_naming`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
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


# ---------------------------------------------------------------------------------------------- released checkpoints


def released_run(home: Path, detector: str, suite: str = "folder") -> tuple[dict[str, Any], pd.DataFrame]:
    """The one finished run of ``detector`` on ``suite`` under ``home``: its record and its per-image scores."""
    [record] = [json.loads(p.read_text()) for p in (home / "runs" / suite / detector).glob("*/run.json")]
    return record, pd.read_parquet(Path(record["paths"]["run"]) / "scores.parquet")


def assert_released_run_matches(home: Path, detector: str, ref32: Mapping[str, float], ref64: Mapping[str, float],
                                *, images: int, suite: str = "folder") -> dict[str, Any]:
    """A released checkpoint's evaluation run scored every image as the reference did, with the released weights.

    Every one of ``images`` images is scored; the float64 reference is not saturated (a comparison of saturated
    scores would prove nothing); the scores match it within :func:`assert_matches_reference`'s bound; the run
    used the released weights and trained on nothing.

    Args:
        home: the DETBENCH_HOME of the run.
        detector: the detector's name.
        ref32: the reference's float32 score per image path.
        ref64: the reference's float64 score per image path.
        images: how many images the run must have scored.
        suite: the suite of the run.

    Returns:
        The run record (for the detector's own further checks).
    """
    record, scores = released_run(home, detector, suite)
    assert len(scores) == images and (scores["status"] == "ok").all()
    expected = scores["path"].map(ref64).to_numpy()
    assert expected.std() > 0.05 and ((expected > 0.02) & (expected < 0.98)).sum() >= 3  # not saturated
    assert_matches_reference(scores["score"], scores["path"].map(ref32), expected)
    assert record["fit"]["weights"] == "released" and record["counts"]["train"]["used"] == 0
    return record


def assert_refused_naming(result: Any, *names: str) -> None:
    """The command ended with exit 2 and one message (no traceback) that names every one of ``names``."""
    text = " ".join(result.output.split())
    assert result.exit_code == 2 and "Traceback" not in text, result.output
    missing = [n for n in names if n not in text]
    assert not missing, f"{missing} not named in: {text}"


def write_test_images(root: Path, images: Any, *, seed: int, noise: tuple[float, float], **save: Any) -> Path:
    """A folder suite of ramps with Gaussian noise (std ``noise[0] + noise[1] * i`` for the i-th image): content
    that differs from image to image at every frequency, so a wrong crop, filter or normalisation shows.

    Args:
        root: the suite root to fill.
        images: ``(generator, label folder, file name, width, height)`` per image.
        seed: seeds the noise.
        noise: the noise's base standard deviation and its increase per image.
        **save: passed to ``PIL.Image.save`` (e.g. ``quality`` for JPEG names).

    Returns:
        ``root``.
    """
    from PIL import Image

    rng = np.random.default_rng(seed)
    for i, (gen, label, name, w, h) in enumerate(images):
        path = root / gen / label / name
        path.parent.mkdir(parents=True, exist_ok=True)
        ramp = np.linspace(0, 200, w)[None, :, None] + np.linspace(0, 40, h)[:, None, None]
        pixels = ramp + rng.normal(0, noise[0] + noise[1] * i, (h, w, 3))
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path, **save)
    return root
