"""LoRA two ways: as a weight parametrization (trainable low-rank deltas on a block's weights, MPFT's
``trainable=lora``) and as a wrapper adding a low-rank branch's output to a linear layer's (DDA's ``LoRALinear``).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize


def init_factors(a: Tensor, b: Tensor) -> None:
    """LoRA's initialisation: ``A`` Kaiming-uniform (``a = sqrt(5)``, nn.Linear's), ``B`` zero (the delta starts at 0).

    Args:
        a: the ``[rank, in]`` factor.
        b: the ``[out, rank]`` factor.
    """
    nn.init.kaiming_uniform_(a, a=math.sqrt(5))
    nn.init.zeros_(b)


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
        init_factors(self.lora_a, self.lora_b)
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


class LoRABranch(nn.Module):
    """The low-rank branch ``(x A^T) B^T * alpha / rank`` (parameters ``lora_A`` ``[rank, in]``, ``lora_B``
    ``[out, rank]``), computed from the activations, never merged into a weight.
    """

    def __init__(self, features_in: int, features_out: int, rank: int, alpha: float) -> None:
        super().__init__()
        self.lora_A = nn.Parameter(torch.zeros(rank, features_in))
        self.lora_B = nn.Parameter(torch.zeros(features_out, rank))
        init_factors(self.lora_A, self.lora_B)
        self.scale = alpha / rank

    def forward(self, x: Tensor) -> Tensor:
        """The branch's output.

        Args:
            x: ``[..., in]``.

        Returns:
            ``[..., out]``.
        """
        return (x @ self.lora_A.T) @ self.lora_B.T * self.scale


class LoRALinear(nn.Module):
    """A linear layer (``original_layer``, frozen) plus a :class:`LoRABranch` (``lora``) on the same input."""

    def __init__(self, original_layer: nn.Linear, rank: int, alpha: float) -> None:
        super().__init__()
        self.original_layer = original_layer.requires_grad_(False)
        self.lora = LoRABranch(original_layer.in_features, original_layer.out_features, rank, alpha)

    def forward(self, x: Tensor) -> Tensor:
        """``original_layer(x) + lora(x)``."""
        return self.original_layer(x) + self.lora(x)


def wrap_linears(model: nn.Module, targets: tuple[str, ...], rank: int, alpha: float) -> int:
    """Replace every ``nn.Linear`` of ``model`` whose qualified name contains one of ``targets`` by a
    :class:`LoRALinear` around it.

    Args:
        model: the network (changed in place).
        targets: name fragments (``attn.qkv`` ...).
        rank: the LoRA rank.
        alpha: the scale numerator (the branch is scaled by ``alpha / rank``).

    Returns:
        How many layers were wrapped.
    """
    chosen = [name for name, mod in model.named_modules()
              if isinstance(mod, nn.Linear) and any(t in name for t in targets)]
    for name in chosen:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        setattr(parent, child, LoRALinear(getattr(parent, child), rank, alpha))
    return len(chosen)
