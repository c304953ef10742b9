"""The Stable Diffusion VAE (diffusers ``AutoencoderKL``) that CO-SPY's SD v1.4 artefact branch reconstructs with.

Written from diffusers' module layout so a state dict saved from ``AutoencoderKL`` (diffusers 0.32, the
original's pinned version) loads strictly under its own key names: ``encoder.conv_in``,
``encoder.down_blocks.{i}.resnets.{j}.{norm1,conv1,norm2,conv2,conv_shortcut}``,
``encoder.down_blocks.{i}.downsamplers.0.conv``, ``{encoder,decoder}.mid_block.{resnets.{0,1},attentions.0.{group_norm,
to_q,to_k,to_v,to_out.0}}``, ``{encoder,decoder}.{conv_norm_out,conv_out}``, ``quant_conv``, ``post_quant_conv``,
``decoder.up_blocks.{i}.resnets.{j}``, ``decoder.up_blocks.{i}.upsamplers.0.conv``.

Semantics (diffusers ``Encoder``/``Decoder``, ``ResnetBlock2D``, ``Attention`` with one head, ``Downsample2D``
with its asymmetric (0, 1, 0, 1) zero pad before a stride-2 3x3 convolution, ``Upsample2D`` nearest x2 then a
3x3 convolution): GroupNorm eps 1e-6, SiLU, no dropout at evaluation, output scale factors 1. The reconstruction
CO-SPY uses is ``decode(encode(x).latent_dist.mean).sample``: the mean half of ``quant_conv``'s moments, through
``post_quant_conv`` and the decoder (no latent scaling factor: that belongs to the diffusion pipeline).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F

EPS = 1e-6  # diffusers' VAE GroupNorm epsilon


@dataclass(frozen=True)
class VAEShape:
    """The ``AutoencoderKL`` config fields that shape the network (SD v1.4: 128/256/512/512, 2 layers, 4 latents)."""

    channels: tuple[int, ...] = (128, 256, 512, 512)  # block_out_channels
    layers_per_block: int = 2
    latent_channels: int = 4
    groups: int = 32  # norm_num_groups


class ResnetBlock(nn.Module):
    """diffusers ``ResnetBlock2D`` without a time embedding."""

    def __init__(self, cin: int, cout: int, groups: int) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, cin, eps=EPS)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.norm2 = nn.GroupNorm(groups, cout, eps=EPS)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.conv_shortcut = nn.Conv2d(cin, cout, 1) if cin != cout else None

    def forward(self, x: Tensor) -> Tensor:
        """``x + conv2(silu(norm2(conv1(silu(norm1(x))))))``, the shortcut projected when the width changes."""
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return (x if self.conv_shortcut is None else self.conv_shortcut(x)) + h


class Attention(nn.Module):
    """diffusers ``Attention`` as the VAE mid block builds it: one head over all positions, residual added."""

    def __init__(self, channels: int, groups: int) -> None:
        super().__init__()
        self.group_norm = nn.GroupNorm(groups, channels, eps=EPS)
        self.to_q = nn.Linear(channels, channels)
        self.to_k = nn.Linear(channels, channels)
        self.to_v = nn.Linear(channels, channels)
        self.to_out = nn.ModuleList([nn.Linear(channels, channels), nn.Dropout(0.0)])

    def forward(self, x: Tensor) -> Tensor:
        """Softmax(q k^T / sqrt(C)) v over the ``H*W`` positions, projected, plus ``x``."""
        b, c, h, w = x.shape
        tokens = self.group_norm(x).view(b, c, h * w).transpose(1, 2)
        q, k, v = self.to_q(tokens), self.to_k(tokens), self.to_v(tokens)
        weights = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(c), dim=-1)
        out = self.to_out[0](weights @ v)
        return out.transpose(1, 2).reshape(b, c, h, w) + x


class MidBlock(nn.Module):
    """``UNetMidBlock2D``: resnet, attention, resnet."""

    def __init__(self, channels: int, groups: int) -> None:
        super().__init__()
        self.resnets = nn.ModuleList([ResnetBlock(channels, channels, groups) for _ in range(2)])
        self.attentions = nn.ModuleList([Attention(channels, groups)])

    def forward(self, x: Tensor) -> Tensor:
        """The first resnet, the attention, the second resnet."""
        return self.resnets[1](self.attentions[0](self.resnets[0](x)))


class Downsample(nn.Module):
    """``Downsample2D(padding=0)``: zero pad right and bottom by one, then a stride-2 3x3 convolution."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=0)

    def forward(self, x: Tensor) -> Tensor:
        """The padded stride-2 convolution."""
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample(nn.Module):
    """``Upsample2D``: nearest-neighbour x2, then a 3x3 convolution."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        """The upsampled, convolved map."""
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class _Block(nn.Module):
    """A ``DownEncoderBlock2D`` / ``UpDecoderBlock2D``: resnets, then an optional resampler."""

    def __init__(self, resnets: list[ResnetBlock], sampler: nn.Module | None, name: str) -> None:
        super().__init__()
        self.resnets = nn.ModuleList(resnets)
        if sampler is not None:
            setattr(self, name, nn.ModuleList([sampler]))
        self.sampler_name = name if sampler is not None else None

    def forward(self, x: Tensor) -> Tensor:
        """The resnets in order, then the resampler."""
        for resnet in self.resnets:
            x = resnet(x)
        if self.sampler_name is not None:
            x = getattr(self, self.sampler_name)[0](x)
        return x


class Encoder(nn.Module):
    """diffusers ``Encoder`` with ``double_z=True``: ``2 * latent_channels`` output maps."""

    def __init__(self, shape: VAEShape) -> None:
        super().__init__()
        ch, g = shape.channels, shape.groups
        self.conv_in = nn.Conv2d(3, ch[0], 3, padding=1)
        blocks, cin = [], ch[0]
        for i, cout in enumerate(ch):
            resnets = [ResnetBlock(cin if j == 0 else cout, cout, g) for j in range(shape.layers_per_block)]
            blocks.append(_Block(resnets, Downsample(cout) if i < len(ch) - 1 else None, "downsamplers"))
            cin = cout
        self.down_blocks = nn.ModuleList(blocks)
        self.mid_block = MidBlock(ch[-1], g)
        self.conv_norm_out = nn.GroupNorm(g, ch[-1], eps=EPS)
        self.conv_out = nn.Conv2d(ch[-1], 2 * shape.latent_channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        """Input convolution, down blocks, mid block, norm, SiLU, output convolution."""
        x = self.conv_in(x)
        for block in self.down_blocks:
            x = block(x)
        return self.conv_out(F.silu(self.conv_norm_out(self.mid_block(x))))


class Decoder(nn.Module):
    """diffusers ``Decoder``: the encoder's widths reversed, ``layers_per_block + 1`` resnets per up block."""

    def __init__(self, shape: VAEShape) -> None:
        super().__init__()
        ch, g = tuple(reversed(shape.channels)), shape.groups
        self.conv_in = nn.Conv2d(shape.latent_channels, ch[0], 3, padding=1)
        self.mid_block = MidBlock(ch[0], g)
        blocks, cin = [], ch[0]
        for i, cout in enumerate(ch):
            resnets = [ResnetBlock(cin if j == 0 else cout, cout, g) for j in range(shape.layers_per_block + 1)]
            blocks.append(_Block(resnets, Upsample(cout) if i < len(ch) - 1 else None, "upsamplers"))
            cin = cout
        self.up_blocks = nn.ModuleList(blocks)
        self.conv_norm_out = nn.GroupNorm(g, ch[-1], eps=EPS)
        self.conv_out = nn.Conv2d(ch[-1], 3, 3, padding=1)

    def forward(self, z: Tensor) -> Tensor:
        """Input convolution, mid block, up blocks, norm, SiLU, output convolution."""
        x = self.mid_block(self.conv_in(z))
        for block in self.up_blocks:
            x = block(x)
        return self.conv_out(F.silu(self.conv_norm_out(x)))


class AutoencoderKL(nn.Module):
    """The VAE; :meth:`reconstruct` is ``decode(encode(x).latent_dist.mean).sample``."""

    def __init__(self, shape: VAEShape | None = None) -> None:
        super().__init__()
        shape = shape or VAEShape()
        self.latent_channels = shape.latent_channels
        self.encoder = Encoder(shape)
        self.decoder = Decoder(shape)
        self.quant_conv = nn.Conv2d(2 * shape.latent_channels, 2 * shape.latent_channels, 1)
        self.post_quant_conv = nn.Conv2d(shape.latent_channels, shape.latent_channels, 1)

    def reconstruct(self, x: Tensor) -> Tensor:
        """The decoded mean latent of ``x`` (no gradient, as the original's ``reconstruct``).

        Args:
            x: ``[B, 3, H, W]`` images (H and W multiples of ``2 ** (len(channels) - 1)``).

        Returns:
            The reconstruction, same shape.
        """
        with torch.no_grad():
            mean = self.quant_conv(self.encoder(x))[:, : self.latent_channels]
            return self.decoder(self.post_quant_conv(mean))
