"""Score index rows with an image classifier: its logits, batch by batch, and why an image could not be scored.

Used for evaluation by the end-to-end detectors (:class:`~detbench.kit.classifier.ClassifierDetector`, MPFT) and for
the held-out rows of the training loops.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from detbench.data.loading import HalveOnOom, ImageRowsDataset, iterate_batches, tune_cpu_allocator
from detbench.kit.detector import RunContext
from detbench.models.precision import autocast


def score_logits(model: Callable[[Tensor], Tensor], rows: pd.DataFrame, ctx: RunContext, transform: Any, *,
                 device: str, precision: str, batch_size: int, perturb: Any | None = None,
                 by_shape: bool = False, description: str | None = None) -> tuple[np.ndarray, dict[int, str]]:
    """Logits of ``rows`` (``[N]`` for one logit, ``[N, K]`` for K) under ``transform``, NaN where an image
    failed, and the failure reasons by row position.

    Args:
        model: maps a normalised batch ``[B, 3, H, W]`` on ``device`` to logits ``[B, K]``.
        rows: index rows (``path``, ``image_id``) under ``ctx.suite_root``.
        ctx: the run context (workers, phases).
        transform: PIL image -> tensor ``[3, H, W]``.
        device: where the model runs.
        precision: a resolved precision (``fp32``, ``bf16``, ``fp16``).
        batch_size: images per forward pass.
        perturb: optional ``(img, image_id) -> img`` applied before ``transform`` (evaluation perturbations).
        by_shape: images may differ in size (native resolution): each batch runs once per tensor shape.
        description: progress-bar label (None: no bar).

    Returns:
        ``(logits, failures)``.
    """
    if device == "cpu":
        tune_cpu_allocator()
    dataset = ImageRowsDataset(ctx.suite_root, rows["path"].tolist(), transform,
                               image_ids=rows["image_id"].astype(str).tolist(), perturb=perturb)
    out: np.ndarray | None = None
    failures: dict[int, str] = {}
    cuda = device.startswith("cuda")
    forward = HalveOnOom(model)
    phase = ctx.phases.phase(description, len(rows)) if description else contextlib.nullcontext(None)
    with phase as advance, torch.inference_mode(), autocast(precision, device):
        for batch in iterate_batches(dataset, batch_size=batch_size, workers=ctx.workers, pin_memory=cuda,
                                     by_shape=by_shape):
            failures.update({int(i): reason for i, reason in batch.failures})
            if batch.x is not None:
                logits = forward(batch.x.to(device, non_blocking=cuda)).float().cpu().numpy()
                if out is None:
                    out = np.full((len(rows), *logits.shape[1:]), np.nan)
                out[batch.indices] = logits
            if advance is not None:
                advance(len(batch.indices) + len(batch.failures))
    if out is None:
        out = np.full(len(rows), np.nan)
    return (out[:, 0] if out.ndim == 2 and out.shape[1] == 1 else out), failures
