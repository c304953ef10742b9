"""AIDE's network (``models/AIDE.py``): the fixed SRM filter bank, the two ResNet-50 experts on the low- and
high-frequency patches, the frozen semantic trunk and the MLP head (see :mod:`detbench.detectors.aide`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from detbench.data.preprocess import IMAGENET_MEAN, IMAGENET_STD


def srm_filters() -> np.ndarray:
    """The 30 SRM high-pass residual filters (Fridrich & Kodovsky 2012) in AIDE's order, as ``[30, 5, 5]``.

    Order and scaling: 8 first-order (/1), 4 second-order (/2), 8 third-order (/3), 4 EDGE3x3 (/4), 4 EDGE5x5
    (/12), SQUARE3x3 (/4), SQUARE5x5 (/12); 3x3 kernels sit in the centre of a zero 5x5.

    Returns:
        ``[30, 5, 5]`` float32.
    """
    def place(k: list[list[float]]) -> np.ndarray:
        a = np.asarray(k, dtype=np.float32)
        return np.pad(a, 1) if a.shape == (3, 3) else a

    ring = [(0, 0), (0, 1), (0, 2), (1, 0), (1, 2), (2, 0), (2, 1), (2, 2)]  # first order: neighbour minus centre
    first = []
    for r, c in ring:
        k = np.zeros((3, 3), np.float32)
        k[1, 1], k[r, c] = -1, 1
        first.append(k)
    second = [[[1, 0, 0], [0, -2, 0], [0, 0, 1]], [[0, 1, 0], [0, -2, 0], [0, 1, 0]],
              [[0, 0, 1], [0, -2, 0], [1, 0, 0]], [[0, 0, 0], [1, -2, 1], [0, 0, 0]]]
    third = []
    for dr, dc in [(-1, -1), (-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1)]:
        k = np.zeros((5, 5), np.float32)  # -1, 3, -3, 1 along a ray through the centre, ending one step beyond
        for step, value in zip((-2, -1, 0, 1), (1, -3, 3, -1), strict=True):
            k[2 - step * dr, 2 - step * dc] = value
        third.append(-k)
    sq3 = np.array([[-1, 2, -1], [2, -4, 2], [-1, 2, -1]], np.float32)
    sq5 = np.array([[-1, 2, -2, 2, -1], [2, -6, 8, -6, 2], [-2, 8, -12, 8, -2], [2, -6, 8, -6, 2],
                    [-1, 2, -2, 2, -1]], np.float32)
    edge3 = [sq3 * m for m in _half_masks(3)]
    edge5 = [sq5 * m for m in _half_masks(5)]
    bank = ([place(k) for k in first] + [place(k) / 2 for k in second] + [k / 3 for k in third]
            + [place(k) / 4 for k in edge3] + [k / 12 for k in edge5] + [place(sq3) / 4, sq5 / 12])
    return np.stack(bank).astype(np.float32)


def _half_masks(n: int) -> list[np.ndarray]:
    """EDGE kernels are SQUARE kernels with a half-plane zeroed: bottom rows, left columns, top rows, right
    columns (the centre row/column kept), in this order.
    """
    c = n // 2
    masks = []
    for keep in (np.s_[: c + 1, :], np.s_[:, c:], np.s_[c:, :], np.s_[:, : c + 1]):
        m = np.zeros((n, n), np.float32)
        m[keep] = 1
        masks.append(m)
    return masks


def expert_resnet() -> nn.Module:
    """A ResNet-50 (torchvision layout, zero-initialised residual ends) whose stem takes the 30 SRM residuals and
    whose forward returns the 2048-d pooled feature; its 1000-class ``fc`` exists, unused, as in the original
    (frozen: no gradient ever reaches it, so the original's AdamW never changes it either).

    Returns:
        The module, randomly initialised as the original initialises it (Kaiming normal, fan-out).
    """
    from torchvision.models.resnet import Bottleneck, ResNet

    class ExpertResNet(ResNet):
        def forward(self, x: Tensor) -> Tensor:
            x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
            x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
            return torch.flatten(self.avgpool(x), 1)

    net = ExpertResNet(Bottleneck, [3, 4, 6, 3], zero_init_residual=True)
    net.conv1 = nn.Conv2d(30, 64, kernel_size=7, stride=2, padding=3, bias=False)
    nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")
    net.fc.requires_grad_(False)  # unused: DistributedDataParallel needs every trainable parameter to get a gradient
    return net


class SRMConv(nn.Module):
    """The fixed filter bank as a frozen convolution (``hpf.hpf.weight`` in the checkpoints)."""

    def __init__(self) -> None:
        super().__init__()
        self.hpf = nn.Conv2d(3, 30, kernel_size=5, padding=2, bias=False)
        bank = torch.from_numpy(srm_filters()).view(30, 1, 5, 5).repeat(1, 3, 1, 1)
        self.hpf.weight = nn.Parameter(bank, requires_grad=False)

    def forward(self, x: Tensor) -> Tensor:
        """The 30 SRM residuals of a batch, each filter summed over R, G and B.

        Args:
            x: ``[B, 3, H, W]`` (ImageNet-normalised patches, as the original feeds them).

        Returns:
            ``[B, 30, H, W]`` (zero padding keeps the size).
        """
        return self.hpf(x)


class AIDENet(nn.Module):
    """AIDE with the original's module names, so released state dicts load strictly.

    Args:
        semantic: the semantic trunk (registered as ``openclip_convnext_xxl``).
        semantic_dim: its pooled feature size (3072 for ConvNeXt-XXL).
        semantic_mean, semantic_std: the normalisation the trunk expects (CLIP's for the original).
        convnext_pool: pool the trunk's feature map as the original does for a ConvNeXt (head norm at every
            position, then the average); otherwise ``semantic_embed`` gives the pooled feature.
        semantic_embed: the trunk's pooled embedding for non-ConvNeXt stand-ins.
    """

    def __init__(self, semantic: nn.Module, semantic_dim: int, semantic_mean: tuple[float, ...],
                 semantic_std: tuple[float, ...], *, convnext_pool: bool, semantic_embed: Any = None,
                 train_proj: bool = False) -> None:
        from timm.layers import Mlp

        super().__init__()
        self.hpf = SRMConv()
        self.model_min = expert_resnet()
        self.model_max = expert_resnet()
        self.fc = Mlp(2048 + 256, 1024, 2)
        self.openclip_convnext_xxl = semantic
        if convnext_pool:
            semantic.head.global_pool = nn.Identity()
            semantic.head.flatten = nn.Identity()
        self.convnext_pool, self.semantic_embed, self.train_proj = convnext_pool, semantic_embed, train_proj
        self.semantic_mean, self.semantic_std = semantic_mean, semantic_std
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.convnext_proj = nn.Sequential(nn.Linear(semantic_dim, 256))
        semantic.requires_grad_(False)
        if not train_proj:
            self.convnext_proj.requires_grad_(False)

    def semantic_features(self, tokens: Tensor) -> Tensor:
        """The pooled semantic feature of ImageNet-normalised images (re-normalised for the trunk first).

        Args:
            tokens: ``[B, 3, S, S]`` whole images, ImageNet-normalised (the last view of :class:`AIDETransform`).

        Returns:
            ``[B, semantic_dim]`` (3072 for ConvNeXt-XXL), before ``convnext_proj``.
        """
        in_mean = torch.tensor(IMAGENET_MEAN).to(tokens).view(3, 1, 1)
        in_std = torch.tensor(IMAGENET_STD).to(tokens).view(3, 1, 1)
        mean = torch.tensor(self.semantic_mean).to(tokens).view(3, 1, 1)
        std = torch.tensor(self.semantic_std).to(tokens).view(3, 1, 1)
        x = tokens * (in_std / std) + (in_mean - mean) / std
        if not self.convnext_pool:
            return self.semantic_embed(x)
        return self.avgpool(self.openclip_convnext_xxl(x)).view(tokens.size(0), -1)

    def forward(self, x: Tensor) -> Tensor:
        """AIDE's forward: semantic feature (no gradient; ``convnext_proj`` too unless ``train_proj``) and the
        average of the four expert features, through the MLP head.

        Args:
            x: ``[B, 5, 3, S, S]`` stacks (see :class:`AIDETransform`).

        Returns:
            ``[B, 2]`` logits (real, fake).
        """
        minmin, maxmax, minmin1, maxmax1, tokens = x.unbind(1)
        with torch.no_grad():
            feats = self.semantic_features(tokens)
            if not self.train_proj:
                feats = self.convnext_proj(feats)
        x_0 = self.convnext_proj(feats) if self.train_proj else feats
        x_min = self.model_min(self.hpf(minmin))
        x_max = self.model_max(self.hpf(maxmax))
        x_min1 = self.model_min(self.hpf(minmin1))
        x_max1 = self.model_max(self.hpf(maxmax1))
        x_1 = (x_min + x_max + x_min1 + x_max1) / 4
        return self.fc(torch.cat([x_0, x_1], dim=1))
