"""Numeric precision of a backbone's forward pass: a setting of every detector that runs one.

``fp32`` is what the original detectors run (and what reproduction presets pin); ``bf16`` and ``fp16`` run
the forward pass under ``torch.autocast`` (faster on GPUs, about 1 % relative error on a CLIP embedding);
``auto`` means bf16 on CUDA and fp32 elsewhere. The resolved value enters the feature-cache key and the run
identity, so changing it is a new run that re-extracts.
"""

from __future__ import annotations

import contextlib
from typing import Any

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
PRECISION_HELP = "fp32 (the originals), bf16 or fp16 (autocast), auto (bf16 on CUDA, fp32 elsewhere)"


def resolve_precision(setting: str, device: str) -> str:
    """The precision a run uses on ``device``.

    Args:
        setting: one of :data:`PRECISIONS`.
        device: a torch device string (``cpu``, ``cuda``, ``cuda:1`` ...).

    Returns:
        ``fp32``, ``bf16`` or ``fp16`` (``auto`` resolved: bf16 on CUDA, fp32 elsewhere).
    """
    from detbench.config import ConfigError

    if setting not in PRECISIONS:
        raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}; got {setting!r}")
    if setting == "auto":
        return "bf16" if str(device).startswith("cuda") else "fp32"
    return setting


def autocast(precision: str, device: str) -> contextlib.AbstractContextManager[Any]:
    """A context running the forward pass at ``precision`` (a resolved value) on ``device``.

    Args:
        precision: ``fp32``, ``bf16`` or ``fp16``.
        device: a torch device string.

    Returns:
        ``torch.autocast`` for bf16/fp16, a null context for fp32.
    """
    if precision == "fp32":
        return contextlib.nullcontext()
    import torch

    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    return torch.autocast("cuda" if str(device).startswith("cuda") else "cpu", dtype=dtype)
