"""FatFormer (Liu et al., "Forgery-aware Adaptive Transformer for Generalizable Synthetic Image Detection", CVPR 2024).

Faithful to the authors' code (Michel-liu/FatFormer: ``models/clip_models.py``, ``models/clip/model.py``,
``utils/dataset.py``, ``main.py``; Apache-2.0):

- **Image encoder**: OpenAI CLIP ViT-L/14 (``conv1`` without bias, class and position embeddings, ``ln_pre``, 24
  pre-norm blocks with QuickGELU, ``ln_post``, ``proj``) run with ``return_full``: ``ln_post`` and ``proj`` on every
  token, ``[B, 1 + 256, 768]``. ``num_vit_adapter`` (3 in the published evaluation command) blocks, the last of each
  equal group (layers 8, 16, 24), carry a **forgery-aware adapter**: ``x = x + attn(ln_1(x))``, then
  ``x = x + mlp(ln_2(x)) + adapter(x)``. The adapter adds an image part, ``0.1 * conv1d(relu(conv1d(x)))`` (1024 ->
  64 -> 1024, kernel 1, on every token), and ``freq_scale`` (a trained scalar) times a frequency part: the patch
  tokens as a ``16 x 16`` map, one level of the Haar DWT (``pytorch_wavelets.DWTForward(J=1, wave='haar')``: LL,
  LH, HL, HH), ``GroupNorm(128)``, attention across the four bands at each position (``intra_band``, 8 heads),
  ``LayerNorm``, attention across positions within each band (``inter_band``), ``LayerNorm``, a ReLU FFN (4x) with
  ``LayerNorm``, the inverse DWT, zero for the class token. Dropouts (0.1) act only in training.
- **Language-guided alignment**: the prompts ``"X X X X X X X X real."`` and ``"... fake."``: the start token and
  the class-name/end tokens are embedded buffers (``token_prefix``, ``token_suffix``, loaded from the checkpoint),
  between them 8 learnt context vectors, which the **patch-based enhancer** (``ctx`` attending over all image
  tokens, 12 heads, ``LayerNorm``, ReLU FFN, ``LayerNorm``) makes image-specific. CLIP's text encoder (causal
  12-layer transformer, ``ln_final``, the end token's feature through ``text_projection``) embeds both prompts.
  Logits (real, fake): ``exp(logit_scale) * cos(class token, text)`` plus the **text-guided interactor**'s
  ``exp(logit_scale) * cos(mean over patches of LN(FFN(LN(patches + attn(patches -> texts)))), text)``;
  P(fake) = ``softmax[:, 1]`` (``main.evaluate``).
- **Checkpoint**: ``{'model': state_dict}`` of ``CLIPModel``, loaded by ``load_state_dict`` strictly. Its layout
  holds the whole CLIP under ``clip_model.`` and, because ``CLIPModel`` also registers the same modules as
  ``image_encoder`` (the image tower), ``text_encoder`` (``transformer``, ``positional_embedding``, ``ln_final``,
  ``text_projection``) and ``logit_scale``, these tensors a second time under those names; as in PyTorch's load,
  the copy loaded last is the one used. The DWT filters are buffers of the checkpoint
  (``dwt_transform.h0_col``, ...); they must be pytorch_wavelets' Haar filters, which :func:`haar_dwt` computes.
- **Evaluation** (``utils/dataset.py``, ``test``): ``Resize((256, 256))`` (PIL bilinear, aspect ratio not kept),
  ``CenterCrop(224)``, ``ToTensor``, ImageNet mean/std (not CLIP's), for every test set.
- **Training**: the repository ships only inference code; see :class:`FatFormerConfig` for detbench's recipe.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn
from torchvision import transforms

from detbench.config import ConfigError
from detbench.data.preprocess import imagenet_tensor
from detbench.kit.classifier import ClassifierDetector, EvalPreprocessing
from detbench.kit.detector import RunContext
from detbench.kit.schedules import StepDecaySchedule
from detbench.kit.seeded_data import TorchDrawn
from detbench.kit.training import TrainableParts, TrainSetup, cross_entropy
from detbench.models.weights import WeightsError
from detbench.probabilities import softmax_fake

from .safe import WAVELETS, dwt_band

CLASSNAMES = ("real", "fake")  # CLIPModel's classnames: logit 0 real, logit 1 fake
DWT_FILTERS = ("dwt_transform.h0_col", "dwt_transform.h1_col", "dwt_transform.h0_row", "dwt_transform.h1_row",
               "idwt_transform.g0_col", "idwt_transform.g1_col", "idwt_transform.g0_row", "idwt_transform.g1_row")


# ---------------------------------------------------------------------------------------------- Haar DWT


def haar_dwt(x: Tensor) -> Tensor:
    """One level of ``pytorch_wavelets.DWTForward(J=1, wave='haar')`` on an even-sized map.

    Args:
        x: ``[B, C, H, W]``, ``H`` and ``W`` even.

    Returns:
        ``[B, C, 4, H / 2, W / 2]``: LL, LH, HL, HH (first letter: the filter along the width).
    """
    return torch.stack([dwt_band(x, "haar", band) for band in ("LL", "LH", "HL", "HH")], dim=2)


def haar_idwt(y: Tensor) -> Tensor:
    """``pytorch_wavelets.DWTInverse(wave='haar')``: the exact inverse of :func:`haar_dwt`.

    Args:
        y: ``[B, C, 4, h, w]`` (LL, LH, HL, HH).

    Returns:
        ``[B, C, 2h, 2w]``.
    """
    ll, lh, hl, hh = y.unbind(2)
    top_left, top_right = (ll + lh + hl + hh) / 2, (ll + lh - hl - hh) / 2
    bottom_left, bottom_right = (ll - lh + hl - hh) / 2, (ll - lh - hl + hh) / 2
    top = torch.stack([top_left, top_right], dim=-1).flatten(-2)
    bottom = torch.stack([bottom_left, bottom_right], dim=-1).flatten(-2)
    return torch.stack([top, bottom], dim=-2).flatten(-3, -2)


def haar_filters() -> dict[str, Tensor]:
    """The filter buffers ``pytorch_wavelets`` registers for ``wave='haar'`` (float32): analysis filters reversed,
    columns ``[1, 1, 2, 1]``, rows ``[1, 1, 1, 2]``; synthesis filters as PyWavelets lists them.

    Returns:
        ``{name: tensor}`` under the adapter's key names of :data:`DWT_FILTERS`.
    """
    lo, hi = WAVELETS["haar"]
    rec_lo, rec_hi = lo[::-1], hi[::-1]  # orthogonal wavelet: the synthesis filters are the reversed analysis ones
    taps = [lo[::-1], hi[::-1], lo[::-1], hi[::-1], rec_lo, rec_hi, rec_lo, rec_hi]
    shapes = [(1, 1, 2, 1), (1, 1, 2, 1), (1, 1, 1, 2), (1, 1, 1, 2)] * 2
    return {name: torch.tensor(t, dtype=torch.float32).reshape(s) for name, t, s in zip(DWT_FILTERS, taps, shapes,
                                                                                       strict=True)}


class _Filters(nn.Module):
    """Holds pytorch_wavelets' filter buffers under their names (``h0_col``, ... or ``g0_col``, ...)."""

    def __init__(self, filters: dict[str, Tensor]) -> None:
        super().__init__()
        for name, value in filters.items():
            self.register_buffer(name, value)


# ---------------------------------------------------------------------------------------------- network


class QuickGELU(nn.Module):
    """OpenAI CLIP's ``x * sigmoid(1.702 x)``."""

    def forward(self, x: Tensor) -> Tensor:
        """The activation."""
        return x * torch.sigmoid(1.702 * x)


class ForgeryAwareAdapter(nn.Module):
    """``ForgeryAwareAdapterLayer``: an image part and a DWT frequency part added to a block's output."""

    def __init__(self, c: FatFormerConfig) -> None:
        super().__init__()
        d = c.width
        self.scale = c.adapter_scale
        self.dropout = c.adapter_dropout
        self.first_conv_layer = nn.Conv1d(d, c.adapter_bottleneck, kernel_size=1)
        self.non_linear_func = nn.ReLU()
        self.second_conv_layer = nn.Conv1d(c.adapter_bottleneck, d, kernel_size=1)
        self.freq_scale = nn.Parameter(torch.zeros(1))
        filters = haar_filters()
        self.dwt_transform = _Filters({k.split(".")[1]: v for k, v in filters.items() if k.startswith("dwt")})
        self.idwt_transform = _Filters({k.split(".")[1]: v for k, v in filters.items() if k.startswith("idwt")})
        self.dwt_norm = nn.GroupNorm(c.adapter_groups, d)
        self.intra_band = nn.MultiheadAttention(d, c.adapter_heads)
        self.dropout_intra = nn.Dropout(c.adapter_dropout)
        self.norm_intra = nn.LayerNorm(d)
        self.inter_band = nn.MultiheadAttention(d, c.adapter_heads)
        self.dropout_inter = nn.Dropout(c.adapter_dropout)
        self.norm_inter = nn.LayerNorm(d)
        self.linear1 = nn.Linear(d, 4 * d)
        self.activation = nn.ReLU()
        self.dropout3 = nn.Dropout(c.adapter_dropout)
        self.linear2 = nn.Linear(4 * d, d)
        self.dropout4 = nn.Dropout(c.adapter_dropout)
        self.norm3 = nn.LayerNorm(d)

    def frequency(self, x: Tensor) -> Tensor:
        """Attention across bands, then across positions, then the FFN, on ``[B, 4, n, D]``."""
        b, bands, n, d = x.shape
        q = x.transpose(0, 1).flatten(1, 2)  # [4, B * n, D]: the bands of each position
        t = self.intra_band(q, q, q, need_weights=False)[0].reshape(bands, b, n, d).transpose(0, 1)
        x = self.norm_intra(x + self.dropout_intra(t))
        q = x.flatten(0, 1).transpose(0, 1)  # [n, B * 4, D]: the positions of each band
        t = self.inter_band(q, q, q, need_weights=False)[0].transpose(0, 1).reshape(b, bands, n, d)
        x = self.norm_inter(x + self.dropout_inter(t))
        t = self.linear2(self.dropout3(self.activation(self.linear1(x))))
        return self.norm3(x + self.dropout4(t))

    def forward(self, x: Tensor) -> Tensor:
        """``[1 + g * g, B, D]`` (sequence first) -> the adapter's addition, the same shape."""
        n_tokens, b, d = x.shape
        g = math.isqrt(n_tokens - 1)
        grid = x[1:].transpose(0, 1).reshape(b, g, g, d).permute(0, 3, 1, 2)
        bands = haar_dwt(grid)  # [B, D, 4, g / 2, g / 2]
        h, w = bands.shape[-2:]
        bands = self.dwt_norm(bands.flatten(-2)).permute(0, 2, 3, 1)  # [B, 4, h * w, D]
        freq = self.frequency(bands).reshape(b, 4, h, w, d).permute(0, 4, 1, 2, 3)
        freq = haar_idwt(freq).flatten(-2).permute(2, 0, 1)  # [g * g, B, D]
        freq = torch.cat([torch.zeros_like(x[:1]), freq], dim=0)
        down = nn.functional.dropout(self.non_linear_func(self.first_conv_layer(x.permute(1, 2, 0))),
                                     p=self.dropout, training=self.training)
        up = self.second_conv_layer(down).permute(2, 0, 1) * self.scale
        return up + freq * self.freq_scale


class ResidualAttentionBlock(nn.Module):
    """A pre-norm CLIP block (``attn``, ``ln_1``, ``mlp.c_fc``/``c_proj``, ``ln_2``), optionally with an adapter."""

    def __init__(self, width: int, heads: int, act: str, adapter: ForgeryAwareAdapter | None = None,
                 causal: int = 0) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(width, heads)
        self.ln_1 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(OrderedDict([("c_fc", nn.Linear(width, 4 * width)),
                                              ("gelu", QuickGELU() if act == "quick_gelu" else nn.GELU()),
                                              ("c_proj", nn.Linear(4 * width, width))]))
        self.ln_2 = nn.LayerNorm(width)
        if adapter is not None:
            self.forgery_aware_adapter = adapter
        mask = torch.full((causal, causal), float("-inf")).triu_(1) if causal else None
        self.register_buffer("attn_mask", mask, persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        """``[L, B, D]`` -> ``[L, B, D]``."""
        y = self.ln_1(x)
        mask = None if self.attn_mask is None else self.attn_mask.to(y.dtype)
        x = x + self.attn(y, y, y, need_weights=False, attn_mask=mask)[0]
        out = x + self.mlp(self.ln_2(x))
        adapter = getattr(self, "forgery_aware_adapter", None)
        return out if adapter is None else out + adapter(x)


class Transformer(nn.Module):
    """``resblocks.N``."""

    def __init__(self, blocks: list[ResidualAttentionBlock]) -> None:
        super().__init__()
        self.resblocks = nn.Sequential(*blocks)

    def forward(self, x: Tensor) -> Tensor:
        """The blocks in order."""
        return self.resblocks(x)


def adapter_layers(layers: int, count: int) -> list[int]:
    """The blocks with an adapter: the last of each of ``count`` equal groups (0-based).

    Args:
        layers: the image encoder's depth.
        count: ``num_vit_adapter`` (it divides ``layers``; 0: none).

    Returns:
        The block indices.
    """
    return [(i + 1) * (layers // count) - 1 for i in range(count)] if count else []


class VisionTransformer(nn.Module):
    """CLIP's image tower with forgery-aware adapters, returning every token after ``ln_post`` and ``proj``."""

    def __init__(self, c: FatFormerConfig) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, c.width, c.patch, stride=c.patch, bias=False)
        self.class_embedding = nn.Parameter(torch.zeros(c.width))
        self.positional_embedding = nn.Parameter(torch.zeros((c.crop // c.patch) ** 2 + 1, c.width))
        self.ln_pre = nn.LayerNorm(c.width)
        with_adapter = set(adapter_layers(c.layers, c.num_adapters))
        self.transformer = Transformer([
            ResidualAttentionBlock(c.width, c.heads, c.act, ForgeryAwareAdapter(c) if i in with_adapter else None)
            for i in range(c.layers)])
        self.ln_post = nn.LayerNorm(c.width)
        self.proj = nn.Parameter(torch.zeros(c.width, c.embed_dim))

    def forward(self, x: Tensor) -> Tensor:
        """``[B, 3, crop, crop]`` -> ``[B, 1 + g * g, embed_dim]``."""
        x = self.conv1(x).flatten(2).transpose(1, 2)
        cls = self.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = self.ln_pre(torch.cat([cls, x], dim=1) + self.positional_embedding.to(x.dtype))
        x = self.transformer(x.transpose(0, 1)).transpose(0, 1)
        return self.ln_post(x) @ self.proj


class CLIP(nn.Module):
    """OpenAI CLIP's module layout (``visual``, ``transformer``, ``token_embedding``, ``positional_embedding``,
    ``ln_final``, ``text_projection``, ``logit_scale``); ``token_embedding`` is saved, never read by the forward.
    """

    def __init__(self, c: FatFormerConfig) -> None:
        super().__init__()
        self.visual = VisionTransformer(c)
        self.transformer = Transformer([ResidualAttentionBlock(c.text_width, c.text_heads, c.act,
                                                               causal=c.context_length)
                                        for _ in range(c.text_layers)])
        self.token_embedding = nn.Embedding(c.vocab_size, c.text_width)
        self.positional_embedding = nn.Parameter(torch.zeros(c.context_length, c.text_width))
        self.ln_final = nn.LayerNorm(c.text_width)
        self.text_projection = nn.Parameter(torch.zeros(c.text_width, c.embed_dim))
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))


class TextEncoder(nn.Module):
    """CLIP's text transformer on prompt embeddings; the end token's feature through ``text_projection``."""

    def __init__(self, clip: CLIP) -> None:
        super().__init__()
        self.transformer = clip.transformer
        self.positional_embedding = clip.positional_embedding
        self.ln_final = clip.ln_final
        self.text_projection = clip.text_projection

    def forward(self, prompts: Tensor, eot: Tensor) -> Tensor:
        """``[N, L, D]`` prompt embeddings, ``[N]`` end-token positions -> ``[N, embed_dim]``."""
        x = self.transformer((prompts + self.positional_embedding.to(prompts.dtype)).transpose(0, 1)).transpose(0, 1)
        x = self.ln_final(x)
        return x[torch.arange(x.shape[0], device=x.device), eot] @ self.text_projection


def _ffn_block(d: int) -> tuple[nn.Module, ...]:
    return nn.LayerNorm(d), nn.Linear(d, 4 * d), nn.ReLU(), nn.Linear(4 * d, d), nn.LayerNorm(d)


class LanguageGuidedAlignment(nn.Module):
    """The learnt prompt context, made image-specific by the patch-based enhancer."""

    def __init__(self, c: FatFormerConfig) -> None:
        super().__init__()
        d = c.text_width
        self.ctx = nn.Parameter(torch.zeros(c.n_ctx, d))
        self.register_buffer("token_prefix", torch.zeros(len(CLASSNAMES), 1, d))
        self.register_buffer("token_suffix", torch.zeros(len(CLASSNAMES), c.context_length - 1 - c.n_ctx, d))
        self.patch_basaed_enhancer = nn.MultiheadAttention(d, c.lga_heads)  # the original's spelling (key names)
        self.norm1, self.linear1, self.activation, self.linear2, self.norm2 = _ffn_block(d)

    def forward(self, image_tokens: Tensor) -> Tensor:
        """``[B, T, D]`` image tokens -> ``[B, classes, L, D]`` prompt embeddings."""
        b = image_tokens.shape[0]
        ctx = self.ctx[:, None].expand(-1, b, -1)
        memory = image_tokens.transpose(0, 1)
        ctx = self.norm1(ctx + self.patch_basaed_enhancer(ctx, memory, memory, need_weights=False)[0])
        ctx = self.norm2(ctx + self.linear2(self.activation(self.linear1(ctx)))).transpose(0, 1)  # [B, n_ctx, D]
        n = self.token_prefix.shape[0]
        return torch.cat([self.token_prefix.expand(b, -1, -1, -1), ctx[:, None].expand(-1, n, -1, -1),
                          self.token_suffix.expand(b, -1, -1, -1)], dim=2)


class FatFormerNet(nn.Module):
    """``CLIPModel``: its module layout (the aliases included), its forward; ``[B, 3, crop, crop]`` -> ``[B, 2]``."""

    def __init__(self, c: FatFormerConfig, eot: Tensor) -> None:
        super().__init__()
        self.clip_model = CLIP(c)
        self.language_guided_alignment = LanguageGuidedAlignment(c)
        self.image_encoder = self.clip_model.visual
        self.text_encoder = TextEncoder(self.clip_model)
        self.logit_scale = self.clip_model.logit_scale
        self.text_guided_interactor = nn.MultiheadAttention(c.text_width, c.lga_heads)
        self.norm1, self.linear1, self.activation, self.linear2, self.norm2 = _ffn_block(c.text_width)
        self.register_buffer("eot", eot, persistent=False)  # the end token's position in each class's prompt

    def forward(self, image: Tensor) -> Tensor:
        """Eq. (1) logits plus the text-guided interactor's (Eq. 9): ``[B, 2]`` (real, fake)."""
        scale = self.logit_scale.exp()
        tokens = self.image_encoder(image)  # [B, T, E]
        b = tokens.shape[0]
        prompts = self.language_guided_alignment(tokens)  # [B, 2, L, D]
        n = prompts.shape[1]
        text = self.text_encoder(prompts.flatten(0, 1), self.eot.repeat(b)).reshape(b, n, -1)  # [B, 2, E]
        text_unit = text / text.norm(dim=-1, keepdim=True)
        cls = tokens[:, 0] / tokens[:, 0].norm(dim=-1, keepdim=True)
        logits = scale * (text_unit @ cls[:, :, None])[..., 0]
        patches, memory = tokens[:, 1:].transpose(0, 1), text.transpose(0, 1)
        t = self.norm1(patches + self.text_guided_interactor(patches, memory, memory, need_weights=False)[0])
        t = self.norm2(t + self.linear2(self.activation(self.linear1(t))))
        pooled = t.mean(dim=0)
        pooled = pooled / pooled.norm(dim=-1, keepdim=True)
        return logits + scale * (text_unit @ pooled[:, :, None])[..., 0]


class TrainableFatFormer(TrainableParts):
    """What training changes (adapters, prompt context and enhancer, interactor), registered without the frozen
    CLIP towers; the forward and the mode are the whole network's (only the adapters' dropouts depend on it).
    """

    def __init__(self, net: FatFormerNet) -> None:
        super().__init__(net)
        blocks = net.image_encoder.transformer.resblocks
        self.adapters = nn.ModuleDict({str(i): b.forgery_aware_adapter for i, b in enumerate(blocks)
                                       if hasattr(b, "forgery_aware_adapter")})
        self.language_guided_alignment = net.language_guided_alignment
        self.interactor = nn.ModuleList([net.text_guided_interactor, net.norm1, net.linear1, net.linear2, net.norm2])


# ---------------------------------------------------------------------------------------------- config


@dataclass(frozen=True)
class FatFormerConfig:
    """FatFormer options: released weights or training, the architecture, the preprocessing, the recipe."""

    weights: str = ""  # the released checkpoint ({'model': state_dict})[#sha256=HEX]; empty: train from `backbone`
    load_size: int = 256  # Resize((load_size, load_size)) before the crop (img_resolution)
    crop: int = 224  # CenterCrop and the network's input (crop_resolution)
    # image encoder: CLIP ViT-L/14
    width: int = 1024
    layers: int = 24
    heads: int = 16
    patch: int = 14
    embed_dim: int = 768
    act: Literal["quick_gelu", "gelu"] = "quick_gelu"  # OpenAI CLIP's QuickGELU
    # forgery-aware adapters (num_vit_adapter 3: the published evaluation command; main.py's default is 8)
    num_adapters: int = 3
    adapter_bottleneck: int = 64
    adapter_heads: int = 8
    adapter_groups: int = 128  # GroupNorm(128, width) on the DWT bands
    adapter_scale: float = 0.1
    adapter_dropout: float = 0.1
    # text side: CLIP's text encoder, 8 learnt context tokens, the LGA's attention heads
    text_width: int = 768
    text_layers: int = 12
    text_heads: int = 12
    context_length: int = 77
    vocab_size: int = 49408
    n_ctx: int = 8
    lga_heads: int = 12
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "fp32"
    # P(fake) from float32 logits as the original's torch softmax; float64 ranks saturated ones
    sigmoid_dtype: Literal["float32", "float64"] = "float32"
    batch_size: int = 32  # evaluation batch (main.py's batchsize)
    # training (not in the repository, which ships inference only): detbench's recipe from this backbone
    backbone: str = "open_clip:ViT-L-14@openai"
    epochs: int = 10
    train_batch_size: int = 32
    lr: float = 1e-4
    weight_decay: float = 0.0
    checkpoint_every: int = 200

    def validate(self) -> None:
        """Check the option ranges (called after every ``--set``).

        Raises:
            ConfigError: listing the ranges when any option is out of its range.
        """
        grid = self.crop // max(self.patch, 1)
        ok = (self.load_size >= self.crop >= self.patch >= 1 and self.crop % self.patch == 0 and grid % 2 == 0
              and self.width % self.heads == 0 and self.width % self.adapter_heads == 0
              and self.width % self.adapter_groups == 0 and self.text_width % self.text_heads == 0
              and self.text_width % self.lga_heads == 0 and self.text_width == self.embed_dim
              and self.layers >= 1 and 0 <= self.num_adapters <= self.layers
              and (self.num_adapters == 0 or self.layers % self.num_adapters == 0)
              and min(self.adapter_bottleneck, self.text_layers, self.vocab_size, self.n_ctx) >= 1
              and self.context_length >= self.n_ctx + 4 and 0 <= self.adapter_dropout < 1
              and min(self.batch_size, self.epochs, self.train_batch_size) >= 1 and self.lr > 0
              and self.weight_decay >= 0 and self.checkpoint_every >= 0)
        if not ok:
            raise ConfigError(
                "fatformer options need load_size >= crop >= patch, crop a multiple of patch with an even patch "
                "grid (the DWT), width divisible by heads, adapter_heads and adapter_groups, text_width equal to "
                "embed_dim and divisible by text_heads and lga_heads, num_adapters dividing layers, "
                "context_length >= n_ctx + 4, 0 <= adapter_dropout < 1, batch sizes and epochs >= 1, lr > 0, "
                "weight_decay and checkpoint_every >= 0")


# ---------------------------------------------------------------------------------------------- detector


REGISTRATION = {  # read by detbench.registry without importing this module: literals only
    "name": "fatformer",
    "class": "FatFormer",
    "summary": ("FatFormer (CVPR 2024): CLIP ViT-L/14 with forgery-aware image/DWT adapters and language-guided "
                "alignment (learnt prompts through CLIP's text encoder); released 4-class ProGAN checkpoint."),
    "paper": "Liu et al., CVPR",
    "year": 2024,
    "training": "trains",
    "weights_key": "weights",
    "released": ("the 4-class ProGAN checkpoint (Baidu, OneDrive or Google Drive, linked from "
                 "github.com/Michel-liu/FatFormer; Apache-2.0), loaded from a file the user provides"),
}


def prompt_end_positions(n_ctx: int, context_length: int) -> Tensor:
    """Where each class's prompt ends: ``argmax`` of CLIP's tokens of ``"X ... X <class>."`` (``n_ctx`` X's).

    Args:
        n_ctx: the context tokens.
        context_length: the prompt length.

    Returns:
        ``[classes]`` positions.
    """
    from detbench.models.backbones import clip_tokenize

    prompts = [" ".join(["X"] * n_ctx) + f" {name}." for name in CLASSNAMES]
    return clip_tokenize(prompts, context_length).argmax(dim=-1)


class FatFormer(ClassifierDetector):
    """FatFormer: CLIP ViT-L/14 with forgery-aware adapters and language-guided alignment."""

    name = REGISTRATION["name"]
    version = 1
    Config = FatFormerConfig
    summary = REGISTRATION["summary"]
    tiny_settings: ClassVar[dict[str, Any]] = {
        "backbone": "open_clip:detbench-tiny-vit@random", "load_size": 32, "crop": 32, "width": 64, "layers": 4,
        "heads": 2, "patch": 16, "embed_dim": 64, "act": "gelu", "num_adapters": 2, "adapter_groups": 32,
        "text_width": 64, "text_layers": 1, "text_heads": 2, "lga_heads": 2, "epochs": 1, "train_batch_size": 8,
        "checkpoint_every": 0,
    }
    profile_defaults: ClassVar[dict[str, dict[str, Any]]] = {
        # "small" (the demo): no CLIP with a text tower runs offline, so a tiny seeded random one of the family
        # (width 64, 4 layers, a 1-layer 64-wide text tower) stands in; Resize((128, 128)) and 64 px centre crops,
        # 3 epochs of 32 images
        "small": {**{k: v for k, v in tiny_settings.items() if k not in ("load_size", "crop", "epochs",
                                                                         "train_batch_size")},
                  "load_size": 128, "crop": 64, "epochs": 3, "train_batch_size": 32, "checkpoint_every": 20},
    }
    weights_what = "the FatFormer checkpoint"
    weights_fix = ("pass --set weights=/path/to/fatformer_checkpoint.pth (the 4-class ProGAN checkpoint linked from "
                   "github.com/Michel-liu/FatFormer)")

    def build_network(self) -> nn.Module:
        """The network under the original's module names.

        Returns:
            The :class:`FatFormerNet`.
        """
        c = self.config
        return FatFormerNet(c, prompt_end_positions(c.n_ctx, c.context_length))

    def released_state_dict(self, state_dict: dict[str, Any], ctx: RunContext) -> dict[str, Any]:
        """The checkpoint as it is; its DWT filter buffers must be pytorch_wavelets' Haar filters.

        Args:
            state_dict: the unwrapped checkpoint.
            ctx: unused.

        Returns:
            The tensors to load strictly.

        Raises:
            WeightsError: a DWT filter buffer holds other values.
        """
        expected = haar_filters()
        for key, value in state_dict.items():
            suffix = key.rsplit(".", 2)[-2:]
            name = ".".join(suffix)
            if name in expected and isinstance(value, Tensor) and value.shape == expected[name].shape:
                if not torch.allclose(value.float(), expected[name], rtol=0, atol=1e-7):
                    raise WeightsError(f"{self.weights_what}: {key} is not the Haar filter of pytorch_wavelets "
                                       f"({value.flatten().tolist()}); {self.weights_fix}")
        return state_dict

    def to_tensor(self) -> Any:
        """PIL image -> network input: ``ToTensor`` and ImageNet mean/std (``utils/dataset.py``).

        Returns:
            The transform.
        """
        return imagenet_tensor()

    def eval_preprocessing(self, ctx: RunContext) -> EvalPreprocessing:
        """``Resize((load_size, load_size))`` (PIL bilinear), ``CenterCrop(crop)``, for every test set.

        Args:
            ctx: unused (the original evaluates every test set alike).

        Returns:
            The preprocessing; facts: the sizes and the normalisation.
        """
        c = self.config
        steps = [transforms.Resize([c.load_size, c.load_size]), transforms.CenterCrop([c.crop, c.crop])]
        facts = {"resize": c.load_size, "crop": c.crop, "normalise": "imagenet"}
        return EvalPreprocessing(transforms.Compose([*steps, self.to_tensor()]), by_shape=False, facts=facts)

    def probabilities(self, logits: np.ndarray) -> np.ndarray:
        """P(fake) = ``softmax[:, 1]`` of the (real, fake) logits.

        Args:
            logits: ``[N, 2]``.

        Returns:
            ``[N]`` P(fake).
        """
        return softmax_fake(logits, self.config.sigmoid_dtype)

    def state_module(self) -> Any:
        """Only what training changes (the CLIP towers come from ``backbone`` again).

        Returns:
            The :class:`TrainableFatFormer` view.
        """
        return TrainableFatFormer(self.net)

    def prepare_training(self, ctx: RunContext) -> dict[str, Any]:
        """Start from the ``backbone``'s CLIP (both towers, frozen); the prompt's start and class/end tokens embedded
        by its token embedding; the context vectors drawn as the original draws them (normal, std 0.02).

        Args:
            ctx: unused.

        Returns:
            The backbone's identity.
        """
        from detbench.models.backbones import clip_tokenize, load_backbone, load_text_tower

        c = self.config
        bb = load_backbone(c.backbone)
        sd = {f"visual.{k}": v for k, v in bb.model.state_dict().items()}
        sd.update(load_text_tower(c.backbone).clip.state_dict())
        grid = c.crop // c.patch
        resampled = (sd["visual.positional_embedding"].shape[0] - 1) != grid**2
        if resampled:
            from detbench.models.backbones import resample_pos_embed

            pos = sd["visual.positional_embedding"][None]
            sd["visual.positional_embedding"] = resample_pos_embed(pos, (grid, grid), 1, "timm")[0]
        net: FatFormerNet = self.net
        own = net.clip_model.state_dict()
        plain = {k: v for k, v in sd.items() if k in own}
        missing = sorted(k for k in own if k not in plain and ".forgery_aware_adapter." not in k)
        bad = sorted(k for k, v in plain.items() if v.shape != own[k].shape)
        if missing or bad:
            raise ConfigError(f"the backbone {bb.identity_spec} does not fit the configured FatFormer towers "
                              f"(width, layers, patch, crop, text_*): {', '.join((missing + bad)[:4])}")
        net.clip_model.load_state_dict(plain, strict=False)
        net.clip_model.requires_grad_(False)
        for i in adapter_layers(c.layers, c.num_adapters):
            net.image_encoder.transformer.resblocks[i].forgery_aware_adapter.requires_grad_(True)
        lga = net.language_guided_alignment
        prompts = [" ".join(["X"] * c.n_ctx) + f" {name}." for name in CLASSNAMES]
        with torch.no_grad():
            embedded = net.clip_model.token_embedding(clip_tokenize(prompts, c.context_length))
            lga.token_prefix.copy_(embedded[:, :1])
            lga.token_suffix.copy_(embedded[:, 1 + c.n_ctx:])
            nn.init.normal_(lga.ctx, std=0.02)
        return {"backbone": bb.identity_spec, "positions_resampled": resampled}

    def train_setup(self, ctx: RunContext, train: pd.DataFrame) -> TrainSetup:
        """Training (detbench's recipe): Adam on the adapters, the prompt context, the enhancer and the interactor,
        cross-entropy on the two logits, constant rate, the last epoch kept; the evaluation transform for training.

        Args:
            ctx: unused.
            train: the training rows (a batch never holds more than there are).

        Returns:
            The recipe.
        """
        c = self.config
        view = TrainableFatFormer(self.net)
        optimizer = torch.optim.Adam(view.parameters(), lr=c.lr, weight_decay=c.weight_decay)
        return TrainSetup(
            model=view, optimizer=optimizer, schedule=StepDecaySchedule(c.lr, every=c.epochs + 1, factor=1.0),
            train_transform=TorchDrawn(self.preprocessing.transform), heldout_transform=self.preprocessing.transform,
            loss=cross_entropy, probabilities=self.probabilities, epochs=c.epochs,
            batch_size=min(c.train_batch_size, len(train)), keep="last", checkpoint_every=c.checkpoint_every,
            heldout_batch_size=c.batch_size, precision=self.precision, name=self.name)
