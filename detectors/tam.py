"""Texture-Aware Masking (TAM): per-patch texture scores, patch selection and mask fills.

Pure tensor code on the batch's device, vectorised over the batch, no I/O. Conventions:

- Scores are computed on the crop the network sees: the normalised input ``x [B, 3, H, W]`` is
  un-normalised with the preprocessing mean/std to RGB in [0, 1] and reduced to BT.601 luma. Every operator
  looks only at the pixels inside a patch (no patch borrows texture from its neighbour).
- The grid is the ViT patch size (tokens are in row-major order, as in open_clip's ``conv1`` flattening)
  or, for a CNN, a pixel grid of ``grid`` px. Pixels beyond the last whole patch are never masked (the
  ViT patch embedding drops them too).
- Masks are bool ``[B, gh, gw]``; True = masked. Every image gets exactly ``k = round(ratio * gh * gw)``
  masked patches (half rounds up), or none when it is drawn to train unmasked (``p_unmasked``).
- All random choices draw from the ``torch.Generator`` passed in, so masks are reproducible.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, get_args

import torch
from torch import Tensor, nn

from detbench.config import ConfigError

Operator = Literal["diff4", "variance", "sobel", "laplacian", "dct_hf"]
Strategy = Literal["tam", "random", "inverse", "stochastic", "none"]
Fill = Literal["zero", "token", "drop"]
OPERATORS: tuple[str, ...] = get_args(Operator)
LUMA = (0.299, 0.587, 0.114)


@dataclass(frozen=True)
class MaskConfig:
    """What to mask during training (evaluation never masks)."""

    strategy: Strategy = "tam"  # tam: most textured; random: control; inverse: least textured
    ratio: float = 0.4  # fraction of patches masked per image
    operator: Operator = "diff4"  # texture score per patch
    fill: Fill = "zero"  # zero: mean colour; token: learnable mask token (ViT); drop: remove tokens (ViT)
    temperature: float = 1.0  # stochastic: softmax temperature on per-image standardised scores
    p_unmasked: float = 0.0  # probability that a training image is left unmasked
    grid: int = 16  # pixel grid for CNN backbones (a ViT always uses its patch size)

    def validate(self) -> None:
        """Check the option ranges (called after every ``--set``).

        Raises:
            ConfigError: ``ratio`` or ``p_unmasked`` outside [0, 1], a non-positive temperature, or a grid below 2 px.
        """
        if not 0.0 <= self.ratio <= 1.0:
            raise ConfigError(f"mask.ratio must be in [0, 1]; got {self.ratio}")
        if not self.temperature > 0:
            raise ConfigError(f"mask.temperature must be > 0; got {self.temperature}")
        if not 0.0 <= self.p_unmasked <= 1.0:
            raise ConfigError(f"mask.p_unmasked must be in [0, 1]; got {self.p_unmasked}")
        if self.grid < 2:
            raise ConfigError(f"mask.grid must be >= 2 px; got {self.grid}")

    @property
    def active(self) -> bool:
        """Whether training masks anything at all."""
        return self.strategy != "none" and self.ratio > 0 and self.p_unmasked < 1.0


# ------------------------------------------------------------------------------------------- scores


def luma(x: Tensor, mean: Sequence[float], std: Sequence[float]) -> Tensor:
    """Normalised ``[B, 3, H, W]`` → BT.601 luma ``[B, H, W]`` of the un-normalised RGB (in [0, 1]).

    Args:
        x: the normalised batch.
        mean: the preprocessing's per-channel mean.
        std: the preprocessing's per-channel standard deviation.

    Returns:
        The luma, float32.
    """
    m = torch.as_tensor(mean, dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
    s = torch.as_tensor(std, dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
    w = torch.as_tensor(LUMA, dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
    return ((x.float() * s + m) * w).sum(dim=1)


def grid_shape(height: int, width: int, patch: int) -> tuple[int, int]:
    """The whole patches of an input: ``(height // patch, width // patch)``.

    Args:
        height: input height in pixels.
        width: input width in pixels.
        patch: patch side in pixels.

    Returns:
        ``(gh, gw)``.

    Raises:
        ValueError: the input holds no whole patch.
    """
    if height < patch or width < patch:
        raise ValueError(f"a {height}x{width} input holds no whole {patch} px patch")
    return height // patch, width // patch


def patchify(y: Tensor, patch: int) -> Tensor:
    """``[B, H, W]`` → ``[B, gh, gw, p, p]`` (whole patches only).

    Args:
        y: the per-pixel values (e.g. luma).
        patch: patch side ``p`` in pixels.

    Returns:
        The patches, row-major.
    """
    b, h, w = y.shape
    gh, gw = grid_shape(h, w, patch)
    y = y[:, : gh * patch, : gw * patch]
    return y.reshape(b, gh, patch, gw, patch).permute(0, 1, 3, 2, 4)


def _valid_conv(patches: Tensor, kernels: Tensor) -> Tensor:
    """3x3 'valid' convolution inside each patch: ``[M, p, p]`` → ``[M, K, p-2, p-2]``."""
    return nn.functional.conv2d(patches.unsqueeze(1), kernels.unsqueeze(1))


def _dct_matrix(n: int, device: torch.device) -> Tensor:
    """Orthonormal DCT-II matrix ``D`` (``D @ v`` transforms a length-``n`` signal)."""
    k = torch.arange(n, dtype=torch.float64, device=device).unsqueeze(1)
    i = torch.arange(n, dtype=torch.float64, device=device).unsqueeze(0)
    d = torch.cos(math.pi * (2 * i + 1) * k / (2 * n)) * math.sqrt(2.0 / n)
    d[0] /= math.sqrt(2.0)
    return d.float()


def _operator_scores(p: Tensor, operator: str) -> Tensor:
    """Texture score per patch for ``p [M, P, P]`` → ``[M]``."""
    if operator == "diff4":
        # PatchCraft-style texture diversity: mean absolute neighbour difference in 4 directions, summed.
        return ((p[:, :, 1:] - p[:, :, :-1]).abs().mean((1, 2))
                + (p[:, 1:, :] - p[:, :-1, :]).abs().mean((1, 2))
                + (p[:, 1:, 1:] - p[:, :-1, :-1]).abs().mean((1, 2))
                + (p[:, 1:, :-1] - p[:, :-1, 1:]).abs().mean((1, 2)))
    if operator == "variance":
        return p.var(dim=(1, 2), unbiased=False)
    if operator == "sobel":  # mean gradient magnitude (blind to a one-pixel-period checkerboard)
        gx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], device=p.device)
        g = _valid_conv(p, torch.stack([gx, gx.T]))
        return torch.hypot(g[:, 0], g[:, 1]).mean((1, 2))
    if operator == "laplacian":
        lap = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]], device=p.device)
        return _valid_conv(p, lap.unsqueeze(0))[:, 0].var(dim=(1, 2), unbiased=False)
    if operator == "dct_hf":
        # Mean energy of the DCT coefficients with u + v >= P/2: all but the low-frequency triangle, so the
        # DC term and smooth shading do not count, while a 4 px period pattern does.
        n = p.shape[-1]
        d = _dct_matrix(n, p.device)
        coef = d @ p @ d.T
        u = torch.arange(n, device=p.device)
        high = 2 * (u.unsqueeze(1) + u.unsqueeze(0)) >= n
        return coef.square()[:, high].mean(dim=1)
    raise ValueError(f"unknown texture operator {operator!r}; choose one of {', '.join(OPERATORS)}")


def texture_scores(x: Tensor, patch: int, operator: str = "diff4", *, mean: Sequence[float] = (0.0, 0.0, 0.0),
                   std: Sequence[float] = (1.0, 1.0, 1.0)) -> Tensor:
    """Per-patch texture of normalised images ``x [B, 3, H, W]`` → ``[B, gh, gw]`` (higher: more textured).

    Args:
        x: the normalised batch.
        patch: patch side in pixels (>= 2).
        operator: one of :data:`OPERATORS`.
        mean: the preprocessing's mean (the default treats ``x`` as raw RGB).
        std: the preprocessing's standard deviation.

    Returns:
        The scores.

    Raises:
        ValueError: a patch below 2 px or an unknown operator.
    """
    if patch < 2:
        raise ValueError(f"patch must be >= 2 px; got {patch}")
    patches = patchify(luma(x, mean, std), patch)
    b, gh, gw = patches.shape[:3]
    scores = _operator_scores(patches.reshape(b * gh * gw, patch, patch), operator)
    return scores.reshape(b, gh, gw)


# ----------------------------------------------------------------------------------------- selection


def num_masked(n_patches: int, ratio: float) -> int:
    """``round(ratio * n)`` with halves rounded up (not Python's banker's rounding).

    Args:
        n_patches: the patches per image.
        ratio: the fraction to mask.

    Returns:
        The count, at most ``n_patches``.
    """
    return min(n_patches, int(math.floor(ratio * n_patches + 0.5)))


def _standardise(s: Tensor) -> Tensor:
    mu = s.mean(dim=1, keepdim=True)
    sd = s.std(dim=1, keepdim=True, unbiased=False)
    return (s - mu) / torch.where(sd > 0, sd, torch.ones_like(sd))


def select_patches(scores: Tensor, strategy: str, ratio: float, *, generator: torch.Generator | None = None,
                   temperature: float = 1.0) -> Tensor:
    """Choose ``k = num_masked(gh*gw, ratio)`` patches per image from ``scores [B, gh, gw]``.

    Args:
        scores: per-patch texture scores.
        strategy: ``tam`` (the k most textured), ``inverse`` (the k least textured), ``random`` (k uniformly at
            random), ``stochastic`` (k without replacement with probabilities softmax(z / temperature), z = the
            image's standardised scores: Gumbel top-k; temperature → 0 tends to ``tam``, → inf to ``random``)
            or ``none`` (nothing).
        ratio: the fraction of patches masked.
        generator: the random generator of ``random`` and ``stochastic``.
        temperature: the softmax temperature of ``stochastic``.

    Returns:
        The bool mask ``[B, gh, gw]`` (True = masked).

    Raises:
        ValueError: an unknown strategy.
    """
    b, gh, gw = scores.shape
    n = gh * gw
    k = num_masked(n, ratio)
    mask = torch.zeros(b, n, dtype=torch.bool, device=scores.device)
    if strategy == "none" or k == 0:
        return mask.view(b, gh, gw)
    flat = scores.reshape(b, n).float()
    if strategy == "tam":
        key = flat
    elif strategy == "inverse":
        key = -flat
    elif strategy == "random":
        key = torch.rand(b, n, generator=generator, device=scores.device)
    elif strategy == "stochastic":
        u = torch.rand(b, n, generator=generator, device=scores.device).clamp_(1e-12, 1.0 - 1e-7)
        key = _standardise(flat) / temperature - torch.log(-torch.log(u))
    else:
        raise ValueError(f"unknown mask strategy {strategy!r}; choose tam, random, inverse, stochastic, none")
    mask.scatter_(1, key.topk(k, dim=1, sorted=False).indices, True)
    return mask.view(b, gh, gw)


def make_mask(x: Tensor, cfg: MaskConfig, patch: int, *, mean: Sequence[float], std: Sequence[float],
              generator: torch.Generator | None = None) -> Tensor:
    """The training mask for a normalised batch.

    Scores are computed only when the strategy uses them; each image is then left unmasked with probability
    ``cfg.p_unmasked``.

    Args:
        x: the normalised batch ``[B, 3, H, W]``.
        cfg: the mask settings.
        patch: the grid's patch side in pixels.
        mean: the preprocessing's mean.
        std: the preprocessing's standard deviation.
        generator: the random generator of every draw.

    Returns:
        The bool mask ``[B, gh, gw]`` (True = masked).
    """
    b = x.shape[0]
    gh, gw = grid_shape(x.shape[-2], x.shape[-1], patch)
    if cfg.strategy in ("tam", "inverse", "stochastic"):
        scores = texture_scores(x, patch, cfg.operator, mean=mean, std=std)
    else:
        scores = torch.zeros(b, gh, gw, device=x.device)
    mask = select_patches(scores, cfg.strategy, cfg.ratio, generator=generator, temperature=cfg.temperature)
    if cfg.p_unmasked > 0:
        unmasked = torch.rand(b, generator=generator, device=x.device) < cfg.p_unmasked
        mask &= ~unmasked.view(b, 1, 1)
    return mask


# --------------------------------------------------------------------------------------------- fills


def zero_fill(x: Tensor, mask: Tensor, patch: int) -> Tensor:
    """Masked patches of a normalised batch set to 0 (= the preprocessing mean colour), as a new tensor.

    Args:
        x: the normalised batch ``[B, 3, H, W]``.
        mask: bool ``[B, gh, gw]``.
        patch: patch side in pixels.

    Returns:
        The filled batch (pixels beyond the last whole patch untouched).
    """
    b, gh, gw = mask.shape
    pixels = mask.repeat_interleave(patch, dim=1).repeat_interleave(patch, dim=2)
    full = torch.zeros(b, x.shape[-2], x.shape[-1], dtype=torch.bool, device=x.device)
    full[:, : gh * patch, : gw * patch] = pixels
    return x.masked_fill(full.unsqueeze(1), 0.0)


class ViTTokenFill(nn.Module):
    """``token`` / ``drop`` fills on an open_clip ``VisionTransformer``, through forward hooks.

    - ``token``: a hook on ``visual.conv1`` replaces the masked patch embeddings ``[B, D, gh, gw]`` with a
      learnable mask token before the positional embedding is added (BEiT/SimMIM style);
    - ``drop``: a hook on ``visual.patch_dropout`` (it receives ``[B, 1+N, D]`` after the positional
      embedding) removes the masked tokens MAE-style; every image in the batch must mask the same number.

    ``self.mask`` (bool ``[B, gh, gw]`` or None) applies to the next forward; None leaves the model untouched.
    """

    def __init__(self, visual: nn.Module, fill: str) -> None:
        super().__init__()
        from open_clip.transformer import VisionTransformer

        if not isinstance(visual, VisionTransformer):
            raise TypeError(f"fill={fill!r} needs an open_clip VisionTransformer, not "
                            f"{type(visual).__name__}")
        self.fill = fill
        self.mask: Tensor | None = None
        if fill == "token":
            self.mask_token = nn.Parameter(torch.zeros(visual.conv1.out_channels))
            nn.init.normal_(self.mask_token, std=0.02)
            self._handle = visual.conv1.register_forward_hook(self._replace)
        elif fill == "drop":
            self._handle = visual.patch_dropout.register_forward_hook(self._drop)
        else:
            raise ValueError(f"ViTTokenFill handles fill 'token' or 'drop', not {fill!r}")

    def _replace(self, _module: nn.Module, _inputs: tuple[Tensor, ...], out: Tensor) -> Tensor | None:
        if self.mask is None:
            return None
        if self.mask.shape != (out.shape[0], *out.shape[2:]):
            raise ValueError(f"mask {tuple(self.mask.shape)} does not fit the patch grid {tuple(out.shape)}")
        token = self.mask_token.to(out.dtype).view(1, -1, 1, 1)
        return torch.where(self.mask.unsqueeze(1), token, out)

    def _drop(self, _module: nn.Module, _inputs: tuple[Tensor, ...], out: Tensor) -> Tensor | None:
        if self.mask is None:
            return None
        b, n_tokens, d = out.shape
        keep = ~self.mask.reshape(b, -1)
        if keep.shape[1] != n_tokens - 1:
            raise ValueError(f"mask of {keep.shape[1]} patches for {n_tokens - 1} patch tokens")
        counts = keep.sum(dim=1)
        if not bool((counts == counts[0]).all()):
            raise ValueError("fill=drop needs the same number of masked patches in every image of a batch")
        kept = out[:, 1:][keep].view(b, int(counts[0]), d)
        return torch.cat([out[:, :1], kept], dim=1)

    def remove(self) -> None:
        """Detach the hook from the model."""
        self._handle.remove()
