"""LoRA as a weight parametrization: trainable low-rank deltas on a block's weights (MPFT's ``trainable=lora``)."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize


class LowRankDelta(nn.Module):
    """LoRA as a parametrization: ``W + (alpha / rank) * (B @ A)`` reshaped to W (linear weights, attention
    in-projections, conv kernels); B starts at zero, so training starts exactly from W.
    """

    def __init__(self, shape: torch.Size, rank: int, alpha: float, device: torch.device) -> None:
        super().__init__()
        rows, cols = shape[0], int(np.prod(shape[1:]))
        r = min(rank, rows, cols)
        self.lora_a = nn.Parameter(torch.empty(r, cols, device=device))
        self.lora_b = nn.Parameter(torch.zeros(rows, r, device=device))
        nn.init.kaiming_uniform_(self.lora_a, a=math.sqrt(5))
        self.scale = alpha / rank

    def forward(self, w: Tensor) -> Tensor:
        """The adapted weight.

        Args:
            w: the original weight.

        Returns:
            ``w + (alpha / rank) * (B @ A)`` reshaped to ``w`` (in ``w``'s dtype).
        """
        return w + (self.lora_b @ self.lora_a).view_as(w).to(w.dtype) * self.scale


def add_lora(block: nn.Module, rank: int, alpha: float) -> int:
    """Give every weight with ndim >= 2 directly owned by a module of ``block`` a trainable low-rank delta.

    Args:
        block: the block to adapt.
        rank: the LoRA rank (capped by each weight's shape).
        alpha: the LoRA scale numerator (the delta is scaled by ``alpha / rank``).

    Returns:
        How many weights were adapted.
    """
    targets = [(mod, name, p) for mod in block.modules()
               for name, p in list(mod.named_parameters(recurse=False)) if p.ndim >= 2]
    for mod, name, p in targets:
        parametrize.register_parametrization(mod, name, LowRankDelta(p.shape, rank, alpha, p.device))
    return len(targets)
