"""SDAIE's networks (``Classifier/Net.py``, ``Classifier/vit.py``, ``Classifier/MPNCOV.py``, ``backbone_train.py``,
``bc_train.py``) and its patch transforms (``utils.py``), for :mod:`detbench.detectors.sdaie`.

The extractor (:class:`Extractor`, the original's ``base``) sees an image as ``n`` patches of 64 x 64. Each colour
channel of each patch goes through the 30 fixed SRM high-pass filters (90 residual maps), then a stack of
3x3 convolutions with LayerNorm over (channels, height, width) (Hardtanh(-5, 5) after the first, ReLU after the
rest; 3x3 average pools, padding 1, stride 2, counting the padding, after the 4th, 6th and 8th): 32 maps of 8 x 8
per patch. Each patch becomes the upper triangle of the square root of its 32 x 32 covariance (MPN-COV: Newton-Schulz,
5 iterations; 528 values), and a 2-layer transformer without positional embedding (width 528, 4 heads of 16, MLP
128, pre-norm) mixes the ``n`` patch tokens; the output of the first token is the 528-d feature.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn
from torchvision import transforms
from torchvision.transforms import functional as TF

from detbench.detectors.aide_net import srm_filters
from detbench.models.backbones.open_clip_adapter import CLIP_MEAN, CLIP_STD

PATCH = 64  # the architecture's patch side (its LayerNorms are shaped for it)
WIDTH = 32  # convolution channels
FEATURE = WIDTH * (WIDTH + 1) // 2  # 528: the upper triangle of a 32 x 32 matrix
NEWTON_SCHULZ = 5  # MPNCOV.SqrtmLayer(x, 5)
# The pretext heads of backbone_train.py, fc1 .. fc14 on the 528-d feature: output sizes. The 1-output heads
# rank a pair of images by an ordinal/continuous EXIF tag (probit of the difference); the others classify one.
PRETEXT_HEADS = (1, 7, 1, 1, 1, 6, 4, 1, 1, 6, 4, 2, 1, 5)


def _block(layers: int, size: int, *, first: int | None = None, pool: bool) -> nn.Sequential:
    """``layers`` x (3x3 convolution, LayerNorm([32, size, size]), activation), then the average pool."""
    mods: list[nn.Module] = []
    for i in range(layers):
        mods += [nn.Conv2d(first if (first and i == 0) else WIDTH, WIDTH, kernel_size=3, padding=1),
                 nn.LayerNorm([WIDTH, size, size]),
                 nn.Hardtanh(min_val=-5, max_val=5) if first else nn.ReLU()]
    if pool:
        mods.append(nn.AvgPool2d(kernel_size=3, padding=1, stride=2))
    return nn.Sequential(*mods)


class HighPass(nn.Module):
    """The 30 SRM filters as a frozen 1 -> 30 convolution (``group1.hpf.weight``), applied to each channel."""

    def __init__(self) -> None:
        super().__init__()
        self.hpf = nn.Conv2d(1, 30, kernel_size=5, padding=2, bias=False)
        self.hpf.weight = nn.Parameter(torch.from_numpy(srm_filters()).view(30, 1, 5, 5), requires_grad=False)

    def forward(self, x: Tensor) -> Tensor:
        """``[B, 1, H, W]`` -> ``[B, 30, H, W]``."""
        return self.hpf(x)


class Attention(nn.Module):
    """Multi-head self-attention: ``to_qkv`` (no bias), softmax of ``q k^T / sqrt(dim_head)``, ``to_out``."""

    def __init__(self, dim: int, heads: int, dim_head: int) -> None:
        super().__init__()
        self.heads, self.scale = heads, dim_head**-0.5
        self.to_qkv = nn.Linear(dim, heads * dim_head * 3, bias=False)
        self.to_out = nn.Sequential(nn.Linear(heads * dim_head, dim), nn.Dropout(0.0))

    def forward(self, x: Tensor) -> Tensor:
        """``[B, N, dim]`` -> ``[B, N, dim]``."""
        b, n, _ = x.shape
        q, k, v = (t.reshape(b, n, self.heads, -1).transpose(1, 2) for t in self.to_qkv(x).chunk(3, dim=-1))
        attn = torch.softmax(q @ k.transpose(-1, -2) * self.scale, dim=-1)
        return self.to_out((attn @ v).transpose(1, 2).reshape(b, n, -1))


class PreNorm(nn.Module):
    """``fn(LayerNorm(x))``."""

    def __init__(self, dim: int, fn: nn.Module) -> None:
        super().__init__()
        self.norm, self.fn = nn.LayerNorm(dim), fn

    def forward(self, x: Tensor) -> Tensor:
        """The wrapped module on the normalised input."""
        return self.fn(self.norm(x))


class FeedForward(nn.Module):
    """Linear - GELU - Linear (dropout 0)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(0.0), nn.Linear(hidden, dim),
                                 nn.Dropout(0.0))

    def forward(self, x: Tensor) -> Tensor:
        """The MLP."""
        return self.net(x)


class Transformer(nn.Module):
    """Pre-norm transformer layers, each ``x + attn(x)`` then ``x + ff(x)``."""

    def __init__(self, dim: int = FEATURE, depth: int = 2, heads: int = 4, dim_head: int = 16, mlp: int = 128) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            nn.ModuleList([PreNorm(dim, Attention(dim, heads, dim_head)), PreNorm(dim, FeedForward(dim, mlp))])
            for _ in range(depth))

    def forward(self, x: Tensor) -> Tensor:
        """``[B, N, dim]`` -> ``[B, N, dim]``."""
        for attn, ff in self.layers:  # type: ignore[misc]
            x = attn(x) + x
            x = ff(x) + x
        return x


def covariance(x: Tensor) -> Tensor:
    """MPN-COV's pooling: ``X (I/M - 1/M^2) X^T`` per sample, the covariance over the ``M = h w`` positions
    normalised by ``M``.

    Args:
        x: ``[B, C, h, w]``.

    Returns:
        ``[B, C, C]``.
    """
    b, c = x.shape[:2]
    x = x.reshape(b, c, -1)
    x = x - x.mean(dim=2, keepdim=True)
    return x @ x.transpose(1, 2) / x.shape[2]


def newton_schulz_sqrt(a: Tensor, iterations: int = NEWTON_SCHULZ) -> Tensor:
    """MPN-COV's matrix square root: the coupled Newton-Schulz iteration on ``A / tr(A)``, rescaled by
    ``sqrt(tr(A))`` (``iterations`` >= 2: ``iterations - 2`` full steps between the first and the last half step).

    Args:
        a: ``[B, C, C]`` symmetric positive semi-definite.
        iterations: the original's ``iterN``.

    Returns:
        ``[B, C, C]``.
    """
    c = a.shape[-1]
    eye3 = 3.0 * torch.eye(c, dtype=a.dtype, device=a.device).expand_as(a)
    trace = a.diagonal(dim1=1, dim2=2).sum(dim=1).view(-1, 1, 1)
    normed = a / trace
    zy = 0.5 * (eye3 - normed)
    y = normed @ zy
    if iterations < 2:
        return y * trace.sqrt()
    z = zy
    for _ in range(1, iterations - 1):
        zy = 0.5 * (eye3 - z @ y)
        y, z = y @ zy, zy @ z
    return 0.5 * y @ (eye3 - z @ y) * trace.sqrt()


def upper_triangle(x: Tensor) -> Tensor:
    """The upper triangle (diagonal included) of each ``[C, C]`` matrix, row by row: ``[B, C (C + 1) / 2]``."""
    rows, cols = torch.triu_indices(x.shape[-1], x.shape[-1], device=x.device)
    return x[:, rows, cols]


class Extractor(nn.Module):
    """The original's ``base``: ``[B, n, 3, 64, 64]`` patches -> the 528-d feature, with the intermediate maps the
    binary detector's regulariser compares (``f1`` .. ``f5``).
    """

    def __init__(self) -> None:
        super().__init__()
        self.transformer = Transformer()
        self.group1 = HighPass()
        self.group1_b = _block(1, PATCH, first=90, pool=False)
        self.group2 = _block(4, PATCH, pool=True)
        self.group3 = _block(2, PATCH // 2, pool=True)
        self.group4 = _block(2, PATCH // 4, pool=True)
        self.group5 = _block(2, PATCH // 8, pool=False)

    def features(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        """The feature and the maps after groups 2-5 and the covariance layer.

        Args:
            x: ``[B, n, 3, 64, 64]`` normalised patches.

        Returns:
            ``(f [B, 528], [f1, f2, f3, f4, f5])``; ``f5`` is ``[B, n, 528]``.
        """
        b, n, c, h, w = x.shape
        r = self.group1(x.reshape(b * n * c, 1, h, w)).reshape(b * n, c * 30, h, w)  # channel-major: c * 30 + filter
        f1 = self.group2(self.group1_b(r))
        f2 = self.group3(f1)
        f3 = self.group4(f2)
        f4 = self.group5(f3)
        with torch.autocast(x.device.type, enabled=False):  # covariance and square root in float32 (or float64)
            low = f4.dtype in (torch.float16, torch.bfloat16)
            f5 = upper_triangle(newton_schulz_sqrt(covariance(f4.float() if low else f4))).reshape(b, n, -1)
        return self.transformer(f5)[:, 0], [f1, f2, f3, f4, f5]

    def forward(self, x: Tensor) -> Tensor:
        """The 528-d feature of each image (its first patch's token after the transformer).

        Args:
            x: ``[B, n, 3, 64, 64]`` normalised patches.

        Returns:
            ``[B, 528]``.
        """
        return self.features(x)[0]


class PretextNet(nn.Module):
    """``backbone_train.py``'s ``diffextractor``: the extractor (``backbone``) and the 14 EXIF heads ``fc1`` ..
    ``fc14`` (the released backbone checkpoint's layout). Its forward is the extractor's feature.
    """

    def __init__(self) -> None:
        super().__init__()
        self.backbone = Extractor()
        for i, out in enumerate(PRETEXT_HEADS, start=1):
            self.add_module(f"fc{i}", nn.Linear(FEATURE, out))

    def forward(self, x: Tensor) -> Tensor:
        """The backbone's 528-d feature of each image."""
        return self.backbone(x)


class BinaryNet(nn.Module):
    """``bc_train.py``'s ``combonet``: a frozen pretext extractor (``diffusionextractor_pretrained``), the
    classifier's own extractor (``diffusionextractor_random``) and ``fc`` (two logits, real then fake).

    In training mode the forward also leaves the regulariser in :attr:`distance`: the sum of the mean squared
    differences between the two extractors' ``f1`` .. ``f5``.
    """

    def __init__(self) -> None:
        super().__init__()
        self.diffusionextractor_pretrained = Extractor()
        self.diffusionextractor_pretrained.requires_grad_(False)
        self.diffusionextractor_random = Extractor()
        self.fc = nn.Linear(FEATURE, 2)
        self.regularise = True  # training forwards compute the regulariser (off when its weight is 0)
        self.distance: Tensor | None = None

    def forward(self, x: Tensor) -> Tensor:
        """Two logits per image.

        Args:
            x: ``[B, n, 3, 64, 64]`` normalised patches.

        Returns:
            ``[B, 2]``.
        """
        f, maps = self.diffusionextractor_random.features(x)
        if self.training and self.regularise:
            with torch.no_grad():
                _, reference = self.diffusionextractor_pretrained.features(x)
            self.distance = sum(nn.functional.mse_loss(a.float(), b.float()) for a, b in zip(maps, reference,
                                                                                                 strict=True))
        return self.fc(f)

    def take_distance(self) -> Tensor | None:
        """The regulariser of the last training forward, cleared (None after an evaluation forward).

        Returns:
            The scalar, or None.
        """
        distance, self.distance = self.distance, None
        return distance


# ---------------------------------------------------------------------------------------------- transforms


def normalise() -> Any:
    """ToTensor and CLIP's normalisation, as the original's ``totensor``."""
    return transforms.Compose([transforms.ToTensor(), transforms.Normalize(CLIP_MEAN, CLIP_STD)])


def to_patches(x: Tensor, patch: int = PATCH) -> Tensor:
    """Non-overlapping ``patch`` x ``patch`` patches of ``[3, H, W]`` (H, W multiples of ``patch``), row by row.

    Returns:
        ``[n, 3, patch, patch]``.
    """
    c = x.shape[0]
    p = x.unfold(1, patch, patch).unfold(2, patch, patch)  # [3, rows, cols, patch, patch]
    return p.reshape(c, -1, patch, patch).permute(1, 0, 2, 3)


@dataclass(frozen=True)
class AdaptivePatches:
    """The evaluation transform (``_adaptivepatch``): an image with a side under 64 is resized to 64 x 64
    (bilinear); otherwise centre-cropped to multiples of 64; then normalised and cut into its 64 x 64 patches,
    row by row, at most ``max_patches`` (the first ones).

    ``swapped_crop``: the original passes ``CenterCrop((W', H'))`` with PIL's ``(width, height)`` order while
    torchvision reads ``(height, width)``: a non-square image is cropped to height ``W'`` and width ``H'``, and
    zero-padded (black before normalisation) on the axis where that exceeds the image. False crops to
    ``(H', W')``.
    """

    max_patches: int
    swapped_crop: bool = True

    def __call__(self, img: Image.Image) -> Tensor:
        """``[n, 3, 64, 64]`` patches of ``img``."""
        w, h = img.size
        if min(w, h) < PATCH:
            img = TF.resize(img, [PATCH, PATCH])
        else:
            cw, ch = w // PATCH * PATCH, h // PATCH * PATCH
            img = TF.center_crop(img, [cw, ch] if self.swapped_crop else [ch, cw])
        return to_patches(normalise()(img))[: self.max_patches]


@dataclass(frozen=True)
class RandomPatches:
    """The training transform (``_fixpatch`` with ``custom_augment``): with probability ``resize_prob`` a resize to
    a random square side in [64, 128]; blur (sigma uniform in [0, 1]) and JPEG (quality in ``jpeg_quality``) with
    their probabilities; a side under 64 resized to 64 x 64; normalised; ``patches`` random 64 x 64 crops, each at
    its own position (the scrambling: the patches lose their place in the image).
    """

    patches: int
    resize_prob: float
    blur_prob: float
    jpeg_prob: float
    jpeg_quality: tuple[int, int]

    def __call__(self, img: Image.Image, rng: np.random.Generator) -> Tensor:
        """``[patches, 3, 64, 64]`` augmented crops of ``img``, drawing from ``rng``."""
        from detbench.data.perturbations import JpegQuality, gaussian_blur_uint8
        from detbench.detectors.cnnspot import JPEG_METHODS

        if rng.random() < self.resize_prob:
            side = int(rng.integers(PATCH, 2 * PATCH + 1))
            img = TF.resize(img, [side, side])
        if rng.random() < self.blur_prob:
            img = Image.fromarray(gaussian_blur_uint8(img, float(rng.random())))
        if rng.random() < self.jpeg_prob:
            rng.integers(len(JPEG_METHODS))  # the original's encoder draw (Pillow encodes both)
            img = JpegQuality(int(rng.integers(self.jpeg_quality[0], self.jpeg_quality[1] + 1))).apply(img)
        if min(img.size) < PATCH:
            img = TF.resize(img, [PATCH, PATCH])
        x = normalise()(img)
        h, w = x.shape[-2:]
        crops = []
        for _ in range(self.patches):
            top, left = int(rng.integers(0, h - PATCH + 1)), int(rng.integers(0, w - PATCH + 1))
            crops.append(x[:, top:top + PATCH, left:left + PATCH])
        return torch.stack(crops)
